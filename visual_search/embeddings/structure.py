"""Refuse image files built to keep Pillow's own Python parsers busy, before Pillow reads them.

Pillow reads a file's structure in Python, one step per piece: a JPEG's segments and the junk or
fill bytes between them, a PNG's chunks, the blocks before a GIF's first picture, a TIFF's strips
or tiles. A file of millions of empty pieces with an ordinary picture at its end is no bomb by its
pixels, yet 10 MB of them took 2 to 12 s of CPU and up to 840 MB to open (one TIFF of 2.5 million
strips: 12 s, 840 MB), and a shop's own images may be five times larger. Real files have few pieces:
a JPEG a dozen segments, a PNG one chunk per 8 to 64 KB of pixels, a TIFF one strip per few rows.

So the pieces are counted first, in steps whose count stops at :data:`MAX_PIECES`; a TIFF's strips
are read from the count in its first directory, without a step each.

Pillow also decodes a compressed (RLE) BMP in Python, a step for each 2-byte command and, for some
commands, for each pixel: 10 MB of commands that draw nothing took 1.9 s of CPU, a 25 KB file that
pads 6000 rows of 6000 pixels one at a time 3.4 s. Such BMPs are Windows-era graphics of screen
size, so they are accepted up to :data:`MAX_RLE_PIXELS`, with at most the bytes an encoder writes.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Collection

from .. import reasons
from ..exceptions import ImageTooLarge, InvalidImage

# About 0.1 to 0.5 s of Pillow's parsing (1.4 us a JPEG segment, 2.6 us a PNG chunk, 5 us a TIFF
# strip), and ten times what a real file of MAX_INDEX_BYTES has.
MAX_PIECES = 100_000

_JUNK = re.compile(rb"[^\xff]+")  # bytes Pillow steps over one at a time, looking for a marker
_FILL = re.compile(rb"\xff+")
# JPEG markers without a length (Pillow's table): SOI, EOI, RSTn and the JPEG extensions.
_STANDALONE = {0xC8, *range(0xD0, 0xDA), *range(0xF0, 0xFE)}
_SOS = 0xDA
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_TIFF_OFFSETS = {273: "strips", 324: "tiles"}  # StripOffsets, TileOffsets

# A full-HD screen: 0.2 to 0.9 s of Pillow's RLE decoding here (2 cores, shared), however it is built.
MAX_RLE_PIXELS = 1920 * 1080
_BMP_RLE = {1: "RLE8", 2: "RLE4"}  # the BITMAPINFOHEADER's compression field


def check(data: bytes, formats: Collection[str]) -> None:
    """:class:`InvalidImage` when ``data``, in one of the Pillow ``formats``, has more than
    :data:`MAX_PIECES` pieces for Pillow to parse."""
    if data[:2] == b"\xff\xd8" and "JPEG" in formats:
        pieces, kind = _jpeg_pieces(data), "JPEG segments"
    elif data[:8] == _PNG_SIGNATURE and "PNG" in formats:
        pieces, kind = _png_pieces(data), "PNG chunks"
    elif data[:6] in (b"GIF87a", b"GIF89a") and "GIF" in formats:
        pieces, kind = _gif_pieces(data), "GIF blocks"
    elif data[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+") and "TIFF" in formats:
        pieces, kind = _tiff_pieces(data)
    elif data[:2] == b"BM" and "BMP" in formats:
        _check_bmp_rle(data)
        return
    else:
        return
    if pieces > MAX_PIECES:
        raise InvalidImage(
            reasons.TOO_MANY_PIECES % {"most": f"{MAX_PIECES:,}"},
            technical=f"{pieces:,} {kind} or more (at most {MAX_PIECES:,})",
        )


def _jpeg_pieces(data: bytes) -> int:
    """The steps Pillow takes up to the first scan: one a segment, one a junk or fill byte."""
    pos, pieces, end = 2, 0, len(data)
    while pos < end - 1 and pieces <= MAX_PIECES:
        if data[pos] != 0xFF:
            after = _JUNK.match(data, pos).end()
            pieces, pos = pieces + after - pos, after
            continue
        fill = _FILL.match(data, pos).end()
        pieces += fill - pos
        if fill >= end:
            break
        marker, pos = data[fill], fill + 1
        if marker == _SOS:
            break
        if marker not in _STANDALONE and marker != 0x00:
            pos += int.from_bytes(data[pos : pos + 2], "big")
    return pieces


def _png_pieces(data: bytes) -> int:
    pos, pieces, end = 8, 0, len(data)
    while pos + 8 <= end and pieces <= MAX_PIECES:
        length, kind = struct.unpack_from(">I4s", data, pos)
        pieces += 1
        if kind == b"IEND":
            break
        pos += 12 + length
    return pieces


def _gif_pieces(data: bytes) -> int:
    """The blocks and sub-blocks before the first picture (Pillow reads one picture's, in Python)."""
    if len(data) < 13:
        return 0
    pos, pieces, end = 13, 0, len(data)
    if data[10] & 0x80:  # a global colour table
        pos += 3 << ((data[10] & 7) + 1)
    while pos < end and pieces <= MAX_PIECES and data[pos] == 0x21:  # an extension
        pos += 2
        while pos < end and data[pos] and pieces <= MAX_PIECES:
            pieces += 1
            pos += data[pos] + 1
        pos += 1
        pieces += 1
    return pieces


def _tiff_pieces(data: bytes) -> tuple[int, str]:
    """The strips or tiles of the first directory, from their count (Pillow makes a tile of each)."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")  # BigTIFF: 8-byte counts and offsets
    head, entry = (f"{order}Q", f"{order}HHQQ") if big else (f"{order}I", f"{order}HHII")
    try:
        first = struct.unpack_from(head, data, 8 if big else 4)[0]
        count = struct.unpack_from(f"{order}Q" if big else f"{order}H", data, first)[0]
        start, size = first + (8 if big else 2), struct.calcsize(entry)
        pieces = 0
        for number in range(min(count, 65535)):
            tag, _type, values, _value = struct.unpack_from(entry, data, start + number * size)
            if tag in _TIFF_OFFSETS:
                pieces = max(pieces, values)
    except struct.error:  # cut short: Pillow says so
        return 0, "TIFF strips"
    return pieces, "TIFF strips or tiles"


def _check_bmp_rle(data: bytes) -> None:
    """Refuse an RLE-compressed BMP of more than :data:`MAX_RLE_PIXELS`, or with more data than an
    encoder writes: two bytes a pixel (a run of one) and an end-of-line a row, where Pillow would
    spend a step on each two bytes drawing nothing. Other BMPs are decoded by Pillow's C code."""
    try:
        offset, header = struct.unpack_from("<II", data, 10)
        width, height, _planes, _bits, compression = struct.unpack_from("<iiHHI", data, 18)
    except struct.error:  # cut short: Pillow says so
        return
    if header < 40 or compression not in _BMP_RLE:  # the OS/2 1.x header has no compression field
        return
    width, height = abs(width), abs(height)
    if width * height > MAX_RLE_PIXELS:
        raise ImageTooLarge(reasons.RLE_TOO_LARGE % {"width": width, "height": height, "most": f"{MAX_RLE_PIXELS:,}"})
    most = 2 * (width * height + height) + 2 + 65536  # and room for a colour profile after the pixels
    if len(data) - offset > most:
        raise InvalidImage(
            reasons.RLE_OVERLONG % {"width": width, "height": height, "most": f"{most:,}", "size": f"{len(data) - offset:,}"},
            technical=f"{_BMP_RLE[compression]} BMP, {len(data) - offset:,} bytes of pixel data (at most {most:,})",
        )
