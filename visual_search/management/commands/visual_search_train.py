"""manage.py visual_search_train [app_label.Model] [--epochs N] [--seed N] [--async] [--activate]"""

from __future__ import annotations

import argparse
import signal

from django.core.management.base import BaseCommand, CommandError, no_translations

from ... import queue, versions
from ...embeddings.adapted import parse_blocks
from ...models import ModelVersion
from ...training.jobs import run_training, start_training
from .. import counted, explain_unmigrated, progress, searchable_model

# (description, unit) per stage; measuring is one pass over the held-out images (an empty unit read "5.00s/]").
STAGES = {"features": ("Reading images", "img"), "training": ("Training", "step"), "evaluating": ("Measuring", "pass")}


def _blocks(value: str) -> list[int]:
    try:
        return parse_blocks(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r}: use 4, 4,5 or 5.") from exc


class Command(BaseCommand):
    help = (
        "Train an embedding adapted to the shop's own images (same-product and same-category "
        "supervision), measure it on held-out images and save it as a new model version. Search "
        "is unchanged until the version is activated (visual_search_versions activate ID)."
    )

    def add_arguments(self, parser):
        parser.add_argument("model", nargs="?", help="The result model to train on, as app_label.ModelName (a gallery model: its product's; default: API_MODEL or the first registered).")
        parser.add_argument(
            "--objective", choices=["distil", "classify"],
            help="distil (default): one pass learns the vector the model in use gives from all its views, "
            "for faster searches (needs its stored vectors); classify: learn to tell the products apart.",
        )
        parser.add_argument("--epochs", type=int, help="Passes over the training images (default: distilling, enough to see about 8,000 images and at least 3; classifying, 8).")
        parser.add_argument("--seed", type=int, help="Seed of the held-out split, augmentation and initialisation (default 0).")
        parser.add_argument("--image-size", type=int, help="Input size of the adapted model (default: IMAGE_SIZE distilling, 160 classifying).")
        parser.add_argument("--dims", type=int, help="Size of the adapted vectors when classifying (default 256; a distilled model keeps 512).")
        parser.add_argument("--held-out", type=float, help="Share of each product's images kept out of training to measure (default 0.2).")
        parser.add_argument(
            "--blocks", dest="trained_blocks", type=_blocks,
            help="VGG16 blocks to train: 4 (default: block 4, pooled, block 5 dropped), 4,5 or 5.",
        )
        parser.add_argument("--views", dest="augmented_views", type=int, help="Augmented views per training image (default 0 distilling, 2 classifying).")
        parser.add_argument("--time-limit", type=float, help="Stop after the last epoch that fits in this many seconds (default: run every epoch).")
        parser.add_argument("--async", dest="asynchronous", action="store_true", help="Train on a Celery worker and return at once (without Celery: train here, as without --async).")
        parser.add_argument(
            "--activate", action="store_true",
            help="When trained, and when its held-out figures beat the model in use, compute every image's vector with it and switch search to it.",
        )
        parser.add_argument("--force", action="store_true", help="With --activate: switch even when the figures are not better.")

    @no_translations  # English throughout, as the rest of its output, whatever LANGUAGE_CODE says
    @explain_unmigrated
    def handle(self, *args, model=None, asynchronous=False, activate=False, force=False, verbosity=1, **options):
        label = self._model(model)
        keys = ("objective", "epochs", "seed", "image_size", "dims", "held_out", "augmented_views", "time_limit", "trained_blocks")
        chosen = {k: options[k] for k in keys if options.get(k) is not None}
        if asynchronous:
            if activate:
                raise CommandError("--activate waits for training to end; leave out --async, or activate later.")
            if queue.use_celery():
                version = start_training(label, **chosen)
                self.stdout.write(self.style.SUCCESS(f"Training version {version.pk} started in the background."))
                self.stdout.write("Follow it with `manage.py visual_search_versions list` or in the admin (Visual search > Trained model versions).")
                return
            # Without Celery, start_training's background thread would end with this command's process
            # at once, and leave a version "training" that nothing trains: train here instead, as
            # `visual_search_versions activate --async` computes here without Celery.
            self.stdout.write("No Celery broker, so no worker to train on: training here, in this process (Ctrl-C stops it).")
        version = ModelVersion.objects.create(
            label="Adapted", status=ModelVersion.Status.TRAINING, config={"model": label, "options": chosen}
        )
        version.label = f"Adapted #{version.pk}"
        version.save(update_fields=["label"])
        interrupted = {"flag": False}
        previous = signal.signal(signal.SIGINT, lambda *a: interrupted.__setitem__("flag", True))
        bars = _Bars(self, verbosity > 0)
        try:
            version = run_training(version.pk, progress=bars.update, interrupted=lambda: interrupted["flag"])
        finally:
            bars.close()
            signal.signal(signal.SIGINT, previous)
        if version.status == ModelVersion.Status.CANCELLED:
            self.stdout.write(self.style.WARNING(f"Training of version {version.pk} stopped; nothing was saved and search is unchanged."))
            return
        if version.status != ModelVersion.Status.TRAINED:
            raise CommandError(f"Training failed: {version.error}")
        self._report(version)
        if activate:
            try:
                with progress.Followed(self, desc="Computing vectors", show=verbosity > 0) as bar:
                    versions.activate(version, progress=bar, force=force)
            except versions.VersionError as exc:
                raise CommandError(f"Version {version.pk} is trained and kept, but search is unchanged. {exc}") from exc
            self.stdout.write(self.style.SUCCESS(f"Search now uses version {version.pk}. Roll back with `manage.py visual_search_versions rollback`."))
        else:
            self.stdout.write(f"Search is unchanged. Switch to it with `manage.py visual_search_versions activate {version.pk}`.")

    def _report(self, version):
        metrics = version.metrics
        before, after = metrics.get("before", {}), metrics.get("after", {})
        self.stdout.write(self.style.SUCCESS(
            f"Trained version {version.pk} ({version.fingerprint}) on {counted(metrics['training_images'], 'image')} of "
            f"{counted(metrics['products'], 'product')} in {metrics['seconds']:.0f} s ({counted(metrics['epochs_run'], 'epoch')})."
        ))
        self.stdout.write(f"Measured on {counted(metrics['held_out_images'], 'held-out image')} (searched among the training images):")
        for key, name in (("p_at_1", "product precision@1"), ("p_at_10", "product precision@10"), ("category_p_at_1", "category precision@1")):
            if key in after:
                old = before.get(key)
                self.stdout.write(f"  {name:<22} {'-' if old is None else f'{old:.3f}'} -> {after[key]:.3f}")
            if key == "p_at_1" and metrics.get("difference"):
                difference = metrics["difference"]
                verdict = "within the noise" if difference["within_noise"] else "more than the noise"
                self.stdout.write(f"  {'  difference':<22} {difference['p_at_1']:+.3f}, one standard error "
                                  f"{difference['standard_error']:.3f} over {counted(difference['photos'], 'photo')}: {verdict}")
        cost = versions.cost_change(metrics)
        if cost is not None:
            (n_before, size_before), (n_after, size_after), speed = cost
            pace = f" ({speed:.1f}x faster)" if speed > 1 else f" ({1 / speed:.1f}x slower)" if speed < 1 else ""
            self.stdout.write(f"  {'VGG16 passes per image':<22} {n_before} x {size_before} px -> {n_after} x {size_after} px{pace}")
        if before.get("note"):
            self.stdout.write(f"  ({before['note']})")
        self._time_limit(metrics)

    def _time_limit(self, metrics):
        """Say so when --time-limit cut the epochs short: the log line alone went unseen, and the
        figures above are of fewer epochs than asked for."""
        options = metrics.get("options") or {}
        run, planned, limit = metrics.get("epochs_run"), options.get("epochs"), options.get("time_limit")
        if not limit or not isinstance(run, int) or not isinstance(planned, int) or run >= planned:
            return
        self.stdout.write(self.style.WARNING(
            f"Training stopped early, after {run} of {planned} epochs: another would have passed the time limit "
            f"of {limit:g} s. The figures above are of {'that one' if run == 1 else f'those {run}'}. To train every epoch, raise --time-limit, "
            f"or lower --epochs (--epochs {run} fits this time)."
        ))

    def _model(self, label):
        """The searchable model ``label`` names, as the other commands take it (a gallery model: its
        product's). A model no registration returns made a version that failed with "found 0"."""
        if not label:
            return None
        return searchable_model(self, label, "training on {model}'s images")._meta.label


class _Bars:
    """One tqdm bar per training stage, driven by ``progress(stage, done, total)``."""

    def __init__(self, command, show):
        self.command, self.show, self.stage, self.bar = command, show, None, None

    def update(self, stage, done, total):
        if stage != self.stage:
            self.close()
            desc, unit = STAGES.get(stage, (stage, ""))
            self.stage, self.bar = stage, progress.bar(self.command, desc=desc, unit=unit, show=self.show)
            self.bar.total = total
        self.bar.n = done
        self.bar.refresh()

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
