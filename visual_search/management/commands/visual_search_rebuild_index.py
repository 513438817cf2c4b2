"""manage.py visual_search_rebuild_index [--backend ALIAS] [--model app_label.Model]

Switching backends: after a change of ``VISUAL_SEARCH["BACKENDS"]``, this fills the new backend
from the vectors already stored in the ``ImageEmbedding`` rows. Nothing goes through VGG16 again.
"""

from __future__ import annotations


from django.contrib.contenttypes.models import ContentType
from django.core.management.base import BaseCommand, CommandError, no_translations

from ...backends import get_backend
from ...conf import settings
from ...models import ImageEmbedding
from ...serving import current_fingerprint, kept_fingerprints
from .. import counted, explain_unmigrated, progress, searchable_model


class Command(BaseCommand):
    help = "Fill a vector index backend from the stored embeddings (no embedding is recomputed)."

    def add_arguments(self, parser):
        parser.add_argument("--backend", default="default", help="Alias in VISUAL_SEARCH['BACKENDS'] (default: 'default').")
        parser.add_argument(
            "--model", help="Only the vectors that stand for this searchable model, as app_label.ModelName (default: all)."
        )

    @no_translations  # English throughout, as the rest of its output, whatever LANGUAGE_CODE says
    @explain_unmigrated
    def handle(self, *args, backend="default", model=None, verbosity=1, **options):
        if backend not in settings.BACKENDS:
            known = ", ".join(repr(a) for a in settings.BACKENDS) or "none"
            raise CommandError(f"No backend {backend!r} in VISUAL_SEARCH['BACKENDS'] (configured: {known}).")
        index = get_backend(backend)
        # The vectors in use and those a switch or rollback would need (kept model versions).
        rows = ImageEmbedding.objects.filter(status=ImageEmbedding.Status.READY, fingerprint__in=kept_fingerprints() | {current_fingerprint()})
        if model:
            searched = searchable_model(self, model, "rebuilding {model}'s vectors")
            model = searched._meta.label
            rows = rows.filter(result_type=ContentType.objects.get_for_model(searched))
        total = rows.count()
        name = f"{backend!r} ({type(index).__module__}.{type(index).__name__})"
        with progress.bar(self, desc="Filling", unit="vec", total=total, show=verbosity > 0) as bar:
            if model and index.reset_drops_everything:
                # Only this model's vectors are rebuilt: the other models' stay as they are.
                count = 0
                pairs = rows.values_list("result_type_id", "fingerprint").distinct()
                for result_type_id, fingerprint in sorted(set(pairs)):
                    index.whitening_changed(result_type_id, fingerprint)
                    n = rows.filter(result_type_id=result_type_id, fingerprint=fingerprint).count()
                    count += n
                    bar.update(n)
            else:
                try:
                    count = index.rebuild(rows, progress=bar.update)
                except OSError as exc:  # a full disk, a read-only folder: the index file, not the vectors
                    raise CommandError(
                        f"Could not write the index of backend {name}: {exc}. The vectors are stored in the "
                        "database, so nothing stored was lost: free disk space (or fix the folder's permissions) "
                        "and run this command again."
                    ) from exc
        what = "read from the database on each search" if index.reads_rows else "filled"
        self.stdout.write(
            self.style.SUCCESS(
                f"Backend {name} {what}: {counted(count, 'stored vector')}{f' of {model}' if model else ''}. "
                "No embedding was recomputed."
            )
        )
        if not total:  # a fresh install, or run before the reindex: "filled: 0" said nothing of what to do
            self.stdout.write(
                f"No vector of {model or 'any model'} is stored yet: `manage.py visual_search_reindex` computes them; "
                "`manage.py visual_search_status` shows the state of each model."
            )
