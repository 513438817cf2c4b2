"""The search-by-photo page: the widget's form posts here, so search works with JavaScript off.

Mount with ``path("search-by-photo/", include("visual_search.urls"))``. Override the template
``visual_search/search.html`` (or just ``visual_search/base.html``) to put it in your shop's layout.
"""

from __future__ import annotations

from django.contrib.auth.models import AnonymousUser
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.debug import sensitive_post_parameters
from django.views.generic import TemplateView

from .api.throttling import SearchRateThrottle, refund_server_failures
from .http import HeadWithoutBody, photo_names_hidden
from .photo_search import PhotoSearchError, check_content_length, confident, search_photo
from .widget import CONFIDENT_KEY, ERROR_KEY, RESULTS_KEY, WIDGET_FIELD, WIDGET_KEY, customer_message, page_language, words_language


@method_decorator(csrf_exempt, name="dispatch")
# The photo, were it sent as text, out of Django's error reports (docs/privacy.md).
@method_decorator(sensitive_post_parameters("image"), name="dispatch")
# Its file name too: a 500's or a 503's report lists it (docs/privacy.md).
@method_decorator(photo_names_hidden, name="dispatch")
# A search the server could not answer (5xx) gives its count back, as the API's does.
@method_decorator(refund_server_failures, name="dispatch")
class SearchByPhotoView(HeadWithoutBody, TemplateView):
    """GET shows the widget; POST (multipart ``image``) renders the results on the server.

    Only the widget whose form was posted (``vs_widget``) shows them, in the customer's words.

    No CSRF token is required: a search changes nothing a forged request could abuse (it reads,
    like a GET with a file), and a token baked into the widget's form would make a page served
    from a cache answer 403 to every other customer. The throttle still applies.
    """

    template_name = "visual_search/search.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        # The page's heading and intro are the package's words: search.html marks them with their
        # language where it is not the page's (English on a Spanish page; WCAG 3.1.2).
        context["words_language"], context["page_language"] = words_language(), page_language()
        return context

    def post(self, request, *args, **kwargs):
        context = self.get_context_data(**kwargs)
        status, retry_after = 200, None
        try:
            check_content_length(request.META)  # before request.POST reads (and spools) the body
            context[WIDGET_KEY] = request.POST.get(WIDGET_FIELD) or None  # the widget that shows the answer
            self.check_throttle(request)
            context[RESULTS_KEY] = search_photo(request.FILES.get("image"), request.POST, request)
            context[CONFIDENT_KEY] = confident(context[RESULTS_KEY])
        except PhotoSearchError as exc:
            context[ERROR_KEY] = customer_message(exc)  # the API's detail is for developers too
            status, retry_after = exc.status, exc.retry_after
        response = self.render_to_response(context, status=status)
        if status in (429, 503) and retry_after:  # as the API says it: a proxy or crawler may wait too
            response["Retry-After"] = str(retry_after)
        return response

    def check_throttle(self, request) -> None:
        """The API's anonymous rate limit applies here too: the same VGG16 work per request."""
        if getattr(request, "user", None) is None:
            request.user = AnonymousUser()
        throttle = SearchRateThrottle()
        if not throttle.allow_request(request, self):
            wait = throttle.wait()
            seconds = int(wait) + 1 if wait else None
            again = f" Try again in {seconds} seconds." if seconds else ""
            raise PhotoSearchError(429, "throttled", f"Too many searches from your connection.{again}", retry_after=seconds)
