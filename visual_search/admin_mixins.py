"""Visual search in the shop's own admin: status column, status filter, reindex and requeue.

Add the mixin before ``admin.ModelAdmin``; it appends to your ``list_display``, ``list_filter``
and actions, so nothing of yours needs to change::

    from visual_search.admin_mixins import VisualSearchAdminMixin

    @admin.register(Product)
    class ProductAdmin(VisualSearchAdminMixin, admin.ModelAdmin):
        list_display = ["name", "price"]

A product's status covers its own image and its gallery images (registrations with
``result="product"``): the worst one shows, with the reason when it failed. A product whose image
looks like another product's (:mod:`visual_search.duplicates`) says so in that column and on its
page, with a filter to find them and a way to dismiss the warning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import model_ngettext
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models.functions import Coalesce
from django.http import HttpResponseRedirect
from django.middleware.csrf import get_token
from django.utils import formats
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _, ngettext

from . import duplicates, previews, queue
from .batching import chunked
from .indexing import reset_attempts
from .models import DuplicateDismissal, ImageEmbedding, content_types_of, pk_as_text, type_is
from .registry import Registration, get_registrations, registrations_for_model
from .reasons import describe_failure
from .reindex import select_pks
from .serving import current_fingerprint

Status = ImageEmbedding.Status
# The worst status of an object's images wins the column: one failed gallery photo needs a look.
RANKS = {"failed": 0, "pending": 1, "stale": 2, "ready": 3}
# Objects whose flagged rows the "dismiss" action fetches at once.
DISMISS_CHUNK = 500
LABELS = {"failed": _("Failed"), "pending": _("Pending"), "stale": _("Stale"), "ready": _("Ready"), "missing": _("Not indexed")}


def related_registrations(model: type[models.Model]) -> list[Registration]:
    """Registrations of ``model``'s own image fields, then of images whose result it is (galleries)."""
    label = model._meta.label_lower
    return [r for r in get_registrations() if r.label == label or r.result_label == label]


def embedding_rows(model: type[models.Model]) -> models.QuerySet:
    """Rows of the outer object's images (own and gallery), for use in a subquery on ``model``."""
    own, gallery = _own_and_gallery(model)
    return ImageEmbedding.objects.filter(own | gallery)


def _own_and_gallery(model: type[models.Model]) -> tuple[models.Q, models.Q]:
    """The outer object's own images, and the images whose result it is (its gallery, and its own
    image again where it is its own result); each an index's prefix, so that a subquery per object
    is a lookup, not a scan."""
    types = content_types_of(model)
    pk = pk_as_text(model)
    return type_is("content_type", types) & models.Q(object_id=pk), type_is("result_type", types) & models.Q(result_id=pk)


def annotate_status(queryset: models.QuerySet, rows: models.QuerySet | None = None) -> models.QuerySet:
    """Add ``visual_search_rank`` (0 failed .. 3 ready, None without rows) and ``visual_search_error``.

    ``rows``: the rows of the outer object's images, a subquery on ``OuterRef("pk")`` (default:
    :func:`embedding_rows`, its own images and its gallery's).

    An image's status is that of its row of the current fingerprint; an image with rows of other
    models only is stale. Rows of other versions beside a current one (kept for a rollback, or a
    version being built) do not count.
    """
    fingerprint = current_fingerprint()
    has_current = ImageEmbedding.objects.filter(
        content_type=models.OuterRef("content_type"),
        object_id=models.OuterRef("object_id"),
        field_name=models.OuterRef("field_name"),
        fingerprint=fingerprint,
    )
    rows = (embedding_rows(queryset.model) if rows is None else rows).filter(models.Q(fingerprint=fingerprint) | ~models.Exists(has_current))
    rank = models.Case(
        models.When(~models.Q(fingerprint=fingerprint), then=models.Value(RANKS["stale"])),
        *_renamed(queryset.model),
        models.When(status=Status.FAILED, then=models.Value(RANKS["failed"])),
        models.When(status=Status.PENDING, then=models.Value(RANKS["pending"])),
        default=models.Value(RANKS["ready"]),
        output_field=models.IntegerField(),
    )
    return queryset.annotate(
        visual_search_rank=models.Subquery(rows.annotate(rank=rank).order_by("rank").values("rank")[:1]),
        visual_search_error=models.Subquery(rows.filter(status=Status.FAILED).order_by("pk").values("error")[:1]),
    )


def _renamed(model: type[models.Model]) -> list[models.When]:
    """Stale too: a finished row of the object's own image made from another file than the one it
    has now (its save committed, marking the row did not: see :func:`visual_search.reindex.select_pks`).
    A gallery image's file is in another table: the sweep finds those."""
    finished = ~models.Q(status=Status.PENDING) & ~models.Q(source_name="")
    own_type = type_is("content_type", content_types_of(model))
    return [
        models.When(
            own_type & models.Q(field_name=registration.image_field)
            & finished
            & ~models.Q(source_name=models.OuterRef(registration.image_field)),
            then=models.Value(RANKS["stale"]),
        )
        for registration in registrations_for_model(model)
    ]


def annotate_duplicates(queryset: models.QuerySet) -> models.QuerySet:
    """Add ``visual_search_duplicate``: the id of the row its closest flagged image names, of its
    own images first, then of those whose result it is (None: no warning).

    Two subqueries, not one over both: with the flagged rows' conditions beside an OR, SQLite
    scanned every row of the fingerprint for each object (minutes for 20,000 products)."""
    closest = [
        models.Subquery(duplicates.flagged(ImageEmbedding.objects.filter(rows)).order_by("-duplicate_score").values("duplicate_of")[:1])
        for rows in _own_and_gallery(queryset.model)
    ]
    return queryset.annotate(visual_search_duplicate=Coalesce(*closest))


def duplicate_words(row: ImageEmbedding) -> str:
    """"possible duplicate of Red mug (similarity 0.97, same file)"."""
    other = row.duplicate_of
    name = duplicates.result_object(other) if other is not None else None
    same = bool(row.checksum) and other is not None and other.checksum == row.checksum
    detail = _("similarity %s, same file") if same else _("similarity %s")
    return _("possible duplicate of %(other)s (%(detail)s)") % {
        "other": name if name is not None else _("a deleted object"),
        # As the staff's language writes it: "0.997", "0,997".
        "detail": detail % formats.number_format(duplicates.shown_similarity(row.duplicate_score), 3),
    }



def flagged_rows(obj: models.Model) -> list[ImageEmbedding]:
    """The object's images (own and gallery) flagged as possible duplicates, closest first."""
    cached = getattr(obj, "visual_search_flagged", None)  # a list page's, fetched for all its rows
    if cached is not None:
        return cached
    return flagged_rows_of([obj])[obj.pk]


def flagged_rows_of(objects: list[models.Model]) -> dict[Any, list[ImageEmbedding]]:
    """:func:`flagged_rows` of many objects of one model: two queries in all (the rows, then the
    products they are duplicates of, one per model), not two per object."""
    found: dict[Any, list[ImageEmbedding]] = {obj.pk: [] for obj in objects}
    if not objects:
        return found
    by_text = {str(obj.pk): obj.pk for obj in objects}
    types = content_types_of(objects[0])
    type_ids = {t.pk for t in types}
    own = (type_is("content_type", types) & models.Q(object_id__in=list(by_text))) | (type_is("result_type", types) & models.Q(result_id__in=list(by_text)))
    rows = list(duplicates.flagged(ImageEmbedding.objects.filter(own)).select_related("content_type", "duplicate_of__content_type", "duplicate_of__result_type").order_by("-duplicate_score"))
    named = duplicates.result_objects([row.duplicate_of for row in rows if row.duplicate_of is not None])
    for row in rows:
        if row.duplicate_of is not None:
            row.duplicate_of.result_object = named[row.duplicate_of.pk]
        owners = set()
        if row.content_type_id in type_ids and row.object_id in by_text:
            owners.add(by_text[row.object_id])
        if row.result_type_id in type_ids and row.result_id in by_text:
            owners.add(by_text[row.result_id])
        for pk in owners:
            found[pk].append(row)
    return found


def status_of(obj: Any) -> str:
    rank = getattr(obj, "visual_search_rank", None)
    return next((name for name, value in RANKS.items() if value == rank), "missing")


class EmbeddingStatusFilter(admin.SimpleListFilter):
    """Filter by the worst embedding status of each object's images."""

    title = _("visual search")
    parameter_name = "visual_search"

    def lookups(self, request, model_admin):
        return [(name, LABELS[name]) for name in ("ready", "pending", "failed", "stale", "missing")]

    def queryset(self, request, queryset):
        value = self.value()
        if value == "missing":
            return queryset.filter(visual_search_rank__isnull=True)
        if value in RANKS:
            return queryset.filter(visual_search_rank=RANKS[value])
        return queryset


class DuplicateFilter(admin.SimpleListFilter):
    """Objects with an image that looks like another object's (same file, or nearly the same picture)."""

    title = _("possible duplicate image")
    parameter_name = "visual_search_duplicate"

    def lookups(self, request, model_admin):
        return [("yes", _("Yes")), ("no", _("No"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(visual_search_duplicate__isnull=False)
        if self.value() == "no":
            return queryset.filter(visual_search_duplicate__isnull=True)
        return queryset


def queue_objects(model: type[models.Model], pks: list[Any], only: tuple[str, ...] | None = None) -> int:
    """Queue (``force=True``) the images of objects ``pks`` of ``model``: their own and their gallery's.

    ``only`` keeps the images in those states (``("stale", "failed")``); returns how many were queued.
    Without Celery, more than ``VISUAL_SEARCH["IN_REQUEST_IMAGES"]`` raise :class:`~visual_search.queue.TooMuchForARequest` first.
    """
    work = []
    for registration in related_registrations(model):
        if registration.model is model and not registration.result:
            objects = registration.model._default_manager.filter(pk__in=pks)
        else:
            objects = registration.of_results(pks)
        work.append((registration, select_pks(registration, only, objects)))
    queue.check_in_request(sum(len(selected) for _, selected in work), only)
    for registration, selected in work:  # asked for by hand: images given up after MAX_EMBED_ATTEMPTS are tried again
        reset_attempts(registration, selected)
    return sum(queue.enqueue(registration.label, registration.image_field, selected, force=True) for registration, selected in work)


def failed_count(objects: models.QuerySet, rows: models.QuerySet | None = None) -> int:
    """How many of ``objects`` have a failed image (their worst status, as the status column shows)."""
    return annotate_status(objects, rows).filter(visual_search_rank=RANKS["failed"]).count()


def images_done(images: int, *, again: bool = False) -> str:
    """"15 images indexed" when the work ran in this request (no Celery), "15 images queued for
    indexing" when the workers have it: staff should know whether to wait; "no image needed indexing"
    for none (it read "0 images indexed", as if something had failed)."""
    if not images:
        return str(_("no image needed indexing: each is indexed or on its way"))
    if queue.use_celery():
        if again:
            return ngettext("%d stale or failed image queued again", "%d stale or failed images queued again", images) % images
        return ngettext("%d image queued for indexing", "%d images queued for indexing", images) % images
    if again:
        return ngettext("%d stale or failed image indexed again", "%d stale or failed images indexed again", images) % images
    return ngettext("%d image indexed", "%d images indexed", images) % images


# A mixin of ModelAdmin, as type checkers see it: its change_list_template then overrides
# ModelAdmin's, and mypy (with django-stubs) accepts ``class ProductAdmin(VisualSearchAdminMixin,
# admin.ModelAdmin)``, which it refused as two unrelated bases defining it differently.
if TYPE_CHECKING:
    _MixinBase = admin.ModelAdmin
else:
    _MixinBase = object


class VisualSearchAdminMixin(_MixinBase):
    """Adds visual search to a ``ModelAdmin``: see the module docstring."""

    change_list_template = "admin/visual_search/change_list.html"
    visual_search_actions = ("visual_search_reindex", "visual_search_requeue_failed", "visual_search_dismiss_duplicates")

    @property
    def media(self):
        # The buttons' styles (a stylesheet, not style="": a Content-Security-Policy keeps them).
        return super().media + forms.Media(css={"all": ["visual_search/admin.css"]})

    def get_queryset(self, request):
        return annotate_duplicates(annotate_status(super().get_queryset(request), self.visual_search_rows()))

    def visual_search_rows(self) -> models.QuerySet | None:
        """The rows whose status an object's column shows, a subquery on ``OuterRef("pk")``; None:
        its own images and its gallery's (:func:`embedding_rows`)."""
        return None

    def get_list_display(self, request):
        return [*super().get_list_display(request), "visual_search_status"]

    def get_changelist(self, request, **kwargs):
        base = super().get_changelist(request, **kwargs)

        class VisualSearchChangeList(base):
            """The page's duplicate warnings fetched for all its rows at once (they were two
            queries per flagged row: 206 for a page of possible duplicates)."""

            def get_results(self, request):
                super().get_results(request)
                flagged = [obj for obj in self.result_list if getattr(obj, "visual_search_duplicate", None) is not None]
                rows = flagged_rows_of(flagged)
                for obj in flagged:
                    obj.visual_search_flagged = rows[obj.pk]

        return VisualSearchChangeList

    def get_list_filter(self, request):
        return [*super().get_list_filter(request), EmbeddingStatusFilter, DuplicateFilter]

    def get_actions(self, request, action_location=None):
        # Django 6.1 passes where the actions show (action_location); earlier Djangos know no such argument.
        where = {} if action_location is None else {"action_location": action_location}
        actions = super().get_actions(request, **where)
        if self.has_change_permission(request):
            for name in self.visual_search_actions:
                actions[name] = self.get_action(name)
        return actions

    @admin.display(description=_("visual search"), ordering="visual_search_rank")
    def visual_search_status(self, obj) -> str:
        status = status_of(obj)
        if status == "failed":
            reason = describe_failure(obj.visual_search_error or "")
            label = format_html('<span class="vs-status-failed" title="{}">{}: {}</span>', reason, LABELS[status], reason[:120])
        else:
            label = format_html('<span class="vs-status-{}">{}</span>', status, LABELS[status])
        if getattr(obj, "visual_search_duplicate", None) is None:
            return label
        rows = flagged_rows(obj)  # only for the few objects with a warning
        if not rows:
            return label
        return format_html('{}<br><span class="vs-duplicate">{}</span>', label, duplicate_words(rows[0]))

    @admin.action(description=_("Reindex visual search"))
    def visual_search_reindex(self, request, queryset):
        self._queue(request, list(queryset.values_list("pk", flat=True)), None)

    @admin.action(description=_("Requeue stale and failed visual search images"))
    def visual_search_requeue_failed(self, request, queryset):
        self._queue(request, list(queryset.values_list("pk", flat=True)), ("stale", "failed"), again=True)

    def _queue(self, request, pks: list[Any], only: tuple[str, ...] | None, *, whole_model: bool = False, again: bool = False) -> None:
        try:
            done = queue_objects(self.model, pks, only=only)
        except queue.TooMuchForARequest as exc:
            self.message_user(request, exc.words(), messages.WARNING)
            return
        self._work_message(request, None if whole_model else pks, images_done(done, again=again))

    @admin.action(description=_("Dismiss possible duplicate image warnings"))
    def visual_search_dismiss_duplicates(self, request, queryset):
        # Only the selected objects with a warning, their flagged rows fetched a page at a time: it
        # was two queries per selected object, flagged or not ("select all 20,000": minutes).
        if "visual_search_duplicate" not in queryset.query.annotations:
            queryset = annotate_duplicates(queryset)
        dismissed, done = 0, set()
        warned = list(queryset.filter(visual_search_duplicate__isnull=False).order_by().values_list("pk", flat=True))
        for pks in chunked(warned, DISMISS_CHUNK):
            for rows in flagged_rows_of(list(self.model._default_manager.filter(pk__in=pks))).values():
                dismissed += self._dismiss(request, rows, done)
        self._dismissed_message(request, dismissed)

    def _dismiss(self, request, rows: list[ImageEmbedding], done: set) -> int:
        """Dismiss the warnings of ``rows``, each pair once (both products of a pair may be
        selected: ``done`` holds the pairs dismissed so far); returns how many were."""
        dismissed = 0
        for row in rows:
            pair = DuplicateDismissal.pair(row, row.duplicate_of)
            if pair not in done:
                done.add(pair)
                duplicates.dismiss(row, row.duplicate_of, request.user)
                dismissed += 1
        return dismissed

    def _dismissed_message(self, request, dismissed: int) -> None:
        text = ngettext("%d possible duplicate dismissed: it will not be flagged again.",
                        "%d possible duplicates dismissed: they will not be flagged again.", dismissed) % dismissed
        self.message_user(request, text, messages.SUCCESS)

    def _work_message(self, request, pks: list[Any] | None, done: str) -> None:
        """"3 products: 15 images indexed.", and which still failed when the work ran here."""
        text = f"{len(pks)} {model_ngettext(self.opts, len(pks))}: {done}." if pks is not None else f"{done[:1].upper()}{done[1:]}."
        failed = 0 if queue.use_celery() else self._failed_count(pks)
        if failed:
            text += " " + ngettext(
                "%(count)d %(objects)s still has a failed image: the visual search column says why.",
                "%(count)d %(objects)s still have a failed image: the visual search column says why.",
                failed,
            ) % {"count": failed, "objects": model_ngettext(self.opts, failed)}
        self.message_user(request, text, messages.WARNING if failed else messages.SUCCESS)

    def _failed_count(self, pks: list[Any] | None) -> int:
        objects = self.model._default_manager.all() if pks is None else self.model._default_manager.filter(pk__in=pks)
        return failed_count(objects, self.visual_search_rows())

    # -- the changelist button: index every missing, stale or failed image of this model ------------

    def get_urls(self):
        info = self.model._meta.app_label, self.model._meta.model_name
        extra = [
            path(
                "visual-search-requeue/",
                self.admin_site.admin_view(self.visual_search_requeue_view),
                name="%s_%s_visual_search_requeue" % info,
            ),
            path(
                "<path:object_id>/visual-search-not-duplicate/",
                self.admin_site.admin_view(self.visual_search_dismiss_view),
                name="%s_%s_visual_search_dismiss" % info,
            ),
        ]
        return extra + super().get_urls()

    def changelist_view(self, request, extra_context=None):
        # The "Index missing, stale and failed images" button, for staff who may press it (403 for the others).
        extra_context = {**(extra_context or {}), "visual_search_can_queue": self.has_change_permission(request)}
        return super().changelist_view(request, extra_context)

    def visual_search_requeue_view(self, request):
        if request.method != "POST" or not self.has_change_permission(request):
            raise PermissionDenied
        # Every image that is not ready and not being done: never indexed (a bulk_create, a loaddata,
        # an import with indexing paused), made from another file, or failed. (It left the first out:
        # after a loaddata of 100 products, 100 read "Not indexed" and it answered "0 queued".)
        self._queue(request, list(self.model._default_manager.values_list("pk", flat=True)), ("missing", "stale", "failed"), whole_model=True)
        info = self.model._meta.app_label, self.model._meta.model_name
        return HttpResponseRedirect(reverse("admin:%s_%s_changelist" % info, current_app=self.admin_site.name))

    # -- the change page: why an image failed; "possible duplicate of ..." with a "Not a duplicate" button

    def change_view(self, request, object_id, form_url="", extra_context=None):
        if request.method == "GET":
            obj = self.get_object(request, object_id)
            if obj is not None:
                self._failure_message(request, obj)
                self._duplicate_warnings(request, obj)
        return super().change_view(request, object_id, form_url, extra_context)

    def _failure_message(self, request, obj) -> None:
        """Where staff can fix it: why an image of this object could not be indexed."""
        if status_of(obj) == "failed":
            text = _("Visual search could not index an image of this %(object)s: %(error)s Replace the image and save: "
                     "it is indexed again.") % {"object": self.opts.verbose_name, "error": describe_failure(obj.visual_search_error or "")}
            self.message_user(request, text, messages.ERROR)

    def _duplicate_warnings(self, request, obj) -> None:
        """A warning per flagged image, shown on this very page (messages added before it renders)."""
        info = self.model._meta.app_label, self.model._meta.model_name
        url = reverse("admin:%s_%s_visual_search_dismiss" % info, args=[obj.pk], current_app=self.admin_site.name)
        button = ""
        if self.has_change_permission(request, obj):
            button = format_html(
                ' <form method="post" action="{}" class="vs-inline-form"><input type="hidden" name="csrfmiddlewaretoken" '
                'value="{}"><button type="submit" class="button">{}</button></form>',
                url, get_token(request), _("Not a duplicate"),
            )
        for row in flagged_rows(obj):
            words = duplicate_words(row)
            # Both pictures, so staff can tell a copy from two products that look alike.
            theirs = previews.thumbnail(row.duplicate_of, 48) if row.duplicate_of is not None else ""
            text = format_html("{} {}{} {}{}", previews.thumbnail(row, 48), _("This image is a "), words, theirs, button)
            self.message_user(request, text, messages.WARNING)

    def visual_search_dismiss_view(self, request, object_id):
        obj = self.get_object(request, object_id)
        if request.method != "POST" or obj is None or not self.has_change_permission(request, obj):
            raise PermissionDenied
        self._dismissed_message(request, self._dismiss(request, flagged_rows(obj), set()))
        info = self.model._meta.app_label, self.model._meta.model_name
        return HttpResponseRedirect(reverse("admin:%s_%s_change" % info, args=[obj.pk], current_app=self.admin_site.name))
