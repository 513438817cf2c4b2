"""Stored vectors: one :class:`ImageEmbedding` row per indexed image field of an object and model version."""

from __future__ import annotations

import logging
import posixpath

import numpy as np
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import FieldDoesNotExist
from django.core.files.storage import Storage
from django.db import DatabaseError, connections, models, router
from django.db.migrations.executor import MigrationExecutor
from django.db.models.functions import Cast, Concat, Replace, Substr
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

logger = logging.getLogger("visual_search")


def forget_duplicate(collector, field, sub_objs, using) -> None:
    """``on_delete`` of ``ImageEmbedding.duplicate_of``: the rows that named the deleted one as their
    duplicate lose it, and its score with it."""
    collector.add_field_update(field, None, sub_objs)
    collector.add_field_update(field.model._meta.get_field("duplicate_score"), None, sub_objs)


def content_types_of(obj: models.Model | type[models.Model]) -> list[ContentType]:
    """The content types an object's rows may be stored under (an object or its model): its concrete
    model's, and those of the parents it inherits from by multi-table inheritance (a registered
    ``Product``'s child ``DigitalProduct`` is indexed as that ``Product``, same primary key)."""
    model = obj if isinstance(obj, type) else type(obj)
    return [ContentType.objects.get_for_model(m) for m in (model, *model._meta.get_parent_list())]


def type_is(field: str, types: list[ContentType]) -> models.Q:
    """``field`` is one of ``types``: an equality where there is one (an index's prefix either way)."""
    return models.Q(**{field: types[0]}) if len(types) == 1 else models.Q(**{f"{field}__in": types})


class PkText(Cast):
    """A primary key as text. On MySQL and MariaDB ``CONCAT(pk)``, not ``CAST(pk AS char)``: a cast
    takes the connection's collation, and where the tables' differs (a database created with
    ``utf8mb4_unicode_ci``, a connection with ``charset: utf8mb4``, whose default is
    ``utf8mb4_general_ci``) comparing it with ``object_id`` fails with "Illegal mix of collations"
    (error 1267). CONCAT of a number is coercible, of a string column keeps its collation."""

    def as_mysql(self, compiler, connection, **extra_context):
        return self.as_sql(compiler, connection, template="CONCAT(%(expressions)s)", **extra_context)


def key_field(model: type[models.Model]) -> models.Field:
    """``model``'s primary key field as its rows store it: under multi-table inheritance, the parent's."""
    field = model._meta.pk
    while field.is_relation:
        field = field.target_field
    return field


def pk_as_text(model: type[models.Model]):
    """The outer object's primary key as its rows store it, ``str(pk)``, computed in SQL (for a
    subquery on the rows, ``object_id=pk_as_text(model)``).

    A cast is that for integers and strings. A UUID is stored as 32 hex digits where the database
    has no uuid type (SQLite, MySQL), where ``str()`` writes 8-4-4-4-12 with dashes: the dashes are
    put in on the outer side, so that the lookup in the rows' index stays a lookup.
    """
    field = key_field(model)
    text = PkText(models.OuterRef("pk"), output_field=models.CharField())
    if isinstance(field, models.UUIDField) and not connections[router.db_for_read(model)].features.has_native_uuid_field:
        dash = models.Value("-")
        parts = [Substr(text, start, length) for start, length in ((1, 8), (9, 4), (13, 4), (17, 4), (21, 12))]
        return Concat(parts[0], dash, parts[1], dash, parts[2], dash, parts[3], dash, parts[4], output_field=models.CharField())
    return text


def pk_from_text(model: type[models.Model], text: str = "object_id"):
    """A row's ``text`` field (``str(pk)``, as :func:`pk_as_text` writes it) as ``model``'s primary
    key, computed in SQL, for a subquery on the objects (``pk=pk_from_text(model)``): a lookup in
    the objects' primary key index, where a cast of every key to text would read them all."""
    field = key_field(model)
    value = models.OuterRef(text)
    if isinstance(field, models.UUIDField):
        if connections[router.db_for_read(model)].features.has_native_uuid_field:
            return Cast(value, output_field=models.UUIDField())
        return Replace(value, models.Value("-"), models.Value(""))  # stored as 32 hex digits
    if isinstance(field, (models.IntegerField, models.AutoField)):
        return Cast(value, output_field=field.__class__())
    return value


class EmbeddingQuerySet(models.QuerySet):
    def get_by_natural_key(self, app_label: str, model: str, object_id: str, field_name: str, fingerprint: str) -> ImageEmbedding:
        """The row of one image and fingerprint (:meth:`ImageEmbedding.natural_key`): what ``loaddata``
        matches a dump's rows by, whatever their ids in this database."""
        return self.get(content_type=ContentType.objects.get_by_natural_key(app_label, model), object_id=object_id,
                        field_name=field_name, fingerprint=fingerprint)

    def on_primary(self) -> EmbeddingQuerySet:
        """These rows as the database the router writes them to (the primary) has them: what a task,
        the sweep or a build decides from, where a read replica may lag (docs/deployment.md)."""
        return self.using(router.db_for_write(self.model))

    def of_field(self, model: type[models.Model], field_name: str) -> EmbeddingQuerySet:
        """Rows of one registration: the images in ``model``'s field ``field_name`` (every version's)."""
        return self.filter(content_type=ContentType.objects.get_for_model(model), field_name=field_name)

    def for_object(self, obj: models.Model) -> EmbeddingQuerySet:
        return self.filter(type_is("content_type", content_types_of(obj)), object_id=str(obj.pk))

    def for_result(self, obj: models.Model) -> EmbeddingQuerySet:
        """Rows whose matches stand for ``obj`` (its own images and its gallery's)."""
        return self.filter(type_is("result_type", content_types_of(obj)), result_id=str(obj.pk))

    def ready(self, fingerprint: str) -> EmbeddingQuerySet:
        """Vectors of ``fingerprint``: searchable when it is the current one."""
        return self.filter(status=ImageEmbedding.Status.READY, fingerprint=fingerprint)

    def stale(self, fingerprint: str) -> EmbeddingQuerySet:
        """Vectors of another model than ``fingerprint``'s (another version, or old settings): not searched."""
        return self.filter(status=ImageEmbedding.Status.READY).exclude(fingerprint=fingerprint)


class ImageEmbedding(models.Model):
    """The VGG16 embedding of one image field of one object, with how and from what it was made.

    ``content_type``/``object_id``/``field_name`` say which image; ``result_type``/``result_id`` say
    which object a match on it stands for (the product, for a product-gallery image). ``checksum``
    is the SHA-256 of the image bytes embedded, so an unchanged image is never recomputed, and
    ``fingerprint`` identifies architecture, weights, preprocessing and pooling. An image has one
    row per fingerprint: the active model version's is searched, a version being built gets its
    own beside it, and a retired version's stays while the image is unchanged, for a rollback.
    Rows of another fingerprint are never compared with current ones. A pending row carries the
    fingerprint it is pending for.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        READY = "ready", _("Ready")
        FAILED = "failed", _("Failed")

    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE, related_name="+", verbose_name=_("content type"))
    object_id = models.CharField(_("object id"), max_length=64)
    field_name = models.CharField(_("field name"), max_length=100)
    result_type = models.ForeignKey(ContentType, on_delete=models.CASCADE, related_name="+", verbose_name=_("result type"))
    result_id = models.CharField(_("result id"), max_length=64, db_index=True)

    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.PENDING)
    error = models.TextField(_("error"), blank=True, help_text=_("Why the last attempt failed."))
    source_name = models.CharField(_("source name"), max_length=500, blank=True, help_text=_("Storage name of the image embedded."))
    checksum = models.CharField(_("checksum"), max_length=64, blank=True, help_text=_("SHA-256 of the image bytes embedded."))
    fingerprint = models.CharField(_("fingerprint"), max_length=32, blank=True, db_index=True)
    dimensions = models.PositiveSmallIntegerField(_("dimensions"), default=0)
    vector = models.BinaryField(null=True, blank=True, editable=False)
    # Set when the image was indexed (visual_search.duplicates): the image of another result with the
    # same bytes or a near-identical vector, and their cosine similarity. Deleting that row clears it.
    duplicate_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=forget_duplicate, related_name="+", editable=False,
        help_text=_("Another product's image that looks the same (same file, or nearly the same picture)."), verbose_name=_("duplicate of"),
    )
    duplicate_score = models.FloatField(_("duplicate score"), null=True, blank=True, editable=False)

    # Tasks that started computing this image and never finished it (the soft time limit struck with
    # it alone, or the worker process was killed: the hard time limit, OOM). Back to 0 once a task
    # ends with it; at VISUAL_SEARCH["MAX_EMBED_ATTEMPTS"] the row is failed (visual_search.attempts).
    embed_attempts = models.PositiveSmallIntegerField(
        _("embedding attempts"), default=0, editable=False, help_text=_("Tasks that started computing this image and did not finish it.")
    )

    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True, db_index=True)

    objects = EmbeddingQuerySet.as_manager()

    class Meta:
        # Staff words in the admin's sidebar: what it is for them, not how it is computed.
        verbose_name = _("indexed image")
        verbose_name_plural = _("product image index")
        constraints = [
            models.UniqueConstraint(
                fields=["content_type", "object_id", "field_name", "fingerprint"], name="visual_search_one_per_image_version"
            )
        ]
        # Covers the backend's freshness check (count and newest updated_at of the searchable rows)
        # without reading the vectors.
        indexes = [
            models.Index(fields=["result_type", "status", "fingerprint", "updated_at"], name="visual_search_fresh"),
            # The duplicate check's "same bytes on another product?" (visual_search.duplicates).
            models.Index(fields=["checksum"], name="visual_search_checksum"),
            # An object's rows as the result of its gallery's images: the admin's status column and
            # filter look them up once per product (with result_type alone, a scan of every row).
            models.Index(fields=["result_type", "result_id", "fingerprint", "status"], name="visual_search_result"),
        ]

    def __str__(self) -> str:
        return f"{self.content_type.app_labeled_name} #{self.object_id}.{self.field_name} ({self.get_status_display()})"

    def natural_key(self) -> tuple[str, str, str, str, str]:
        """Its image and fingerprint, the content type by name: ``dumpdata --natural-foreign
        --natural-primary`` writes rows that load into another database (other content type ids)
        and onto an index there (other row ids), where they replace the rows of the same images."""
        return (*self.content_type.natural_key(), self.object_id, self.field_name, self.fingerprint)

    natural_key.dependencies = ["contenttypes.contenttype"]  # type: ignore[attr-defined]

    def image_storage(self) -> Storage | None:
        """The storage of the file this row was computed from (its field's, which may not be the
        default one); None when there is no file or the model or field is gone."""
        model = self.content_type.model_class() if self.source_name else None
        try:
            return model._meta.get_field(self.field_name).storage if model else None
        except FieldDoesNotExist:
            return None

    def image_url(self) -> str:
        """Where the file this row was computed from is served (its field's storage), from the row
        alone: no query beyond its content type. "" when there is none to show (never computed, a
        model or field gone, a storage that serves no URLs)."""
        storage = self.image_storage()
        try:
            return storage.url(self.source_name) if storage is not None else ""
        except Exception:  # a storage's NotImplementedError or its own errors
            logger.debug("No URL for the image of %s", self, exc_info=True)
            return ""

    def thumbnail(self, size: int = 64, *, src: str | None | bool = None) -> str:
        """The image, shown ``size`` px wide and linked to the file, for the admin (staff judge a
        failure or a possible duplicate by eye); "" without one. ``src`` is the picture shown: a
        small copy of the file (the admin passes :func:`visual_search.previews.thumbnail`'s), else
        the file itself; False: no picture, the file's name."""
        url = self.image_url()
        if not url:
            return ""
        # The picture is the link's only content: its alt is the link's name for a screen reader
        # (alt="" left staff a list of 100 links each read "link"), and it says a new tab opens.
        name = _("Image %(file)s (opens in a new tab)") % {"file": posixpath.basename(self.source_name)}
        if src is False:
            # No picture a browser can show (the file's own is not one): its name, linked to it. An
            # <img> of it drew a broken-image icon with its alt text wrapped over six lines.
            return format_html(
                '<a href="{}" target="_blank" rel="noopener" class="vs-file-link" aria-label="{}">{}</a>',
                url, name, posixpath.basename(self.source_name),
            )
        src = src or url
        return format_html(
            # A class, not style="": a Content-Security-Policy without 'unsafe-inline' (the demo's) drops a
            # style attribute, and a portrait photo's thumbnail was stretched into the square (admin.css).
            '<a href="{}" target="_blank" rel="noopener"><img src="{}" class="vs-thumbnail" alt="{}" loading="lazy" '
            'width="{}" height="{}"></a>',
            url, src, name, size, size,
        )

    @property
    def array(self) -> np.ndarray | None:
        """The vector as float32, or None when there is none (pending or failed)."""
        if self.vector is None:
            return None
        return np.frombuffer(bytes(self.vector), dtype=np.float32)


class DismissalManager(models.Manager):
    def get_by_natural_key(self, first: str, second: str) -> DuplicateDismissal:
        """The dismissal of one pair (:meth:`DuplicateDismissal.natural_key`): what ``loaddata``
        matches a dump's dismissals by, whatever their ids in this database."""
        return self.get(first=first, second=second)


class DuplicateDismissal(models.Model):
    """Staff said two images are not duplicates: the pair is never flagged again.

    Keyed by the two images (``"<app label>.<model>:<object id>:<field>"``, in sorted order), not by
    embedding rows, so a dismissal survives re-indexing, a model version switch and a new file; and
    by the model's name, not its content type id, so it survives ``dumpdata`` / ``loaddata`` into a
    database that numbers its content types its own way (migration 0013 rewrote the ids).
    """

    first = models.CharField(max_length=255)
    second = models.CharField(max_length=255)
    dismissed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DismissalManager()

    class Meta:
        verbose_name = _("dismissed duplicate warning")
        verbose_name_plural = _("dismissed duplicate warnings")
        constraints = [models.UniqueConstraint(fields=["first", "second"], name="visual_search_one_dismissal")]

    def __str__(self) -> str:
        return f"{self.first} / {self.second}"

    def natural_key(self) -> tuple[str, str]:
        """Its two images: ``dumpdata --natural-primary`` writes dismissals that load onto a
        database with dismissals of its own, matched by pair (see :meth:`ImageEmbedding.natural_key`)."""
        return (self.first, self.second)

    @staticmethod
    def key(row: ImageEmbedding) -> str:
        """What identifies an image across re-indexing and databases: its model by name, its object
        and field; not its row, nor its content type id. The content type comes from Django's cache
        (no query once read)."""
        content_type = ContentType.objects.db_manager(row._state.db).get_for_id(row.content_type_id)
        return f"{content_type.app_label}.{content_type.model}:{row.object_id}:{row.field_name}"

    @classmethod
    def pair(cls, a: ImageEmbedding, b: ImageEmbedding) -> tuple[str, str]:
        first, second = sorted((cls.key(a), cls.key(b)))
        return first, second


class WhiteningManager(models.Manager):
    def get_by_natural_key(self, app_label: str, model: str, fingerprint: str) -> Whitening:
        return self.get(result_type=ContentType.objects.get_by_natural_key(app_label, model), fingerprint=fingerprint)


class Whitening(models.Model):
    """A PCA whitening learned on the ready vectors of one searchable model and fingerprint.

    Stored vectors stay as computed; backends apply ``(v - mean) @ projection`` and L2-normalise,
    to the catalogue and to each query alike. See :mod:`visual_search.whitening`.
    """

    result_type = models.ForeignKey(ContentType, on_delete=models.CASCADE, related_name="+", verbose_name=_("result type"))
    fingerprint = models.CharField(_("fingerprint"), max_length=32)
    dimensions = models.PositiveSmallIntegerField(_("dimensions"))
    trained_on = models.PositiveIntegerField(_("trained on"), help_text=_("How many vectors it was learned from."))
    mean = models.BinaryField()
    projection = models.BinaryField()
    # How this model's similarities become probabilities (visual_search.ranking.Calibration), learned
    # with the whitening on the shop's own images; empty: the default calibration.
    calibration = models.JSONField(_("calibration"), default=dict, blank=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = WhiteningManager()

    class Meta:
        verbose_name = _("search tuning (whitening)")
        verbose_name_plural = _("search tuning (whitening)")
        constraints = [models.UniqueConstraint(fields=["result_type", "fingerprint"], name="visual_search_one_whitening")]

    def __str__(self) -> str:
        return f"{self.result_type} {self.fingerprint} ({self.dimensions} dims, {self.trained_on} vectors)"

    def natural_key(self) -> tuple[str, str, str]:
        """Its model by name and its fingerprint (see :meth:`ImageEmbedding.natural_key`)."""
        return (*self.result_type.natural_key(), self.fingerprint)

    natural_key.dependencies = ["contenttypes.contenttype"]  # type: ignore[attr-defined]

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        mean = np.frombuffer(bytes(self.mean), dtype=np.float32)
        return mean, np.frombuffer(bytes(self.projection), dtype=np.float32).reshape(len(mean), self.dimensions)


class PrimaryManager(models.Manager):
    """Reads the database the router writes the model to (the primary), unless told another
    (``using()``, ``db_manager()``): ``ModelVersion`` is the package's own state, a handful of rows
    read back right after they are written (a switch, its progress, which versions index a save).
    A read replica that lags showed a version switched in as still building (a save then deleted the
    active version's vector of its image), and a build's own progress as it was before."""

    def get_queryset(self) -> models.QuerySet:
        queryset = super().get_queryset()
        return queryset if self._db is not None else queryset.using(router.db_for_write(self.model))


class ModelVersion(models.Model):
    """An embedding model adapted to the shop's own images (see :mod:`visual_search.training`).

    Life cycle: ``training`` -> ``trained`` (or ``failed`` / ``cancelled``); activating a trained
    version makes it ``building`` while every image gets a vector of its ``fingerprint`` (searches
    keep using the active version's vectors meanwhile), then ``active`` in one transaction, and the
    version it replaced ``retired``. No active row means the pretrained model the settings describe.
    """

    class Status(models.TextChoices):
        TRAINING = "training", _("Training")
        TRAINED = "trained", _("Trained")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")
        BUILDING = "building", _("Computing vectors")
        ACTIVE = "active", _("Active")
        RETIRED = "retired", _("Retired")

    label = models.CharField(_("label"), max_length=100)
    status = models.CharField(_("status"), max_length=10, choices=Status.choices, default=Status.TRAINING)
    # Identifies the vectors this version makes (set once trained); like ImageEmbedding.fingerprint.
    fingerprint = models.CharField(_("fingerprint"), max_length=32, blank=True, db_index=True)
    # Name in Django's default storage of the trained weights (the fine-tuned block and head), so
    # every web server and worker reads the same file.
    weights_file = models.CharField(_("weights file"), max_length=500, blank=True)
    # How it was built and trained: base weights, image size, layers, dimensions, epochs, seed...
    config = models.JSONField(_("config"), default=dict, blank=True)
    # Before/after figures on the held-out images, training time (see training.evaluation).
    metrics = models.JSONField(_("metrics"), default=dict, blank=True)
    # {"stage", "done", "total", "message"}: what the admin shows while it trains or builds.
    progress = models.JSONField(_("progress"), default=dict, blank=True)
    error = models.TextField(_("error"), blank=True)
    cancel_requested = models.BooleanField(_("cancel requested"), default=False)
    # The version that was active when this one was activated (None: the pretrained model); what
    # rolling back returns to.
    previous = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", verbose_name=_("previous"))
    previous_fingerprint = models.CharField(_("previous fingerprint"), max_length=32, blank=True)

    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    trained_at = models.DateTimeField(_("trained at"), null=True, blank=True)
    activated_at = models.DateTimeField(_("activated at"), null=True, blank=True)

    objects = PrimaryManager()

    class Meta:
        verbose_name = _("trained model version")
        verbose_name_plural = _("trained model versions")
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"], condition=models.Q(status="active"), name="visual_search_one_active_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.label} ({self.get_status_display()})"

    @classmethod
    def check(cls, **kwargs):
        """Django's checks, less models.W036: MySQL and MariaDB have no partial unique index, so
        ``visual_search_one_active_version`` is not created there, and Django said so on every
        ``manage.py`` command, a warning the shop could silence only for all its own models too.
        There the switch's row locks keep one version active (``versions._finish``)."""
        return [error for error in super().check(**kwargs) if error.id != "models.W036"]


def unapplied_migrations() -> list[str]:
    """The names of visual search's migrations not applied to its database ([] when it cannot tell):
    after ``pip install -U`` and before ``migrate``, what commands and a failed search name."""
    try:
        executor = MigrationExecutor(connections[router.db_for_write(ImageEmbedding)])
        plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError:
        return []
    return [migration.name for migration, backwards in plan if migration.app_label == "visual_search" and not backwards]
