# Sourced by the scripts: create .venv on first use and keep it in step with pyproject.toml.
# Needs only python3 (3.11+) with venv and pip; every dependency installs from wheels.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv (first run only)..." >&2
  "$python" -m venv .venv
fi
stamp=".venv/.aqueue-installed"
wanted="$(cat pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$wanted" ]; then
  echo "installing aqueue and its dev dependencies into .venv..." >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e '.[dev]'
  echo "$wanted" > "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
