"""One corpus of bad, hostile and unusual images, sent through the API and through one indexing batch.

Every input gets a clear 4xx from the API or a failed row with a reason from the task, or, for
formats that are supported, a correct embedding; never a 500, never a half-written row, and the
good products of the same batch are unaffected.
"""

import io
import struct
import subprocess
import sys
import time
from pathlib import Path
import zlib

import numpy as np
import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

import visual_search
from visual_search.embeddings import images, structure
from visual_search.exceptions import ImageTooLarge, InvalidImage
from visual_search.models import ImageEmbedding
from visual_search.reindex import reindex
from tests.conftest import catalogue_image
from tests.icc_profiles import rgb_profile
from tests.testapp.models import Product

pytestmark = pytest.mark.django_db(transaction=True)
MAX_PIXELS = 1_000_000


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def photo() -> Image.Image:
    return Image.open(catalogue_image("Arla-Standard-Milk")).convert("RGB")


def bomb(width=50_000, height=50_000) -> bytes:
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(
        b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


# More pieces than structure.MAX_PIECES: with a real photo after them, each decoded before
# (0.1 to 0.3 s here; 10 MB of them 2 to 12 s of CPU and up to 840 MB).
FLOOD = 120_000


def floods() -> dict[str, bytes]:
    """Files whose structure, not their pixels, keeps Pillow busy: a real picture after many empty pieces."""
    jpeg, png, gif = encode(photo(), "JPEG"), encode(photo(), "PNG"), encode(photo().resize((64, 64)), "GIF")
    first_picture = gif.index(b"\x2c", 13 + 768)
    return {
        "jpeg-comment-flood": jpeg[:2] + b"\xff\xfe\x00\x02" * FLOOD + jpeg[2:],
        "jpeg-fill-byte-flood": jpeg[:2] + b"\xff" * FLOOD + jpeg[2:],
        "png-chunk-flood": png[:33] + png_chunk(b"raNd", b"") * FLOOD + png[33:],
        "gif-sub-block-flood": gif[:first_picture] + b"\x21\xfe" + b"\x01X" * FLOOD + b"\x00" + gif[first_picture:],
        "tiff-strip-flood": tiff_strips(FLOOD),
    }


def tiff_strips(count: int) -> bytes:
    """A 1 x ``count`` grey TIFF of one-row strips, every strip the same byte."""
    def entry(tag, kind, number, value):
        return struct.pack("<HHII", tag, kind, number, value)

    arrays = 8 + 2 + 9 * 12 + 4
    entries = [entry(256, 4, 1, 1), entry(257, 4, 1, count), entry(258, 3, 1, 8), entry(259, 3, 1, 1),
               entry(262, 3, 1, 1), entry(273, 3, count, arrays), entry(277, 3, 1, 1), entry(278, 4, 1, 1),
               entry(279, 3, count, arrays + 2 * count)]
    return (b"II*\x00" + struct.pack("<IH", 8, len(entries)) + b"".join(entries) + b"\0\0\0\0"
            + struct.pack(f"<{count}H", *[100] * count) + struct.pack(f"<{count}H", *[1] * count))


def exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways, "rotate 90 CW to display"
    return encode(photo().transpose(Image.Transpose.ROTATE_90), "JPEG", exif=exif, quality=95)


def corpus() -> dict[str, tuple[bytes, bool]]:
    """name -> (bytes, supported)."""
    jpeg, png = encode(photo(), "JPEG"), encode(photo(), "PNG")
    # Frames with something in them: a frame of one colour is refused as blank (blank_image).
    frames = [photo().resize((64, 64)), photo().resize((64, 64)).transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    return {
        "empty": (b"", False),
        "html-named-jpg": (b"<!doctype html><html><body><script>alert(1)</script></body></html>", False),
        "truncated-jpeg": (jpeg[: len(jpeg) // 3], False),
        "truncated-png": (png[: len(png) // 3], False),
        "png-header-then-html": (png[:33] + b"<html><body>polyglot</body></html>", False),
        "decompression-bomb": (bomb(), False),
        "past-pixel-limit": (encode(Image.new("RGB", (1200, 1000), (9, 9, 9)), "PNG"), False),
        "svg": (b'<svg xmlns="http://www.w3.org/2000/svg" width="9" height="9"><rect width="9" height="9"/></svg>', False),
        "eps": (b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 9 9\n0 0 moveto 9 9 lineto stroke showpage\n", False),
        "cmyk-jpeg": (encode(photo().convert("CMYK"), "JPEG"), True),
        "16-bit-png": (encode(Image.fromarray(np.asarray(photo().convert("L"), np.uint16) * 257), "PNG"), True),
        "palette-transparency": (encode(photo().convert("P", palette=Image.Palette.ADAPTIVE), "PNG", transparency=0), True),
        "animated-gif": (encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100), True),
        "webp": (encode(photo(), "WEBP"), True),
        "exif-rotated-jpeg": (exif_rotated(), True),
        # An ICC profile is applied where lcms can (Display P3 to sRGB) and ignored where it cannot.
        "display-p3-png": (encode(photo(), "PNG", icc_profile=rgb_profile()), True),
        "garbage-icc-profile": (encode(photo(), "PNG", icc_profile=b"acsp" * 500), True),
        "avif": (encode(photo(), "AVIF"), True),
        "truncated-avif": (encode(photo(), "AVIF")[:600], False),
        **{name: (data, False) for name, data in floods().items()},
    }


@pytest.fixture(autouse=True)
def limits(settings, monkeypatch):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "MAX_PIXELS": MAX_PIXELS, "SEARCH_THROTTLE_RATE": None}
    from PIL import EpsImagePlugin

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: pytest.fail("Ghostscript ran"))
    cache.clear()


@pytest.fixture
def shop(make_product):
    return [make_product(n, catalogue_image(n)) for n in ["Lemon", "Oatly-Oat-Milk"]]


@pytest.mark.parametrize("name", list(corpus()))
def test_api_answers_every_input_without_a_500(client, shop, name):
    data, supported = corpus()[name]
    upload = SimpleUploadedFile(f"{name}.jpg", data, content_type="image/jpeg")
    response = client.post("/api/visual-search/search/", {"image": upload})
    body = response.json()
    if supported:
        assert response.status_code == 200, body
        assert len(body["results"]) == 2
    else:
        assert response.status_code in (400, 413, 415), body
        assert body["detail"] and body["code"]


def test_one_batch_with_every_input_fails_the_bad_ones_and_embeds_the_rest(make_product):
    items = corpus()
    with visual_search.pause_indexing(reindex_on_exit=False):
        good = [make_product(n, catalogue_image(n)) for n in ["Lemon", "Lime", "Mango"]]
        odd = {name: make_product(name, data) for name, (data, _) in items.items() if data}
        empty = make_product("empty", b"placeholder")
        open(empty.image.path, "wb").close()  # an empty file in storage
    counts = reindex(Product, asynchronous=False)
    assert counts["retry"] == 0
    for product in good:
        assert ImageEmbedding.objects.for_object(product).get().status == "ready"
    for name, product in odd.items():
        row = ImageEmbedding.objects.for_object(product).get()
        if items[name][1]:
            assert row.status == "ready" and len(row.array) == 512, (name, row.error)
        else:
            assert row.status == "failed" and row.error and row.vector is None, name
    assert "empty" in ImageEmbedding.objects.for_object(empty).get().error
    assert ImageEmbedding.objects.filter(status="pending").count() == 0


def test_exif_rotated_photo_embeds_like_the_upright_one():
    from visual_search.serving import get_extractor

    extractor = get_extractor()
    upright = extractor.embed_bytes(encode(photo(), "JPEG", quality=95))
    rotated = extractor.embed_bytes(exif_rotated())
    sideways = extractor.embed_bytes(encode(photo().transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95))
    assert float(upright @ rotated) > 0.99
    assert float(upright @ rotated) > float(upright @ sideways)


@pytest.mark.parametrize("name", list(floods()))
def test_a_file_of_many_empty_pieces_is_refused_before_pillow_walks_them(name):
    data = floods()[name]
    started = time.process_time()
    with pytest.raises(InvalidImage, match="built to be slow") as refused:
        images.open_image(data, max_pixels=40_000_000, allowed_formats=["JPEG", "PNG", "GIF", "TIFF"])
    assert time.process_time() - started < 0.5
    assert f"at most {structure.MAX_PIECES:,}" in refused.value.for_staff


@pytest.mark.parametrize("name", ["Arla-Standard-Milk", "Lemon"])
def test_ordinary_files_of_every_format_have_few_pieces(name):
    picture = Image.open(catalogue_image(name)).convert("RGB")
    for fmt, options in [("JPEG", {"progressive": True}), ("PNG", {}), ("GIF", {"comment": b"x" * 5000}), ("TIFF", {"compression": "raw"})]:
        images.open_image(encode(picture, fmt, **options), max_pixels=40_000_000, allowed_formats=[fmt])


PEAK_MEMORY = """
import re, sys
from visual_search.embeddings import images
images.open_image(open(sys.argv[1], "rb").read(), max_pixels=40_000_000, allowed_formats=["PNG", "TIFF", "WEBP"], draft_size=224)
print(re.search(r"VmHWM:\\s+(\\d+)", open("/proc/self/status").read())[1])
"""
# This process's peak (KiB), not ru_maxrss: Linux carries that over from the parent (pytest, often
# 1 GB with TensorFlow loaded), which hid any peak below it.


def peak_kib(path: Path | None) -> int:
    """The peak memory (KiB) of a fresh process opening the image at ``path``; None: importing alone."""
    code = PEAK_MEMORY if path is not None else "\n".join(line for line in PEAK_MEMORY.splitlines() if "open_image" not in line)
    run = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent)
    return int(run.stdout.split()[-1])


def full_copies(peak: int, imported: int, side: int) -> float:
    """How many decoded pictures of ``side`` x ``side`` (Pillow: 4 bytes a pixel) a peak held."""
    return (peak - imported) * 1024 / (4 * side * side)


def test_a_large_png_decodes_in_the_memory_of_one_picture(tmp_path):
    """A PNG without an EXIF orientation was copied whole to be turned by none (Pillow's
    ``exif_transpose`` returns a copy): 320 MB for a 6000 x 6000 PNG of a few hundred KB, now 180."""
    side = 6000
    ramp = np.tile(np.arange(side, dtype=np.uint16) % 256, (side, 1)).astype(np.uint8)
    path = tmp_path / "large.png"
    Image.fromarray(np.dstack([ramp, ramp.T, ramp]), "RGB").save(path, "PNG", compress_level=1)
    assert full_copies(peak_kib(path), peak_kib(None), side) < 1.4


def test_large_transparent_grey_and_deep_images_decode_in_the_memory_of_an_opaque_one(tmp_path):
    """36-megapixel files of a few hundred KB: RGBA took three more full-size copies (800 MB at 40 MP),
    grey with alpha an RGBA copy (500 MB), 16-bit grey and 32-bit float their float copies (575 and 650 MB)."""
    side = 6000
    ramp = np.tile(np.arange(side, dtype=np.uint16) % 256, (side, 1)).astype(np.uint8)
    rgba = Image.fromarray(np.dstack([ramp, ramp.T, ramp, np.full_like(ramp, 200)]), "RGBA")
    files = {
        "RGB": (rgba.convert("RGB"), "PNG"), "RGBA": (rgba, "PNG"),
        "LA": (Image.fromarray(np.dstack([ramp, ramp.T]), "LA"), "PNG"),
        "I;16": (Image.fromarray(ramp.astype(np.uint16) * 257), "PNG"),
        "F": (Image.fromarray(ramp.astype(np.float32), "F"), "TIFF"),
    }
    peaks = {}
    for mode, (image, fmt) in files.items():
        path = tmp_path / f"{mode}.{fmt}"
        image.save(path, fmt, **({"compress_level": 1} if fmt == "PNG" else {"compression": "tiff_adobe_deflate"}))
        assert Image.open(path).mode == mode
        peaks[mode] = peak_kib(path)
    imported = peak_kib(None)
    for mode in ("RGBA", "LA", "I;16", "F"):  # the picture and its RGB: two copies, no more
        assert full_copies(peaks[mode], imported, side) < 2.4, (mode, peaks, imported)


def test_a_large_webp_decodes_in_the_memory_of_a_png(tmp_path):
    """Pillow's WebP decoder (libwebp's animation decoder) held two RGBA canvases and a copy of the
    picture besides the image: a 6000 x 6000 WebP took 590 MB, the PNG of it 320 MB."""
    side = 6000
    ramp = np.tile(np.arange(side, dtype=np.uint16) % 256, (side, 1)).astype(np.uint8)
    rgba = Image.fromarray(np.dstack([ramp, ramp.T, ramp, np.full_like(ramp, 200)]), "RGBA")
    peaks = {}
    for name, image, fmt, options in [
        ("PNG", rgba.convert("RGB"), "PNG", {"compress_level": 1}),
        ("WebP", rgba.convert("RGB"), "WEBP", {"quality": 80, "method": 0}),
        ("WebP with alpha", rgba, "WEBP", {"quality": 80, "method": 0}),
        ("lossless WebP", rgba.convert("RGB"), "WEBP", {"lossless": True, "method": 0}),
    ]:
        path = tmp_path / f"{name}.{fmt}"
        image.save(path, fmt, **options)
        peaks[name] = peak_kib(path)
    imported = peak_kib(None)
    for name in ("WebP", "WebP with alpha", "lossless WebP"):  # libwebp's array and Pillow's picture
        assert full_copies(peaks[name], imported, side) < 2.4, (name, peaks, imported)


def webp_pixels_by_pillow(data: bytes, monkeypatch) -> np.ndarray:
    with monkeypatch.context() as patched:
        patched.setattr(images, "_libwebp", lambda: None)  # Pillow's own decoder, as before
        return np.asarray(images.open_image(data, max_pixels=MAX_PIXELS, allowed_formats=["WEBP"]))


def test_webps_decode_to_the_pixels_pillow_gives(monkeypatch):
    """Decoded without Pillow's animation decoder, a WebP gives the very pixels it gave before, so
    its vector does not change: lossy, lossless, transparent, rotated by EXIF, animated (Pillow's)."""
    picture = photo().resize((600, 400))
    faded = picture.convert("RGBA")
    faded.putalpha(Image.linear_gradient("L").resize(picture.size))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    for image, options in [
        (picture, {"quality": 85}), (picture, {"lossless": True}), (faded, {"quality": 85}),
        (faded, {"lossless": True}), (picture, {"exif": exif}),
        (picture, {"save_all": True, "append_images": [picture.rotate(90)]}),
    ]:
        data = encode(image, "WEBP", **options)
        decoded = images.open_image(data, max_pixels=MAX_PIXELS, allowed_formats=["WEBP"])
        assert decoded.mode == "RGB" and decoded.size == ((400, 600) if "exif" in options else (600, 400))
        assert np.array_equal(np.asarray(decoded), webp_pixels_by_pillow(data, monkeypatch)), options
    assert images._libwebp() is not None  # the libwebp Pillow uses was found: the path above was taken


def test_grey_and_deep_images_convert_as_before():
    """The conversions, now a band of rows at a time, give the very pixels of the whole-image ones."""
    grey = np.asarray(photo().convert("L").resize((300, 700)))
    deep = grey.astype(np.uint16) * 257 + np.arange(grey.size, dtype=np.uint16).reshape(grey.shape) % 257
    for image, expected in [
        (Image.fromarray(deep), deep // 257),
        (Image.fromarray(grey.astype(np.int32), "I"), grey),
        (Image.fromarray(deep.astype(np.int32), "I"), deep // 257),
        (Image.fromarray(grey.astype(np.float32) / 2, "F"), grey // 2),
        (Image.fromarray(np.dstack([grey, np.full_like(grey, 255)]), "LA"), grey),
    ]:
        rgb = np.asarray(images.to_rgb(image)).astype(int)
        assert np.abs(rgb - np.dstack([expected] * 3)).max() <= 1, image.mode
    half = Image.fromarray(np.dstack([grey, np.full_like(grey, 128)]), "LA")
    assert np.array_equal(np.asarray(images.to_rgb(half)), np.asarray(images.to_rgb(half.convert("RGBA"))))

def rle_bmp(indices: np.ndarray, palette: list[int], bits: int, rows: list[bytes] | None = None) -> bytes:
    """A BMP compressed as an encoder does it (RLE8, or RLE4 for 16 colours): a run (count, colour)
    for each stretch of one colour, an end-of-line a row, an end-of-bitmap; or the commands ``rows``."""
    height, width = indices.shape
    if rows is None:
        rows = []
        for row in indices[::-1]:  # bottom-up
            starts = np.flatnonzero(np.diff(row, prepend=-1))
            for start, end in zip(starts, [*starts[1:], width]):
                for at in range(start, end, 255):
                    rows.append(bytes([min(255, end - at), int(row[start]) * (17 if bits == 4 else 1)]))
            rows.append(b"\x00\x00")
        rows[-1] = b"\x00\x01"
    body = b"".join(rows)
    colours = 1 << bits
    table = b"".join(bytes([palette[3 * c + 2], palette[3 * c + 1], palette[3 * c], 0]) for c in range(colours))
    offset = 14 + 40 + len(table)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, bits, 1 if bits == 8 else 2, len(body), 2835, 2835, colours, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(body), 0, 0, offset) + info + table + body


@pytest.mark.parametrize("name", ["Arla-Standard-Milk", "Lemon"])
@pytest.mark.parametrize("bits", [8, 4])
def test_compressed_bmps_of_photos_decode_as_their_pixels(name, bits):
    quantized = Image.open(catalogue_image(name)).convert("RGB").quantize(1 << bits)
    palette = (quantized.getpalette() + [0] * 768)[: 3 << bits]
    data = rle_bmp(np.asarray(quantized), palette, bits)
    decoded = images.open_image(data, max_pixels=40_000_000, allowed_formats=["BMP"])
    assert np.array_equal(np.asarray(decoded), np.asarray(quantized.convert("RGB")))


def test_a_compressed_bmp_built_to_be_slow_is_refused_before_it_is_decoded():
    """Pillow decodes RLE BMPs in Python: 10 MB of one-pixel runs past a row's end, which draw
    nothing, took 1.9 s; a 6000 x 6000 one whose rows are padded pixel by pixel 3.4 s from 25 KB."""
    palette = list(range(256)) * 3
    runs = rle_bmp(np.zeros((100, 100), np.uint8), palette, 8, [b"\x01\x00"] * 5_000_000)
    padded = rle_bmp(np.zeros((6000, 6000), np.uint8), palette, 8, [b"\x01\x05\x00\x00"] * 6000 + [b"\x00\x01"])
    started = time.process_time()
    with pytest.raises(InvalidImage, match="built to be slow: a compressed BMP of 100x100 pixels"):
        images.open_image(runs, max_pixels=40_000_000, allowed_formats=["BMP"])
    with pytest.raises(ImageTooLarge, match="compressed .RLE. BMP of 6000x6000 pixels; such BMPs are accepted up to 2,073,600"):
        images.open_image(padded, max_pixels=40_000_000, allowed_formats=["BMP"])
    assert time.process_time() - started < 0.5


def jpeg_ending_early(keep: int, picture: Image.Image | None = None, **options) -> bytes:
    """A 2400 x 2400 photo whose scan data stops after ``keep`` bytes, then an end marker: not cut
    short (Pillow refuses that), so libjpeg draws the rest grey without a word."""
    data = encode(picture or photo().resize((2400, 2400)), "JPEG", quality=90, **options)
    start = data.index(b"\xff\xda") + 2 + int.from_bytes(data[data.index(b"\xff\xda") + 2:][:2], "big")
    return data[: start + (keep if keep >= 0 else len(data) - start + keep)] + b"\xff\xd9"


@pytest.mark.parametrize("draft_size", [None, 224])
def test_a_jpeg_whose_data_ends_before_most_of_its_picture_is_refused(draft_size):
    for keep in (100, 20_000):
        with pytest.raises(InvalidImage, match="most of the picture is missing"):
            images.open_image(jpeg_ending_early(keep), max_pixels=40_000_000, allowed_formats=["JPEG"], draft_size=draft_size)
    # Missing its last few rows, a photo is still used, as a browser shows it.
    images.open_image(jpeg_ending_early(-2000), max_pixels=40_000_000, allowed_formats=["JPEG"], draft_size=draft_size)


def on_grey_backdrop() -> Image.Image:
    """A 2400 x 2400 photo whose lower 60 % is a flat grey of exactly (128, 128, 128)."""
    picture = photo().resize((2400, 2400))
    picture.paste((128, 128, 128), (0, 960, 2400, 2400))
    return picture


ENCODINGS = [{}, {"optimize": True}, {"progressive": True}, {"subsampling": 0}, {"restart_marker_blocks": 4}]


@pytest.mark.parametrize("draft_size", [None, 224])
def test_a_complete_jpeg_whose_lower_half_is_the_missing_data_grey_is_used(draft_size):
    """A studio backdrop or a rendered product on exactly the grey libjpeg draws where data is
    missing was refused as cut short; the file's own data draws it, so it is used."""
    for options in ENCODINGS:
        data = encode(on_grey_backdrop(), "JPEG", quality=90, **options)
        decoded = images.open_image(data, max_pixels=40_000_000, allowed_formats=["JPEG"], draft_size=draft_size)
        lower = np.asarray(decoded)[decoded.height * 2 // 5 + 16 :]
        assert (lower == 128).all(), options  # the very grey of missing data
    # Cut short, the same photo is still refused, however it was encoded.
    for options in ENCODINGS:
        with pytest.raises(InvalidImage, match="most of the picture is missing"):
            images.open_image(jpeg_ending_early(2000, on_grey_backdrop(), **options), max_pixels=40_000_000,
                              allowed_formats=["JPEG"], draft_size=draft_size)


def test_indexing_records_a_jpeg_missing_most_of_its_picture_as_failed(make_product, settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "MAX_PIXELS": 40_000_000}
    with visual_search.pause_indexing(reindex_on_exit=False):
        product = make_product("grey", jpeg_ending_early(100))
    reindex(Product, asynchronous=False)
    row = ImageEmbedding.objects.for_object(product).get()
    assert row.status == "failed" and "most of the picture is missing" in row.error
