"""Keep embeddings in step with registered models, through model signals.

The processor class is chosen by ``VISUAL_SEARCH["SIGNAL_PROCESSOR"]`` (a dotted path), so a shop
can replace it, e.g. with one that only queues work from an outbox, without touching its models.
Handlers are connected only for registered models. They skip fixture loading (``raw`` saves),
respect ``update_fields``, compare the image's storage name with the one seen when the object was
loaded (an unchanged image schedules nothing), and schedule work with ``transaction.on_commit``:
a rolled-back save queues nothing, and the task only gets ids. A file uploaded in the save (an
admin form's, an API's) counts as a change even under the same name: storages that overwrite
(S3's default ``AWS_S3_FILE_OVERWRITE = True``) keep the name and replace the photo.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from django.core.files import File
from django.db import router, transaction
from django.db.models import signals
from django.utils.module_loading import import_string

from . import queue
from .conf import settings
from .indexing import mark_pending, remove_object
from .registry import Registration, get_registrations, models_sharing_rows, registrations_for_model, subscribe, unsubscribe

_SEEN = "_visual_search_seen"
_paused: contextvars.ContextVar[list | None] = contextvars.ContextVar("visual_search_paused", default=None)


@contextlib.contextmanager
def pause_indexing(reindex_on_exit: bool = True) -> Iterator[None]:
    """Pause automatic indexing for a bulk import::

        with visual_search.pause_indexing():
            for row in feed:
                Product.objects.create(...)

    On exit the objects saved inside are queued in batches (one task per ``BATCH_SIZE``), which is
    much faster than one task per save. With ``reindex_on_exit=False`` nothing is queued now: their
    rows wait, *pending* (new objects and changed images alike); the Celery sweep queues them once
    they are older than ``SWEEP_AFTER_SECONDS``, or ``manage.py visual_search_reindex --only
    pending`` indexes them.
    """
    touched: list[tuple[str, str, object]] = []
    token = _paused.set(touched)
    try:
        yield
    finally:
        _paused.reset(token)
    if reindex_on_exit and touched:
        groups: dict[tuple[str, str], list] = {}
        for label, field, pk in touched:
            groups.setdefault((label, field), []).append(pk)
        # Through the configured processor's schedule(), as a save outside the pause: a shop that
        # overrides it (its own queue, an outbox) also gets its bulk imports.
        processor = get_signal_processor()
        schedule = processor.schedule if processor is not None else queue.enqueue
        for (label, field), pks in groups.items():
            schedule(label, field, list(dict.fromkeys(pks)))


class SignalProcessor:
    """Connects ``post_init``, ``post_save`` and ``post_delete`` of every registered model.

    Models registered later with :func:`visual_search.register` are connected as they come: the
    processor subscribes to the registry.
    """

    def __init__(self) -> None:
        self.models: set[type] = set()

    def setup(self) -> None:
        # Subscribed first: with a broken MODELS entry (raised below, reported by the checks) the
        # models registered from code later are still connected.
        subscribe(self.registered)
        for registration in get_registrations():
            self.registered(registration)

    def registered(self, registration: Registration) -> None:
        for model in models_sharing_rows(registration.model):
            self.connect(model)

    def connect(self, model: type) -> None:
        if model in self.models:
            return
        self.models.add(model)
        uid = f"visual_search:{model._meta.label_lower}"
        signals.post_init.connect(self.handle_init, sender=model, dispatch_uid=uid, weak=False)
        signals.pre_save.connect(self.handle_pre_save, sender=model, dispatch_uid=uid, weak=False)
        signals.post_save.connect(self.handle_save, sender=model, dispatch_uid=uid, weak=False)
        signals.post_delete.connect(self.handle_delete, sender=model, dispatch_uid=uid, weak=False)

    def teardown(self) -> None:
        unsubscribe(self.registered)
        for model in self.models:
            uid = f"visual_search:{model._meta.label_lower}"
            for signal in (signals.post_init, signals.pre_save, signals.post_save, signals.post_delete):
                signal.disconnect(sender=model, dispatch_uid=uid)
        self.models.clear()

    # -- handlers ---------------------------------------------------------------------------

    def handle_init(self, sender, instance, **kwargs) -> None:
        seen = instance.__dict__[_SEEN] = {}
        for registration in registrations_for_model(sender):
            seen[registration.image_field] = _name(instance, registration)
            if registration.result:
                seen[_result_key(registration)] = _result_of(instance, registration)

    def handle_pre_save(self, sender, instance, raw=False, **kwargs) -> None:
        # Before the field stores the file: only now is an uploaded one told from the name it had.
        if raw:
            return
        seen = instance.__dict__.setdefault(_SEEN, {})
        for registration in registrations_for_model(sender):
            if _uploading(instance, registration):
                seen[_uploaded_key(registration)] = True

    def handle_save(self, sender, instance, created=False, raw=False, update_fields=None, using=None, **kwargs) -> None:
        if raw:
            return
        seen = instance.__dict__.setdefault(_SEEN, {})
        for registration in registrations_for_model(sender):
            field = registration.image_field
            name = _name(instance, registration)
            image_saved = update_fields is None or field in update_fields
            uploaded = seen.get(_uploaded_key(registration), False)
            changed = image_saved and (created or field not in seen or seen[field] != name or uploaded)
            if registration.result:
                # A gallery image moved to another product (its foreign key changed, the file did
                # not): its rows must stand for the new product, or searches keep finding the old one.
                key, result = _result_key(registration), _result_of(instance, registration)
                if update_fields is None or registration.result.split("__")[0] in update_fields:
                    if key in seen and seen[key] != result:
                        changed = changed or (not created and bool(name))
                    seen[key] = result
            if not changed:
                seen.pop(_uploaded_key(registration), None)
                continue
            seen[field] = name
            try:
                self.image_changed(registration, instance, name, using or router.db_for_write(sender))
            finally:
                seen.pop(_uploaded_key(registration), None)

    def handle_delete(self, sender, instance, **kwargs) -> None:
        removed = [remove_object(registration, instance.pk) for registration in registrations_for_model(sender)]
        if any(removed):
            queue.fit_after_removal()  # the catalogue may have shrunk by WHITENING_REFIT_GROWTH

    # -- what a change does (override these to change the policy) ------------------------------

    def image_changed(self, registration: Registration, instance, name: str, using: str) -> None:
        """Mark the row pending now and schedule the work once the transaction commits; an image
        gone, or out of search (``registration.is_searchable``: a variant hidden), loses its rows."""
        if not name or not registration.is_searchable(instance):
            if remove_object(registration, instance.pk):
                queue.fit_after_removal()  # the catalogue may have shrunk by WHITENING_REFIT_GROWTH
            return
        if not mark_pending(registration, instance, name, new_file=uploaded_in_this_save(instance, registration)):
            return
        paused = _paused.get()
        if paused is not None:
            paused.append((registration.label, registration.image_field, instance.pk))
            return
        label, field, pk = registration.label, registration.image_field, instance.pk
        transaction.on_commit(lambda: self.schedule(label, field, [pk]), using=using)

    def schedule(self, label: str, image_field: str, pks: list) -> None:
        queue.enqueue(label, image_field, pks)


def _result_key(registration: Registration) -> str:
    return f"{registration.image_field}:result"


def _result_of(instance, registration: Registration):
    """The first step towards the object a match stands for (``"product"``: ``product_id``), as
    loaded, without a query; a deeper move (``"variant__product"``: the variant's) is not seen here."""
    field = instance._meta.get_field(registration.result.split("__")[0])
    return instance.__dict__.get(getattr(field, "attname", field.name))


def _uploaded_key(registration: Registration) -> str:
    return f"{registration.image_field}:uploaded"


def _uploading(instance, registration: Registration) -> bool:
    """Whether the save stores a new file in the image field (a form's upload, a ``ContentFile``):
    a file not yet committed to the storage."""
    value = instance.__dict__.get(registration.image_field)
    return isinstance(value, File) and not getattr(value, "_committed", False)


def uploaded_in_this_save(instance, registration: Registration) -> bool:
    """Whether the save being handled stored a file uploaded into the image field, whatever its name."""
    return bool(instance.__dict__.get(_SEEN, {}).get(_uploaded_key(registration)))


def _name(instance, registration: Registration) -> str:
    if registration.image_field not in instance.__dict__:
        return ""  # deferred field: unknown, treated as changed only if saved with update_fields
    file = instance.__dict__[registration.image_field]
    return getattr(file, "name", file) or ""


_processor: SignalProcessor | None = None


def get_signal_processor() -> SignalProcessor | None:
    return _processor


def setup_signal_processor() -> SignalProcessor:
    """Build the configured processor and connect it (called from ``AppConfig.ready``)."""
    global _processor
    if _processor is not None:
        _processor.teardown()
    _processor = import_string(settings.SIGNAL_PROCESSOR)()
    _processor.setup()
    return _processor
