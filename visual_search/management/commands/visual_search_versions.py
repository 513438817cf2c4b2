"""manage.py visual_search_versions list | activate ID [--async] | rollback [--async] | prune"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, no_translations
from django.utils import timezone

from ...exceptions import WeightsUnavailable
from ...models import ModelVersion
from ...training.jobs import STALLED_AFTER, stalled
from ...versions import VersionError, activate, prune, rollback, rollback_fingerprint
from .. import counted, explain_unmigrated
from ..progress import Followed, fit_bar

COLUMNS = ("id", "label", "status", "fingerprint", "P@1 before", "P@1 after", "created", "activated")


def p_at_1(version: ModelVersion, when: str) -> str:
    """Held-out precision@1 ``before`` or ``after`` training, as the trainer stored it; "-" if none."""
    value = ((version.metrics or {}).get(when) or {}).get("p_at_1")
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def _when(moment) -> str:
    # A shop with USE_TZ = False stores naive local time: shown as it is (localtime() refuses it).
    return timezone.template_localtime(moment).strftime("%Y-%m-%d %H:%M") if moment else "-"


class Command(BaseCommand):
    help = "List the trained embedding model versions, switch searches to one, roll back, or prune old vectors."

    def add_arguments(self, parser):
        commands = parser.add_subparsers(dest="action", required=True, metavar="{list,activate,rollback,prune}")
        commands.add_parser("list", help="Every version with its status and held-out precision@1 before/after training.")
        activate_parser = commands.add_parser("activate", help="Compute a version's vectors, then switch searches to it.")
        activate_parser.add_argument("version", type=int, help="The version's id (see `list`).")
        rollback_parser = commands.add_parser("rollback", help="Switch back to the version that was active before.")
        activate_parser.add_argument(
            "--force", action="store_true", help="Activate even when its held-out figures do not beat the model in use."
        )
        for sub in (activate_parser, rollback_parser):
            sub.add_argument("--async", dest="asynchronous", action="store_true", help="Compute on the Celery workers and return at once.")
        commands.add_parser("prune", help="Delete the vectors of retired versions, keeping those a rollback needs.")

    @no_translations  # English throughout, as the rest of its output, whatever LANGUAGE_CODE says
    @explain_unmigrated
    def handle(self, *args, action, verbosity=1, **options):
        try:
            getattr(self, f"_{action}")(verbosity=verbosity, **options)
        except (VersionError, WeightsUnavailable) as exc:
            raise CommandError(str(exc)) from exc

    def _list(self, **options):
        versions = list(ModelVersion.objects.order_by("created_at"))
        if not versions:
            self.stdout.write("No trained versions yet: searches use the pretrained model. Train one with `manage.py visual_search_train`.")
            return
        table = [
            (str(v.pk), v.label, v.get_status_display() + _progress(v), v.fingerprint or "-", p_at_1(v, "before"), p_at_1(v, "after"), _when(v.created_at), _when(v.activated_at))
            for v in versions
        ]
        widths = [max(len(c), *(len(r[n]) for r in table)) for n, c in enumerate(COLUMNS)]
        self.stdout.write("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)))
        for row in table:
            self.stdout.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths)))
        if not any(v.status == ModelVersion.Status.ACTIVE for v in versions):
            self.stdout.write("No version is active: searches use the pretrained model the settings describe.")
        ready = [v for v in versions if v.status == ModelVersion.Status.TRAINED]
        if ready:
            self.stdout.write(f"Switch to a trained version with `manage.py visual_search_versions activate {ready[-1].pk}`.")

    def _activate(self, *, version, asynchronous=False, verbosity=1, force=False, **options):
        if asynchronous:
            result = activate(version, asynchronous=True, force=force)
            self._report(result, queued=result.status == ModelVersion.Status.BUILDING)
            return
        with self._bar(verbosity) as progress, self._fit_bar(verbosity) as fit_progress:
            result = activate(version, progress=progress, force=force, fit_progress=fit_progress)
        self._report(result)

    def _rollback(self, *, asynchronous=False, verbosity=1, **options):
        if asynchronous:
            result = rollback(asynchronous=True)
        else:
            with self._bar(verbosity) as progress, self._fit_bar(verbosity) as fit_progress:
                result = rollback(progress=progress, fit_progress=fit_progress)
        if result is None:
            queued = ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).exists()
            if queued:
                self.stdout.write(self.style.SUCCESS("Queued the return to the pretrained model; follow it with `manage.py visual_search_versions list`."))
            else:
                self.stdout.write(self.style.SUCCESS("Rolled back: searches use the pretrained model the settings describe."))
            return
        self._report(result, queued=result.status == ModelVersion.Status.BUILDING, verb="Rolled back")

    def _prune(self, **options):
        keep = rollback_fingerprint()
        counts = prune()
        stores = counts.stores_removed()  # the backend's index files or tables of pruned fingerprints
        if not counts:
            self.stdout.write(f"Nothing to prune: only the vectors in use and those a rollback needs are stored.{' ' + stores if stores else ''}")
            return
        for fingerprint, n in sorted(counts.items()):
            self.stdout.write(f"Deleted {counted(n, 'vector')} of fingerprint {fingerprint or '(none)'}.")
        if stores:
            self.stdout.write(stores)
        kept = f" and those of {keep}, which `rollback` returns to" if keep else ""
        self.stdout.write(self.style.SUCCESS(f"Kept the vectors in use{kept}. A pruned version can still be activated: its vectors are computed again."))

    def _report(self, version: ModelVersion, queued: bool = False, verb: str = "Activated") -> None:
        if queued:
            self.stdout.write(self.style.SUCCESS(f"Queued: the workers compute the vectors of {_named(version)}, then searches switch to it."))
            self.stdout.write("Searches use the current version meanwhile. Follow it with `manage.py visual_search_versions list`.")
            return
        progress = version.progress or {}
        self.stdout.write(
            self.style.SUCCESS(f"{verb} {_named(version, f'fingerprint {version.fingerprint}')}: searches use it now.")
        )
        self.stdout.write(f"{counted(progress.get('total', 0), 'image')} checked. Undo with `manage.py visual_search_versions rollback`.")

    def _bar(self, verbosity):
        return Followed(self, desc="Computing vectors", show=verbosity > 0)

    def _fit_bar(self, verbosity):
        return fit_bar(self, show=verbosity > 0)  # the version's whitening, fitted before the switch


def _named(version: ModelVersion, *more: str) -> str:
    """"Adapted #7 (fingerprint f)", "Spring catalogue (#7, fingerprint f)": the label, with the id
    `activate` takes where the label does not say it already (it said "Adapted #7 (#7, ...")."""
    notes = ([] if version.label.endswith(f"#{version.pk}") else [f"#{version.pk}"]) + list(more)
    return f"{version.label} ({', '.join(notes)})" if notes else version.label


def _progress(version: ModelVersion) -> str:
    progress = version.progress or {}
    if stalled(version):
        return f" (no progress for over {STALLED_AFTER // 60} minutes: its process has stopped; cancel it in the admin, then train again)"
    if version.status in (ModelVersion.Status.TRAINING, ModelVersion.Status.BUILDING) and progress.get("total"):
        return f" ({progress.get('stage', '')} {progress.get('done', 0)}/{progress['total']})"
    return ""
