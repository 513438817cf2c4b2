"""Searching a region of the photo (``box``): what a customer draws around the product that matters."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

import visual_search
from tests.conftest import catalogue_image
from tests.testapp.models import Product
from visual_search.embeddings.images import Box
from visual_search.exceptions import InvalidBox

pytestmark = pytest.mark.django_db(transaction=True)
SEARCH = "/api/visual-search/search/"
NAMES = ("Banana", "Pink-Lady", "Arla-Standard-Milk", "Oatly-Oat-Milk", "Granny-Smith")


@pytest.fixture
def shop(make_product):
    return {name: make_product(name.replace("-", " "), catalogue_image(name)) for name in NAMES}


def side_by_side(left: str, right: str, *, exif_rotated: bool = False) -> bytes:
    """One photo: ``left``'s catalogue image beside ``right``'s. With ``exif_rotated``, the pixels
    are stored turned a quarter and EXIF orientation 6 turns them back, as phones do."""
    images = [Image.open(catalogue_image(name)).convert("RGB").resize((300, 300)) for name in (left, right)]
    photo = Image.new("RGB", (600, 300), "white")
    photo.paste(images[0], (0, 0))
    photo.paste(images[1], (300, 0))
    out = io.BytesIO()
    if exif_rotated:
        exif = Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise to display
        photo.transpose(Image.Transpose.ROTATE_90).save(out, "JPEG", quality=92, exif=exif)
    else:
        photo.save(out, "JPEG", quality=92)
    return out.getvalue()


@pytest.mark.parametrize("value", ["0,0,1,1", "0.1, 0.2, 0.9, 0.8", (0, 0, 0.5, 1), [0.25, 0.25, 0.75, 0.75]])
def test_a_box_is_four_fractions(value):
    box = Box.parse(value)
    assert 0 <= box.x0 < box.x1 <= 1 and 0 <= box.y0 < box.y1 <= 1


@pytest.mark.parametrize(
    "value, says",
    [
        ("0.1,0.2,0.3", "four numbers"),
        ("a,b,c,d", "four numbers"),
        ("nan,0,1,1", "four numbers"),
        ("-0.1,0,1,1", "inside the photo"),
        ("0,0,1.5,1", "inside the photo"),
        ("0.5,0.1,0.5,0.9", "empty"),
        ("0.9,0.1,0.2,0.9", "empty"),
    ],
)
def test_a_bad_box_says_what_a_box_is(value, says):
    with pytest.raises(InvalidBox, match=says) as raised:
        Box.parse(value)
    assert raised.value.code == "invalid_box"


def test_no_box_is_the_whole_photo():
    assert Box.parse(None) is None and Box.parse("") is None and Box.parse("  ") is None


def test_each_half_of_a_photo_finds_its_own_product(shop):
    photo = side_by_side("Banana", "Pink-Lady")
    [left] = visual_search.search_by_image(photo, Product, limit=1, box="0,0,0.5,1")
    [right] = visual_search.search_by_image(photo, Product, limit=1, box=(0.5, 0.0, 1.0, 1.0))
    assert left.object == shop["Banana"] and right.object == shop["Pink-Lady"]


def test_the_box_is_read_after_exif_rotation(shop):
    photo = side_by_side("Banana", "Pink-Lady", exif_rotated=True)
    [left] = visual_search.search_by_image(photo, Product, limit=1, box="0,0,0.5,1")
    [right] = visual_search.search_by_image(photo, Product, limit=1, box="0.5,0,1,1")
    assert left.object == shop["Banana"] and right.object == shop["Pink-Lady"]


def test_the_api_takes_a_box_and_answers_400_for_a_bad_one(client, shop):
    photo = side_by_side("Banana", "Pink-Lady")

    def post(**fields):
        return client.post(SEARCH, {"image": SimpleUploadedFile("p.jpg", photo, "image/jpeg"), **fields})

    assert post(box="0.5,0,1,1").json()["results"][0]["name"] == "Pink Lady"
    assert post(box="0,0,0.5,1").json()["results"][0]["name"] == "Banana"
    for bad in ("0,0,1", "0,0,2,1", "0.5,0.5,0.5,0.5", "left half"):
        response = post(box=bad)
        assert response.status_code == 400
        assert response.json()["code"] == "invalid_box" and "box" in response.json()["detail"]


def test_the_page_without_javascript_takes_the_box_as_form_fields(client, shop):
    photo = side_by_side("Banana", "Pink-Lady")
    fields = {"box_x0": "0.5", "box_y0": "0", "box_x1": "1", "box_y1": "1"}
    page = client.post("/search-by-photo/", {"image": SimpleUploadedFile("p.jpg", photo, "image/jpeg"), **fields})
    assert page.status_code == 200
    assert page.context["visual_search_results"][0]["name"] == "Pink Lady"
    bad = client.post("/search-by-photo/", {"image": SimpleUploadedFile("p.jpg", photo, "image/jpeg"), **fields, "box_x1": "0.5"})
    assert bad.status_code == 400
