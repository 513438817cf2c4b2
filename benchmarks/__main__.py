"""python -m benchmarks [embedding] [quality] [search] [ann] [training] [demo] [crop] [duplicates] [views] [admin] [vectors] [soak] [--minutes N] [--limit N] [--skip-seed] [--sizes 1000,10000] [--requests N] [--trained-version] [--ann-sizes 100000] [--admin-sizes 1000,20000] [--epochs N] [--time-limit S] [--blocks 4,5] [--curve] [--set OPTION=VALUE]

Prints what it measured and merges the figures into benchmarks/results/latest.json (the ANN
backend against the exact one: benchmarks/results/ann.json). ``ann``, ``training``, ``demo`` (the demo shop loaded and searched through its API), ``crop``
(searching a region of the photo), ``duplicates`` (DUPLICATE_THRESHOLD measured), ``views`` (cheaper and
costlier views than the default's four), ``admin`` (the staff's list pages at 1,000 and 20,000
products) and ``vectors`` (reading a file of vectors of ``--vector-images`` images) run only when named. ``soak``
(the production layout under load and faults: benchmarks/soak.py) runs only when named and alone,
and exits 1 when one of its invariants fails.
"""

from __future__ import annotations

import argparse
import json


def _option(item: str) -> tuple[str, object]:
    """``--set name=value``: the value as an int, else a float, else the string."""
    name, _, value = item.partition("=")
    for kind in (int, float):
        try:
            return name, kind(value)
        except ValueError:
            pass
    return name, value


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("suites", nargs="*", default=["embedding", "quality", "search"], choices=["embedding", "quality", "search", "ann", "training", "demo", "crop", "duplicates", "views", "admin", "vectors", "soak"])
    parser.add_argument("--limit", type=int, default=200, help="Embedding suite: N photos spread over the dataset (default 200; 0 = all 2,936).")
    parser.add_argument("--sizes", default="1000,10000,100000,1000000", help="Catalogue sizes for the search suite.")
    parser.add_argument("--requests", type=int, default=20, help="Search suite: photos posted to the endpoint per catalogue size (default 20; at most the 296 val photos).")
    parser.add_argument("--trained-version", action="store_true", help="Search suite: with a trained version of the default training options active (a distilled one: one pass per photo).")
    parser.add_argument("--ann-sizes", default="100000,1000000", help="Catalogue sizes for the ann suite.")
    parser.add_argument("--admin-sizes", default="1000,20000", help="Products for the admin suite.")
    parser.add_argument("--skip-seed", action="store_true", help="Skip the slow one-image-at-a-time baseline.")
    parser.add_argument("--epochs", type=int, help="Training suite: epochs (default: the product's).")
    parser.add_argument("--views", type=int, help="Training suite: augmented views per image (default: the product's).")
    parser.add_argument("--image-size", type=int, help="Training suite: input size of the adapted model (default: the product's).")
    parser.add_argument("--time-limit", type=float, help="Training suite: stop after the last epoch that fits in this many seconds.")
    parser.add_argument("--blocks", dest="trained_blocks", help="Training suite: VGG16 blocks trained: 4 (the default), 4,5 or 5.")
    parser.add_argument("--curve", action="store_true", help="Training suite: measure val P@1 after every epoch (each costs a forward pass).")
    parser.add_argument("--set", action="append", default=[], metavar="OPTION=VALUE", help="Training suite: any other TrainingOptions field, e.g. --set learning_rate=3e-4.")
    parser.add_argument("--methods", action="store_true", help="Quality suite: also the pooling and normalisation methods against the seed (VGG16 once more per image).")
    parser.add_argument("--vector-images", type=int, default=100_000, help="Vectors suite: rows in the file read (default 100,000).")
    parser.add_argument("--minutes", type=float, default=15, help="Soak suite: how long the load and faults last (CI: 2).")
    args = parser.parse_args()
    if "soak" in args.suites:  # its own services, processes and settings (benchmarks/soak_settings.py): run alone
        from . import soak

        raise SystemExit(soak.main(args.minutes))

    from .common import machine, save, setup_django

    setup_django()
    print(f"Machine: {json.dumps(machine())}")
    for suite in args.suites:
        if suite == "embedding":
            from . import embedding

            figures = embedding.run(args.limit, args.skip_seed)
        elif suite == "quality":
            from django.conf import settings

            from . import levers, quality

            figures = {"levers": levers.run()}
            if args.methods:
                figures.update(quality.run(settings.VISUAL_SEARCH["WEIGHTS"]))
        elif suite == "training":
            from . import training

            overrides = dict(_option(item) for item in args.set)
            from visual_search.embeddings.adapted import parse_blocks

            blocks = parse_blocks(args.trained_blocks) if args.trained_blocks else None
            figures = training.run(args.epochs, args.views, args.image_size, args.time_limit, blocks, args.curve, **overrides)
        elif suite == "crop":
            from . import crop

            figures = crop.run()
        elif suite == "duplicates":
            from . import duplicates

            figures = duplicates.run()
        elif suite == "admin":
            from . import admin

            figures = admin.run([int(n) for n in args.admin_sizes.split(",")])
        elif suite == "views":
            from . import views

            figures = views.run()
        elif suite == "vectors":
            from . import vector_file

            figures = vector_file.run(args.vector_images)
        elif suite == "demo":
            from . import demo_api

            figures = demo_api.run()
        elif suite == "ann":
            from . import backends_ann

            figures = backends_ann.run([int(n) for n in args.ann_sizes.split(",")])
            path = backends_ann.save(figures)
            continue  # printed as measured
        else:
            from . import search

            sizes = [int(n) for n in args.sizes.split(",")]
            if args.trained_version:
                # A trained version of the default training options' network serves (weights
                # untrained: the time does not depend on them); a distilled one is one pass.
                from .embedding import adapted_version

                version = adapted_version()
                try:
                    figures = search.run(sizes, endpoint_queries=args.requests)
                    figures["trained_version"] = {k: version.config[k] for k in ("image_size", "trained_blocks", "dims")}
                finally:
                    from visual_search.versions import forget_serving_version

                    version.delete()
                    forget_serving_version()
                suite = "search-trained-version"
            else:
                figures = search.run(sizes, endpoint_queries=args.requests)
        path = save(suite, figures)
        print(f"\n{suite}:")
        for key, value in figures.items():
            print(f"  {key:32s} {value:.2f}" if isinstance(value, float) else f"  {key:32s} {value}")
    from .common import merge_backends

    merge_backends()  # search.backends.<name> from the ann and pgvector suites, into latest.json
    print(f"\nWritten to {path}")


if __name__ == "__main__":
    main()
