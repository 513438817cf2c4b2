"""Request and response shapes of the visual search API (also what the OpenAPI schema shows)."""

from __future__ import annotations

from collections.abc import Mapping

from django.utils.module_loading import import_string
from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from ..conf import settings
from ..embeddings import images
from ..registry import filter_lookups
from ..results import extra_fields


# Pillow's format names as customers know them.
FORMAT_NAMES = {"WEBP": "WebP", "HEIF": "HEIC"}


@extend_schema_field({"type": "string", "format": "binary"})
class PhotoField(serializers.FileField):
    """An uploaded file. The schema says ``format: binary``: drf-spectacular writes a FileField as
    ``format: uri`` (how it is read back) unless ``COMPONENT_SPLIT_REQUEST`` is on, and the docs
    page then offered a text box for the photo, and generated clients sent a string."""


def allowed_formats_text() -> str:
    """The formats a photo may have here: HEIC only where pillow-heif can decode it (the schema told
    an iPhone app "HEIC" in a shop without the [heif] extra, which answers it 415), AVIF only where
    Pillow has its AVIF plugin."""
    formats = [str(name).upper() for name in settings.ALLOWED_FORMATS]
    names = [FORMAT_NAMES.get(name, name) for name in formats if images.decodable(name)]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


class SearchRequestSerializer(serializers.Serializer):
    """``multipart/form-data``: the photo, how many results, and the filters the shop allows."""

    image = PhotoField()

    def get_fields(self):
        fields = super().get_fields()
        fields["image"].help_text = f"The photo, as a file: {allowed_formats_text()} (ALLOWED_FORMATS)."
        # The examples are what the docs page's "Try it out" fills in: values that search the whole
        # photo (its generic "string" was a malformed box, answered 400, and a filter no object
        # matches). Annotated here: DRF copies a declared field without its attributes.
        fields["box"] = extend_schema_field({"type": "string", "example": "0,0,1,1"})(serializers.CharField(
            required=False,
            help_text="Search only this region of the photo: x0,y0,x1,y1, its corners as fractions of the photo's "
            "width and height (0 to 1, after EXIF rotation), e.g. 0.25,0.1,0.75,0.9. Left out or sent blank: the whole photo. A malformed, zero-area or "
            "out-of-range box answers 400 with code invalid_box.",
        ))
        # Built here, not on the class, so API_DEFAULT_LIMIT and API_MAX_LIMIT are read per request.
        limit = {"type": "integer", "minimum": 1, "maximum": int(settings.API_MAX_LIMIT), "example": int(settings.API_DEFAULT_LIMIT)}
        fields["limit"] = extend_schema_field(limit)(serializers.IntegerField(
            required=False,
            min_value=1,
            max_value=int(settings.API_MAX_LIMIT),
            help_text=f"How many results (default {settings.API_DEFAULT_LIMIT}).",
        ))
        # The filters are the shop's (VISUAL_SEARCH["API_FILTERS"]), so the schema lists the real ones.
        for parameter, lookup in filter_lookups().items():
            fields[parameter] = extend_schema_field({"type": "string", "example": ""})(
                serializers.CharField(required=False, help_text=f"Only objects whose {lookup} is this value.")
            )
        return fields


@extend_schema_field({"oneOf": [{"type": "integer"}, {"type": "string"}]})
class PrimaryKeyValueField(serializers.ReadOnlyField):
    """A primary key as it is: a number for integer keys, a string for UUIDs and slugs."""


class SearchResultSerializer(serializers.Serializer):
    """One match, with the shop's own fields (price, currency, available...) after the five below.

    The shop's fields are its ``VISUAL_SEARCH["RESULT_ADAPTER"]``'s ``extra()``, added as they are.
    To add fields here instead, subclass this (``source="object.price"``; ``object`` is the model
    instance) and name the subclass in ``VISUAL_SEARCH["API_RESULT_SERIALIZER"]``; a field declared
    so wins over an extra field of the same name.
    """

    id = PrimaryKeyValueField()
    name = serializers.CharField(help_text="The object's name (str() unless the shop's RESULT_ADAPTER says otherwise).")
    url = serializers.CharField(allow_null=True, help_text="Absolute URL of its page (get_absolute_url), or null.")
    image_url = serializers.CharField(
        allow_null=True,
        help_text="Absolute URL of its picture, a JPEG thumbnail at most VISUAL_SEARCH['THUMBNAIL_SIZE'] px on its "
        "longest side (the original if none can be made), or null.",
    )
    score = serializers.FloatField(
        help_text="The probability (0 to 1) that this is the product in the photo, calibrated on the shop's own "
        "images; with VISUAL_SEARCH['SCORE'] = 'similarity', the similarity to the query (1.0 is identical)."
    )

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if isinstance(instance, Mapping):  # a describe()'d result: add its adapter's extra fields
            for key, value in extra_fields(instance).items():
                data.setdefault(key, value)
        return data


class SearchResultSchema(OpenApiSerializerExtension):
    """The schema of a result says it may have more properties: the shop adapter's extra fields."""

    target_class = SearchResultSerializer
    match_subclasses = True

    def map_serializer(self, auto_schema, direction):
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        return {**schema, "additionalProperties": {
            "description": "The shop's own fields (VISUAL_SEARCH['RESULT_ADAPTER']'s extra()), "
            "e.g. price, currency, available."
        }}


def result_serializer_class() -> type[SearchResultSerializer]:
    return import_string(settings.API_RESULT_SERIALIZER)


class ResultsSerializer(serializers.Serializer):
    results = SearchResultSerializer(many=True, help_text="Best match first.")

    def get_fields(self):
        # The configured API_RESULT_SERIALIZER, read when the schema is made: the schema described the
        # base class, and a client generated from it had no typed price or category.
        fields = super().get_fields()
        fields["results"] = result_serializer_class()(many=True, help_text="Best match first.")
        return fields


class SearchResponseSerializer(ResultsSerializer):
    confident = serializers.BooleanField(
        help_text="Whether the first result is likely the product in the photo (probability at least "
        "VISUAL_SEARCH['CONFIDENT_SCORE']); when false, show the results as possible matches."
    )


class SimilarResponseSerializer(ResultsSerializer):
    detail = serializers.CharField(required=False, help_text="Why there are no results (409: not indexed yet).")
    code = serializers.CharField(required=False, help_text="409: not_indexed.")
    state = serializers.ChoiceField(
        ["pending", "failed", "missing"],
        required=False,
        help_text="409: pending (being indexed: try again, after Retry-After), failed (the image could not be "
        "read: nothing changes until the shop replaces it) or missing (no image, or never indexed).",
    )


class ErrorSerializer(serializers.Serializer):
    """Every error: a message for people and a stable code for programs."""

    detail = serializers.CharField()
    code = serializers.CharField(
        help_text="Stable, for programs (the detail is English, for people): required, invalid_image, blank_image, "
        "too_many_pixels, invalid_limit, invalid_filter, invalid_box, too_many_fields, parse_error, invalid_length, "
        "authentication_failed, not_authenticated, permission_denied, not_found, method_not_allowed, not_acceptable, length_required, "
        "file_too_large, unsupported_format, unsupported_media_type, throttled, busy, unavailable. Treat an unknown code "
        "by its HTTP status."
    )
    format = serializers.CharField(
        required=False, help_text="415 unsupported_format only: the kind of file refused (SVG, EPS, PDF, HEIC, or Pillow's name)."
    )
    reason = serializers.ChoiceField(
        choices=["damaged"], required=False,
        help_text="400 invalid_image only: \"damaged\" when the file is an image, damaged or cut short; its detail then "
        "says what is wrong in the request's language, for the customer (save or export the photo again).",
    )
