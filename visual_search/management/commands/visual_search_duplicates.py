"""manage.py visual_search_duplicates [--threshold T] [--model app.Model] [--include-dismissed]"""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand, CommandError, no_translations

from ...conf import settings
from ...duplicates import Pair, find_pairs, result_object
from .. import counted, explain_unmigrated, searchable_model
from ..progress import Followed

COLUMNS = ("product", "image", "other product", "other image", "similarity", "note")


class Command(BaseCommand):
    help = (
        "List pairs of images of two different products that look the same: the same file, or a copy "
        "(resized, re-compressed, cropped, mirrored) at least THRESHOLD similar. Compares every image "
        "of the current model. Exit status: 0 when none is found, 1 when pairs are found (for scripts)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--threshold", type=float,
            help="Cosine similarity from 0 to 1 (default: VISUAL_SEARCH['DUPLICATE_THRESHOLD']; same files only when that is None).",
        )
        parser.add_argument("--model", help="Only the images of this searchable model, app_label.ModelName (default: all).")
        parser.add_argument("--include-dismissed", action="store_true", help="Also list the pairs staff dismissed.")

    @no_translations  # English throughout, as the rest of its output, whatever LANGUAGE_CODE says
    @explain_unmigrated
    def handle(self, *args, threshold=None, model=None, include_dismissed=False, **options):
        if threshold is not None and not 0 <= threshold <= 1:
            raise CommandError("--threshold must be from 0 to 1.")
        result_model = None
        if model:
            result_model = searchable_model(self, model, "comparing {model}'s images")
        compared = {"images": 0}
        with Followed(self, desc="Comparing images", show=options.get("verbosity", 1) > 0) as progress:

            def follow(done: int, total: int) -> None:
                compared["images"] = total
                progress(done, total)

            pairs = find_pairs(threshold, result_model=result_model, include_dismissed=include_dismissed, progress=follow)
        limit = threshold if threshold is not None else settings.DUPLICATE_THRESHOLD
        if not pairs:
            self.stdout.write(f"No possible duplicate images (threshold {limit}).")
            if not compared["images"]:  # not indexed yet: "no duplicates" alone read as a clean catalogue
                self.stdout.write(
                    f"No image of {result_model._meta.label if result_model else 'any model'} has a vector of the current "
                    "model yet, so none was compared: `manage.py visual_search_reindex` computes them "
                    "(`manage.py visual_search_status` shows the state of each model)."
                )
            return
        self._table(pairs)
        self.stdout.write(f"{counted(len(pairs), 'possible duplicate pair')} (threshold {limit}).")
        sys.exit(1)

    def _table(self, pairs: list[Pair]) -> None:
        lines = [
            (
                _name(pair.first), pair.first.source_name, _name(pair.second), pair.second.source_name, f"{pair.score:.3f}",
                ", ".join(filter(None, ["same file" if pair.same_file else "", "dismissed" if pair.dismissed else ""])),
            )
            for pair in pairs
        ]
        widths = [max(len(c), *(len(line[n]) for line in lines)) for n, c in enumerate(COLUMNS)]
        self.stdout.write("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)).rstrip())
        for line in lines:
            self.stdout.write("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip())


def _name(row) -> str:
    obj = result_object(row)
    label = row.result_type.model_class()._meta.verbose_name if row.result_type.model_class() else row.result_type.model
    return f"{label} #{row.result_id}" + (f" {obj}" if obj is not None else "")
