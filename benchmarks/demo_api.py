"""The demo shop as a customer meets it: its catalogue loaded as ``load_demo_catalogue`` loads it,
then customers' photos it has never seen searched through the API, one request each.

Runs the demo's own settings (``demo_shop.settings``) in a child process, on a fresh SQLite file
and media folder under a temporary directory, so nothing of a local demo is touched. The queries are
the dataset's ``val`` photos that the demo does not ship (the demo keeps 60 as sample photos for its
pages): a right answer is a first result whose name is the photo's product. Reports P@1, hit@5, the
calibration error of the first result's score, the mean score of right and of wrong first results,
and how often the answer was ``confident`` and then right.

    python -m benchmarks demo [--limit N]      (N photos, spread over the products; 0 = all)
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MARK = "DEMO-FIGURES "
DATASET = Path(os.environ.get("GROCERY_STORE", ROOT.parent / "shared" / "datasets" / "grocery_store"))


def run(limit: int = 0) -> dict:
    """Load the demo in a child process with its own settings and measure it; the figures."""
    with tempfile.TemporaryDirectory(prefix="vs-demo-") as scratch:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "demo_shop.settings",
            "DEMO_SHOP_DB": str(Path(scratch) / "db.sqlite3"),
            "DEMO_SHOP_MEDIA": str(Path(scratch) / "media"),
            "TF_CPP_MIN_LOG_LEVEL": "3",
        }
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.demo_api", "--child", str(limit)], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, text=True, check=True,
        )
    figures = json.loads(next(line for line in child.stdout.splitlines() if line.startswith(MARK))[len(MARK):])
    return figures


def _child(limit: int) -> None:
    import django

    django.setup()
    import numpy as np
    from django.core.management import call_command
    from django.test import Client

    from django.conf import settings

    from visual_search import ranking

    # One client sends every photo: the shop's per-client limit is not what is measured here.
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": None}
    started = time.perf_counter()
    call_command("migrate", verbosity=0)
    call_command("load_demo_catalogue", verbosity=1)
    loaded = time.perf_counter() - started
    shipped = {row["file"] for row in csv.DictReader(open(ROOT / "demo_shop" / "data" / "grocery_store" / "photos.csv"))}
    with open(DATASET / "photos.csv") as handle:
        photos = [r for r in csv.DictReader(handle) if r["split"] == "val" and r["file"] not in shipped]
    if limit and limit < len(photos):
        photos = [photos[round(n * len(photos) / limit)] for n in range(limit)]
    client = Client()
    top, right, hit5, confident, times = [], [], [], [], []
    for n, photo in enumerate(photos):
        with open(DATASET / photo["file"], "rb") as image:
            began = time.perf_counter()
            answer = client.post("/api/visual-search/search/", {"image": image, "limit": 5})
            times.append(time.perf_counter() - began)
        assert answer.status_code == 200, answer.content
        body = answer.json()
        names = [r["name"] for r in body["results"]]
        wanted = photo["product"].replace("-", " ")
        top.append(body["results"][0]["score"] if names else 0.0)
        right.append(bool(names) and names[0] == wanted)
        hit5.append(wanted in names[:5])
        confident.append(bool(body["confident"]))
        print(f"\r  searched {n + 1}/{len(photos)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    top, right, confident = np.asarray(top), np.asarray(right), np.asarray(confident)
    figures = {
        "queries": len(photos),
        "p_at_1": round(float(right.mean()), 4),
        "hit_at_5": round(float(np.mean(hit5)), 4),
        "top1_calibration_error": round(ranking.calibration_error(top, right), 4),
        "mean_score_right": round(float(top[right].mean()), 4) if right.any() else None,
        "mean_score_wrong": round(float(top[~right].mean()), 4) if (~right).any() else None,
        "confident_share": round(float(confident.mean()), 4),
        "right_when_confident": round(float(right[confident].mean()), 4) if confident.any() else None,
        "right_when_unsure": round(float(right[~confident].mean()), 4) if (~confident).any() else None,
        "request_ms_p50": round(1000 * float(np.median(times)), 1),
        "load_demo_catalogue_s": round(loaded, 1),
    }
    print(MARK + json.dumps(figures))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        _child(int(sys.argv[2]))
    else:
        print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 0), indent=2))
