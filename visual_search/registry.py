"""Which models are searchable, declared without editing them.

A registration names a model and one of its image fields. ``result`` names the object a match
stands for: for a ``ProductImage`` with ``product = ForeignKey(Product)``, ``result="product"``
makes searches return products (each once, scored by its best image). Registrations come from
``settings.VISUAL_SEARCH["MODELS"]`` and from :func:`register`; several may coexist, and
several may share a result model (a product's main image and its gallery images).

Whatever must follow registrations (the signal processor connects the model's signals) subscribes
with :func:`subscribe`: the registry calls it for each new registration and knows nothing of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.apps import apps
from django.core.exceptions import ImproperlyConfigured
from django.db import DatabaseError, models, router
from django.utils.module_loading import import_string

from .conf import did_you_mean, settings
from .exceptions import ImageTooLarge


@dataclass(frozen=True)
class Registration:
    """One searchable image field: ``model.image_field``, whose matches stand for ``result``."""

    model: type[models.Model]
    image_field: str
    result: str | None = None

    def __str__(self) -> str:
        """"shop.product.image", as staff read it in logs and commands."""
        return f"{self.label}.{self.image_field}"

    @property
    def label(self) -> str:
        return self.model._meta.label_lower

    @property
    def result_model(self) -> type[models.Model]:
        if not self.result:
            return self.model
        model = self.model
        for part in self.result.split("__"):
            model = model._meta.get_field(part).related_model
        return model

    @property
    def result_label(self) -> str:
        return self.result_model._meta.label_lower

    def result_pk(self, obj: models.Model) -> Any:
        """The primary key of the object a match on ``obj`` stands for."""
        if not self.result:
            return obj.pk
        target = obj
        for part in self.result.split("__"):
            target = getattr(target, part)
            if target is None:
                return None
        return target.pk

    def result_pk_lookup(self) -> str:
        return f"{self.result}__pk" if self.result else "pk"

    def of_results(self, pks: list[Any]) -> models.QuerySet:
        """The objects of ``model`` whose images staff reindex from results ``pks`` (an admin
        action): those that stand for them; Oscar's preset adds a variant's own photos."""
        return self.model._default_manager.filter(**{f"{self.result_pk_lookup()}__in": pks})

    def searchable(self) -> models.QuerySet:
        """The objects of ``model`` whose images take part in search: indexed, found by a photo, and
        counted in their result's look-alikes. All of them; a subclass leaves out those the shop hides
        (Oscar's preset: a variant that is not public). Indexing, reindex and the sweep work on these
        and drop the rows of the others, so an object that comes back is indexed again.
        :meth:`is_searchable` is its twin for one loaded object."""
        return self.model._default_manager.all()

    def searchable_on_primary(self) -> models.QuerySet:
        """:meth:`searchable` as the database the router writes ``model`` to (the primary) has them:
        what a task, the sweep or a build decides from, where a read replica may lag (a product just
        saved, or shown again). Not for overriding: override :meth:`searchable`."""
        return self.searchable().using(router.db_for_write(self.model))

    def is_searchable(self, obj: models.Model) -> bool:
        """Whether ``obj`` is one of :meth:`searchable`, as a save finds it (no query by default)."""
        return True

    def pictures(self) -> models.QuerySet:
        """The objects of ``model`` whose image may show on their result's card (a gallery's first
        picture, :func:`visual_search.results.images`): all of them; a subclass leaves out those the
        shop hides (Oscar's preset: a variant that is not public)."""
        return self.model._default_manager.all()

    def shown_on(self, obj: models.Model) -> models.Model | None:
        """The object whose page shows ``obj``, an object of :attr:`result_model` the shop does not
        list on its own: None (by default: it is shown as itself, or not at all). Oscar's preset: a
        variant's parent, as Oscar shows a child on its parent's page (whether customers are shown
        the variant is :meth:`why_hidden`'s to say)."""
        return None

    def why_hidden(self, obj: models.Model) -> str:
        """Why customers are never shown ``obj`` on the page :meth:`shown_on` names, in English for the
        log; "" (by default) when they are, as far as the registration knows (``VISIBILITY`` decides
        the rest). Oscar's preset: a variant that is not public. Shop code calling ``find_similar``
        without a request is no customer: it still gets the page's look-alikes."""
        return ""

    def read_image(self, obj: models.Model) -> bytes:
        """The bytes of ``obj``'s image, read from its storage now: at most one byte more than
        ``MAX_INDEX_BYTES``, enough to refuse a larger file without holding it whole in memory.
        A file whose storage tells its size on opening (S3's, from the request that opens it) is
        refused unread: S3's file object downloads the whole object at its first read."""
        file, limit = getattr(obj, self.image_field), int(settings.MAX_INDEX_BYTES)
        with file.storage.open(file.name, "rb") as handle:
            if _size(handle) > limit:
                raise ImageTooLarge.over(limit)
            return handle.read(limit + 1)


def _size(handle) -> int:
    """The size an opened file announces, 0 when it cannot tell."""
    try:
        return int(handle.size or 0)
    except Exception:  # noqa: BLE001 - a file object without a size (any storage's)
        return 0


_registered: dict[tuple[str, str], Registration] = {}


def _gallery_hint(model: type[models.Model]) -> str:
    """Said of a model without a file field: the gallery model that holds its photos, if one does (a
    ``ProductImage`` with a foreign key to the ``Product`` registered by mistake), as an entry to use."""
    for relation in model._meta.related_objects:
        if not relation.one_to_many:
            continue
        files = [f.name for f in relation.related_model._meta.get_fields() if isinstance(f, models.FileField)]
        if files:
            entry = {"model": relation.related_model._meta.label, "image_field": files[0], "result": relation.field.name}
            return (f"; it has no ImageField, but {relation.related_model._meta.label} holds its images: register "
                    f"{entry} instead, so that its matches stand for their {model.__name__}.")
    return "; it has no ImageField."


def _make(
    model: type[models.Model],
    image_field: str,
    result: str | None,
    registration_class: type[Registration] | None = None,
    where: str | None = None,
) -> Registration:
    """A checked registration. ``where`` names what declared it in each error (a ``MODELS`` entry);
    without it, each error names it as before (the ``register()`` call, the model)."""

    def refused(problem: str, default_where: str | None) -> ImproperlyConfigured:
        named = where or default_where
        return ImproperlyConfigured(f"{named}: {problem}" if named else problem)

    try:
        field = model._meta.get_field(image_field)
    except Exception as exc:
        files = [f.name for f in model._meta.get_fields() if isinstance(f, models.FileField)]
        hint = did_you_mean(image_field, files) or (f"; its file fields: {', '.join(files)}." if files else _gallery_hint(model))
        call = f"visual_search.register({model.__name__}, image_field={image_field!r})"
        raise refused(f"{model.__name__} has no field {image_field!r}{hint}", call) from exc
    if not isinstance(field, models.FileField):
        raise refused(
            f"{model.__name__}.{image_field} is a {type(field).__name__}; visual search needs an ImageField or FileField.", None
        )
    registration = (registration_class or Registration)(model=model, image_field=image_field, result=result)
    try:
        registration.result_model  # noqa: B018 - validates the result path now, not at first search
    except Exception as exc:
        relations = [f.name for f in model._meta.get_fields() if f.is_relation and (f.many_to_one or f.one_to_one) and f.concrete]
        raise refused(
            f"result={result!r} is not a relation path{did_you_mean(result, relations) or ''} "
            f"(its foreign keys: {', '.join(relations) or 'none'}; several hops as 'variant__product').",
            model.__name__,
        ) from exc
    return registration


def _model(model: type[models.Model] | str, call: str) -> type[models.Model]:
    """``model`` itself, or the model an ``"app_label.ModelName"`` label names (as in ``MODELS``)."""
    if isinstance(model, type) and issubclass(model, models.Model):
        return model
    if isinstance(model, str):
        try:
            return apps.get_model(model)
        except (LookupError, ValueError) as exc:
            labels = [known._meta.label for known in apps.get_models()]
            hint = did_you_mean(model, labels) or "; use 'app_label.ModelName', e.g. 'shop.Product'."
            raise ImproperlyConfigured(f"visual_search.{call}({model!r}): no such model{hint}") from exc
    raise ImproperlyConfigured(f"visual_search.{call}() takes a model class or an 'app_label.ModelName' label, not {model!r}.")


def register(
    model: type[models.Model] | str,
    image_field: str = "image",
    result: str | None = None,
    *,
    registration_class: type[Registration] | None = None,
) -> Registration:
    """Make ``model.image_field`` searchable. Call it from an ``AppConfig.ready()``. ``model`` is the
    class or its ``"app_label.ModelName"`` label, as in ``MODELS``.

    ``result`` is the path (``"product"`` or ``"variant__product"``) from ``model`` to the object
    that search results return; leave it out when ``model`` is itself what customers search for.
    ``registration_class``: a :class:`Registration` subclass that maps an image to its result its
    own way (``result_pk`` and ``result_pk_lookup``; django-oscar's variants: a child's image stands
    for its parent, visual_search.contrib.oscar.registration), or leaves some images out of search
    (``searchable`` and ``is_searchable``: Oscar's hidden variants).
    """
    if registration_class is not None and not issubclass(registration_class, Registration):
        raise ImproperlyConfigured(f"registration_class must be a subclass of visual_search.registry.Registration, not {registration_class!r}.")
    registration = _make(_model(model, "register"), image_field, result, registration_class)
    _registered[(registration.label, image_field)] = registration
    for observer in list(_observers):
        observer(registration)
    return registration


_observers: list[Callable[[Registration], None]] = []


def subscribe(observer: Callable[[Registration], None]) -> None:
    """Call ``observer(registration)`` for every later :func:`register` (once per observer)."""
    if observer not in _observers:
        _observers.append(observer)


def unsubscribe(observer: Callable[[Registration], None]) -> None:
    if observer in _observers:
        _observers.remove(observer)


def unregister(model: type[models.Model] | str, image_field: str | None = None) -> None:
    """Stop indexing ``model`` (all its fields, or just ``image_field``) registered by :func:`register`."""
    label = _model(model, "unregister")._meta.label_lower
    for key in [k for k in _registered if k[0] == label and image_field in (None, k[1])]:
        del _registered[key]


_from_settings_cache: tuple[str, list[Registration]] | None = None


def _from_settings() -> list[Registration]:
    """Registrations declared in ``VISUAL_SEARCH["MODELS"]``, rebuilt when the setting changes."""
    global _from_settings_cache
    entries = settings.MODELS
    key = repr(entries)
    if _from_settings_cache is not None and _from_settings_cache[0] == key:
        return _from_settings_cache[1]
    found = []
    for entry in entries:
        if isinstance(entry, str):
            entry = {"model": entry}
        try:
            model = apps.get_model(entry["model"])
        except (LookupError, KeyError, ValueError) as exc:
            labels = [model._meta.label for model in apps.get_models()]
            hint = did_you_mean(entry.get("model"), labels) or "; use 'app_label.ModelName', e.g. 'shop.Product'."
            raise ImproperlyConfigured(f"VISUAL_SEARCH['MODELS'] entry {entry!r}: no such model{hint}") from exc
        # Its errors name the entry as the shop wrote it, not as register() would be called.
        found.append(_make(model, entry.get("image_field", "image"), entry.get("result"), where=f"VISUAL_SEARCH['MODELS'] entry {entry!r}"))
    _from_settings_cache = (key, found)
    return found


def get_registrations() -> list[Registration]:
    """Every registration: those in settings, then those from :func:`register`."""
    merged = {(r.label, r.image_field): r for r in _from_settings()}
    merged.update(_registered)
    return list(merged.values())


def registrations_for_model(model: type[models.Model]) -> list[Registration]:
    """Registrations whose indexed rows ``model``'s objects are: the registered model, a proxy of
    it or of its concrete model (they share its rows), or a subclass by multi-table inheritance (a
    ``DigitalProduct`` is a registered ``Product`` too)."""
    return [r for r in get_registrations() if issubclass(model, r.model._meta.concrete_model)]


def models_sharing_rows(model: type[models.Model]) -> list[type[models.Model]]:
    """The installed models whose saves and deletes are those of a registered ``model``'s rows (see
    :func:`registrations_for_model`): Django sends a model's signals with the saved object's own
    class, a proxy's or a child's, never its registered parent's."""
    concrete = model._meta.concrete_model
    return [model, *(m for m in apps.get_models() if m is not model and issubclass(m, concrete))]


def registrations_for_result(model: type[models.Model]) -> list[Registration]:
    """Registrations whose matches stand for objects of ``model``."""
    label = model._meta.label_lower
    return [r for r in get_registrations() if r.result_label == label]


def get_registration(label: str, image_field: str) -> Registration:
    for registration in get_registrations():
        if registration.label == label and registration.image_field == image_field:
            return registration
    raise LookupError(f"{label}.{image_field} is not registered with visual search.")


def search_model() -> type[models.Model]:
    """The model search by photo returns: ``API_MODEL``, or the first registration's result model."""
    label = settings.API_MODEL
    if label:
        try:
            return apps.get_model(label)
        except (LookupError, ValueError) as exc:
            raise ImproperlyConfigured(f"VISUAL_SEARCH['API_MODEL'] = {label!r}: no such model; use 'app_label.ModelName'.") from exc
    registrations = get_registrations()
    if not registrations:
        raise ImproperlyConfigured("Search by photo needs a registered model: add one to VISUAL_SEARCH['MODELS'].")
    return registrations[0].result_model


class NotShown(LookupError):
    """An object customers are not shown; ``reason`` (English, for the API's ``detail``) says why,
    or is empty where saying it would tell no more than "no such object"."""

    def __init__(self, reason: str = ""):
        super().__init__(reason)
        self.reason = reason


class VisibilityRuleError(ImproperlyConfigured):
    """The shop's ``VISIBILITY`` rule raised, or returned something else than a QuerySet of the model."""


VISIBILITY_HOW = (
    "The rule is called as rule(model, request), with request None outside a customer's request, and "
    "returns a QuerySet of that model, e.g. def browsable(model, request): return model.objects.filter(is_public=True)."
)


def visible(model: type[models.Model], request: Any = None) -> models.QuerySet:
    """What customers may see of ``model``: the shop's ``VISIBILITY`` rule, else every object.

    Read at each call, so an object hidden a moment ago is already left out. A rule that fails
    raises :class:`VisibilityRuleError`, saying what the rule is called with (a database error
    passes as it is: it may pass).
    """
    rule = settings.VISIBILITY
    if not rule:
        return model._default_manager.all()
    try:
        shown = import_string(rule)(model, request)
    except DatabaseError:
        raise
    except Exception as exc:
        raise VisibilityRuleError(
            f"VISUAL_SEARCH['VISIBILITY'] = {rule!r} failed for {model._meta.label}: {type(exc).__name__}: {exc}. {VISIBILITY_HOW}"
        ) from exc
    if not isinstance(shown, models.QuerySet) or shown.model._meta.concrete_model is not model._meta.concrete_model:
        raise VisibilityRuleError(
            f"VISUAL_SEARCH['VISIBILITY'] = {rule!r} returned {type(shown).__name__} for {model._meta.label}, "
            f"not a QuerySet of it. {VISIBILITY_HOW}"
        )
    return shown


def filter_lookups() -> dict[str, str]:
    """The filters customers may add to a search, ``{parameter: lookup}`` (``API_FILTERS``, validated
    by the system check ``visual_search.E008``)."""
    return dict(settings.API_FILTERS or {})


def shaping(registration: Registration) -> models.QuerySet:
    """The objects of ``registration.model`` whose images may shape a model version (the images it is
    trained on, those that calibrate an int8 network): those in search (:meth:`Registration.searchable`:
    not a hidden Oscar variant) that stand for a result customers are shown (``VISIBILITY``, as
    outside a request). A hidden product's photos made part of what customers search with."""
    shown = visible(registration.result_model).values("pk")
    return registration.searchable().filter(**{f"{registration.result_pk_lookup()}__in": shown})
