"""Admin for stored embeddings: status and failure reasons at a glance, requeue in one click."""

from __future__ import annotations

from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _, ngettext

from .models import ImageEmbedding, Whitening


@admin.register(ImageEmbedding)
class ImageEmbeddingAdmin(admin.ModelAdmin):
    list_display = ("__str__", "result_type", "result_id", "status", "short_error", "fingerprint", "updated_at")
    list_filter = ("status", "content_type", "fingerprint")
    search_fields = ("object_id", "result_id", "error", "source_name")
    readonly_fields = [f.name for f in ImageEmbedding._meta.fields if f.name != "vector"]
    actions = ["requeue"]

    @admin.display(description=_("error"))
    def short_error(self, obj: ImageEmbedding) -> str:
        return obj.error[:120]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description=_("Recompute the selected embeddings"))
    def requeue(self, request, queryset):
        from .registry import get_registration
        from .tasks import enqueue

        groups: dict[tuple[str, str], list[str]] = {}
        for row in queryset.select_related("content_type"):
            label = f"{row.content_type.app_label}.{row.content_type.model}"
            groups.setdefault((label, row.field_name), []).append(row.object_id)
        queued = 0
        for (label, field), pks in groups.items():
            try:
                get_registration(label, field)
            except LookupError:
                continue
            queued += enqueue(label, field, pks, force=True)
        self.message_user(
            request,
            ngettext("%d image queued for recomputing.", "%d images queued for recomputing.", queued) % queued,
            messages.SUCCESS,
        )


@admin.register(Whitening)
class WhiteningAdmin(admin.ModelAdmin):
    """Read-only: whitenings are learned by visual_search_reindex and the sweep."""

    list_display = ("result_type", "fingerprint", "dimensions", "trained_on", "updated_at")
    readonly_fields = ("result_type", "fingerprint", "dimensions", "trained_on", "updated_at")
    exclude = ("mean", "projection")

    def has_add_permission(self, request) -> bool:
        return False
