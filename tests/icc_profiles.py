"""ICC profiles built by hand for the tests (no system profile is needed): matrix/TRC RGB, ICC v2."""

import struct

# Primaries adapted to the D50 white of the profile connection space, as Apple's and Adobe's own profiles hold them.
DISPLAY_P3 = ((0.515102, 0.241182, -0.001050), (0.291965, 0.692236, 0.041882), (0.157153, 0.066582, 0.784378))
ADOBE_RGB = ((0.609741, 0.311111, 0.019470), (0.205276, 0.625671, 0.060867), (0.149185, 0.063217, 0.744568))
SRGB = ((0.436066, 0.222488, 0.013916), (0.385147, 0.716873, 0.097076), (0.143066, 0.060608, 0.714096))


def _s15(value: float) -> bytes:
    return struct.pack(">i", round(value * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)


def _description(text: str) -> bytes:
    ascii_text = text.encode() + b"\0"
    return b"desc\0\0\0\0" + struct.pack(">I", len(ascii_text)) + ascii_text + b"\0" * 8 + b"\0" * 70


def _srgb_curve(points: int = 1024) -> bytes:
    def linear(v: float) -> float:
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    values = [round(linear(i / (points - 1)) * 65535) for i in range(points)]
    return b"curv\0\0\0\0" + struct.pack(">I", points) + struct.pack(f">{points}H", *values)


def rgb_profile(primaries=DISPLAY_P3, name: str = "Display P3 (tests)") -> bytes:
    """An RGB display profile of these D50 ``primaries`` with the sRGB tone curve."""
    curve = _srgb_curve()
    tags = [(b"desc", _description(name)), (b"wtpt", _xyz(0.9642, 1.0, 0.8249)), (b"rXYZ", _xyz(*primaries[0])),
            (b"gXYZ", _xyz(*primaries[1])), (b"bXYZ", _xyz(*primaries[2])), (b"rTRC", curve), (b"gTRC", curve),
            (b"bTRC", curve), (b"cprt", b"text\0\0\0\0public domain\0")]
    return _assemble(tags, b"mntrRGB XYZ ")


def _assemble(tags: list[tuple[bytes, bytes]], kind: bytes) -> bytes:
    """A profile of these tags; ``kind``: its class, colour space and connection space (12 bytes)."""
    start = 128 + 4 + 12 * len(tags)
    table, body, placed = [], b"", {}
    for signature, data in tags:
        if data not in placed:
            body += b"\0" * (-len(body) % 4)
            placed[data] = (start + len(body), len(data))
            body += data
        table.append(struct.pack(">4sII", signature, *placed[data]))
    body += b"\0" * (-len(body) % 4)
    header = (struct.pack(">I", start + len(body)) + b"lcms" + struct.pack(">I", 0x02100000) + kind
              + b"\0" * 12 + b"acsp" + b"\0" * 28 + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + b"\0" * 48)
    return header + struct.pack(">I", len(tags)) + b"".join(table) + body


def _lab16(rgb: tuple[float, float, float]) -> list[int]:
    """An sRGB colour (0 to 1) as ICC v2 16-bit Lab (D50)."""
    def linear(v: float) -> float:
        return v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4

    r, g, b = (linear(v) for v in rgb)
    xyz = [sum(SRGB[channel][axis] * value for channel, value in enumerate((r, g, b))) for axis in range(3)]

    def f(t: float) -> float:
        return t ** (1 / 3) if t > 216 / 24389 else (24389 / 27 * t + 16) / 116

    fx, fy, fz = (f(value / white) for value, white in zip(xyz, (0.9642, 1.0, 0.8249)))
    lab = (116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz))
    return [round(lab[0] / 100 * 0xFF00), round((lab[1] + 128) * 256), round((lab[2] + 128) * 256)]


def cmyk_profile(ink=lambda c, m, y, k: ((1 - c) * (1 - k), (1 - m) * (1 - k), (1 - y) * (1 - k))) -> bytes:
    """A CMYK output profile of one 2-point lut (A2B0 only: CMYK to Lab), each corner the sRGB
    colour ``ink`` gives; the default is the naive conversion, another draws its inks otherwise."""
    corners = [_lab16(ink(c, m, y, k)) for c in (0, 1) for m in (0, 1) for y in (0, 1) for k in (0, 1)]
    identity = b"".join(_s15(v) for v in (1, 0, 0, 0, 1, 0, 0, 0, 1))
    lut = (b"mft2\0\0\0\0" + bytes([4, 3, 2, 0]) + identity + struct.pack(">HH", 2, 2)
           + struct.pack(">8H", *[0, 65535] * 4) + struct.pack(f">{len(corners) * 3}H", *[v for c in corners for v in c])
           + struct.pack(">6H", *[0, 65535] * 3))
    tags = [(b"desc", _description("CMYK (tests)")), (b"wtpt", _xyz(0.9642, 1.0, 0.8249)), (b"A2B0", lut),
            (b"cprt", b"text\0\0\0\0public domain\0")]
    return _assemble(tags, b"prtrCMYKLab ")
