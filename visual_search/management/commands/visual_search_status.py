"""manage.py visual_search_status [--failed]"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, no_translations
from django.utils import timezone

from ... import queue
from ...backends.rows import OUTGROWN, OUTGROWN_PLAIN_BELOW
from ...conf import settings
from ...embeddings.spec import EmbeddingSpec, settings_fingerprint
from ...indexing import MISSING_FROM_STORAGE
from ...models import ImageEmbedding
from ...reindex import status_counts
from ...serving import active_version, current_fingerprint
from ...versions import fingerprint_summary
from ...whitening import fit_due, outgrown, score_notes
from .. import explain_unmigrated

COLUMNS = ("model", "objects", "ready", "pending", "failed", "stale", "missing")


class Command(BaseCommand):
    help = "Show, per registered model, how many images are ready, pending, failed, stale or missing."

    def add_arguments(self, parser):
        parser.add_argument("--failed", action="store_true", help="List each failed image with its reason.")

    @no_translations  # English throughout, as the rest of its output, whatever LANGUAGE_CODE says
    @explain_unmigrated
    def handle(self, *args, failed=False, **options):
        spec = EmbeddingSpec.from_settings()
        info = spec.describe()
        version = active_version()
        if version is None:
            # Every part of the fingerprint: after an upgrade, the part that changed says why vectors are stale.
            views = spec.views
            self.stdout.write(
                f"Current fingerprint {current_fingerprint()}: {info['weights']}, {info['image_size']}px, {info['layer']}, "
                f"{info['pooling']} pooling, {len(views)} view{'s' if len(views) > 1 else ''} ({', '.join(views)})"
            )
        else:
            self.stdout.write(
                f"Current fingerprint {version.fingerprint}: model version #{version.pk} {version.label!r} "
                f"(adapted from {info['weights']}; the settings' pretrained model is {settings_fingerprint()})"
            )
        rows = status_counts()
        if not rows:
            self.stdout.write("No model is registered: add one to VISUAL_SEARCH['MODELS'] or call visual_search.register().")
            return
        widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in COLUMNS]
        self.stdout.write("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)))
        for row in rows:
            self.stdout.write("  ".join(str(row[c]).ljust(w) for c, w in zip(COLUMNS, widths)))
        todo = sum(r["pending"] + r["stale"] + r["missing"] for r in rows)
        celery = queue.use_celery()
        recent = self._recently_pending() if celery else 0
        if recent:
            todo -= recent
            images = "1 image has" if recent == 1 else f"{recent} images have"
            self.stdout.write(
                f"{images} been pending for less than SWEEP_AFTER_SECONDS ({settings.SWEEP_AFTER_SECONDS:g} s): "
                "queued for the Celery workers when they were saved, or waiting for the sweep (which queues "
                "those still pending after that); nothing to do but keep a worker running "
                f"(`{queue.worker_command()}`)."
            )
        if todo:
            images = "1 image needs" if todo == 1 else f"{todo} images need"
            if celery:
                self.stdout.write(
                    f"{images} work: the sweep queues it at its next run (CELERY_BEAT_SCHEDULE), or "
                    "`manage.py visual_search_reindex --async --only missing,stale,pending` queues it for the "
                    "workers now (without --async, this process does the work)."
                )
            else:
                self.stdout.write(f"{images} work: `manage.py visual_search_reindex --only missing,stale,pending`.")
        self._failed(sum(r["failed"] for r in rows), listed=failed, celery=celery)
        notes = score_notes()
        for model, text in notes:
            self.stdout.write(f"Scores of {model}: {text}")
        if fit_due():
            who = (
                "The Celery workers learn them after indexing, and the sweep does; "
                if celery
                else "Without Celery nothing learns them by itself: run this after adding products, or daily from cron: "
            )
            # Searches keep what was learned before until the new fit (search._policy); none yet: the default's.
            meanwhile = "searches use the ones learned before" if notes else "scores are the default calibration's"
            if outgrown():  # backends.rows.outgrown: learned from a catalogue a fraction of this one
                meanwhile = (f"no search states a confident match: the catalogue has grown to {OUTGROWN:g} times or more "
                             f"what they were learned from (learned from fewer than {OUTGROWN_PLAIN_BELOW} vectors, "
                             "the whitening is not applied either)")
            now = "`manage.py visual_search_reindex --only missing` learns them now."
            if celery and recent:  # learned now, from the part indexed so far, and again when the rest is done
                now = ("Leave it to them while images are pending: `manage.py visual_search_reindex --only missing` "
                       "would learn them now from the images indexed so far.")
            self.stdout.write(
                "The whitening and score calibration are due (none yet, or the catalogue changed since): until then "
                f"{meanwhile}. {who}{now}"
            )
        self._versions(stale=sum(r["stale"] for r in rows), pending=sum(r["pending"] for r in rows))
        if failed:
            for row in ImageEmbedding.objects.filter(status="failed", fingerprint=current_fingerprint()).select_related("content_type")[:500]:
                self.stdout.write(f"  {row.content_type.app_label}.{row.content_type.model} #{row.object_id}: {row.error}")

    def _failed(self, count: int, listed: bool, celery: bool) -> None:
        """Why failed images stay failed and what to do: nothing retries them by itself."""
        if not count:
            return
        images, them = ("1 image failed", "it") if count == 1 else (f"{count} images failed", "them")
        where = "listed below" if listed else "`manage.py visual_search_status --failed` lists why"
        self.stdout.write(
            f"{images}: {where}; nothing retries {them} by itself. Once the {'image' if count == 1 else 'images'} (or the "
            f"storage) {'is' if count == 1 else 'are'} fixed, `manage.py visual_search_reindex --only failed` does {them} again."
        )
        missing = ImageEmbedding.objects.filter(
            status=ImageEmbedding.Status.FAILED, fingerprint=current_fingerprint(), error__contains=MISSING_FROM_STORAGE
        ).count()
        if missing and celery:
            which = "It is" if count == 1 else f"{missing} of them {'is' if missing == 1 else 'are'}"
            self.stdout.write(
                f"{which} missing from storage: if the files are there for the "
                "web servers, the Celery workers do not read the same media storage (MEDIA_ROOT on a volume they share, "
                "or S3: docs/deployment.md)."
            )

    @staticmethod
    def _recently_pending() -> int:
        """Pending rows of the current fingerprint marked less than ``SWEEP_AFTER_SECONDS`` ago: a
        save queued them for the workers, or (a paused import) the sweep will; older ones need work."""
        recent = timezone.now() - timedelta(seconds=float(settings.SWEEP_AFTER_SECONDS))
        return ImageEmbedding.objects.filter(
            status=ImageEmbedding.Status.PENDING, fingerprint=current_fingerprint(), updated_at__gte=recent
        ).count()

    def _versions(self, stale: int, pending: int) -> None:
        """Rows of other fingerprints: versions being built, kept for a rollback, or stale. While
        ``stale`` images have no current vector, pruning is not offered: it would delete the rows
        that make them stale (0.1's after an upgrade), leaving them missing, which the upgrade's
        ``visual_search_reindex --only stale`` passes by. Nor while ``pending`` ones are computed:
        the former vectors are the way back (``"VIEWS": ["full"]`` keeps 0.1's) until they are."""
        table = fingerprint_summary()
        if len(table) < 2:
            return
        self.stdout.write("Vectors by model version:")
        columns = ("fingerprint", "version", "role", "ready", "pending", "failed")
        widths = [max(len(c), *(len(str(r[c])) for r in table)) for c in columns]
        self.stdout.write("  " + "  ".join(c.ljust(w) for c, w in zip(columns, widths)))
        for row in table:
            self.stdout.write("  " + "  ".join(str(row[c]).ljust(w) for c, w in zip(columns, widths)))
        if stale:
            images = "1 image has" if stale == 1 else f"{stale} images have"
            self.stdout.write(
                f"{images} only stale vectors: keep them until `manage.py visual_search_reindex --only stale` has "
                "recomputed them (`visual_search_versions prune` would leave those images missing, and `--only stale` "
                "would pass them by)."
            )
        elif not pending and any(r["role"] in ("kept", "stale") for r in table):
            self.stdout.write("Free the space of vectors no rollback needs with `manage.py visual_search_versions prune`.")
