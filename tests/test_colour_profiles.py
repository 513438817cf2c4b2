"""Images carrying an ICC profile of another colour space than sRGB (an iPhone's Display P3, Adobe
RGB) are read in sRGB, as a browser draws them before the widget sends a photo; an sRGB profile,
none, or one lcms cannot use leaves the pixels exactly as before."""

import io
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from visual_search.embeddings import images
from tests.conftest import photos
from tests.icc_profiles import ADOBE_RGB, DISPLAY_P3, SRGB, cmyk_profile, rgb_profile

FORMATS = ["JPEG", "PNG", "WEBP", "TIFF"]
SRGB_PROFILE = ImageCms.createProfile("sRGB")
ROOT = Path(__file__).resolve().parent.parent


def shop_photo() -> Image.Image:
    return Image.open(photos("val")["Granny-Smith"][0]).convert("RGB")


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def decoded(data: bytes) -> np.ndarray:
    return np.asarray(images.open_image(data, max_pixels=40_000_000, allowed_formats=FORMATS), np.float32)


def in_profile(image: Image.Image, icc: bytes) -> Image.Image:
    """``image``'s colours written in the numbers of the profile ``icc``, as a camera or an export saves them."""
    return ImageCms.profileToProfile(image, SRGB_PROFILE, ImageCms.ImageCmsProfile(io.BytesIO(icc)))


@pytest.mark.parametrize("fmt, options", [("PNG", {}), ("JPEG", {"quality": 98}), ("WEBP", {"lossless": True})])
@pytest.mark.parametrize("primaries", [DISPLAY_P3, ADOBE_RGB], ids=["display-p3", "adobe-rgb"])
def test_a_wide_gamut_photo_is_read_in_srgb(fmt, options, primaries):
    photo, icc = shop_photo(), rgb_profile(primaries)
    wide = in_profile(photo, icc)
    original = np.asarray(photo, np.float32)
    read = decoded(encode(wide, fmt, icc_profile=icc, **options))
    as_before = np.asarray(wide, np.float32)  # its numbers taken for sRGB: duller
    assert np.abs(read - original).mean() < 2.5
    assert np.abs(as_before - original).mean() > 2 * np.abs(read - original).mean()
    # Saturation comes back: the spread between channels, which a wide-gamut profile's numbers shrink.
    assert np.ptp(read, axis=2).mean() > np.ptp(as_before, axis=2).mean()


@pytest.mark.django_db
def test_the_same_photo_in_display_p3_gets_the_vector_of_its_srgb_original():
    from visual_search.serving import get_extractor

    extractor, photo, icc = get_extractor(), shop_photo(), rgb_profile()
    original = extractor.embed_bytes(encode(photo, "PNG"))
    wide = extractor.embed_bytes(encode(in_profile(photo, icc), "PNG", icc_profile=icc))
    assert float(original @ wide) > 0.9999


def test_transparent_areas_stay_white_after_the_conversion():
    icc = rgb_profile()
    picture = in_profile(shop_photo(), icc).convert("RGBA")
    alpha = np.zeros(picture.size[::-1], np.uint8)
    alpha[:, : picture.width // 2] = 255
    picture.putalpha(Image.fromarray(alpha))
    read = decoded(encode(picture, "PNG", icc_profile=icc))
    assert (read[:, picture.width // 2 + 1 :] == 255).all()


@pytest.mark.parametrize("icc", [ImageCms.ImageCmsProfile(SRGB_PROFILE).tobytes(), rgb_profile(SRGB, "sRGB (tests)")],
                         ids=["lcms-srgb", "srgb-primaries"])
def test_an_srgb_profile_leaves_the_pixels_exactly_as_before(icc):
    photo = shop_photo()
    assert np.array_equal(decoded(encode(photo, "PNG", icc_profile=icc)), decoded(encode(photo, "PNG")))


def garbage_profiles() -> dict[str, bytes]:
    good = rgb_profile()
    rng = random.Random(7)
    flipped = bytearray(good)
    for at in rng.sample(range(len(good)), 200):
        flipped[at] ^= 0xFF
    many_tags = good[:128] + (10**6).to_bytes(4, "big") + good[132:]
    return {
        "random": bytes(rng.randrange(256) for _ in range(3000)),
        "cut-short": good[: len(good) // 2],
        "header-only": good[:128],
        "flipped-bytes": bytes(flipped),
        "a-million-tags": many_tags,
        "size-says-4gb": b"\xff\xff\xff\xff" + good[4:],
        "cmyk-profile-class": good[:16] + b"CMYK" + good[20:],
        "empty-ish": b"\0" * 8,
    }


@pytest.mark.parametrize("name", list(garbage_profiles()))
def test_a_broken_or_hostile_profile_leaves_the_image_as_before(name):
    """Never a failed image for its profile: lcms refuses it, or applies it, and the image is used."""
    photo = shop_photo()
    read = decoded(encode(photo, "PNG", icc_profile=garbage_profiles()[name]))
    assert read.shape == (photo.height, photo.width, 3)


def test_random_profiles_never_fail_an_image():
    rng = random.Random(11)
    good = rgb_profile()
    photo = shop_photo().resize((64, 64))
    plain = decoded(encode(photo, "PNG"))
    for _ in range(300):
        icc = bytearray(good)
        for at in rng.sample(range(len(good)), rng.randrange(1, 40)):
            icc[at] = rng.randrange(256)
        read = decoded(encode(photo, "PNG", icc_profile=bytes(icc)))
        assert read.shape == plain.shape


def test_a_cmyk_jpeg_is_converted_by_its_profile():
    """A print-ready CMYK JPEG's inks are drawn as its profile says; this one's cyan ink prints
    magenta and its magenta cyan, so a reading by the profile is told from the naive conversion."""
    cmyk = shop_photo().convert("CMYK")
    swapped = cmyk_profile(lambda c, m, y, k: ((1 - m) * (1 - k), (1 - c) * (1 - k), (1 - y) * (1 - k)))
    data = encode(cmyk, "JPEG", quality=95, icc_profile=swapped)
    read, naive = decoded(data), decoded(encode(cmyk, "JPEG", quality=95))
    by_lcms = ImageCms.profileToProfile(Image.open(io.BytesIO(data)), ImageCms.ImageCmsProfile(io.BytesIO(swapped)),
                                        SRGB_PROFILE, outputMode="RGB")
    assert np.abs(read - np.asarray(by_lcms, np.float32)).mean() < 0.5
    red, green = read[..., 0].ravel(), naive[..., 1].ravel()
    assert np.corrcoef(red, green)[0, 1] > np.corrcoef(red, naive[..., 0].ravel())[0, 1]


def test_a_cmyk_jpeg_with_an_rgb_profile_is_converted_as_before():
    cmyk = shop_photo().convert("CMYK")
    assert np.array_equal(decoded(encode(cmyk, "JPEG", icc_profile=rgb_profile())), decoded(encode(cmyk, "JPEG")))


def test_grey_images_with_a_profile_are_read_as_before():
    grey = shop_photo().convert("L")
    assert np.array_equal(decoded(encode(grey, "PNG", icc_profile=rgb_profile())), decoded(encode(grey, "PNG")))


def test_transforms_are_kept_for_a_few_small_profiles_only():
    """A camera's profile is built into a transform once; customers' photos each with a large
    profile of their own (a few MB of junk after a valid one) do not stay in a worker's memory."""
    photo = shop_photo().resize((32, 32))
    images._TRANSFORMS.clear()
    for shade in range(40):
        primaries = tuple(tuple(v + shade / 10000 for v in xyz) for xyz in DISPLAY_P3)
        decoded(encode(photo, "PNG", icc_profile=rgb_profile(primaries, f"P3 {shade}")))
    assert len(images._TRANSFORMS) == images._TRANSFORMS_KEPT
    images._TRANSFORMS.clear()
    large = rgb_profile() + b"\0" * (images._KEPT_PROFILE_BYTES + 1)
    read = decoded(encode(photo, "TIFF", icc_profile=large))
    small = decoded(encode(photo, "TIFF", icc_profile=rgb_profile()))
    assert np.array_equal(read, small) and len(images._TRANSFORMS) == 1  # the small one's only


def test_a_pillow_without_littlecms_reads_images_as_before_and_the_package_imports():
    """Pillow built from source without lcms2 has ImageCms but no ``_imagingcms``: the module must
    import (the whole package did not) and profiled images be read as sRGB, as before."""
    script = (
        "import sys; sys.modules['PIL._imagingcms'] = None\n"
        "import django; django.setup()\n"
        "from PIL import Image\n"
        "from visual_search.embeddings import images\n"
        "image = Image.new('RGB', (8, 8), (200, 30, 30)); image.info['icc_profile'] = b'profile'\n"
        "print(images.to_srgb(image) is image)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
