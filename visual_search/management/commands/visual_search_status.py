"""manage.py visual_search_status [--failed]"""

from __future__ import annotations

from django.core.management.base import BaseCommand

from ...embeddings.fingerprint import current_fingerprint, describe
from ...models import ImageEmbedding
from ...reindex import status_counts

COLUMNS = ("model", "objects", "ready", "pending", "failed", "stale", "missing")


class Command(BaseCommand):
    help = "Show, per registered model, how many images are ready, pending, failed, stale or missing."

    def add_arguments(self, parser):
        parser.add_argument("--failed", action="store_true", help="List each failed image with its reason.")

    def handle(self, *args, failed=False, **options):
        info = describe()
        self.stdout.write(f"Current fingerprint {current_fingerprint()}: {info['weights']}, {info['image_size']}px, {info['layer']}, {info['pooling']} pooling")
        rows = status_counts()
        if not rows:
            self.stdout.write("No model is registered: add one to VISUAL_SEARCH['MODELS'] or call visual_search.register().")
            return
        widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS]
        self.stdout.write("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)))
        for row in rows:
            self.stdout.write("  ".join(str(row[c]).ljust(w) for c, w in zip(COLUMNS, widths)))
        todo = sum(r["pending"] + r["stale"] + r["missing"] for r in rows)
        if todo:
            self.stdout.write(f"{todo} images need work: `manage.py visual_search_reindex --only missing,stale,pending`.")
        if failed:
            for row in ImageEmbedding.objects.filter(status="failed").select_related("content_type")[:500]:
                self.stdout.write(f"  {row.content_type.app_label}.{row.content_type.model} #{row.object_id}: {row.error}")
