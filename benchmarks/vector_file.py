"""Reading a file of vectors (``visual_search_reindex --vectors``): seconds and peak memory by size.

A dump of ``images`` rows shaped as the demo's own (``demo_shop/data/vectors.json.xz``: its first row
with another checksum and a random 512-d unit vector each, then its whitening) is written to a temporary
folder as ``dumpdata`` writes it (``--format json`` and ``--format jsonl``), then read by
:class:`visual_search.vector_files.VectorFile` in a child process of its own, whose peak resident
memory (``ru_maxrss``) is that of the read: the process's Django set-up is measured before it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import lzma
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "demo_shop" / "data" / "vectors.json.xz"


def write(images: int, folder: Path) -> dict[str, Path]:
    """The dump in both formats; their paths by format."""
    rows = json.loads(lzma.decompress(SHIPPED.read_bytes()))
    template = next(row for row in rows if row["model"] == "visual_search.imageembedding")
    whitenings = [row for row in rows if row["model"] == "visual_search.whitening"]
    rng = np.random.default_rng(0)

    def unit() -> np.ndarray:  # as the network stores them
        vector = rng.standard_normal(512).astype(np.float32)
        return vector / np.linalg.norm(vector)

    paths = {"json": folder / "vectors.json", "jsonl": folder / "vectors.jsonl"}
    with open(paths["json"], "w") as listed, open(paths["jsonl"], "w") as lines:
        listed.write("[")
        for n in range(images):
            row = {"model": template["model"], "fields": dict(template["fields"])}
            row["fields"].update(
                object_id=str(n), result_id=str(n), checksum=hashlib.sha256(str(n).encode()).hexdigest(),
                vector=base64.b64encode(unit().tobytes()).decode(),
            )
            text = json.dumps(row)
            listed.write(text + ", ")
            lines.write(text + "\n")
        listed.write(", ".join(json.dumps(row) for row in whitenings) + "]")
        lines.write("".join(json.dumps(row) + "\n" for row in whitenings))
    return paths


def run(images: int = 100_000) -> dict:
    figures: dict = {"images": images}
    with tempfile.TemporaryDirectory() as scratch:
        for kind, path in write(images, Path(scratch)).items():
            figures[f"{kind}_file_mb"] = round(path.stat().st_size / 1e6, 1)
            child = subprocess.run(
                [sys.executable, "-m", "benchmarks.vector_file", str(path)],
                cwd=ROOT, env={**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "benchmarks.settings")},
                capture_output=True, text=True, check=True,
            )
            read = json.loads(child.stdout.strip().splitlines()[-1])
            figures.update({f"{kind}_{key}": value for key, value in read.items()})
            print(f"  {kind:5s} {figures[f'{kind}_file_mb']:8.1f} MB on disk: read in {read['read_s']:.1f} s, "
                  f"{read['vectors']} vectors kept, process at most {read['peak_mb']:.0f} MB (Django set up: {read['setup_mb']:.0f} MB)", flush=True)
    return figures


def _read(path: str) -> None:
    """In the child: read the file, print what it took as one JSON line."""
    import django

    django.setup()
    from visual_search.vector_files import VectorFile

    setup = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    vectors = VectorFile(path)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"read_s": round(seconds, 2), "vectors": len(vectors), "setup_mb": round(setup), "peak_mb": round(peak)}))


if __name__ == "__main__":
    _read(sys.argv[1])
