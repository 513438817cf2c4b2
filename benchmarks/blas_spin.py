"""Does a search's scan slow the next customer photo? python -m benchmarks.blas_spin [--photos 30]

One photo is embedded ``--photos`` times, each time just after a matrix-vector product over a
matrix of 0 to 100 MB (100,000 whitened vectors are 51 MB), computed three ways:

- ``blas``: NumPy's ``@``, which calls OpenBLAS with every core;
- ``blas, 1 thread``: the same in a process started with ``OPENBLAS_NUM_THREADS=1``;
- ``einsum``: NumPy's own loop, what ``ranking.ArraySpace.nearest`` does since it was measured here.

It prints the photo's p50 and the scan's. OpenBLAS's threads keep spinning for a while after a
product, on the cores the network's next pass needs (docs/performance.md, "The scan without BLAS
threads"). The runtime and views follow the benchmarks' settings: ``VISUAL_SEARCH_RUNTIME`` and
``VISUAL_SEARCH_QUERY_VIEWS`` (``openvino-int8`` and ``full`` by default here, the fastest photo).
Measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SIZES_MB = (0, 8, 16, 24, 51, 100)


def measure(way: str, photos: int) -> dict:
    """``{size in MB: (photo p50 ms, scan p50 ms)}`` in this process."""
    import numpy as np

    from .common import dataset, photo_rows, setup_django

    setup_django()
    from visual_search.serving import embed_image, get_extractor

    files = [(dataset() / r["file"]).read_bytes() for r in photo_rows("val")[:10]]
    get_extractor()
    for data in files[:3]:
        embed_image(data)  # warm-up
    rng = np.random.default_rng(0)
    query = rng.standard_normal(128, dtype=np.float32)
    figures = {}
    for size in SIZES_MB:
        matrix = rng.standard_normal((size * 2**20 // 512, 128), dtype=np.float32)
        photo, scan = [], []
        for n in range(photos):
            if size:
                start = time.perf_counter()
                np.einsum("ij,j->i", matrix, query) if way == "einsum" else matrix @ query
                scan.append(time.perf_counter() - start)
            start = time.perf_counter()
            embed_image(files[n % len(files)])
            photo.append(time.perf_counter() - start)
        figures[size] = (1000 * statistics.median(photo), 1000 * statistics.median(scan) if scan else None)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.blas_spin", description=__doc__)
    parser.add_argument("--photos", type=int, default=30, help="Photos embedded after each size of scan (default 30).")
    parser.add_argument("--way", help=argparse.SUPPRESS)  # one way, in a child process: prints JSON
    args = parser.parse_args()
    os.environ.setdefault("VISUAL_SEARCH_RUNTIME", "openvino-int8")
    os.environ.setdefault("VISUAL_SEARCH_QUERY_VIEWS", "full")
    if args.way:
        print(json.dumps(measure(args.way, args.photos)))
        return
    ways = {"blas": {}, "blas, 1 thread": {"OPENBLAS_NUM_THREADS": "1"}, "einsum": {}}
    results = {}
    for name, env in ways.items():
        way = "einsum" if name == "einsum" else "blas"
        child = subprocess.run(
            [sys.executable, "-m", "benchmarks.blas_spin", "--way", way, "--photos", str(args.photos)],
            env={**os.environ, **env}, capture_output=True, text=True, check=True,
        )
        results[name] = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"runtime {os.environ['VISUAL_SEARCH_RUNTIME']}, query views {os.environ['VISUAL_SEARCH_QUERY_VIEWS']}, "
          f"{args.photos} photos after each scan; photo p50 (scan p50), ms")
    print(f"  {'scan of':>8s}" + "".join(f" {name:>20s}" for name in ways))
    for size in SIZES_MB:
        cells = []
        for name in ways:
            photo, scan = results[name][str(size)]
            cells.append(f"{photo:6.1f}" + (f" ({scan:5.2f})" if scan is not None else " " * 8))
        print(f"  {size:>5d} MB" + "".join(f" {cell:>20s}" for cell in cells), flush=True)


if __name__ == "__main__":
    main()
