"""The members of a queue's delayed set: a flat MessagePack array of strings (a job's entry
fields, names and values in turn), as the scripts pack them with Lua's ``cmsgpack``.

The worker packs a retry's member itself (the finish script would read the entry back for it)
byte for byte as ``cmsgpack.pack`` does, and the dashboard reads members. Only that shape is
read; anything else (a member written by hand) reads as None. A few lines here spare aqueue a
MessagePack library.
"""

from __future__ import annotations

from collections.abc import Iterable

_FIXARRAY, _FIXSTR = 0x90, 0xA0
# Past the fix forms, a marker and the length's width in bytes: what cmsgpack writes is the
# smallest that holds the length (array16/32, str8/16/32); bin8/16/32 read as strings too.
_ARRAY_HEADS = ((0xDC, 2), (0xDD, 4))
_STR_HEADS = ((0xD9, 1), (0xDA, 2), (0xDB, 4))
_ARRAY_SIZES = dict(_ARRAY_HEADS)
_STR_SIZES = {**dict(_STR_HEADS), 0xC4: 1, 0xC5: 2, 0xC6: 4}


def pack_strings(items: Iterable[bytes]) -> bytes:
    """``items`` as ``cmsgpack.pack`` packs a Lua list of those strings."""
    items = list(items)
    out = bytearray(_header(len(items), _FIXARRAY, 0x0F, _ARRAY_HEADS))
    for item in items:
        out += _header(len(item), _FIXSTR, 0x1F, _STR_HEADS)
        out += item
    return bytes(out)


def _header(length: int, fix: int, fix_most: int, heads: tuple[tuple[int, int], ...]) -> bytes:
    """The header of an array or string of ``length``: the fix form when it fits, else the
    smallest of ``heads`` (marker, width in bytes) that holds it."""
    if length <= fix_most:
        return bytes([fix | length])
    marker, width = next((m, w) for m, w in heads if length < 1 << (8 * w))
    return bytes([marker]) + length.to_bytes(width, "big")


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
