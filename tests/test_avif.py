"""AVIF, made by Pillow from real shop photos: indexed, searched by every way in, refused saying so
where Pillow has no AVIF plugin, and held to the hostile-image limits as the other formats are."""

import io
import struct

import numpy as np
import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

import visual_search
from visual_search.api.serializers import allowed_formats_text
from visual_search.conf import settings as visual_search_settings
from visual_search.contrib.messaging.handling import refused_format
from visual_search.embeddings import images
from visual_search.exceptions import ImageTooLarge, InvalidImage, UnsupportedFormat
from visual_search.models import ImageEmbedding
from visual_search.reindex import reindex
from tests.conftest import photos
from tests.testapp.models import Product

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("web_settings")]
PRODUCTS = ["Oatly-Oat-Milk", "Granny-Smith", "Banana", "Arla-Standard-Milk"]
FORMATS = ["JPEG", "PNG", "AVIF"]


def avif(image: Image.Image, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "AVIF", **options)
    return buffer.getvalue()


def shop_photo(product: str) -> Image.Image:
    return Image.open(photos("val")[product][0]).convert("RGB")


def decode(data: bytes, max_pixels: int = 40_000_000) -> Image.Image:
    return images.open_image(data, max_pixels=max_pixels, allowed_formats=FORMATS)


@pytest.fixture(autouse=True)
def no_throttle(settings):
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": None}
    cache.clear()


@pytest.fixture
def shop(make_product):
    """Products whose images are AVIF files, as a CDN exports them, indexed by the task."""
    return {name: make_product(name.replace("-", " "), avif(shop_photo(name), quality=80)) for name in PRODUCTS}


def test_avif_is_allowed_by_default_where_pillow_decodes_it():
    assert images.avif_support()  # Pillow 11.3's wheels on
    assert "AVIF" in visual_search_settings.ALLOWED_FORMATS and "AVIF" in allowed_formats_text()


def test_avif_product_images_are_indexed(shop):
    for product in shop.values():
        row = ImageEmbedding.objects.for_object(product).get()
        assert row.status == "ready" and len(row.array) == 512, row.error


def test_an_avif_photo_finds_its_product_through_the_api(client, shop):
    for name in ["Granny-Smith", "Oatly-Oat-Milk"]:
        upload = SimpleUploadedFile("photo.avif", avif(shop_photo(name), quality=60), content_type="image/avif")
        response = client.post("/api/visual-search/search/", {"image": upload})
        assert response.status_code == 200, response.json()
        assert response.json()["results"][0]["id"] == shop[name].pk


def test_an_avif_photo_finds_its_product_on_the_search_page(client, shop):
    upload = SimpleUploadedFile("photo.avif", avif(shop_photo("Banana"), quality=60), content_type="image/avif")
    html = client.post("/search-by-photo/", {"image": upload}).content.decode()
    assert html.index("Banana") < html.index("Granny Smith")


def test_an_animated_avif_is_searched_by_its_first_picture():
    first = shop_photo("Banana")
    data = avif(first, save_all=True, append_images=[shop_photo("Granny-Smith"), first.rotate(90)], duration=100)
    assert data[8:12] == b"avis"
    still = np.asarray(decode(avif(first)), np.float32)
    animated = np.asarray(decode(data), np.float32)
    assert animated.shape == still.shape and np.abs(animated - still).mean() < 3


@pytest.mark.parametrize("keep", [0.5, 0.95, 0.999])
def test_a_truncated_avif_is_refused_as_damaged(keep):
    data = avif(shop_photo("Banana"))
    with pytest.raises(InvalidImage, match="damaged or truncated"):
        decode(data[: int(len(data) * keep)])


def test_an_avif_declaring_huge_dimensions_is_refused_before_libavif_reads_it():
    data = avif(shop_photo("Banana"))
    at = data.find(b"ispe") + 8
    for side in (7000, 60000):  # libavif itself would refuse 60000 x 60000 as "not an image"
        bomb = data[:at] + struct.pack(">II", side, side) + data[at + 8:]
        with pytest.raises(ImageTooLarge, match=f"{side}x{side} pixels"):
            decode(bomb)
    with pytest.raises(ImageTooLarge, match="348x348 pixels"):
        decode(data, max_pixels=10_000)


def test_without_pillow_s_avif_plugin_avif_is_refused_saying_so(client, make_product, monkeypatch):
    data = avif(shop_photo("Banana"))
    monkeypatch.setattr(images, "avif_support", lambda: False)  # Pillow before 11.3
    with pytest.raises(UnsupportedFormat, match="AVIF images are not accepted here; send a JPEG") as refused:
        decode(data)
    assert "Pillow 11.3 or later" in refused.value.for_staff
    # A JPEG is still decoded: the name "AVIF" in the list does not break Pillow's Image.open.
    buffer = io.BytesIO()
    shop_photo("Banana").save(buffer, "JPEG")
    assert decode(buffer.getvalue()).size == (348, 348)
    response = client.post("/api/visual-search/search/", {"image": SimpleUploadedFile("a.avif", data)})
    assert response.status_code == 415 and response.json()["format"] == "AVIF", response.json()
    assert "AVIF" not in allowed_formats_text()
    with visual_search.pause_indexing(reindex_on_exit=False):
        product = make_product("Banana", data)
    reindex(Product, asynchronous=False)
    row = ImageEmbedding.objects.for_object(product).get()
    assert row.status == "failed" and "AVIF" in row.error and "Pillow 11.3" in row.error, row.error


def test_the_bots_fetch_an_avif_document_and_refuse_one_they_cannot_read(monkeypatch):
    assert refused_format("image/avif") == ""
    monkeypatch.setattr(images, "avif_support", lambda: False)
    assert refused_format("image/avif") == "AVIF"  # said before the download


def test_the_bots_refuse_a_heic_document_they_cannot_read_before_the_download_naming_it_heic(monkeypatch, settings):
    """As the decoder and the API name it: "HEIC files are not accepted", not Pillow's "HEIF"."""
    monkeypatch.setattr(images, "heif_support", lambda: False)
    assert refused_format("image/heic") == refused_format("image/heif") == "HEIC"
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ALLOWED_FORMATS": ["JPEG", "PNG"]}
    assert refused_format("image/heic") == "HEIC"
