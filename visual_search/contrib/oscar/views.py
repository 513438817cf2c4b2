"""Pages for Oscar shops: the search-by-photo page in Oscar's layout, and the dashboard page.

The work is visual_search's own: the search page is its ``SearchByPhotoView`` with another
template; the dashboard shows :func:`visual_search.reindex.status_counts` and the admin's per-product
status (:func:`visual_search.admin_mixins.annotate_status`), and its buttons queue images as the
admin's actions do (:func:`visual_search.admin_mixins.queue_objects`). Who may do what is the app
config's ``permissions_map`` (Oscar's dashboard convention), checked before a view runs.
"""

from __future__ import annotations

from django.contrib import messages
from django.db.models import F
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.translation import ngettext
from django.views.generic import ListView, View
from oscar.core.loading import get_model

from visual_search import queue
from visual_search.admin_mixins import LABELS, RANKS, annotate_status, failed_count, images_done, queue_objects, status_of
from visual_search.queue import TooMuchForARequest
from visual_search.reindex import status_counts
from visual_search.views import SearchByPhotoView
from visual_search.whitening import score_notes

STATUS_URL = "visual_search_oscar:visual-search-status"
# Who may press the buttons: staff who may change products (superusers may do anything).
CHANGE_PERMISSIONS = ["is_staff", "catalogue.change_product"]


class OscarSearchByPhotoView(SearchByPhotoView):
    """visual_search's search page, in Oscar's layout (``visual_search/oscar/search.html``)."""

    template_name = "visual_search/oscar/search.html"


class StatusView(ListView):
    """Counts per registration, then every product (parents and standalone) with its worst image
    status and the reason when one failed; ``?status=failed`` (ready, pending, stale, missing) filters."""

    template_name = "visual_search/oscar/dashboard/status.html"
    paginate_by = 25
    context_object_name = "products"

    def get_queryset(self):
        products = annotate_status(get_model("catalogue", "Product").objects.browsable_dashboard())
        status = self.request.GET.get("status")
        if status == "missing":
            products = products.filter(visual_search_rank__isnull=True)
        elif status in RANKS:
            products = products.filter(visual_search_rank=RANKS[status])
        # Failed first, then pending, stale and ready; products never indexed last.
        return products.order_by(F("visual_search_rank").asc(nulls_last=True), "-date_updated")

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        for product in context["products"]:
            product.visual_search_status = status_of(product)
        context.update(
            counts=status_counts(),
            statuses=LABELS,
            status=self.request.GET.get("status", ""),
            can_change=self.request.user.has_perms(["catalogue.change_product"]),
            # How the scores customers see are calibrated, or why not and what to do (one image per product).
            scores=score_notes(),
        )
        return context


class QueueView(View):
    """POST only: queue the catalogue's images (``only``: just those in these states) and go back."""

    only: tuple[str, ...] | None = None

    def post(self, request):
        Product = get_model("catalogue", "Product")
        try:
            queued = queue_objects(Product, list(Product.objects.values_list("pk", flat=True)), only=self.only)
        except TooMuchForARequest as exc:
            messages.warning(request, exc.words())
        else:
            messages.success(request, self.done_message(queued))
            if not queue.use_celery():  # the work ran here: say which still failed
                failed = failed_count(Product.objects.browsable_dashboard())
                if failed:
                    messages.warning(request, ngettext(
                        "%d product still has a failed image: the list below says why.",
                        "%d products still have a failed image: the list below says why.", failed) % failed)
        return HttpResponseRedirect(reverse(STATUS_URL))

    def done_message(self, images: int) -> str:
        """"7 images queued for indexing." with Celery, "7 images indexed." when the work ran here."""
        done = images_done(images)
        return f"{done[:1].upper()}{done[1:]}."


class ReindexView(QueueView):
    """Recompute the vectors of every product image (Celery, or in-process without a broker)."""


class RequeueFailedView(QueueView):
    """Index every image that is not ready and not being done: never indexed (a ``bulk_create``, a
    fixture, an import with indexing paused), made from another file or model (stale), or failed.

    The admin's "Index missing, stale and failed images" button. (It once left the never-indexed
    out: after a ``loaddata``, every product read "Not indexed" and the button answered "0 queued".)
    """

    only = ("missing", "stale", "failed")
