"""Decode untrusted image bytes into the array VGG16 expects: one path for indexing and queries.

Resize policy (part of the fingerprint, ``RESIZE_POLICY``): EXIF orientation is applied, the image
is converted to RGB (transparent areas become white, 16-bit images are scaled to 8 bits, CMYK is
converted; an RGB or CMYK image carrying an ICC profile of another colour space is converted to sRGB
by it, as a browser draws it), scaled so that its longer side is ``IMAGE_SIZE`` keeping its aspect ratio, and centred
on an ``IMAGE_SIZE`` square filled with the ImageNet mean colour, which VGG16 sees as zero. Nothing
of the product is cropped away and nothing is stretched.
"""

from __future__ import annotations

import contextvars
import ctypes
import ctypes.util
import functools
import hashlib
import io
import logging
import math
import re
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageCms, ImageOps, ImageStat, UnidentifiedImageError, features

from ..exceptions import BlankImage, ImageTooLarge, InvalidBox, InvalidImage, UnsupportedFormat
from .. import reasons
from . import structure

try:  # the [heif] extra: HEIC photos, decoded without registering with Pillow (see open_image)
    import pillow_heif
except ImportError:
    pillow_heif = None

logger = logging.getLogger("visual_search")

# Not changed by the conversion of ICC-profiled images to sRGB (2026-12-05): it changes their vectors
# only, and a new policy would make every stored vector stale; docs/upgrading.md says how to redo them.
RESIZE_POLICY = "fit-pad-mean-v1"
# Caffe-style VGG16 input: BGR channels minus the ImageNet mean (as keras.applications.vgg16).
MEAN_RGB = (123.68, 116.779, 103.939)
MEAN_BGR = np.array(MEAN_RGB[::-1], dtype=np.float32)
_PAD_COLOUR = tuple(round(c) for c in MEAN_RGB)


# Exceptions no image causes, which must not be taken for a damaged file: a Celery task's soft time
# limit, raised wherever the worker is when it strikes (the Celery layer adds it: embeddings know
# no Celery). An empty tuple catches nothing.
PASS_THROUGH: tuple[type[BaseException], ...] = ()


def read_bytes(source: bytes | IO[bytes], max_bytes: int) -> bytes:
    """Read at most ``max_bytes`` from ``source``; refuse larger input before decoding anything."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        if hasattr(source, "seek"):
            try:
                source.seek(0)
            except (OSError, ValueError):
                pass
        data = source.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageTooLarge.over(max_bytes)
    if not data:
        raise InvalidImage(reasons.EMPTY)
    return data


def checksum(data: bytes) -> str:
    """The SHA-256 of an image file's bytes: an unchanged image is never embedded twice."""
    return hashlib.sha256(data).hexdigest()


# HEIC, an iPhone camera's format (the HEIF container with HEVC pictures): the ftyp box's brands.
HEIF = "HEIF"
_HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"}


def is_heic(data: bytes) -> bool:
    """Whether ``data`` is a HEIC file (major brand, or a generic HEIF brand listing heic), by its ftyp box."""
    if data[4:8] != b"ftyp":
        return False
    brand = data[8:12]
    box = data[8:max(12, min(int.from_bytes(data[:4], "big"), 64))]
    return brand in _HEIC_BRANDS or (brand in (b"mif1", b"msf1") and any(b in box for b in _HEIC_BRANDS))


def heif_support() -> bool:
    """Whether HEIC can be decoded here: the optional pillow-heif (``django-visual-search[heif]``)."""
    return pillow_heif is not None


# AVIF (AV1 pictures in the HEIF container): decoded by Pillow's own plugin, which its wheels hold from
# 11.3 on. Older Pillow, or one built without libavif, cannot open it: such a file is refused saying so.
AVIF = "AVIF"
_AVIF_BRANDS = {b"avif", b"avis"}  # a still picture, an image sequence (animated)


def is_avif(data: bytes) -> bool:
    """Whether ``data`` is an AVIF file (its major or a compatible brand), by its ftyp box."""
    if data[4:8] != b"ftyp":
        return False
    return any(brand in data[8:max(12, min(int.from_bytes(data[:4], "big"), 64))] for brand in _AVIF_BRANDS)


def avif_support() -> bool:
    """Whether AVIF can be decoded here: Pillow's AVIF plugin (in Pillow's wheels from 11.3 on)."""
    return "avif" in features.modules and bool(features.check_module("avif"))


def decodable(kind: str) -> bool:
    """Whether a format named in ``ALLOWED_FORMATS`` can be decoded here: HEIF needs pillow-heif,
    AVIF Pillow's AVIF plugin; the others come with Pillow."""
    return {HEIF: heif_support, AVIF: avif_support}.get(kind.upper(), lambda: True)()


def _avif_refused() -> UnsupportedFormat:
    refused = UnsupportedFormat(reasons.AVIF_REFUSED, AVIF)
    refused.technical = f"Pillow {Image.__version__} here has no AVIF plugin: Pillow 11.3 or later decodes AVIF"
    return refused


# Where an AVIF's size is declared: each picture's ispe box (version and flags, then width and height),
# in the meta box at the file's start.
_AVIF_HEADER_BYTES = 64 * 1024


def _check_avif_size(data: bytes, max_pixels: int) -> None:
    """Refuse an AVIF declaring more than ``max_pixels`` in any picture before libavif reads it: it
    refuses sizes past its own limit with no word of why ("not an image")."""
    at = data.find(b"ispe", 0, _AVIF_HEADER_BYTES)
    while 0 <= at and at + 16 <= len(data):
        width, height = int.from_bytes(data[at + 8 : at + 12], "big"), int.from_bytes(data[at + 12 : at + 16], "big")
        if width * height > max_pixels:
            _check_size(width, height, max_pixels)
        at = data.find(b"ispe", at + 4, _AVIF_HEADER_BYTES)


def _open_heic(data: bytes, *, max_pixels: int) -> Image.Image:
    """A HEIC photo decoded by pillow-heif, its size checked from the header first. The picture's
    own rotation is applied (and the EXIF orientation reset to 1, so it is not applied twice)."""
    try:
        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        width, height = heif.size
    except PASS_THROUGH:
        raise
    except Exception as exc:
        raise _unreadable_header(exc) from None
    _check_size(width, height, max_pixels)
    try:
        return heif.to_pillow()
    except PASS_THROUGH:
        raise
    except Exception as exc:
        raise InvalidImage(reasons.DAMAGED, technical=f"{type(exc).__name__}: {exc}") from None


# Pillow logs every EXIF tag it reads or writes at DEBUG on this logger, with its value: a phone's
# maker and model, and, as exif_transpose() writes the EXIF back, the GPS position in degrees. A
# customer's photo is not to be in a log (docs/privacy.md): those lines are dropped while this
# module decodes one, in this thread only; Pillow's lines for the shop's own code are left as they are.
_DECODING = contextvars.ContextVar("visual_search_decoding", default=False)


class _NoExifWhileDecoding(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not _DECODING.get()


_EXIF_LOGGER = logging.getLogger("PIL.TiffImagePlugin")
_EXIF_LOGGER.addFilter(_NoExifWhileDecoding())


def open_image(data: bytes, *, max_pixels: int, allowed_formats: list[str], draft_size: int | None = None) -> Image.Image:
    """Decode ``data`` into an RGB image, or raise :class:`InvalidImage` saying why.

    Only the ``allowed_formats`` decoders are tried, so formats that run outside programs
    (EPS starts Ghostscript) or are not raster images (SVG) are refused before they are parsed.
    Dimensions are checked from the header, before pixels are decompressed. ``"HEIF"`` among them
    decodes HEIC photos with pillow-heif where it is installed, ``"AVIF"`` AVIF images where Pillow
    has its AVIF plugin (Pillow 11.3's wheels on). Pillow logs none of its EXIF meanwhile.
    """
    token = _DECODING.set(True)
    try:
        return _open_image(data, max_pixels, allowed_formats, draft_size)
    finally:
        _DECODING.reset(token)


def _open_image(data: bytes, max_pixels: int, allowed_formats: list[str], draft_size: int | None) -> Image.Image:
    allowed = [f.upper() for f in allowed_formats]
    if is_heic(data):  # not through Pillow's registry: the shop's own ImageFields are left as they are
        if HEIF not in allowed or not heif_support():
            raise UnsupportedFormat(reasons.HEIC_REFUSED, "HEIC")
        image = _open_heic(data, max_pixels=max_pixels)
    elif is_avif(data) and not avif_support():  # no plugin: Pillow would call it "not an image"
        raise _avif_refused()
    else:
        if AVIF in allowed and is_avif(data):
            _check_avif_size(data, max_pixels)
        # MPO is opened by JPEG; AVIF only where Pillow has its plugin (else Image.open fails on the name).
        formats = [f for f in allowed if f not in ("MPO", HEIF) and (f != AVIF or avif_support())]
        image = _open_pillow(data, formats, max_pixels)
        if image.format == "WEBP":
            image = _decode_still_webp(image, data) or image
    try:
        if draft_size and image.format == "JPEG":
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale while staying >= draft_size: much faster.
            image.draft("RGB", (draft_size, draft_size))
        image.load()
        if image.format in ("JPEG", "MPO"):
            _check_complete(image, data, draft_size)
        ImageOps.exif_transpose(image, in_place=True)
        return to_rgb(to_srgb(image))
    except InvalidImage:
        raise
    except PASS_THROUGH:
        raise
    except Exception as exc:
        raise InvalidImage(reasons.DAMAGED, technical=f"{type(exc).__name__}: {exc}") from None


def _open_pillow(data: bytes, formats: list[str], max_pixels: int) -> Image.Image:
    """``data`` opened (its header read, no pixels yet) by one of Pillow's ``formats``."""
    structure.check(data, formats)  # before Pillow parses the pieces one by one
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=formats)
    except UnidentifiedImageError:
        raise _unidentified(data, formats) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLarge(reasons.TOO_MANY_PIXELS % {"most": f"{max_pixels:,}"}) from None
    except PASS_THROUGH:
        raise
    except Exception as exc:  # Pillow raises many types on hostile headers
        raise _unreadable_header(exc) from None
    _check_size(*image.size, max_pixels)
    if image.format in ("JPEG", "MPO"):
        _check_scans(data)
    return image


# A progressive JPEG is decoded scan by scan, each over the whole image; encoders write about ten.
# libjpeg sets no limit, and one 8 MB file of 500,000 tiny scans took 97 s of CPU to decode (a normal
# photo: 5 to 20 ms). 500 is libjpeg-turbo's advice (TJPARAM_SCANLIMIT): under a second at 40 MP.
MAX_JPEG_SCANS = 500


def _check_scans(data: bytes) -> None:
    """Refuse a JPEG with more than ``MAX_JPEG_SCANS`` scans before any is decoded. A scan starts
    with the marker FF DA, which the compressed data never holds (an FF there is followed by 00);
    the few a thumbnail or a profile may add do not matter at this limit."""
    scans = data.count(b"\xff\xda")
    if scans > MAX_JPEG_SCANS:
        raise InvalidImage(
            reasons.TOO_MANY_SCANS % {"scans": f"{scans:,}"},
            technical=f"{scans} JPEG scans (more than {MAX_JPEG_SCANS})",
        )


# A JPEG whose data ends (an end marker) before its picture does is decoded without a word: libjpeg
# draws the rest mid-grey, 128 in every channel. One declaring 6000 x 6000 pixels with 100 bytes of
# data was indexed as a grey square. Rows of exactly that grey are looked for from the bottom up.
# A complete photo on a flat grey of exactly 128 (a studio backdrop, a rendered product) decodes to
# the same pixels, so the file tells them apart: decoded again with bytes inserted where each scan's
# data ends, a cut-short picture draws them where it drew grey; a complete one never reads them.
_MISSING_GREY = 128
_BAND_FROM_BOTTOM = 64
# Bytes that decode to visible blocks whatever the Huffman tables (no FF: it would start a marker);
# a few redraw the first missing blocks. 4 KB a scan: 2 MB for a JPEG of the most scans accepted.
_FILLER = bytes(range(0x11, 0xFF, 2)) * 35
_SCAN_END = re.compile(rb"\xff+[^\x00\xd0-\xd7\xff]")  # a marker, after fill bytes; not a restart
_FILL = re.compile(rb"\xff+")
_WITHOUT_LENGTH = {0x01, *range(0xD0, 0xDA)}  # TEM, RSTn, SOI, EOI


def _check_complete(image: Image.Image, data: bytes, draft_size: int | None) -> None:
    """Refuse a decoded JPEG whose lower half or more is the grey libjpeg draws where data is missing.
    A photo missing a few final rows is still accepted, as a browser shows it; so is a complete
    photo whose lower half is that very grey."""
    height = image.size[1]
    missing = _grey_rows_at_bottom(image)
    if missing * 2 <= height:
        return
    with Image.open(io.BytesIO(_with_filler_after_scans(data))) as filled:
        if draft_size:
            filled.draft("RGB", (draft_size, draft_size))
        filled.load()
        if _same_pixels(image, filled):
            return  # the grey is drawn by the file's own data
    raise InvalidImage(
        reasons.PICTURE_MISSING,
        technical=f"JPEG data ends early: at least its last {missing} of {height} rows are the missing-data grey",
    )


def _grey_rows_at_bottom(image: Image.Image) -> int:
    """How many rows at the bottom of ``image`` are exactly the missing-data grey, up to half and a band."""
    width, height = image.size
    missing = 0
    while missing * 2 <= height:
        bottom = height - missing
        band = np.asarray(image.crop((0, max(0, bottom - _BAND_FROM_BOTTOM), width, bottom)))
        grey = (band.reshape(band.shape[0], -1) == _MISSING_GREY).all(axis=1)
        if not grey.all():
            return missing + len(grey) - 1 - int(np.flatnonzero(~grey)[-1])
        missing += len(grey)
    return missing


def _same_pixels(image: Image.Image, other: Image.Image) -> bool:
    """Whether two images of one size hold the same pixels, compared a band of rows at a time."""
    if (image.size, image.mode) != (other.size, other.mode):
        return False
    width, height = image.size
    for top in range(0, height, _BAND_ROWS):
        box = (0, top, width, min(height, top + _BAND_ROWS))
        if not np.array_equal(np.asarray(image.crop(box)), np.asarray(other.crop(box))):
            return False
    return True


def _with_filler_after_scans(data: bytes) -> bytes:
    """The JPEG ``data`` with :data:`_FILLER` where each scan's data of its first picture ends:
    libjpeg decodes it as the missing rest of a scan cut short, and skips it after a complete one."""
    pieces, pos, end = [], 2, len(data)
    for _segment in range(structure.MAX_PIECES):  # a step each: no more than Pillow is allowed
        pos = data.find(b"\xff", pos)  # junk before a marker is skipped, as libjpeg does
        if pos < 0:
            break
        pos = _FILL.match(data, pos).end()
        if pos >= end or data[pos] == 0xD9:  # the first picture's end
            break
        marker, pos = data[pos], pos + 1
        if marker in _WITHOUT_LENGTH:
            continue
        pos += int.from_bytes(data[pos : pos + 2], "big")
        if marker == 0xDA:  # a scan: its data runs to the next marker
            found = _SCAN_END.search(data, pos)
            pos = found.start() if found else end
            pieces.append(pos)
    result, start = [], 0
    for at in pieces:
        result += [data[start:at], _FILLER]
        start = at
    return b"".join([*result, data[start:]])


# Pillow decodes every WebP through libwebp's animation decoder, which holds two RGBA canvases of
# the whole picture and hands over a third copy as bytes before Pillow makes its image: a 6000 x 6000
# WebP took 590 MB to open, a PNG of it 320 MB. A still WebP is decoded here instead by the same
# libwebp's still-image decoder, straight into one array (the very pixels: the animation decoder
# decodes a first frame as this one does), which Pillow's image then copies or shares.
_WEBP_DECODERS = {"RGB": ("WebPDecodeRGBInto", 3), "RGBA": ("WebPDecodeRGBAInto", 4)}


@functools.cache
def _libwebp() -> ctypes.CDLL | None:
    """Pillow's own libwebp (its version checked), or None where it is not a library of its own
    (Pillow's Windows wheels build it in): WebPs are then decoded by Pillow, in more memory."""
    version = features.version("webp")
    pillow = Path(Image.__file__).parent
    found = [*sorted(pillow.parent.glob("pillow.libs/libwebp-*.so*")), *sorted(pillow.glob(".dylibs/libwebp.*dylib"))]
    for candidate in [*map(str, found), ctypes.util.find_library("webp")]:
        try:
            library = ctypes.CDLL(candidate) if candidate and version else None
            number = library.WebPGetDecoderVersion() if library else -1
        except (OSError, AttributeError):
            continue
        if f"{number >> 16}.{number >> 8 & 255}.{number & 255}" == version:
            for name, _channels in _WEBP_DECODERS.values():
                function = getattr(library, name)
                function.restype = ctypes.c_void_p
                function.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
            return library
    return None


def _decode_still_webp(image: Image.Image, data: bytes) -> Image.Image | None:
    """The still WebP ``image`` (opened, not decoded) decoded from ``data``; None for an animated
    one, a damaged one or where libwebp cannot be called: Pillow decodes those as before."""
    library = _libwebp()
    if library is None or getattr(image, "n_frames", 1) != 1 or image.mode not in _WEBP_DECODERS:
        return None
    name, channels = _WEBP_DECODERS[image.mode]
    width, height = image.size
    pixels = np.zeros((height, width, channels), np.uint8)  # rows or columns libwebp does not write stay black
    if not getattr(library, name)(data, len(data), pixels.ctypes.data, pixels.nbytes, width * channels):
        return None  # an animation's one frame, or damage: Pillow's decoder says which
    decoded = Image.fromarray(pixels, image.mode)  # RGB: copied to Pillow's 4 bytes a pixel; RGBA: shared
    decoded.info = dict(image.info)  # the EXIF orientation, the ICC profile
    return decoded


def _unreadable_header(exc: Exception) -> InvalidImage:
    return InvalidImage(reasons.HEADER_UNREADABLE, technical=type(exc).__name__)


def _check_size(width: int, height: int, max_pixels: int) -> None:
    if width < 1 or height < 1:
        raise InvalidImage(reasons.NO_PIXELS)
    if width * height > max_pixels:
        raise ImageTooLarge(reasons.TOO_LARGE % {"width": width, "height": height, "most": f"{max_pixels:,}"})


@dataclass(frozen=True)
class Box:
    """A region of a photo as fractions of its width and height (0 to 1, after EXIF rotation):
    ``x0, y0`` its top-left corner, ``x1, y1`` its bottom-right one."""

    x0: float
    y0: float
    x1: float
    y1: float

    # Smaller than this share of a side is a slip of the finger, not a region worth searching.
    MIN_SIDE = 0.02

    @classmethod
    def parse(cls, value: str | Sequence[float] | Box | None) -> Box | None:
        """A box from ``"x0,y0,x1,y1"`` or four numbers; None for None or "". :class:`InvalidBox` otherwise."""
        if value is None or isinstance(value, Box):
            return value
        if isinstance(value, str):
            if not value.strip():
                return None
            parts = value.replace(" ", "").split(",")
        else:
            parts = list(value)
        try:
            numbers = [float(part) for part in parts]
        except (TypeError, ValueError):
            numbers = []
        if len(numbers) != 4 or not all(math.isfinite(n) for n in numbers):
            raise InvalidBox("box must be four numbers x0,y0,x1,y1: the region's corners as fractions of the photo (0 to 1).")
        box = cls(*numbers)
        if not all(0.0 <= n <= 1.0 for n in numbers):
            raise InvalidBox("box must lie inside the photo: every number from 0 to 1.")
        if box.x1 - box.x0 < cls.MIN_SIDE or box.y1 - box.y0 < cls.MIN_SIDE:
            raise InvalidBox("box is empty: x1 must be greater than x0, and y1 greater than y0.")
        return box

    @property
    def smaller_side(self) -> float:
        return min(self.x1 - self.x0, self.y1 - self.y0)

    def draft_size(self, size: int) -> int:
        """How wide a JPEG must be decoded for this region to still be ``size`` pixels wide."""
        return math.ceil(size / self.smaller_side)

    def crop(self, image: Image.Image) -> Image.Image:
        """The region of ``image`` (at least one pixel each way)."""
        width, height = image.size
        left, top = math.floor(self.x0 * width), math.floor(self.y0 * height)
        right, bottom = max(left + 1, math.ceil(self.x1 * width)), max(top + 1, math.ceil(self.y1 * height))
        return image.crop((left, top, min(right, width), min(bottom, height)))


# A photo none of whose colour channels varies by this much (0 to 255, standard deviation over a
# 64 px thumbnail) shows nothing to search for. The least varied of the grocery dataset's 3,017
# photos and catalogue images (a white garlic bulb on white) varies by 18.7.
BLANK_STDDEV = 4.0


def check_not_blank(image: Image.Image, box: Box | None = None) -> None:
    """:class:`BlankImage` when ``image`` (its region ``box``) is one colour all over.

    Measured on two 64 px thumbnails: one averaged (a product small in the frame counts) and one of
    sampled pixels (fine texture counts: averaged, a close-up of grains or noise reads flat)."""
    region = (box.crop(image) if box is not None else image).convert("RGB")
    for resample in (Image.Resampling.BOX, Image.Resampling.NEAREST):
        thumbnail = region.resize((min(64, region.width), min(64, region.height)), resample)
        if max(ImageStat.Stat(thumbnail).stddev) >= BLANK_STDDEV:
            return
    where = "The part of the photo to search" if box is not None else "The photo"
    raise BlankImage(f"{where} is blank (one colour all over); send a photo with the product in view.")


def _unidentified(data: bytes, formats: list[str]) -> InvalidImage:
    head = data[:512].lstrip().lower()
    if head.startswith(b"%!ps") or data[:4] == b"\xc5\xd0\xd3\xc6":
        return UnsupportedFormat(reasons.EPS_REFUSED, "EPS")
    if b"<svg" in head or (head.startswith(b"<?xml") and b"svg" in data[:2048].lower()):
        return UnsupportedFormat(reasons.SVG_REFUSED, "SVG")
    if head.startswith(b"%pdf"):
        return UnsupportedFormat(reasons.PDF_REFUSED, "PDF")
    if AVIF in formats and is_avif(data):  # libavif refused it: cut short, or built wrong
        return InvalidImage(reasons.HEADER_UNREADABLE, technical="AVIF: libavif cannot parse it")
    try:
        with Image.open(io.BytesIO(data)) as other:  # identify only: does not load pixels
            kind = other.format
    except Exception:
        kind = None
    if kind:
        return UnsupportedFormat(reasons.FORMAT_REFUSED % {"kind": kind, "formats": ", ".join(formats)}, kind)
    return InvalidImage(reasons.NOT_AN_IMAGE)


# An iPhone's photo (Display P3), an Adobe RGB product shot or a print-ready CMYK JPEG holds numbers
# that mean other colours than sRGB's, which the network was trained on and a browser converts to
# before a widget photo is sent: read as sRGB they are dull or shifted, and the same product was
# seen in two colour spaces (measured: docs/performance.md). Converted by their profile with Pillow's
# littlecms. A profile lcms cannot read or apply leaves the image as it is, as before.
# A Pillow built without littlecms (from source, with no lcms2 headers) has ImageCms but cannot use
# it: there images are read as sRGB, as before, rather than the package failing to import.
try:
    _SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
    _SRGB_COLORANTS = [_SRGB.profile.red_colorant, _SRGB.profile.green_colorant, _SRGB.profile.blue_colorant]
except ImportError:
    _SRGB = _SRGB_COLORANTS = None
_PROFILED_MODES = {"RGB": "RGB", "RGBA": "RGBA", "CMYK": "RGB"}


def to_srgb(image: Image.Image) -> Image.Image:
    """``image`` converted to sRGB by its ICC profile; as it is without one, with an sRGB one (its
    pixels and vector unchanged), in another mode (grey, palette, 16-bit) or where lcms fails."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in _PROFILED_MODES or _SRGB is None:
        return image
    try:
        transform = _transform_to_srgb(bytes(icc), image.mode)
        if transform is None:
            return image
        converted = transform.apply(image)
    except PASS_THROUGH:
        raise
    except Exception as exc:  # lcms raises PyCMSError, OSError, ValueError... on a broken profile
        logger.debug("ICC profile not applied (%s: %s); the image is read as sRGB", type(exc).__name__, exc)
        return image
    converted.info = {key: value for key, value in image.info.items() if key != "icc_profile"}
    return converted


# Transforms kept for the next image of the same profile (a camera's, a shop's export): building one
# took 4 ms, applying it to a 348 px photo 0.3 ms. Only small profiles' (an RGB one is 0.5 to 4 KB, a
# print CMYK one up to a few MB): a customer's photos, each with a large profile of its own, are not
# to fill a worker's memory. Keyed by the profile's hash; shared by threads.
_TRANSFORMS: dict[tuple[bytes, str], ImageCms.ImageCmsTransform | None] = {}
_TRANSFORMS_KEPT = 16
_KEPT_PROFILE_BYTES = 256 * 1024
_TRANSFORMS_LOCK = threading.Lock()


def _transform_to_srgb(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """The transform from the profile ``icc`` to sRGB for images of ``mode``; None for an sRGB profile."""
    key = (hashlib.sha256(icc).digest(), mode)
    with _TRANSFORMS_LOCK:
        if key in _TRANSFORMS:
            return _TRANSFORMS[key]
    transform = _build_transform(icc, mode)
    if len(icc) <= _KEPT_PROFILE_BYTES:
        with _TRANSFORMS_LOCK:
            while len(_TRANSFORMS) >= _TRANSFORMS_KEPT:
                del _TRANSFORMS[next(iter(_TRANSFORMS))]
            _TRANSFORMS[key] = transform
    return transform


def _build_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """Without lcms's one-pixel cache, which is not safe for threads sharing the transform."""
    profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    if mode != "CMYK" and _is_srgb(profile.profile):
        return None
    return ImageCms.buildTransform(profile, _SRGB, mode, _PROFILED_MODES[mode], flags=ImageCms.Flags.NOCACHE)


def _is_srgb(profile) -> bool:
    """Whether an RGB profile's primaries are sRGB's (its curve is taken to be sRGB's too)."""
    colorants = [profile.red_colorant, profile.green_colorant, profile.blue_colorant]
    if any(colorant is None for colorant in colorants):
        return False
    return all(math.isclose(a, b, abs_tol=0.002) for mine, srgb in zip(colorants, _SRGB_COLORANTS)
               for a, b in zip(mine[0], srgb[0]))


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB: alpha over white, 16/32-bit scaled, CMYK and palettes converted."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _to_8bit(image)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        # Pasted through its own alpha onto white: the same pixels as alpha_composite over white,
        # without its three more RGBA copies (a 40-megapixel PNG of 170 KB took 800 MB, now 400 MB).
        # Pillow pastes LA onto RGB as it is (an RGBA copy of it took 160 MB more at 40 MP).
        source = image if image.mode in ("RGBA", "LA") else image.convert("RGBA")
        image = Image.new("RGB", source.size, (255, 255, 255))
        image.paste(source, (0, 0), source)
    return image.convert("RGB") if image.mode != "RGB" else image


# Rows of a 16- or 32-bit image scaled at a time: at once, its float copies took 650 MB at 40 MP.
_BAND_ROWS = 256


def _to_8bit(image: Image.Image) -> Image.Image:
    """A 16-bit (or 32-bit integer or float) grey image scaled to 8 bits, a band of rows at a time:
    16-bit images from 0..65535, others from 0..255 unless they hold larger values."""
    top = 65535.0 if image.mode.startswith("I;16") or (image.getextrema()[1] or 0) > 255 else 255.0
    scale = np.float32(255.0 / top)
    width, height = image.size
    grey = np.empty((height, width), np.uint8)
    for row in range(0, height, _BAND_ROWS):
        band = np.array(image.crop((0, row, width, min(height, row + _BAND_ROWS))), dtype=np.float32)
        np.multiply(band, scale, out=band)
        grey[row : row + len(band)] = np.clip(band, 0, 255, out=band)
    return Image.fromarray(grey, "L")


def fit_and_pad(image: Image.Image, size: int, background: tuple[int, int, int] | None = None) -> np.ndarray:
    """Scale ``image`` to fit a ``size`` square, pad with the mean colour, return VGG16 input."""
    width, height = image.size
    scale = size / max(width, height)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new != image.size:
        image = image.resize(new, Image.Resampling.BILINEAR, reducing_gap=2.0)
    canvas = Image.new("RGB", (size, size), background or _PAD_COLOUR)
    canvas.paste(image, ((size - new[0]) // 2, (size - new[1]) // 2))
    array = np.asarray(canvas, dtype=np.float32)[..., ::-1]
    return array - MEAN_BGR


def prepare(data: bytes, *, size: int, max_pixels: int, allowed_formats: list[str]) -> np.ndarray:
    """Image file bytes to a ``(size, size, 3)`` float32 VGG16 input; raises :class:`InvalidImage`."""
    image = open_image(data, max_pixels=max_pixels, allowed_formats=allowed_formats, draft_size=size)
    return fit_and_pad(image, size)
