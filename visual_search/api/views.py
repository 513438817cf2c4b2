"""JSON API: search by photo (``POST search/``) and similar objects (``GET products/<pk>/similar/``).

Every error answers ``{"detail": ..., "code": ...}`` with a 4xx status (503 when the model itself
cannot run), never a 500 for anything a client sends.
"""

from __future__ import annotations

import logging

from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent, ValidationError
from django.db import DatabaseError
from django.utils import translation
from django.utils.decorators import method_decorator
from django.utils.module_loading import import_string
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import APIException, UnsupportedMediaType
from rest_framework.parsers import MultiPartParser
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import queue, search
from ..conf import settings
from ..http import HeadWithoutBody, photo_names_hidden
from ..photo_search import (
    RETRY_AFTER_SECONDS,
    PhotoSearchError,
    check_content_length,
    confident,
    invalid_limit,
    max_upload_bytes,
    parse_limit,
    search_photo,
    shown_to,
    unavailable,
)
from ..registry import NotShown, filter_lookups, search_model
from ..results import apply_filters, describe
from .serializers import (
    ErrorSerializer,
    SearchRequestSerializer,
    SearchResponseSerializer,
    SimilarResponseSerializer,
    allowed_formats_text,
    result_serializer_class,
)
from .throttling import SearchRateThrottle, refund_server_failures

logger = logging.getLogger("visual_search")

# Each error status and the codes it carries, as the schema describes them: a client generated from
# it had only "Error" under every status, and no way to tell a photo to retake from a wait.
ERROR_CODES = {
    400: "`required` (no file in the field `image`), `invalid_image` (`reason` \"damaged\": a damaged image), `blank_image`, `too_many_pixels`, "
    "`invalid_limit`, `invalid_filter`, `invalid_box`, `too_many_fields`, `parse_error`, `invalid_length`",
    401: "`authentication_failed` (credentials sent but wrong or expired: a search without them would have "
    "worked) or `not_authenticated`, where the project's first authentication scheme is a token or JWT",
    403: "`authentication_failed` (as 401, where the project's first scheme is the session), or "
    "`not_authenticated` / `permission_denied` where the shop's API_PERMISSION_CLASSES require a signed-in customer",
    404: "`not_found`: no object with that key, or one the customer may not see",
    411: "`length_required`: the body was sent without Content-Length (chunked)",
    413: "`file_too_large`: over MAX_UPLOAD_BYTES, refused before the body is read",
    415: "`unsupported_format` (a kind of image not accepted; `format` names it) or `unsupported_media_type` "
    "(the body is not multipart/form-data)",
    429: "`throttled`: too many searches from this client (SEARCH_THROTTLE_RATE); wait Retry-After seconds",
    503: "`unavailable`: the database, index or model cannot answer now; ask again after Retry-After (when sent); "
    "`busy` (search by photo): the server runs MAX_CONCURRENT_SEARCHES searches already; ask again after Retry-After",
}
RETRY_AFTER = OpenApiParameter(
    "Retry-After", int, OpenApiParameter.HEADER, response=[409, 429, 503],
    description="Seconds to wait before asking again (409: only for state pending; 503: when the failure may pass).",
)
ACCEPT_LANGUAGE = OpenApiParameter(
    "Accept-Language", str, OpenApiParameter.HEADER,
    description="The language of the results' name and url (where the shop runs LocaleMiddleware and offers "
    "it). `detail` stays English: show your own words for each `code`.",
)


def error_examples(*errors: tuple) -> list[OpenApiExample]:
    """One example body per ``(status, code, detail[, more fields])``, as the API answers them."""
    return [
        OpenApiExample(code, response_only=True, status_codes=[str(status_code)], value={"detail": detail, "code": code, **(more[0] if more else {})})
        for status_code, code, detail, *more in errors
    ]


def errors(*statuses: int) -> dict[int, OpenApiResponse]:
    """The schema's error responses for ``statuses``, each with its codes."""
    return {status_code: OpenApiResponse(ErrorSerializer, description=f"Codes: {ERROR_CODES[status_code]}.") for status_code in statuses}


class VisualSearchSchema(AutoSchema):
    """drf-spectacular's schema, whatever the project's ``DEFAULT_SCHEMA_CLASS``, plus the shop's
    ``API_FILTERS`` as query parameters of GET operations, read when the schema is generated
    rather than when this module is imported."""

    def get_operation(self, *args, **kwargs):
        # The shop's own limits, read when the schema is made: "over MAX_UPLOAD_BYTES" named a setting
        # an app developer cannot read. (Not get_description: @extend_schema's description replaces it.)
        operation = super().get_operation(*args, **kwargs)
        if operation and self.method == "POST":
            throttle = settings.SEARCH_THROTTLE_RATE or "none"
            operation["description"] = (
                f"{operation.get('description', '')}\n\nThis shop's limits: files up to "
                f"{max_upload_bytes() / (1024 * 1024):g} MB (MAX_UPLOAD_BYTES), at most {int(settings.MAX_PIXELS):,} "
                f"pixels (MAX_PIXELS), formats {allowed_formats_text()} (ALLOWED_FORMATS); searches per client: "
                f"{throttle} (SEARCH_THROTTLE_RATE)."
            )
        return operation

    def get_override_parameters(self):
        if self.method != "GET":
            return super().get_override_parameters()
        limit = OpenApiParameter(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": int(settings.API_MAX_LIMIT)},
            description=f"How many results, 1 to {settings.API_MAX_LIMIT} (default {settings.API_DEFAULT_LIMIT}).",
        )
        filters = [
            OpenApiParameter(name, str, description=f"Only objects whose {lookup} is this value.")
            for name, lookup in filter_lookups().items()
        ]
        return [*super().get_override_parameters(), limit, *filters]


def documented(**kwargs):
    """drf-spectacular's ``@extend_schema`` for a view method, built on :class:`VisualSearchSchema`.
    On a method it builds on ``REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"]``, which is DRF's own
    AutoSchema in a project that did not name drf-spectacular's, and the schema answered 500."""

    def decorate(method):
        method.schema = VisualSearchSchema
        return extend_schema(**kwargs)(method)

    return decorate


def _nothing_to_protect(request) -> None:
    """``SessionAuthentication.enforce_csrf`` for the API's views, which change nothing."""


def requested_language(request) -> str | None:
    """The language ``Accept-Language`` asks for, where LocaleMiddleware runs and the API's URL has no
    language prefix; else None (the middleware's choice stands).

    The widget asks in its page's language. Django's own order let a language cookie (an earlier
    set_language) win over it, and under ``i18n_patterns(..., prefix_default_language=False)`` every
    unprefixed URL, the API's too, was answered in LANGUAGE_CODE: a French page listed English names
    and links to the English pages. A language the shop does not offer is skipped."""
    header = request.META.get("HTTP_ACCEPT_LANGUAGE", "")
    if not header or not hasattr(request, "LANGUAGE_CODE") or translation.get_language_from_path(request.path_info):
        return None
    weighted = []
    for position, part in enumerate(header.split(",")):
        code, _semicolon, parameters = part.strip().partition(";")
        try:
            quality = float(parameters.strip()[2:]) if parameters.strip().startswith("q=") else 1.0
        except ValueError:
            quality = 0.0
        if code and code != "*" and quality > 0:
            weighted.append((-quality, position, code.strip()))
    for _quality, _position, code in sorted(weighted):
        try:
            return translation.get_supported_language_variant(code.lower())
        except LookupError:
            continue
    return None


class VisualSearchAPIView(HeadWithoutBody, APIView):
    """Answers every error as ``{"detail", "code"}``: DRF's own (429, 415, 405) and ours."""

    # The operations' @extend_schema (``documented`` below) build on it too.
    schema = VisualSearchSchema()
    # DRF's own defaults, whatever the project's DEFAULT_RENDERER_CLASSES: the keys are the documented
    # ones that the widget reads ("image_url"; a camelCase renderer wrote "imageUrl").
    renderer_classes = [JSONRenderer, BrowsableAPIRenderer]

    def get_authenticators(self):
        # A search changes nothing, so it needs no CSRF token: DRF's session authentication refused
        # a signed-in customer's search without one (403 "CSRF cookie not set"), in a shop's own
        # front end whose fetch() sends the session cookie, while every anonymous search worked.
        # The customer is still recognised (API_PERMISSION_CLASSES, VISIBILITY); other schemes are kept.
        authenticators = super().get_authenticators()
        for authenticator in authenticators:
            if isinstance(authenticator, SessionAuthentication):
                authenticator.enforce_csrf = _nothing_to_protect
        return authenticators

    def get_permissions(self):
        # VISUAL_SEARCH["API_PERMISSION_CLASSES"], read per request; not the project's DRF default,
        # which is often meant for its own APIs (IsAuthenticated) and would shut customers out.
        return [import_string(path)() for path in settings.API_PERMISSION_CLASSES]

    def initial(self, request, *args, **kwargs):
        language = requested_language(request)
        if language:
            translation.activate(language)
            request.LANGUAGE_CODE = language
        super().initial(request, *args, **kwargs)

    def handle_exception(self, exc):
        if isinstance(exc, DatabaseError):  # the database is restarting or unreachable: it will pass
            logger.exception("Visual search API: the database is unavailable")
            exc = unavailable()
        if isinstance(exc, UnsupportedMediaType) and MultiPartParser in self.parser_classes:
            # A JSON body with the photo in base64, or the photo's bytes alone: say what works.
            exc = PhotoSearchError(
                415, "unsupported_media_type",
                f"Send the photo as multipart/form-data, in the field 'image' (this request was {self.request.content_type!r}): "
                f"curl -F image=@photo.jpg {self.request.build_absolute_uri(self.request.path)}",
            )
        if isinstance(exc, PhotoSearchError):
            response = Response(exc.as_dict(), status=exc.status)
            if exc.retry_after:
                response["Retry-After"] = str(exc.retry_after)
            return response
        response = super().handle_exception(exc)
        if isinstance(exc, APIException) and isinstance(response.data, dict) and "detail" in response.data:
            codes = exc.get_codes()
            response.data["code"] = codes if isinstance(codes, str) else "invalid"
        return response

    def results_response(self, items, **extra) -> Response:
        serializer = result_serializer_class()(items, many=True, context={"request": self.request})
        return Response({"results": serializer.data, **extra})


# The photo, sent as text (base64) by some apps, out of Django's error reports (docs/privacy.md).
@method_decorator(sensitive_post_parameters("image"), name="dispatch")
# Its file name too: a 500's or a 503's report lists it (docs/privacy.md).
@method_decorator(photo_names_hidden, name="dispatch")
# A search the server could not answer (5xx) gives its count back: SEARCH_THROTTLE_RATE.
@method_decorator(refund_server_failures, name="dispatch")
class SearchView(VisualSearchAPIView):
    """Search by photo: the objects that look most like the uploaded photo, best first."""

    # Multipart only: a URL-encoded form (an HTML form without enctype) cannot carry the photo, and
    # answered 400 "required"; it is 415, saying how to send it, as JSON and bare bytes are.
    parser_classes = [MultiPartParser]
    throttle_classes = [SearchRateThrottle]

    @documented(
        operation_id="visual_search_search",
        summary="Search by photo",
        description=(
            "Upload a photo (multipart field `image`); get the most similar objects, best first. "
            "Files over the size limit answer 413 before they are decoded; SVG, EPS and PDF answer 415."
        ),
        request={"multipart/form-data": SearchRequestSerializer},
        parameters=[ACCEPT_LANGUAGE, RETRY_AFTER],
        responses={200: SearchResponseSerializer, **errors(400, 401, 403, 411, 413, 415, 429, 503)},
        examples=[
            OpenApiExample(
                "Results",
                response_only=True,
                value={"results": [{"id": 7, "name": "Arla Standard Milk", "url": "https://shop.example/product/arla-standard-milk/", "image_url": "https://shop.example/media/visual_search/thumbnails/3f9c2e.jpg", "score": 0.91}], "confident": True},
            ),
            OpenApiExample("Not an image", response_only=True, status_codes=["400"], value={"detail": "The file is not an image we can read; send a JPEG, PNG or WebP photo.", "code": "invalid_image"}),
            OpenApiExample("Damaged", response_only=True, status_codes=["400"], value={
                "detail": "The image file is damaged or truncated: most of the picture is missing. Save or export it again.",
                "code": "invalid_image", "reason": "damaged",
            }),
            *error_examples(
                (413, "file_too_large", "The photo is larger than 10 MB; send a smaller one."),
                (415, "unsupported_format", "SVG drawings are not accepted; send a JPEG, PNG or WebP photo.", {"format": "SVG"}),
                (429, "throttled", "Request was throttled. Expected available in 60 seconds."),
                (503, "unavailable", "Search by photo is not available right now; please try again later."),
            ),
            OpenApiExample("busy", response_only=True, status_codes=["503"], value={
                "detail": "Search by photo is busy right now; please try again in a few seconds.", "code": "busy",
            }),
        ],
    )
    @sensitive_variables("upload", "data")
    def post(self, request, *args, **kwargs):
        check_content_length(request.META)  # before request.data reads the body
        try:
            upload, data = request.FILES.get("image"), request.data
        except RequestDataTooBig:  # the form's text over DATA_UPLOAD_MAX_MEMORY_SIZE: the photo sent as text
            raise PhotoSearchError(400, "too_many_fields", f"The form's text fields are too large. {AS_A_FILE}") from None
        except (TooManyFieldsSent, TooManyFilesSent) as exc:  # Django's own limits on a form
            raise PhotoSearchError(400, "too_many_fields", f"The form has too many fields or files: {exc}") from None
        if upload is None:
            raise _missing_photo(data)
        serializer = SearchRequestSerializer(data=data)
        if not serializer.is_valid():
            raise _validation_error(serializer.errors)
        # The form's fields, else the query string's (?limit=5&category=milk): limit as the filters.
        params = {**request.query_params.dict(), **{k: v for k, v in data.items() if k != "image"}}
        items = search_photo(upload, params, request, limit=serializer.validated_data.get("limit"))
        return self.results_response(items, confident=confident(items))


class SimilarView(VisualSearchAPIView):
    """Objects similar to one already in the catalogue, itself excluded."""

    @documented(
        operation_id="visual_search_similar",
        examples=[
            *error_examples((404, "not_found", "No product with id 99999.")),
            OpenApiExample("not_indexed", response_only=True, status_codes=["409"], value={
                "results": [], "detail": "This product's image is being indexed (not indexed yet); try again in a minute.",
                "code": "not_indexed", "state": "pending",
            }),
        ],
        summary="Similar objects",
        parameters=[ACCEPT_LANGUAGE, RETRY_AFTER],
        responses={
            200: SimilarResponseSerializer,
            **errors(400, 401, 403, 404),
            409: OpenApiResponse(
                SimilarResponseSerializer,
                description="Code `not_indexed`: the object has no ready embedding yet; results is empty, and "
                "state says whether asking again helps (pending, after Retry-After) or not (failed, missing).",
            ),
            **errors(503),
        },
    )
    def get(self, request, pk, *args, **kwargs):
        model = search_model()
        limit = parse_limit(request.query_params.get("limit"))
        shown = shown_to(model, request)  # a hidden object is not found, nor found similar
        obj = _get_object(shown, pk)
        queryset = apply_filters(shown, request.query_params)
        try:
            results = search.find_similar(obj, limit=limit, queryset=queryset)
        except search.NotIndexed as exc:
            # Another version's vectors wait for the sweep, which only Celery runs: without it,
            # waiting does not help (manage.py visual_search_reindex does).
            stuck = exc.stale and not queue.use_celery()
            return _not_indexed(model, "missing" if stuck else exc.state)
        except (ValueError, TypeError) as exc:
            raise PhotoSearchError(400, "invalid_filter", f"A filter value is not valid: {exc}") from None
        except Exception as exc:
            if isinstance(exc, ImproperlyConfigured):  # its message says what to do: no traceback per request
                logger.error("Similar products are unavailable: %s", exc)
            else:
                logger.exception("Similar objects for %s %s failed", model.__name__, pk)
            raise PhotoSearchError(
                503, "unavailable", "Similar products are not available right now; please try again later.", RETRY_AFTER_SECONDS
            ) from None
        return self.results_response(describe(results, request))


NOT_INDEXED = {
    "pending": "This {name}'s image is being indexed (not indexed yet); try again in a minute.",
    "failed": "This {name}'s image could not be indexed (not indexed: the file could not be read); "
    "there are similar products once the shop replaces the image.",
    "missing": "This {name} is not indexed: it has no image yet, or its images have not been indexed.",
}


def english_name(model) -> str:
    """The model's verbose name in the API's English ``detail``: a shop's ``_("product")`` read
    "This Produkt's image is being indexed" to a client asking in German."""
    with translation.override("en"):
        return str(model._meta.verbose_name)


def _not_indexed(model, state: str) -> Response:
    """409 ``not_indexed``: no results, and ``state`` (pending, failed, missing) says whether waiting helps."""
    detail = NOT_INDEXED[state].format(name=english_name(model))
    response = Response({"results": [], "detail": detail, "code": "not_indexed", "state": state}, status=status.HTTP_409_CONFLICT)
    if state == "pending":
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def _get_object(queryset, pk):
    """The object ``pk`` of ``queryset`` (what the customer is shown), or one shown on the page of one
    of them (an Oscar variant, on its parent's: its look-alikes are that page's); else 404, saying
    why in the log (a hidden variant, a variant of a hidden parent): the answer is the unknown id's,
    which tells a customer nothing about a product not released yet."""
    model = queryset.model
    try:
        # The first of its rows: a VISIBILITY rule over a relation (a gallery, stock records) lists an
        # object once per related row, and get() answered 500 for one listed twice.
        return queryset.filter(pk=pk)[:1].get()
    except (model.DoesNotExist, ValueError, TypeError, ValidationError):  # "abc" for an integer key
        pass
    try:
        found = model._default_manager.filter(pk=pk)[:1].get()
        search.shown_on(found, queryset)
    except (model.DoesNotExist, ValueError, TypeError, ValidationError):
        raise PhotoSearchError(404, "not_found", f"No {english_name(model)} with id {pk!s}.") from None
    except NotShown as exc:
        if exc.reason:
            logger.info("Similar products for %s %s: not shown to customers, %s", english_name(model), pk, exc.reason)
        raise PhotoSearchError(404, "not_found", f"No {english_name(model)} with id {pk!s}.") from None
    return found


# How an app sends the photo as a file: Retrofit's @Part("image") RequestBody, OkHttp's createFormData
# without a filename or a base64 string send it as a text field, which Django does not read as a file.
AS_A_FILE = (
    "Send the photo as a file part with a filename: Content-Disposition: form-data; name=\"image\"; "
    "filename=\"photo.jpg\" (curl -F image=@photo.jpg), not as text or base64."
)


def _missing_photo(data) -> PhotoSearchError:
    """400 ``required``: no photo; where ``image`` came as a text field, why it did not count."""
    if "image" in data:
        return PhotoSearchError(400, "required", f"The field 'image' is text, not a file. {AS_A_FILE}")
    return PhotoSearchError(400, "required", "Send a photo in the multipart field 'image'.")


def _validation_error(errors: dict) -> PhotoSearchError:
    field, messages = next(iter(errors.items()))
    message = messages[0] if isinstance(messages, list) else messages
    code = getattr(message, "code", "invalid")
    if field == "limit":
        return invalid_limit()
    if field == "image":
        return PhotoSearchError(400, "required" if code == "required" else "invalid_image", f"image: {message}")
    return PhotoSearchError(400, "invalid", f"{field}: {message}")

