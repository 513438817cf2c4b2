"""Property-based tests of the decode-and-preprocess path, and schemathesis against the OpenAPI schema."""

import io

import numpy as np
import pytest
import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st
from PIL import Image

from visual_search.embeddings import images
from visual_search.exceptions import InvalidImage

ALLOWED = ["JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF"]
FUZZ = hypothesis_settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def prepare(data: bytes) -> np.ndarray:
    return images.prepare(data, size=32, max_pixels=4_000_000, allowed_formats=ALLOWED)


@FUZZ
@given(st.binary(max_size=4096))
def test_arbitrary_bytes_give_an_array_or_invalid_image(data):
    try:
        array = prepare(data)
    except InvalidImage as exc:
        assert str(exc)  # always a message for the customer
    else:
        assert array.shape == (32, 32, 3) and np.isfinite(array).all()


@st.composite
def encoded_images(draw):
    mode = draw(st.sampled_from(["RGB", "RGBA", "L", "LA", "P", "CMYK", "I;16", "1"]))
    width, height = draw(st.integers(1, 300)), draw(st.integers(1, 300))
    fmt = draw(st.sampled_from(["PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF"]))
    seed = draw(st.integers(0, 2**32 - 1))
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    image = image.convert(mode) if mode not in ("I;16",) else Image.fromarray(np.asarray(image.convert("L"), np.uint16) * 257)
    buffer = io.BytesIO()
    try:
        image.save(buffer, fmt)
    except (OSError, ValueError, KeyError):
        image.convert("RGB").save(buffer, fmt)  # the format cannot hold that mode
    data = buffer.getvalue()
    cut = draw(st.one_of(st.none(), st.integers(0, len(data))))
    return (data if cut is None else data[:cut]), cut is None


@FUZZ
@given(encoded_images())
def test_real_images_of_any_mode_size_and_format_decode_or_fail_cleanly(case):
    data, whole = case
    try:
        array = prepare(data)
    except InvalidImage:
        assert not whole, "a complete, valid image was refused"
    else:
        assert array.shape == (32, 32, 3) and np.isfinite(array).all()
        assert array.min() >= -124 and array.max() <= 152  # 0..255 minus the ImageNet mean


@pytest.mark.django_db(transaction=True)
def test_api_never_answers_5xx_and_matches_its_schema(settings, make_product):
    """Every operation of the OpenAPI schema, fuzzed by schemathesis through the WSGI app."""
    from django.core.wsgi import get_wsgi_application

    from tests.conftest import catalogue_image

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": None}
    make_product("Lemon", catalogue_image("Lemon"))
    make_product("Lime", catalogue_image("Lime"))
    schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 2
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case):
            # "Schema-valid data is accepted" cannot hold for uploads: no schema says "a real
            # photo", so random bytes in `image` rightly get 400. Every other check runs:
            # no 5xx, documented status codes, content types and response bodies.
            case.call_and_validate(excluded_checks=[positive_data_acceptance])

        check()
