"""The demo shop's Content-Security-Policy: a strict one, to show that visual search needs no
inline script or style. Its pages, the widget, the admin and the API docs run under it.

The only allowances visual search needs beyond ``'self'`` are in ``img-src``: ``blob:`` for the
widget, which shows the customer's photo (with its crop box) from a ``blob:`` URL (without it the
search still works, without the preview), and ``data:`` for the icons of the API docs page's
Swagger UI (docs/customers.md#content-security-policy). A shop whose media or
static files come from a CDN adds that host to ``img-src`` and ``script-src``/``style-src``.
"""

from django.conf import settings

POLICY = "; ".join([
    "default-src 'self'",
    "img-src 'self' blob: data:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])


def content_security_policy(get_response):
    def middleware(request):
        response = get_response(request)
        # Django's debug error pages have inline styles and scripts: they keep them.
        if not (settings.DEBUG and response.status_code >= 400):
            response.headers.setdefault("Content-Security-Policy", POLICY)
        return response

    return middleware
