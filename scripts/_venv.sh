# Sourced by the scripts with the extras they need, e.g. `source scripts/_venv.sh embedded`
# (none given: the dev set): create .venv on first use and keep it in step with pyproject.toml.
# Needs only python3 (3.11+) with venv and pip; every dependency installs from wheels.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv (first run only)..." >&2
  "$python" -m venv .venv
fi
wanted=("${@:-dev}")
# The stamp holds pyproject.toml's hash, then the extras installed from that pyproject.toml:
# a script installs only when its extras are not all there, so the demo after the tests (or
# the tests after the demo) installs nothing it already has.
stamp=".venv/.aqueue-installed"
project="$(sha256sum pyproject.toml | cut -d' ' -f1)"
stamped=()
if [ -f "$stamp" ]; then
  read -r -a stamped < "$stamp" || true
fi
if [ "${stamped[0]:-}" != "$project" ]; then
  stamped=("$project")
fi
missing=()
for extra in "${wanted[@]}"; do
  case " ${stamped[*]:1} " in
    *" $extra "*) ;;
    *) missing+=("$extra") ;;
  esac
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing aqueue with its ${missing[*]} extras into .venv..." >&2
  .venv/bin/python -m pip install --quiet --upgrade pip
  # A .venv from before the distribution was renamed has `aqueue` installed: the old name of
  # this project, or the unrelated project of that name on PyPI. Either shadows this one.
  .venv/bin/python -m pip uninstall --quiet --yes aqueue 2>/dev/null || true
  extras="${missing[*]}"
  .venv/bin/python -m pip install --quiet -e ".[${extras// /,}]"
  echo "${stamped[*]} ${missing[*]}" > "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
