"""Shared by the benchmarks: Django set-up, the dataset, the machine, timing helpers."""

from __future__ import annotations

import csv
import json
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def setup_django() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, run_syncdb=True)


def dataset() -> Path:
    from django.conf import settings

    path = Path(settings.DATASET).resolve()
    if not (path / "photos.csv").exists():
        raise SystemExit(f"No grocery_store dataset at {path}: set GROCERY_STORE to its folder.")
    return path


def photo_rows(split: str | None = None) -> list[dict]:
    with open(dataset() / "photos.csv") as handle:
        return [row for row in csv.DictReader(handle) if split is None or row["split"] == split]


def machine() -> dict:
    model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from visual_search.embeddings.backbone import cpu_supports_bfloat16

    return {"cpu": model, "cores": os.cpu_count(), "bf16_native": cpu_supports_bfloat16()}


def insert_ready_rows(cursor, rows) -> None:
    """Write index rows straight into the table, far faster than the ORM for a million: ``rows`` of
    (content type id, object id, fingerprint, dimensions, vector bytes, created, updated), each
    ready, its own result, for the field ``image``. Every NOT NULL column is named: a column added
    by a migration must be added here (``embed_attempts`` was not, and the suites stopped)."""
    cursor.executemany(
        "INSERT INTO visual_search_imageembedding (content_type_id, object_id, field_name, result_type_id, result_id,"
        " status, error, source_name, checksum, fingerprint, dimensions, vector, embed_attempts, created_at, updated_at)"
        " VALUES (%s, %s, 'image', %s, %s, 'ready', '', '', '', %s, %s, %s, 0, %s, %s)",
        [(ct, object_id, ct, object_id, fingerprint, dims, vector, created, updated)
         for ct, object_id, fingerprint, dims, vector, created, updated in rows],
    )


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def percentiles(samples_s: list[float]) -> dict:
    import numpy as np

    ms = np.asarray(samples_s) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99))}


def save(section: str, figures: dict) -> Path:
    """Merge ``figures`` under ``section`` into results/latest.json (other keys are kept)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "latest.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    from django.conf import settings

    run = {"machine": machine(), "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "weights": settings.VISUAL_SEARCH["WEIGHTS"]}
    data.update(run)  # the last suite written, as before
    data.setdefault("measured", {})[section] = run  # each section's own machine, date and weights
    data.setdefault(section, {}).update(figures)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def merge_backends() -> Path:
    """Copy the backend suites' figures (results/ann.json, results/pgvector.json) into latest.json
    as ``search.backends.<name>.<figure>``, each keyed by catalogue size."""
    path = RESULTS / "latest.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    backends = data.setdefault("search", {}).setdefault("backends", {})
    for name in ("ann", "pgvector"):
        source = RESULTS / f"{name}.json"
        if not source.exists():
            continue
        figures = json.loads(source.read_text())
        nested = figures.get("search", {}).get("backends", {}) if isinstance(figures.get("search"), dict) else {}
        for backend, values in nested.items():
            backends.setdefault(backend, {}).update(values)
        for key, value in figures.items():
            if key.startswith("search.backends."):
                backend, figure = key[len("search.backends.") :].split(".", 1)
                backends.setdefault(backend, {})[figure] = value
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path
