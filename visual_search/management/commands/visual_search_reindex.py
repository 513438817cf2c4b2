"""manage.py visual_search_reindex [app_label.Model] [--only missing,stale,failed] [--async] [--force] [--vectors FILE]"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, no_translations

from ...exceptions import WeightsUnavailable
from ...queue import CELERY_APP_MISSING, celery_app_missing, schedule_fit, use_celery
from ...registry import get_registrations
from ...reindex import SELECTIONS, count_pks, registrations_named, reindex
from ...serving import indexing_fingerprints
from ...vector_files import UnreadableVectorFile, VectorFile
from ...whitening import fit_due, most_images_refitted
from .. import counted, explain_unmigrated, model_from_label, progress


class Command(BaseCommand):
    help = "Compute visual search embeddings for registered models, with a progress bar, or queue them on Celery."

    def add_arguments(self, parser):
        parser.add_argument(
            "model", nargs="?",
            help="Only this model, as app_label.ModelName (default: every registered model): its own images and those "
            "of models registered with it as their result (a product's gallery).",
        )
        parser.add_argument(
            "--only",
            default="",
            help=f"Comma-separated: {', '.join(SELECTIONS)}. Only objects whose embedding is in that state (default: all).",
        )
        parser.add_argument("--async", dest="asynchronous", action="store_true", help="Queue Celery tasks instead of working here.")
        parser.add_argument("--force", action="store_true", help="Recompute even images whose bytes did not change.")
        parser.add_argument(
            "--vectors", metavar="FILE",
            help="Take the vectors in FILE (a dumpdata of this package's rows, made where they were computed) for the images "
            "whose bytes and model version match, instead of computing them; compute the rest. Not with --async.",
        )

    @no_translations  # English throughout, as the rest of its output, whatever LANGUAGE_CODE says
    @explain_unmigrated
    def handle(self, *args, model=None, only="", asynchronous=False, force=False, vectors=None, verbosity=1, **options):
        model_class = self._model(model)
        selection = [s.strip() for s in only.split(",") if s.strip()] or None
        if selection and set(selection) - set(SELECTIONS):
            raise CommandError(f"--only takes {', '.join(SELECTIONS)}; got {only!r}.")
        if vectors and asynchronous:
            raise CommandError("--vectors reads its file in this process: run it without --async (the Celery workers do not see the file).")
        total = count_pks(model_class, selection)
        self.vectors = self._vectors(vectors, verbosity) if vectors and total else None
        if total == 0 and asynchronous and use_celery():
            self._fit_on_workers()
            return
        if total == 0:
            # Still learn the whitening and score calibration where they are due (none yet, the
            # catalogue grew, the ranking settings changed, fitted by an older release).
            with self._fit_bar(verbosity) as fit_progress:
                counts = reindex(
                    model_class, only=selection, asynchronous=False, before_fit=self._fitting if verbosity > 0 else None,
                    fit_progress=fit_progress,
                )
            self.stdout.write("Nothing to index. `manage.py visual_search_status` shows the state of each model.")
            if counts["whitened"]:
                self.stdout.write(self.style.SUCCESS(f"Whitening and score calibration learned again for {counted(counts['whitened'], 'model')}."))
            return
        if asynchronous:
            try:
                counts = reindex(model_class, only=selection, asynchronous=True, force=force)
            except KeyboardInterrupt:
                # Ctrl-C while sending: kombu's traceback said nothing useful. What was sent is the
                # workers'; rows marked pending are the sweep's; the same command sends the rest.
                raise CommandError(
                    "Interrupted while queueing. The tasks sent are the workers' and images marked pending are "
                    "queued again by the sweep; run `manage.py visual_search_reindex --async --only "
                    "missing,stale,pending` to queue the rest now.", returncode=130,
                ) from None
            queued = counts.get("queued", 0)
            if queued < total:  # a cron job must see it: exit status 1
                why = CELERY_APP_MISSING if celery_app_missing() else "Is the broker running? The log says why."
                left = total - queued
                raise CommandError(
                    f"Queued {queued} of {counted(total, 'image')} for the Celery workers; {counted(left, 'image')} "
                    f"{'stays' if left == 1 else 'stay'} pending for the sweep. {why}"
                )
            self.stdout.write(self.style.SUCCESS(f"Queued {queued} of {counted(total, 'image')} for the Celery workers."))
            self.stdout.write("Follow progress with `manage.py visual_search_status`.")
            return
        self.done = 0
        try:
            counts = self._run(model_class, selection, force, total, verbosity)
        except KeyboardInterrupt:
            # Ctrl-C: TensorFlow's traceback said nothing useful. Each batch commits whole, so what
            # was done is kept and the rest is still selected by the same command.
            again = "--only missing,stale,pending" if force or not selection else f"--only {','.join(selection)}"
            raise CommandError(
                f"Interrupted after {self.done} of {counted(total, 'image')}. Nothing is half-written: run "
                f"`manage.py visual_search_reindex {again}` to go on with the rest.", returncode=130,
            ) from None
        except WeightsUnavailable as exc:
            raise CommandError(f"{exc} Nothing was lost: the images stay pending; run this command again once the weights load.") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Embedded {counts['embedded']}, unchanged {counts['unchanged']}, failed {counts['failed']}, "
                f"removed {counts['removed']}."
            )
        )
        if self.vectors is not None:
            self.stdout.write(
                f"Of those embedded, {counts['taken']} took their vector from {self.vectors.path} and "
                f"{counts['embedded'] - counts['taken']} went through the network here; "
                f"{counted(counts['whitenings_taken'], 'whitening')} taken from it."
            )
        if counts.get("whitened"):
            self.stdout.write(f"Whitening and score calibration learned again for {counted(counts['whitened'], 'model')}.")
        if counts["failed"]:
            self.stdout.write("See why with `manage.py visual_search_status --failed`; fix the images, then run `--only failed`.")
        if counts["retry"]:
            raise CommandError(
                f"{counted(counts['retry'], 'image')} could not be read (storage unreachable?); run again with --only pending."
            )

    def _model(self, label):
        if not label:
            return None
        model = model_from_label(label)
        if not registrations_named(model):
            registered = ", ".join(
                r.model._meta.label + (f" (result {r.result_model._meta.label})" if r.result_model is not r.model else "")
                for r in get_registrations()
            )
            raise CommandError(
                f"{model._meta.label} is not registered with visual search (VISUAL_SEARCH['MODELS']), nor the result of a "
                f"registration. Registered: {registered or 'nothing yet'}."
            )
        return model

    def _run(self, model, selection, force, total, verbosity):
        with progress.bar(self, desc="Embedding", unit="img", total=total, show=verbosity > 0) as bar, self._fit_bar(verbosity) as fit_progress:
            def advance(images: int = 1) -> None:
                self.done += images
                bar.update(images)

            def fitting() -> None:
                bar.close()
                self._fitting()

            return reindex(
                model, only=selection, asynchronous=False, force=force, progress=advance,
                before_fit=fitting if verbosity > 0 else None, fit_progress=fit_progress, vectors=self.vectors,
            )

    def _vectors(self, path: str, verbosity: int) -> VectorFile:
        """The file of ``--vectors``, read, and what it holds for this shop said."""
        wanted = indexing_fingerprints()
        try:
            vectors = VectorFile(path, fingerprints=wanted)
        except UnreadableVectorFile as exc:
            raise CommandError(str(exc)) from None
        usable = len(vectors)
        if verbosity > 0 and not usable:
            self.stdout.write(
                f"{path} holds {counted(sum(vectors.found.values()), 'vector')} of model version {', '.join(vectors.fingerprints) or 'none'}, "
                f"none of this shop's ({', '.join(sorted(wanted))}: other weights, image size or views): every image is computed here."
            )
        elif verbosity > 0:
            self.stdout.write(f"{path}: {counted(usable, 'vector')} of this model version, taken for images of the same bytes.")
        if vectors.unsound:
            # Said even at -v0: a damaged file is worth knowing about; nothing of it is stored.
            self.stderr.write(
                f"{path}: {counted(vectors.unsound, 'vector')} of this model version "
                f"{'is not a unit vector' if vectors.unsound == 1 else 'are not unit vectors'} of finite numbers "
                "(a damaged file?): not taken; those images are computed here."
            )
        return vectors

    def _fit_bar(self, verbosity: int) -> progress.Followed:
        return progress.fit_bar(self, show=verbosity > 0)

    def _fit_on_workers(self) -> None:
        """``--async`` with nothing to queue: a due whitening fit goes to the workers too, which put it
        off until the images still pending are done. Learned here it took this process minutes, from
        the few vectors recomputed so far (after an upgrade the workers' start-up sweep has queued every
        stale image before the upgrade's ``--only stale --async`` runs)."""
        self.stdout.write("Nothing to queue. `manage.py visual_search_status` shows the state of each model.")
        if fit_due():
            where = "queued for the Celery workers" if schedule_fit() else "already queued for the Celery workers, or they could not be reached (the log says)"
            self.stdout.write(f"The whitening and score calibration are due: {where}; they learn them once no image is pending.")

    def _fitting(self) -> None:
        """Said before the whitening and calibration fits, while customers' views of the images go
        through VGG16 again (their bar follows): a minute or two on a CPU with AMX, about five at
        224 px on two cores of an AMD EPYC without AVX-512 (the demo, 2026-12-06)."""
        self.stdout.write(
            f"Learning the whitening and score calibration: customer-like views of up to {most_images_refitted()} images "
            "go through the network again, about as long as embedding as many took above..."
        )
        self.stdout.flush()
