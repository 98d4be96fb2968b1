"""Code that displays real PNG images, shared by each adapter's image tests."""

from __future__ import annotations

import io

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Defines dot(width): an object whose _repr_png_ builds a valid grey PNG of that width, as
# IPython's display() protocol has it; displaying it is what a notebook user would write.
DOT_CODE = (
    "import struct, zlib\n"
    "def _chunk(kind, data):\n"
    "    return (struct.pack('>I', len(data)) + kind + data\n"
    "            + struct.pack('>I', zlib.crc32(kind + data)))\n"
    "class dot:\n"
    "    def __init__(self, width=1): self.width = width\n"
    "    def _repr_png_(self):\n"
    "        header = struct.pack('>IIBBBBB', self.width, 1, 8, 0, 0, 0, 0)\n"
    "        pixels = zlib.compress(b'\\x00' + b'\\x80' * self.width)\n"
    "        return (b'\\x89PNG\\r\\n\\x1a\\n' + _chunk(b'IHDR', header)\n"
    "                + _chunk(b'IDAT', pixels) + _chunk(b'IEND', b''))\n"
    "    def __repr__(self): return f'dot({self.width})'\n"
)


def png_size(data: bytes) -> tuple[int, int]:
    """The image's (height, width), decoded by matplotlib on the host: it is a real PNG."""
    import matplotlib.image

    pixels = matplotlib.image.imread(io.BytesIO(data), format="png")
    return pixels.shape[0], pixels.shape[1]
