"""Vectors computed elsewhere, taken by the bytes of the image: ``visual_search_reindex --vectors FILE``.

A file of vectors is a ``dumpdata`` of this package's rows (a JSON or JSON Lines fixture, compressed
or not)::

    python manage.py dumpdata visual_search.ImageEmbedding visual_search.Whitening \\
        --natural-foreign --natural-primary -o vectors.json.xz

made where the network runs fast (a machine with a GPU or AMX, a staging copy of the shop). Unlike
``loaddata``, which restores rows by object key and needs the same products under the same keys,
reindexing with the file matches each image by what it is: an image whose bytes hash to a vector's
``checksum``, of a model version this shop indexes for (its ``fingerprint``), takes that vector
instead of a pass through the network. Each image is still read, hashed and decoded under this
shop's limits; everything else (rows, thumbnails, the backend, duplicates) is as if computed here.

A whitening and score calibration in the file are taken too where this shop has none for that model
and version, and only where the file gave most of that model's vectors (within
``WHITENING_REFIT_GROWTH``): learned on the same images, they are what a fit here would learn. Else
the fit runs here as usual.

The file is read a piece at a time, and only the vectors of the model versions asked for are kept:
a million images' dump (3.3 GB of JSON) needs the memory of their vectors, not of the file.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import json
import logging
import lzma
import math
from collections import Counter
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from django.contrib.contenttypes.models import ContentType
from django.db import router

from .backends import get_backend
from .conf import settings
from .models import ImageEmbedding, Whitening
from .ranking import Calibration

logger = logging.getLogger("visual_search")
OPENERS = {".gz": gzip.open, ".xz": lzma.open, ".lzma": lzma.open, ".bz2": bz2.open}
CHUNK = 1 << 20  # characters read at a time
MAX_ROW = 64 << 20  # no row of a dump is near this (a whitening: under 1 MB); a broken file stops here
HOW_TO_MAKE = (
    "A file of vectors is made where they were computed: manage.py dumpdata visual_search.ImageEmbedding "
    "visual_search.Whitening --natural-foreign --natural-primary -o vectors.json.xz"
)


class UnreadableVectorFile(ValueError):
    """The file is not a ``dumpdata`` of this package's rows; the message says what to make instead."""


class VectorFile:
    """The ready vectors of a ``dumpdata`` file by fingerprint and image checksum, and its whitenings.

    ``fingerprints``: keep only the vectors of these model versions (default: all); ``found`` counts
    the file's ready vectors of every version all the same.
    """

    def __init__(self, path: str | Path, fingerprints: Collection[str] | None = None):
        self.path = Path(path)
        self.vectors: dict[tuple[str, str], np.ndarray] = {}
        self.whitenings: list[dict[str, Any]] = []
        self.found: Counter[str] = Counter()
        # Vectors kept out: not unit vectors of finite numbers (a damaged file); their images are computed.
        self.unsound = 0
        for record in self._records():
            fields = record["fields"]
            if record["model"] == ImageEmbedding._meta.label_lower and fields.get("status") == ImageEmbedding.Status.READY:
                fingerprint = fields.get("fingerprint", "")
                self.found[fingerprint] += 1
                if fingerprints is not None and fingerprint not in fingerprints:
                    continue
                vector = _array(fields.get("vector"))
                if vector is None or len(vector) != fields.get("dimensions") or not _unit(vector):
                    self.unsound += 1
                    continue
                self.vectors[(fingerprint, fields.get("checksum", ""))] = vector
            elif record["model"] == Whitening._meta.label_lower:
                self.whitenings.append(fields)
        self.fingerprints = sorted(self.found)

    def _records(self) -> Iterator[dict]:
        opener = OPENERS.get(self.path.suffix, open)
        try:
            with opener(self.path, "rt", encoding="utf-8") as handle:  # type: ignore[operator]
                for record in _rows(handle):
                    if not isinstance(record, dict) or not isinstance(record.get("fields"), dict) or "model" not in record:
                        raise UnreadableVectorFile(
                            f"{self.path} is not a dumpdata fixture (a JSON list of rows, or one row a line). {HOW_TO_MAKE}"
                        )
                    yield record
        except UnreadableVectorFile:
            raise
        except FileNotFoundError:
            raise UnreadableVectorFile(f"No file {self.path}. {HOW_TO_MAKE}") from None
        except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
            raise UnreadableVectorFile(f"Cannot read {self.path} ({exc}). {HOW_TO_MAKE}") from None

    def __len__(self) -> int:
        """The vectors kept (of the model versions asked for)."""
        return len(self.vectors)

    def vector(self, fingerprint: str, checksum: str) -> np.ndarray | None:
        """The vector computed for an image of those bytes by that model version, if the file has one."""
        return self.vectors.get((fingerprint, checksum))

    def take_whitenings(self, fingerprints: Collection[str], taken: dict[int, int]) -> int:
        """Save the file's whitenings of ``fingerprints`` for the models that have none, where the file
        gave about all of the model's ready vectors (``taken``: vectors taken by result content type
        id); returns how many were saved. The rest are fitted here as usual."""
        saved = 0
        growth = 1 + float(settings.WHITENING_REFIT_GROWTH)
        using = router.db_for_write(Whitening)
        for fields in self.whitenings:
            fingerprint, result_type = fields.get("fingerprint"), _content_type(fields.get("result_type"))
            if fingerprint not in fingerprints or result_type is None or not taken.get(result_type.pk):
                continue
            ready = ImageEmbedding.objects.on_primary().ready(fingerprint).filter(result_type=result_type)
            if taken[result_type.pk] * growth < ready.count():
                continue  # most of these vectors were computed here: a whitening of them is learned here
            rows = Whitening.objects.db_manager(using)
            if rows.filter(result_type=result_type, fingerprint=fingerprint).exists():
                continue
            if not _sound_whitening(fields, ready.values_list("dimensions", flat=True).first()):
                logger.warning("%s: its whitening of %s (%s) is damaged; it is learned here instead", self.path, result_type, fingerprint)
                continue
            rows.create(
                result_type=result_type, fingerprint=fingerprint, dimensions=fields["dimensions"], trained_on=fields["trained_on"],
                mean=_bytes(fields["mean"]), projection=_bytes(fields["projection"]), calibration=fields.get("calibration") or {},
            )
            get_backend().whitening_changed(result_type.pk, fingerprint)
            saved += 1
        return saved


def _rows(handle) -> Iterator[Any]:
    """The values of a fixture read :data:`CHUNK` characters at a time: the items of a JSON list
    (``dumpdata --format json``) or one value a line (``--format jsonl``). A value longer than
    :data:`MAX_ROW` characters, or cut short by the end of the file, is a :class:`ValueError`."""
    decoder = json.JSONDecoder()
    text, at, listed, rows = "", 0, None, 0

    def more() -> bool:
        nonlocal text, at
        chunk = handle.read(CHUNK)
        text, at = text[at:] + chunk, 0
        return bool(chunk)

    while True:
        while at < len(text) and (text[at].isspace() or (listed and text[at] == ",")):
            at += 1
        if at == len(text):
            if more():
                continue
            if listed:
                raise ValueError(f"the file ends after row {rows}, before the list's end: was it copied whole?")
            return
        if listed is None:  # the first character tells the format
            listed = text[at] == "["
            if listed:
                at += 1
            continue
        if listed and text[at] == "]":
            return
        try:
            value, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError as exc:
            into = exc.pos - at  # where the row stops making sense; more() moves the row to the start
            if len(text) - at <= MAX_ROW and more():
                continue  # the row goes on in the next piece
            if into >= len(text.rstrip()) or exc.msg.startswith("Unterminated string"):
                raise ValueError(f"the file ends in the middle of row {rows + 1}: was it copied whole?") from None
            raise ValueError(f"row {rows + 1} is not JSON: {exc.msg}") from None
        rows += 1
        yield value


def _unit(vector: np.ndarray) -> bool:
    """Whether ``vector`` is what the network stores: finite numbers, of length 1."""
    return bool(np.isfinite(vector).all()) and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-3


def _sound_whitening(fields: dict[str, Any], dimensions: int | None) -> bool:
    """Whether a whitening row of the file would serve searches: its mean as long as the model's
    vectors (``dimensions``), a projection searches can read with it (:meth:`Whitening.arrays`),
    finite numbers, whole counts and a calibration searches can use (:func:`_sound_calibration`)."""
    mean, projection = _bytes(fields.get("mean")), _bytes(fields.get("projection"))
    width, trained_on = fields.get("dimensions"), fields.get("trained_on")
    if mean is None or projection is None or not all(type(n) is int and n > 0 for n in (width, trained_on)):
        return False
    try:  # read as searches read it
        mean, projection = Whitening(mean=mean, projection=projection, dimensions=width).arrays()
    except ValueError:  # not float32 numbers, or a projection of another size
        return False
    if len(mean) != dimensions:
        return False
    if not (np.isfinite(mean).all() and np.isfinite(projection).all()):
        return False
    calibration = fields.get("calibration") or {}
    return isinstance(calibration, dict) and _sound_calibration(calibration)


def _sound_calibration(data: dict[str, Any]) -> bool:
    """Whether a stored calibration's fields are what searches and the admin compute with: a positive
    temperature, finite numbers, a share ``prior`` between 0 and 1, text where text is kept."""
    try:
        curve = Calibration.from_dict(data)
    except TypeError:  # a field missing
        return False
    if curve is None:
        return True  # no curve of its own ({"basis": "default"}): searches use the default one

    def number(value: Any, optional: bool = False) -> bool:
        if value is None:
            return optional
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    return (
        number(curve.temperature) and curve.temperature > 0
        and number(curve.none)
        and number(curve.prior) and 0 <= curve.prior <= 1
        and number(curve.error, optional=True) and number(curve.images_per_product, optional=True)
        and type(curve.fitted_on) is int
        and isinstance(curve.scoring, str) and isinstance(curve.basis, str)
    )


def _bytes(text: Any) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return None


def _array(text: Any) -> np.ndarray | None:
    data = _bytes(text)
    if data is None or len(data) % 4:
        return None
    return np.frombuffer(data, dtype=np.float32)


def _content_type(key: Any) -> ContentType | None:
    """A content type named by its natural key (``["shop", "product"]``); an id, which another
    database numbers its own way, names none."""
    if not isinstance(key, list) or len(key) != 2:
        return None
    try:
        return ContentType.objects.get_by_natural_key(*key)
    except ContentType.DoesNotExist:
        return None
