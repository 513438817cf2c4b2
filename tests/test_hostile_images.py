"""One corpus of bad, hostile and unusual images, sent through the API and through one indexing batch.

Every input gets a clear 4xx from the API or a failed row with a reason from the task, or, for
formats that are supported, a correct embedding; never a 500, never a half-written row, and the
good products of the same batch are unaffected.
"""

import io
import struct
import zlib

import numpy as np
import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

import visual_search
from visual_search.models import ImageEmbedding
from visual_search.reindex import reindex
from tests.conftest import catalogue_image
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
