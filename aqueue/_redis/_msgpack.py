"""Reading the members of a queue's delayed set, which the scripts pack with Lua's
``cmsgpack``: a flat array of strings (a job's entry fields, names and values in turn).

Only that shape is read; anything else (a member written by hand) reads as None. A few lines
here spare the web extra a MessagePack library.
"""

from __future__ import annotations

_FIXARRAY, _FIXSTR = 0x90, 0xA0
_ARRAY_SIZES = {0xDC: 2, 0xDD: 4}
_STR_SIZES = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4}  # str8/16/32, bin8/16/32


def unpack_strings(data: bytes) -> list[bytes] | None:
    """The strings of a MessagePack array of strings, or None when ``data`` is not one."""
    try:
        count, at = _length(data, 0, _FIXARRAY, 0x0F, _ARRAY_SIZES)
        items = []
        for _ in range(count):
            size, at = _length(data, at, _FIXSTR, 0x1F, _STR_SIZES)
            if at + size > len(data):
                return None
            items.append(data[at : at + size])
            at += size
    except (IndexError, ValueError):
        return None
    return items if at == len(data) else None


def _length(
    data: bytes, at: int, fix: int, fix_mask: int, sizes: dict[int, int]
) -> tuple[int, int]:
    """The length a header at ``at`` gives, and where what it heads starts."""
    marker = data[at]
    if marker & ~fix_mask == fix:
        return marker & fix_mask, at + 1
    width = sizes.get(marker)
    if width is None or at + 1 + width > len(data):
        raise ValueError(marker)
    return int.from_bytes(data[at + 1 : at + 1 + width], "big"), at + 1 + width
