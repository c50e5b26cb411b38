"""The members of a queue's delayed set: a flat MessagePack array of strings (a job's entry
fields, names and values in turn), as the scripts pack them with Lua's ``cmsgpack``.

The worker packs a retry's member itself (the finish script would read the entry back for it)
byte for byte as ``cmsgpack.pack`` does, and the dashboard reads members. The promoting worker
finds the job each due member names here (the look script would unpack every member for it,
which cost the server more than the rest of the look); an enqueue's member may hold a number
among its strings (an expiry: cmsgpack packs a whole Lua number as an integer). Only those
shapes are read; anything else (a member written by hand) reads as None. A few lines here
spare aqueue a MessagePack library.
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
# uint8/16/32/64, int8/16/32/64, float32/64: a marker and the bytes of the number.
_NUMBER_WIDTHS = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8, 0xD0: 1, 0xD1: 2, 0xD2: 4, 0xD3: 8,
                  0xCA: 4, 0xCB: 8}  # fmt: skip


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


def named_value(data: bytes, name: bytes) -> bytes | None:
    """The string after the string ``name`` in a MessagePack array of names and values (a
    member's value of the field ``name``; the last, as the scripts read it), or None when it
    has none or ``data`` is no array of strings and numbers."""
    items = _unpack(data) or []
    found = None
    for key, value in zip(items[::2], items[1::2], strict=False):
        if key == name:
            found = value
    return found


def _unpack(data: bytes) -> list[bytes | None] | None:
    """The items of a MessagePack array of strings and numbers (None for each number), or
    None when ``data`` is not one."""
    try:
        count, at = _length(data, 0, _FIXARRAY, 0x0F, _ARRAY_SIZES)
        items: list[bytes | None] = []
        for _ in range(count):
            width = _number_width(data[at])
            if width is not None:
                items.append(None)
                at += 1 + width
                continue
            size, at = _length(data, at, _FIXSTR, 0x1F, _STR_SIZES)
            items.append(data[at : at + size])
            at += size
    except (IndexError, ValueError):
        return None
    return items if at == len(data) else None


def _number_width(marker: int) -> int | None:
    """How many bytes follow a number's marker (None: ``marker`` heads no number)."""
    if marker <= 0x7F or marker >= 0xE0:
        return 0  # a fixint: the marker is the number
    return _NUMBER_WIDTHS.get(marker)


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
