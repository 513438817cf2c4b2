"""A long reindex's rate: python -m benchmarks.reindex_steady [--images 1000] [--runtime openvino-int8] [--trained-version] [--profile]

``embedding`` times 200 images, where what a process pays once (the first batch decoded before any
overlap, a runtime's first pass at each batch shape, the whitening fitted at the end) is a tenth of
the time or more for the fastest networks. This suite first reindexes 40 images (loading and
warming every shape), then times ``--images`` photos spread over the dataset through the same path
(``visual_search_reindex`` in-process: decode, network, store, duplicate check). ``--trained-version``
serves a trained version of the default training options (one pass an image; untrained weights:
the time does not depend on their values, but such a head finds every image alike, so nearly every
image is flagged a possible duplicate and written twice). ``--profile`` prints where the time went.
Measure on a quiet machine; nothing is written to the results files.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats

from . import embedding
from .common import machine, photo_rows, setup_django


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--runtime", default="tensorflow", choices=["tensorflow", "openvino", "openvino-int8"])
    parser.add_argument("--trained-version", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    setup_django()
    rows = photo_rows()
    rows = rows[:: max(1, len(rows) // args.images)][: args.images]
    version = embedding.adapted_version() if args.trained_version else None
    try:
        embedding.reindex_throughput(rows[:40], "auto", args.runtime)
        profile = cProfile.Profile() if args.profile else None
        if profile:
            profile.enable()
        rate = embedding.reindex_throughput(rows, "auto", args.runtime)
        if profile:
            profile.disable()
            pstats.Stats(profile).sort_stats("cumulative").print_stats(30)
    finally:
        if version is not None:
            version.delete()
    print(f"Machine: {machine()}")
    network = "a trained version (one pass)" if version else "the default network (its views)"
    print(f"reindex, {network}, {args.runtime}: {len(rows)} images at {rate:.1f} img/s")


if __name__ == "__main__":
    main()
