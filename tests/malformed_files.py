"""Files made to be malformed in one precise way, for the tests of the readers that must refuse them."""


def png_claiming(width: int, height: int) -> bytes:
    """A gray PNG whose header claims `width` x `height` pixels (its image data holds far fewer)."""
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + \
        chunk(b"IEND", b"")
