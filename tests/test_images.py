"""One decoding path for indexing and queries: orientation, modes, formats and limits."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from visual_search.embeddings import images
from visual_search.exceptions import ImageTooLarge, InvalidImage, UnsupportedFormat
from tests.conftest import catalogue_image

ALLOWED = ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"]


def prepare(data, size=64, max_pixels=40_000_000):
    return images.prepare(data, size=size, max_pixels=max_pixels, allowed_formats=ALLOWED)


def encode(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture
def photo():
    return Image.open(catalogue_image("Arla-Standard-Milk")).convert("RGB")


def test_output_is_vgg16_input(photo):
    array = prepare(encode(photo, "PNG"))
    assert array.shape == (64, 64, 3) and array.dtype == np.float32
    # Caffe preprocessing: BGR minus the ImageNet mean; the padding colour is zero.
    assert abs(array.mean()) < 128


def test_exif_rotation_is_applied(photo):
    upright = photo.resize((120, 80))
    rotated = upright.transpose(Image.Transpose.ROTATE_90)  # stored sideways...
    exif = Image.Exif()
    exif[0x0112] = 6  # ...with "rotate 90 CW to display"
    a = prepare(encode(upright, "PNG"))
    b = prepare(encode(rotated, "JPEG", exif=exif, quality=95))
    assert np.abs(a - b).mean() < 6  # same picture, up to JPEG loss


def test_padding_keeps_aspect_ratio(photo):
    wide = photo.resize((200, 100))
    array = prepare(encode(wide, "PNG"))
    assert np.abs(array[:10]).max() < 1  # top band is padding (the mean colour -> ~0)
    assert np.abs(array[32]).max() > 1


@pytest.mark.parametrize(
    "make",
    [
        lambda p: encode(p.convert("CMYK"), "JPEG"),
        lambda p: encode(p.convert("P", palette=Image.Palette.ADAPTIVE), "GIF", transparency=0),
        lambda p: encode(p.convert("RGBA"), "PNG"),
        lambda p: encode(p.convert("LA"), "PNG"),
        lambda p: encode(Image.fromarray((np.asarray(p.convert("L"), dtype=np.uint16) * 257)), "PNG"),
        lambda p: encode(p, "WEBP"),
        lambda p: encode(p, "BMP"),
        lambda p: encode(p, "TIFF"),
    ],
    ids=["cmyk-jpeg", "palette-transparency-gif", "rgba-png", "la-png", "16bit-png", "webp", "bmp", "tiff"],
)
def test_any_mode_becomes_rgb(photo, make):
    array = prepare(make(photo))
    assert array.shape == (64, 64, 3)
    assert np.isfinite(array).all()


def test_sixteen_bit_is_scaled_not_clipped(photo):
    grey = photo.convert("L")
    eight = prepare(encode(grey, "PNG"))
    sixteen = prepare(encode(Image.fromarray(np.asarray(grey, dtype=np.uint16) * 257), "PNG"))
    assert np.abs(eight - sixteen).max() < 2


def test_transparent_areas_become_white():
    clear = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    array = prepare(encode(clear, "PNG"), size=40)
    white = np.array([255, 255, 255], dtype=np.float32) - images.MEAN_BGR
    assert np.allclose(array[20, 20], white)


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (32, 32), c) for c in [(255, 0, 0), (0, 0, 255)]]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    first = prepare(encode(frames[0], "GIF"), size=32)
    assert np.allclose(prepare(data, size=32), first)


@pytest.mark.parametrize(
    "data, error, words",
    [
        (b"", InvalidImage, "empty"),
        (b"<html><body>hello</body></html>", InvalidImage, "not an image"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"></svg>', UnsupportedFormat, "SVG"),
        (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n", UnsupportedFormat, "EPS"),
        (b"%PDF-1.4\n", UnsupportedFormat, "PDF"),
        (b"\x89PNG\r\n\x1a\n<html>polyglot</html>", InvalidImage, "not an image"),
    ],
    ids=["empty", "html", "svg", "eps", "pdf", "png-header-html"],
)
def test_bad_input_says_what_is_wrong(data, error, words):
    with pytest.raises(error, match=words):
        prepare(images.read_bytes(data, 1000))


def test_truncated_files_are_refused(photo):
    for fmt in ("JPEG", "PNG"):
        data = encode(photo, fmt)
        with pytest.raises(InvalidImage, match="damaged or truncated"):
            prepare(data[: len(data) // 2])


def test_eps_never_runs_ghostscript(monkeypatch, photo):
    from PIL import EpsImagePlugin

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: pytest.fail("Ghostscript ran"))
    with pytest.raises(UnsupportedFormat):
        prepare(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n")


def decompression_bomb(width=60000, height=60000) -> bytes:
    """A valid PNG header declaring a huge image, followed by a tiny compressed body."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def test_decompression_bomb_is_refused_before_decoding():
    with pytest.raises(ImageTooLarge, match="pixels"):
        prepare(decompression_bomb())


def test_pixel_limit(photo):
    with pytest.raises(ImageTooLarge, match="at most 100 pixels"):
        prepare(encode(photo, "PNG"), max_pixels=100)


def test_byte_limit_is_checked_before_reading_everything():
    stream = io.BytesIO(b"x" * 5000)
    with pytest.raises(ImageTooLarge, match="larger than"):
        images.read_bytes(stream, 1000)
    assert stream.tell() == 1001


def heic(image, exif=None) -> bytes:
    """``image`` saved as an iPhone does: HEIC (pillow-heif, the [heif] extra)."""
    pillow_heif = pytest.importorskip("pillow_heif")
    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, quality=90, **({"exif": exif.tobytes()} if exif is not None else {}))
    return buffer.getvalue()


def test_heic_photos_are_decoded_with_the_heif_extra(photo):
    """An iPhone's photo chosen in Chrome or Firefox (which cannot redraw HEIC as a JPEG) is sent as
    it is: with "HEIF" allowed and pillow-heif installed, it is the same picture as its PNG."""
    upright = photo.resize((120, 80))
    data = heic(upright)
    assert images.is_heic(data) and not images.is_heic(encode(upright, "PNG"))
    a = prepare(encode(upright, "PNG"))
    b = images.prepare(data, size=64, max_pixels=40_000_000, allowed_formats=[*ALLOWED, "HEIF"])
    assert np.abs(a - b).mean() < 6
    # Turned by its orientation once, not twice.
    exif = Image.Exif()
    exif[0x0112] = 6
    c = images.prepare(heic(upright.transpose(Image.Transpose.ROTATE_90), exif), size=64, max_pixels=40_000_000, allowed_formats=[*ALLOWED, "HEIF"])
    assert np.abs(a - c).mean() < 6
    # Its size is checked from the header, before decoding.
    with pytest.raises(ImageTooLarge, match="120x80 pixels"):
        images.prepare(data, size=64, max_pixels=100, allowed_formats=["HEIF"])
    with pytest.raises(InvalidImage, match="damaged or truncated"):
        images.prepare(data[: len(data) // 2], size=64, max_pixels=40_000_000, allowed_formats=["HEIF"])
    # A header that declares 60000 x 60000 pixels is refused before any is decoded.
    at = data.find(b"ispe") + 8
    bomb = data[:at] + struct.pack(">II", 60000, 60000) + data[at + 8:]
    with pytest.raises(ImageTooLarge, match="60000x60000 pixels"):
        images.prepare(bomb, size=64, max_pixels=40_000_000, allowed_formats=["HEIF"])


def test_heic_without_heif_says_so(photo, monkeypatch):
    data = heic(photo.resize((60, 40)))
    with pytest.raises(UnsupportedFormat, match="HEIC photos .an iPhone camera's format. are not accepted here; send a JPEG"):
        prepare(data)  # "HEIF" not allowed
    monkeypatch.setattr(images, "heif_support", lambda: False)
    with pytest.raises(UnsupportedFormat, match="HEIC photos"):
        images.prepare(data, size=64, max_pixels=40_000_000, allowed_formats=[*ALLOWED, "HEIF"])
