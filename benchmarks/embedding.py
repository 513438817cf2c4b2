"""Embedding speed, end to end from JPEG files on disk to stored vectors.

- ``seed``: the blog post's approach: ``keras.utils.load_img`` and ``model.predict`` on one image at
  a time, float32, flattened features.
- ``reindex_<precision>``: this project's path: ``visual_search_reindex`` in-process, batched,
  decoding (with JPEG draft mode) overlapped with inference, vectors written to the database.
- ``query_ms``: embedding one customer photo (what a customer waits for), median of 20.
- ``adapted_*``: the same reindex and query paths with an active trained version of the default
  training options (:mod:`visual_search.training`: VGG16 blocks 1-3 frozen, block 4 trained and
  GeM-pooled, at the training image size). Its head is freshly initialised, not trained: the time
  does not depend on the weights' values (the training suite measures what training does to quality).
"""

from __future__ import annotations

import numpy as np

from .common import dataset, percentiles, photo_rows, timed


def seed_baseline(paths: list) -> float:
    import keras

    model = keras.applications.VGG16(include_top=False, weights=None, input_shape=(224, 224, 3))
    preprocess = keras.applications.vgg16.preprocess_input
    model.predict(np.zeros((1, 224, 224, 3), np.float32), verbose=0)  # not counted: first-call tracing

    def run():
        for path in paths:
            image = keras.utils.img_to_array(keras.utils.load_img(path, target_size=(224, 224)))
            model.predict(preprocess(image[None]), verbose=0).flatten()

    _, seconds = timed(run)
    return len(paths) / seconds


def reindex_throughput(rows: list[dict], precision: str, runtime: str = "tensorflow") -> float:
    from django.conf import settings
    from django.test.utils import override_settings

    from tests.testapp.models import Product
    from visual_search.serving import get_extractor
    from visual_search.models import ImageEmbedding
    from visual_search.reindex import reindex

    with override_settings(VISUAL_SEARCH={**settings.VISUAL_SEARCH, "PRECISION": precision, "RUNTIME": runtime}):
        ImageEmbedding.objects.all().delete()
        Product.objects.all().delete()
        import visual_search

        with visual_search.pause_indexing(reindex_on_exit=False):
            Product.objects.bulk_create(Product(name=r["product"], image=r["file"]) for r in rows)
        # Loaded once, not counted (an int8 network is calibrated on these products' images here).
        extractor, load_s = timed(get_extractor)
        size = extractor.spec.image_size
        extractor.embed_arrays(np.zeros((1, size, size, 3), np.float32))
        if runtime != "tensorflow":
            print(f"  {runtime} ({extractor.runtime} serves) loaded in {load_s:.1f} s", flush=True)
        counts, seconds = timed(reindex, Product, asynchronous=False)
        assert counts["embedded"] == len(rows), counts
        return len(rows) / seconds


def adapted_version():
    """An active ModelVersion with the default training options' network (weights untrained)."""
    import os
    import tempfile

    import keras

    from visual_search.serving import local_weights_path
    from visual_search.models import ModelVersion
    from visual_search.training.jobs import STORAGE_DIR
    from visual_search.embeddings.adapted import build_head, save_head
    from visual_search.training.trainer import TrainingOptions, network_config
    from visual_search.versions import forget_serving_version, version_fingerprint

    config = network_config(TrainingOptions.from_settings())
    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        path = f"{folder}/head.weights.h5"
        save_head(build_head(config), path)
        data = open(path, "rb").read()
    fingerprint = version_fingerprint(config, data)
    # Put where each process caches a version's weights (serving.local_weights), so nothing is
    # written to the default storage, which here is the dataset's folder.
    cached = local_weights_path(fingerprint)
    os.makedirs(os.path.dirname(cached), exist_ok=True)
    with open(cached, "wb") as handle:
        handle.write(data)
    name = f"{STORAGE_DIR}/{fingerprint}.weights.h5"
    ModelVersion.objects.all().delete()
    version = ModelVersion.objects.create(
        label="benchmark (untrained weights)", status=ModelVersion.Status.ACTIVE, fingerprint=fingerprint, weights_file=name, config=config
    )
    forget_serving_version()
    return version


def query_latency(rows: list[dict], runtime: str | None = None, query_views: list[str] | None = None) -> dict:
    """p50/p95 of embedding one customer photo (20 photos after one for warm-up), with the settings'
    runtime and query views unless given."""
    from django.conf import settings
    from django.test.utils import override_settings

    from visual_search.serving import embed_image

    changes = {**({"RUNTIME": runtime} if runtime else {}), **({"QUERY_VIEWS": query_views} if query_views else {})}
    samples = []
    with override_settings(VISUAL_SEARCH={**settings.VISUAL_SEARCH, **changes}):
        for row in rows[:21]:
            data = (dataset() / row["file"]).read_bytes()
            samples.append(timed(embed_image, data)[1])
    return percentiles(samples[1:])


def openvino_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("openvino") is not None and importlib.util.find_spec("nncf") is not None


def run(limit: int | None = None, skip_seed: bool = False) -> dict:
    rows = photo_rows()
    if limit:
        step = max(1, len(rows) // limit)
        rows = rows[::step][:limit]
    figures: dict = {"images": len(rows)}
    paths = [str(dataset() / r["file"]) for r in rows]
    if not skip_seed:
        figures["seed_img_per_s"] = seed_baseline(paths)
        print(f"seed (predict per image, float32): {figures['seed_img_per_s']:.2f} img/s", flush=True)
    for precision in ("float32", "bfloat16"):
        figures[f"reindex_{precision}_img_per_s"] = reindex_throughput(rows, precision)
        print(f"reindex {precision}: {figures[f'reindex_{precision}_img_per_s']:.2f} img/s", flush=True)
    from visual_search.embeddings.backbone import resolve_precision

    default = resolve_precision("auto")
    figures["default_precision"] = default
    figures["reindex_img_per_s"] = figures[f"reindex_{default}_img_per_s"]
    if "seed_img_per_s" in figures:
        figures["reindex_vs_seed"] = figures["reindex_img_per_s"] / figures["seed_img_per_s"]
    query = query_latency(rows)
    figures["query_ms"] = query["p50_ms"]
    figures["query_p95_ms"] = query["p95_ms"]
    print(f"query photo embedding: p50 {query['p50_ms']:.0f} ms, p95 {query['p95_ms']:.0f} ms ({default})", flush=True)

    # The same network run by OpenVINO (RUNTIME), and each runtime's query with one view instead of
    # the default's four: the customer's wait against what the views add (benchmarks quality).
    runtimes = ["tensorflow"] + (["openvino", "openvino-int8"] if openvino_installed() else [])
    for runtime in runtimes[1:]:
        key = runtime.replace("-", "_")
        figures[f"reindex_{key}_img_per_s"] = reindex_throughput(rows, "auto", runtime)
        print(f"reindex {runtime} ({default}): {figures[f'reindex_{key}_img_per_s']:.2f} img/s", flush=True)
    figures["query_ms_by_runtime"] = {}
    for runtime in runtimes:
        for views in (None, ["full"]):
            query = query_latency(rows, runtime, views)
            name = f"{runtime}, {'1 view' if views else 'default views'}"
            figures["query_ms_by_runtime"][name] = query["p50_ms"]
            print(f"query photo embedding, {name}: p50 {query['p50_ms']:.0f} ms, p95 {query['p95_ms']:.0f} ms", flush=True)

    version = adapted_version()
    try:
        figures["adapted_config"] = {k: version.config[k] for k in ("image_size", "trained_blocks", "dims")}
        figures["adapted_reindex_img_per_s"] = reindex_throughput(rows, "auto")
        if "seed_img_per_s" in figures:
            figures["adapted_reindex_vs_seed"] = figures["adapted_reindex_img_per_s"] / figures["seed_img_per_s"]
        query = query_latency(rows)
        figures["adapted_query_ms"], figures["adapted_query_p95_ms"] = query["p50_ms"], query["p95_ms"]
        print(f"adapted version {figures['adapted_config']}: reindex {figures['adapted_reindex_img_per_s']:.2f} img/s, "
              f"query p50 {query['p50_ms']:.0f} ms", flush=True)
        # A trained version serves one view: each runtime's query with it (a distilled version is
        # the default's quality at this cost; docs/adapting.md).
        figures["adapted_query_ms_by_runtime"] = {}
        figures["adapted_reindex_img_per_s_by_runtime"] = {}
        for runtime in runtimes[1:]:
            figures["adapted_reindex_img_per_s_by_runtime"][runtime] = reindex_throughput(rows, "auto", runtime)
            print(f"adapted version, {runtime}: reindex {figures['adapted_reindex_img_per_s_by_runtime'][runtime]:.2f} img/s", flush=True)
            query = query_latency(rows, runtime)
            figures["adapted_query_ms_by_runtime"][runtime] = query["p50_ms"]
            print(f"adapted version, {runtime}: query p50 {query['p50_ms']:.0f} ms, p95 {query['p95_ms']:.0f} ms", flush=True)
    finally:
        from visual_search.versions import forget_serving_version

        version.delete()
        forget_serving_version()
    return figures
