"""Is a PNG whole? Every chunk's CRC, and the image data inflated to exactly the size its header promises.

Head and tail alone (signature, IHDR, IEND) miss a frame whose middle bytes were zeroed or lost; this reads
the whole file (a 4K frame inflates in well under a second), so a resumed render and `validate` only count
frames that decode completely.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))
_STEP = 1 << 20


class BadPNG(ValueError):
    """The file is not a complete, decodable PNG; the message says where it breaks."""


def _raw_size(width: int, height: int, depth: int, colour: int, interlace: int) -> int:
    """Bytes the inflated IDAT stream must hold: per row one filter byte plus the packed samples."""
    bits = depth * _CHANNELS[colour]

    def rows(w: int, h: int) -> int:
        return 0 if w == 0 or h == 0 else h * (1 + (w * bits + 7) // 8)

    if interlace == 0:
        return rows(width, height)
    return sum(
        rows(
            (width - x0 + dx - 1) // dx if width > x0 else 0,
            (height - y0 + dy - 1) // dy if height > y0 else 0,
        )
        for x0, y0, dx, dy in _ADAM7
    )


def verify(path: str | Path) -> tuple[int, int]:
    """(width, height) of a PNG that decodes completely; BadPNG naming the first problem otherwise."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise BadPNG(f"unreadable: {e.strerror or e}") from None
    if data[:8] != SIGNATURE:
        raise BadPNG("no PNG signature")
    pos, header, inflater, inflated, seen_end = 8, None, zlib.decompressobj(), 0, False
    while pos < len(data):
        if pos + 12 > len(data):
            raise BadPNG(f"truncated chunk header at byte {pos}")
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        end = pos + 12 + length
        if end > len(data):
            raise BadPNG(f"chunk {kind!r} at byte {pos} runs past the end of the file")
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(kind + body) != crc:
            raise BadPNG(f"chunk {kind!r} at byte {pos} fails its CRC (damaged bytes)")
        if header is None:
            if kind != b"IHDR" or length != 13:
                raise BadPNG("the first chunk is not IHDR")
            width, height, depth, colour, _comp, _filt, interlace = struct.unpack(">IIBBBBB", body)
            if colour not in _CHANNELS or width == 0 or height == 0 or interlace > 1:
                raise BadPNG(f"IHDR is not a valid image header ({width}x{height}, colour type {colour})")
            header = (width, height, _raw_size(width, height, depth, colour, interlace))
        elif kind == b"IDAT":
            chunk = body
            while chunk:
                try:
                    out = inflater.decompress(chunk, _STEP)
                except zlib.error as e:
                    raise BadPNG(f"image data does not inflate: {e}") from None
                inflated += len(out)
                if inflated > header[2]:
                    raise BadPNG(f"image data inflates past the {header[2]} bytes its header promises")
                chunk = inflater.unconsumed_tail
        elif kind == b"IEND":
            seen_end = True
            pos = end
            break
        pos = end
    if header is None:
        raise BadPNG("no IHDR")
    if not seen_end:
        raise BadPNG("no IEND chunk (truncated)")
    if pos != len(data):
        raise BadPNG(f"{len(data) - pos} bytes after IEND")
    try:
        inflated += len(inflater.flush())
    except zlib.error as e:
        raise BadPNG(f"image data does not inflate: {e}") from None
    if inflater.unused_data:
        raise BadPNG("bytes after the end of the image data stream")
    if not inflater.eof or inflated != header[2]:
        raise BadPNG(f"image data holds {inflated} of the {header[2]} bytes its header promises")
    return header[0], header[1]


def size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) of a PNG that decodes completely, else None."""
    try:
        return verify(path)
    except BadPNG:
        return None
