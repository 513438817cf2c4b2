"""Admin for stored embeddings (status and failure reasons at a glance, requeue in one click) and
for model versions (train, watch progress and before/after figures, activate, roll back)."""

from __future__ import annotations

import logging

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import ImproperlyConfigured, PermissionDenied
from django.http import HttpResponseRedirect
from django.urls import path, reverse
from django.utils import formats
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext_lazy as _, ngettext, pgettext_lazy

from . import duplicates, previews, queue, training, versions
from .exceptions import VisualSearchError
from .indexing import reset_attempts
from .models import ImageEmbedding, ModelVersion, Whitening
from .reasons import describe_failure
from .registry import get_registration
from .serving import PRETRAINED_KEY
from .training.jobs import STALLED_AFTER, stalled
from .whitening import describe_scores

logger = logging.getLogger("visual_search")


class PossibleDuplicateFilter(admin.SimpleListFilter):
    """Rows flagged as another product's image (same file, or nearly the same picture)."""

    title = _("possible duplicate image")
    parameter_name = "possible_duplicate"

    def lookups(self, request, model_admin):
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return duplicates.flagged(queryset)
        if self.value() == "no":
            return queryset.exclude(pk__in=duplicates.flagged().values("pk"))
        return queryset


class _IndexChangeList(ChangeList):
    """The index's list page: each row's result object (the product) fetched once per model for
    the whole page, not once per row; the thumbnails of its pictures looked up in one cache call."""

    def get_results(self, request):
        super().get_results(request)
        rows = list(self.result_list)
        found = duplicates.result_objects(rows)
        others = [row.duplicate_of for row in rows if row.duplicate_of is not None]
        named = duplicates.result_objects(others)  # the "possible duplicate of" column's products
        previews.remember(rows + others)  # every picture's thumbnail in one cache round-trip
        for row in rows:
            row.result_object = found[row.pk]
            if row.duplicate_of is not None:
                row.duplicate_of.result_object = named[row.duplicate_of.pk]


# A search of the index by the products' own names finds the rows of at most this many products.
SEARCH_RESULTS = 1000


@admin.register(ImageEmbedding)
class ImageEmbeddingAdmin(admin.ModelAdmin):
    # The status, the error and the fingerprint share a column: as three (and a date that never
    # wrapped) the last columns scrolled sideways at 1366 px with the navigation sidebar open.
    list_display = ("image", "indexed_image", "result", "status_and_reason", "possible_duplicate", "updated_at")
    list_display_links = ("indexed_image",)
    list_filter = ("status", PossibleDuplicateFilter, ("content_type", admin.RelatedOnlyFieldListFilter), "fingerprint")
    search_fields = ("object_id", "result_id", "error", "source_name")
    # The reason in the reader's language (stored in English): the field's place, the method's words.
    readonly_fields = ["image_preview"] + [
        "failure_reason" if f.name == "error" else f.name for f in ImageEmbedding._meta.fields if f.name != "vector"
    ]
    exclude = ["error"]  # shown as failure_reason; not a form field
    actions = ["requeue"]

    class Media:
        css = {"all": ["visual_search/admin.css"]}  # the thumbnails' size (.vs-thumbnail)

    def get_changelist(self, request, **kwargs):
        return _IndexChangeList

    @admin.display(description=_("result"), ordering="result_id")
    def result(self, obj: ImageEmbedding) -> str:
        """The product a match on this image shows (linked to its admin page), or its id when gone."""
        found = getattr(obj, "result_object", None)
        if found is None:
            return f"{obj.result_type.app_labeled_name} #{obj.result_id}"
        meta = found._meta
        if found.__class__ in self.admin_site._registry:
            url = reverse(f"{self.admin_site.name}:{meta.app_label}_{meta.model_name}_change", args=[found.pk])
            return format_html('<a href="{}">{}</a>', url, found)
        return str(found)

    def get_search_results(self, request, queryset, search_term):
        """Also by the products' own names: the search fields of each result model's admin, when
        it has one here (typing "Lime" finds Lime's images)."""
        found, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        if not search_term:
            return found, may_have_duplicates
        for result_type_id in set(queryset.order_by().values_list("result_type_id", flat=True).distinct()):
            model = ContentType.objects.get_for_id(result_type_id).model_class()
            model_admin = self.admin_site._registry.get(model)
            if model_admin is None or not model_admin.get_search_fields(request):
                continue
            matched, _duplicates = model_admin.get_search_results(request, model._default_manager.all(), search_term)
            pks = [str(pk) for pk in matched.order_by().values_list("pk", flat=True).distinct()[:SEARCH_RESULTS]]
            if pks:
                found = found | queryset.filter(result_type_id=result_type_id, result_id__in=pks)
        return found, may_have_duplicates

    @admin.display(description=_("image"))
    def image(self, obj: ImageEmbedding) -> str:
        return previews.thumbnail(obj)

    @admin.display(description=_("image"))
    def image_preview(self, obj: ImageEmbedding) -> str:
        """The image, and beside it the one it may duplicate: staff compare them by eye."""
        mine = previews.thumbnail(obj, 240)
        other = obj.duplicate_of
        if not mine or other is None or other.status != ImageEmbedding.Status.READY or not (theirs := previews.thumbnail(other, 240)):
            return mine
        url = reverse(f"{self.admin_site.name}:visual_search_imageembedding_change", args=[other.pk])
        return format_html(
            '{} {}<br>{} <a href="{}">{}</a>', mine, theirs, _("On the right, the image it may duplicate:"), url, other
        )

    @admin.display(description=_("indexed image"), ordering="source_name")
    def indexed_image(self, obj: ImageEmbedding) -> str:
        """The file's own name, the link to the row: "Catalogue | product #83.image (Ready)" took a
        narrow column four lines, repeated the status column and named no picture."""
        name = obj.source_name.rsplit("/", 1)[-1]
        return name or f"{obj.content_type.name} #{obj.object_id}"

    @admin.display(description=_("fingerprint"), ordering="fingerprint")
    def short_fingerprint(self, obj: ImageEmbedding) -> str:
        """Its first eight characters, whole on hover (the filter and the row's page show it whole):
        the whole one pushed the last columns off a laptop's screen."""
        return format_html('<span title="{}">{}</span>', obj.fingerprint, obj.fingerprint[:8])

    @admin.display(description=_("error"))
    def short_error(self, obj: ImageEmbedding) -> str:
        return describe_failure(obj.error)[:120]

    @admin.display(description=_("status"), ordering="status")
    def status_and_reason(self, obj: ImageEmbedding) -> str:
        """The status; under it why the image failed (:meth:`short_error`), and the model's
        fingerprint (:meth:`short_fingerprint`, whole on hover)."""
        reason = format_html('<span class="vs-reason">{}</span>', self.short_error(obj)) if obj.error else ""
        fingerprint = format_html('<span class="vs-fingerprint">{} {}</span>', _("fingerprint"), self.short_fingerprint(obj))
        return format_html("{}{}{}", obj.get_status_display(), reason, fingerprint)

    @admin.display(description=_("error"))
    def failure_reason(self, obj: ImageEmbedding) -> str:
        """Why it failed, in the reader's language: stored in English by the worker."""
        return describe_failure(obj.error)

    @admin.display(description=_("possible duplicate of"), ordering="-duplicate_score")
    def possible_duplicate(self, obj: ImageEmbedding) -> str:
        other = obj.duplicate_of
        if other is None or other.status != ImageEmbedding.Status.READY:
            return ""
        name = duplicates.result_object(other)
        same = _(", same file") if obj.checksum and obj.checksum == other.checksum else ""
        words = f"{name if name is not None else other} ({_number(duplicates.shown_similarity(obj.duplicate_score))}{same})"
        picture = previews.thumbnail(other, 48)
        return format_html("{} {}", picture, words) if picture else words

    def get_queryset(self, request):
        # Not the vectors (2 KB a row, and again for each row's duplicate): nothing here shows them.
        return (
            super().get_queryset(request)
            .select_related("content_type", "result_type", "duplicate_of__content_type", "duplicate_of__result_type")
            .defer("vector", "duplicate_of__vector")
        )

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description=_("Recompute the selected embeddings"), permissions=["change"])
    def requeue(self, request, queryset):
        groups: dict[tuple[str, str], list[str]] = {}
        # The ids alone: the rows with their vectors were 390 MB and 20 s for "select all" of 100,000.
        images = queryset.order_by().values_list("content_type__app_label", "content_type__model", "field_name", "object_id").distinct()
        for app_label, model, field, object_id in images.iterator():
            groups.setdefault((f"{app_label}.{model}", field), []).append(object_id)
        known = {}
        for (label, field), pks in groups.items():
            try:
                get_registration(label, field)
            except LookupError:
                continue
            known[(label, field)] = pks
        try:
            queue.check_in_request(sum(len(pks) for pks in known.values()))
        except queue.TooMuchForARequest as exc:
            self.message_user(request, exc.words(), messages.WARNING)
            return
        for (label, field), pks in known.items():  # asked for by hand: images given up are tried again
            reset_attempts(get_registration(label, field), pks)
        queued = sum(queue.enqueue(label, field, pks, force=True) for (label, field), pks in known.items())
        if queue.use_celery():
            text = ngettext("%d image queued for recomputing.", "%d images queued for recomputing.", queued) % queued
        else:  # done in this request: say so, and what is still failing
            text = ngettext("%d image recomputed.", "%d images recomputed.", queued) % queued
            if failed := queryset.filter(status=ImageEmbedding.Status.FAILED).count():
                text += " " + ngettext("%d still failed: the status column says why.", "%d still failed: the status column says why.", failed) % failed
        self.message_user(request, text, messages.SUCCESS)


@admin.register(Whitening)
class WhiteningAdmin(admin.ModelAdmin):
    """Read-only: whitenings are learned by visual_search_reindex and the sweep."""

    list_display = ("result_type", "fingerprint", "dimensions", "trained_on", "scores", "updated_at")
    readonly_fields = ("result_type", "fingerprint", "dimensions", "trained_on", "scores", "calibration", "updated_at")
    exclude = ("mean", "projection")

    class Media:
        css = {"all": ["visual_search/admin.css"]}  # the scores and calibration in a right-to-left admin

    @admin.display(description=_("scores"))
    def scores(self, obj: Whitening) -> str:
        return describe_scores(obj)

    def has_add_permission(self, request) -> bool:
        return False

    # Read-only, as documented: no "Delete selected" in its list (a deleted one left the scores on
    # the default curve until the next fit), no editable page.
    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


# The held-out figures the trainer stores in ``metrics["before"]`` / ``metrics["after"]``.
FIGURES = [
    ("p_at_1", _("Precision@1 by product")),
    ("p_at_10", _("Precision@10 by product")),
    ("category_p_at_1", _("Precision@1 by category")),
    ("category_p_at_10", _("Precision@10 by category")),
    ("queries", _("Held-out images (queries)")),
    ("gallery", _("Training images (gallery)")),
]
# Other figures of ``metrics`` worth showing, when present.
FACTS = [
    ("training_images", _("Training images")),
    ("held_out_images", _("Held-out images")),
    ("products", _("Products")),
    ("categories", _("Categories")),
    ("feature_seconds", _("Frozen-block features (s)")),
    ("train_seconds", _("Training (s)")),
    ("seconds", _("Total time (s)")),
]
Version = ModelVersion.Status
# Stages of ``ModelVersion.progress`` that tell how the last training or build ended.
ENDED_STAGES = ("trained", "done", "failed", "cancelled")
# How a version's progress["stage"] (an internal word, stored) reads to staff, in their language.
STAGES = {
    "queued": pgettext_lazy("version stage", "queued"),
    "features": pgettext_lazy("version stage", "features"),
    "training": pgettext_lazy("version stage", "training"),
    "evaluating": pgettext_lazy("version stage", "evaluating"),
    "building": pgettext_lazy("version stage", "building"),
    "fitting": pgettext_lazy("version stage", "learning the whitening"),
    "trained": pgettext_lazy("version stage", "trained"),
    "done": pgettext_lazy("version stage", "done"),
    "failed": pgettext_lazy("version stage", "failed"),
    "cancelled": pgettext_lazy("version stage", "cancelled"),
}


def stage_label(stage) -> str:
    return str(STAGES.get(stage, stage))


def _figure(value) -> str:
    if isinstance(value, float):
        return _number(value)
    return "-" if value is None else str(value)


def _number(value: float, places: int = 3) -> str:
    """``value`` rounded to ``places`` decimals, as the staff's language writes it: "0.400", "0,400"."""
    return formats.number_format(round(value, places), places)


def _signed(value: float) -> str:
    """A change, with its sign: "+0.092", "-0,037"."""
    return ("-" if value < 0 else "+") + _number(abs(value))


def _ltr(text) -> str:
    """Figures laid out left to right in any page: "+0.092", "0.130 → 0.340", "4 × 224 px". In a
    right-to-left admin (Hebrew, Arabic, Persian) the bidi algorithm put the sign after the number
    ("0.092+"), the "after" figure before the arrow ("0.340 → 0.130") and "px 224 × 4"."""
    return format_html('<span dir="ltr">{}</span>', text)


def _cost_rows(metrics: dict) -> list[tuple]:
    """Rows for what a photo costs before and after (VGG16 passes), and, distilling, how close one
    pass came to the model in use's vectors."""
    rows = []
    cost = versions.cost_change(metrics)
    if cost is not None:
        (n_before, size_before), (n_after, size_after), speed = cost
        rows.append((_("VGG16 passes per image"), _ltr(f"{n_before} × {size_before} px"), _ltr(f"{n_after} × {size_after} px"),
                     _("%(x)sx faster") % {"x": _number(speed, 1)} if speed > 1 else _("%(x)sx slower") % {"x": _number(1 / speed, 1)} if speed < 1 else ""))
    difference = metrics.get("difference") or {}
    if isinstance(difference.get("standard_error"), (int, float)):
        rows.append((_("Precision@1 change, paired (± one standard error)"), "", "",
                     format_html("<bdi>{} {}</bdi>", _ltr(f"{_signed(difference['p_at_1'])} ± {_number(difference['standard_error'])}"),
                                 _("(within the noise)") if difference.get("within_noise") else _("(more than the noise)"))))
    agreement = metrics.get("agreement") or {}
    if isinstance(agreement.get("before"), (int, float)) and isinstance(agreement.get("after"), (int, float)):
        rows.append((_("Agreement with the model in use (training images)"), _figure(agreement["before"]), _figure(agreement["after"]),
                     _ltr(_signed(agreement["after"] - agreement["before"]))))
    return rows


def in_progress(version: ModelVersion) -> bool:
    """Training, computing vectors, or (the active one) switching back to the pretrained model."""
    return version.status in (Version.TRAINING, Version.BUILDING) or bool((version.progress or {}).get(PRETRAINED_KEY))


def _check_build_fits(fingerprint: str, command: str) -> None:
    """Without Celery a version's vectors are computed in the staff member's request: raise
    :class:`~visual_search.queue.TooMuchForARequest` (naming ``command``) for more than it may take."""
    if not queue.use_celery():
        images = sum(len(pks) for _, pks in versions.images_to_build(fingerprint))
        queue.check_in_request(images, command=command, fingerprint=fingerprint)


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    """Trained embedding models: start training, follow it, compare the figures, switch and roll back.

    Activating computes the version's vectors for every image before searches switch to it: on the
    Celery workers when Celery is used (the page follows the progress), otherwise in the request
    itself for up to ``IN_REQUEST_IMAGES`` images and ``IN_REQUEST_SECONDS`` of work (beyond, nothing
    starts and the message names ``manage.py visual_search_versions activate ID``, which shows a
    progress bar). Rolling back computes the images changed since the switch, within the same bounds.
    """

    list_display = ("label", "status", "precision_at_1", "progress_display", "created_at", "activated_at")
    list_filter = ("status",)
    search_fields = ("label", "fingerprint")
    actions = ["activate_selected", "activate_anyway", "rollback", "cancel"]
    change_list_template = "admin/visual_search/modelversion/change_list.html"
    change_form_template = "admin/visual_search/modelversion/change_form.html"
    fields = (
        "label", "status", "progress_display", "metrics_table", "error", "fingerprint", "weights_file",
        "previous", "previous_fingerprint", "created_at", "trained_at", "activated_at", "config",
    )
    readonly_fields = fields[1:]
    # Seconds between reloads of a page that shows a version in progress.
    refresh_seconds = 5

    class Media:
        css = {"all": ["visual_search/admin.css"]}  # the object tools' buttons

    def has_add_permission(self, request) -> bool:
        return False  # versions come from training: the "Train a new version" button

    def has_delete_permission(self, request, obj=None) -> bool:
        # The active version and one in progress are in use; retire or cancel them first.
        if obj is not None and (obj.status == Version.ACTIVE or in_progress(obj)):
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request, action_location=None):
        # Django 6.1 passes where the actions show (action_location); earlier Djangos know no such argument.
        where = {} if action_location is None else {"action_location": action_location}
        actions = super().get_actions(request, **where)
        actions.pop("delete_selected", None)  # would not spare the active version
        return actions

    # -- columns and fields --------------------------------------------------------------------------------

    @admin.display(description=_("P@1 before → after"))
    def precision_at_1(self, obj: ModelVersion) -> str:
        metrics = obj.metrics or {}
        before, after = (metrics.get(k) or {} for k in ("before", "after"))
        if "p_at_1" not in after:
            return "-"
        figures = _ltr(f"{_figure(before.get('p_at_1'))} → {_figure(after['p_at_1'])}")
        compared = versions.comparison(obj)
        if compared is None or obj.status == Version.ACTIVE:
            return figures
        verdict = _("better") if compared["better"] else _("not better")
        if compared.get("difference", {}).get("within_noise") and compared["after"] != compared["serving"]:
            verdict = _("%(verdict)s, within the noise") % {"verdict": verdict}
        return format_html("{} <strong>({})</strong>", figures, verdict)

    @admin.display(description=_("progress"))
    def progress_display(self, obj: ModelVersion) -> str:
        progress = obj.progress or {}
        if not progress.get("stage"):
            return "-"
        if stalled(obj):  # its process died: "training" would read as if it still went on
            return _("%(stage)s, no progress for over %(minutes)d minutes: its process has stopped; select it and Cancel") % {
                "stage": stage_label(progress["stage"]), "minutes": STALLED_AFTER // 60}
        if in_progress(obj):
            fitting = progress.get("fitting")
            if progress.get("left") == 0 and isinstance(fitting, list) and len(fitting) == 2:
                # The images all done: the whitening and score calibration of the version are learned.
                return f"{stage_label('fitting')} {fitting[0]}/{fitting[1]}"
            if progress.get("total"):
                return f"{stage_label(progress['stage'])} {progress.get('done', 0)}/{progress['total']}"
            return stage_label(progress["stage"])
        # Not in progress: the stage left by the last work on it may be a running one (a retired
        # version's progress still said "building" from the return to the pretrained model it
        # held). Only how that work ended is worth showing; otherwise what the version is now.
        if progress["stage"] in ENDED_STAGES and (progress["stage"] != "done" or obj.status == Version.ACTIVE):
            return stage_label(progress["stage"])
        return obj.get_status_display()

    @admin.display(description=_("held-out figures"))
    def metrics_table(self, obj: ModelVersion) -> str:
        metrics = obj.metrics or {}
        before, after = metrics.get("before") or {}, metrics.get("after") or {}
        rows = []
        for key, label in FIGURES:
            if key in before or key in after:
                change = ""
                if isinstance(before.get(key), (int, float)) and isinstance(after.get(key), (int, float)) and key.startswith(("p_", "category_")):
                    change = _ltr(_signed(after[key] - before[key]))
                rows.append((label, _figure(before.get(key)), _figure(after.get(key)), change))
        rows += _cost_rows(metrics)
        facts = [(label, _figure(metrics[key])) for key, label in FACTS if key in metrics]
        objective = (metrics.get("options") or {}).get("objective")
        if objective:
            facts.insert(0, (_("Objective"), {"distil": _("distil (one pass learns the views' vectors)"), "classify": _("classify (tell the products apart)")}.get(objective, objective)))
        if not rows and not facts:
            return _("None yet: the figures appear when training ends.")
        # Each figure's name is its row's header: a screen reader on "0.812" hears "Precision@1, After"
        # (it heard only "After"); the corner above the names is an empty cell, not an empty header.
        table = format_html(
            '<table><thead><tr><td></td><th scope="col">{}</th><th scope="col">{}</th><th scope="col">{}</th></tr></thead><tbody>{}</tbody></table>',
            _("Before"), _("After"), _("Change"),
            format_html_join("", '<tr><th scope="row">{}</th><td>{}</td><td>{}</td><td>{}</td></tr>', rows),
        )
        if facts:
            table += format_html("<table><tbody>{}</tbody></table>", format_html_join("", '<tr><th scope="row">{}</th><td>{}</td></tr>', facts))
        if before.get("note"):
            table += format_html("<p>{}</p>", before["note"])
        return table

    # -- pages that follow progress -------------------------------------------------------------------------

    def changelist_view(self, request, extra_context=None):
        busy = any(in_progress(v) for v in ModelVersion.objects.filter(status__in=[Version.TRAINING, Version.BUILDING, Version.ACTIVE]))
        return super().changelist_view(request, {
            **(extra_context or {}),
            "auto_refresh": self.refresh_seconds if busy else None,
            "can_change_versions": self.has_change_permission(request),  # the train and roll back buttons
            "can_roll_back": versions.active_version() is not None,  # else there is nothing to go back to
        })

    def change_view(self, request, object_id, form_url="", extra_context=None):
        version = self.get_object(request, object_id)
        busy = version is not None and in_progress(version)
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), "auto_refresh": self.refresh_seconds if busy else None})

    # -- actions --------------------------------------------------------------------------------------------

    @admin.action(description=_("Activate: compute its vectors, then switch searches to it (without Celery: may take minutes)"), permissions=["change"])
    def activate_selected(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, _("Select exactly one version to activate."), messages.WARNING)
            return
        self._activate(request, queryset.get(), force=False)

    @admin.action(description=_("Activate the selected version even if its figures are not better"), permissions=["change"])
    def activate_anyway(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, _("Select exactly one version to activate."), messages.WARNING)
            return
        self._activate(request, queryset.get(), force=True)

    def _activate(self, request, version: ModelVersion, *, force: bool) -> None:
        try:
            versions.check_activation(version, force=force)  # refused anyway: say why, not how many images
            _check_build_fits(version.fingerprint, f"manage.py visual_search_versions activate {version.pk}" + (" --force" if force else ""))
            result = versions.activate(version, asynchronous=queue.use_celery(), force=force)
        except queue.TooMuchForARequest as exc:
            self.message_user(request, exc.words(), messages.WARNING)
            return
        except versions.NotBetter as exc:
            # The figures compared, and the way out here: the action that forces it, not a command line.
            self.message_user(request, f"{exc.reason} " + _(
                "To switch to it anyway, select it and choose the action “%(action)s”. Or train a new version "
                "(more epochs can help) and compare its figures."
            ) % {"action": self.activate_anyway.short_description}, messages.ERROR)
            return
        except VisualSearchError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        if result.status == Version.BUILDING:
            self.message_user(request, _("The workers are computing the vectors of %(label)s; searches switch to it when they are all done, and use the current version meanwhile. This page shows the progress.") % {"label": result.label}, messages.SUCCESS)
        else:
            self.message_user(request, _("Searches now use %(label)s. “Roll back to the previous version” undoes it.") % {"label": result.label}, messages.SUCCESS)

    @admin.action(description=_("Roll back to the previous version (whatever is selected)"), permissions=["change"])
    def rollback(self, request, queryset=None):
        try:
            if (fingerprint := versions.rollback_fingerprint()) is not None:  # the images changed since the switch
                _check_build_fits(fingerprint, "manage.py visual_search_versions rollback")
            result = versions.rollback(asynchronous=queue.use_celery())
        except queue.TooMuchForARequest as exc:
            self.message_user(request, exc.words(), messages.WARNING)
            return
        except VisualSearchError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        if result is None and ModelVersion.objects.filter(status=Version.ACTIVE).exists():
            self.message_user(request, _("The workers are bringing the pretrained model's vectors up to date; searches switch back to it when done."), messages.SUCCESS)
        elif result is None:
            self.message_user(request, _("Rolled back: searches use the pretrained model the settings describe."), messages.SUCCESS)
        elif result.status == Version.BUILDING:
            self.message_user(request, _("The workers are bringing the vectors of %(label)s up to date; searches switch back to it when done.") % {"label": result.label}, messages.SUCCESS)
        else:
            self.message_user(request, _("Rolled back: searches use %(label)s again.") % {"label": result.label}, messages.SUCCESS)

    @admin.action(description=_("Cancel training or switching"), permissions=["change"])
    def cancel(self, request, queryset):
        chosen = [v for v in queryset if in_progress(v)]
        # No process is left to read the flag of a stalled one (see jobs.stalled): ended here.
        dead = [v.pk for v in chosen if stalled(v)]
        minutes = STALLED_AFTER // 60
        ended = ModelVersion.objects.filter(pk__in=dead, status=Version.TRAINING).update(
            status=Version.CANCELLED, progress={"stage": "cancelled"},
            error=f"Cancelled after no progress for {minutes} minutes: the process training it had stopped.",
        )
        count = ModelVersion.objects.filter(pk__in=[v.pk for v in chosen if v.pk not in dead]).update(cancel_requested=True)
        if ended:
            self.message_user(
                request,
                ngettext(
                    "%(count)d version had shown no progress for %(minutes)d minutes (the process training it stopped: a restart, or out of memory): marked cancelled. Train again to start over.",
                    "%(count)d versions had shown no progress for %(minutes)d minutes (the process training them stopped: a restart, or out of memory): marked cancelled. Train again to start over.",
                    ended,
                ) % {"count": ended, "minutes": minutes},
                messages.WARNING,
            )
        if count or not ended:
            self.message_user(
                request,
                ngettext("Cancel requested for %d version: it stops within seconds; searches are not affected.", "Cancel requested for %d versions: they stop within seconds; searches are not affected.", count) % count
                if count
                else _("None of the selected versions is training or switching: nothing to cancel."),
                messages.SUCCESS if count else messages.WARNING,
            )

    # -- the changelist buttons: train a new version, roll back -----------------------------------------------

    def get_urls(self):
        info = self.model._meta.app_label, self.model._meta.model_name
        return [
            path("train/", self.admin_site.admin_view(self.train_view), name="%s_%s_train" % info),
            path("rollback/", self.admin_site.admin_view(self.rollback_view), name="%s_%s_rollback" % info),
        ] + super().get_urls()

    def _back(self):
        info = self.model._meta.app_label, self.model._meta.model_name
        return HttpResponseRedirect(reverse("admin:%s_%s_changelist" % info, current_app=self.admin_site.name))

    def train_view(self, request):
        if request.method != "POST" or not self.has_change_permission(request):
            raise PermissionDenied
        try:
            version = training.start_training(model_label=None)
        except (VisualSearchError, ImproperlyConfigured, LookupError, ValueError) as exc:
            self.message_user(request, _("Training could not start: %(reason)s") % {"reason": exc}, messages.ERROR)
            return self._back()
        self.message_user(request, _("Training started as “%(label)s”. This page follows its progress; the figures appear when it ends, and searches are not affected until you activate it.") % {"label": version.label}, messages.SUCCESS)
        return self._back()

    def rollback_view(self, request):
        if request.method != "POST" or not self.has_change_permission(request):
            raise PermissionDenied
        self.rollback(request)
        return self._back()


def register_on(site: admin.AdminSite) -> None:
    """Show the package's pages (the image index, search tuning, model versions) on another
    :class:`~django.contrib.admin.AdminSite` too, for a shop whose staff use their own site::

        # shop/admin.py
        staff_site = admin.AdminSite(name="staff")
        visual_search.admin.register_on(staff_site)

    Django's ``admin.site`` has them already. Models the site has registered are left alone.
    """
    for model, model_admin in ((ImageEmbedding, ImageEmbeddingAdmin), (Whitening, WhiteningAdmin), (ModelVersion, ModelVersionAdmin)):
        if not site.is_registered(model):
            site.register(model, model_admin)
