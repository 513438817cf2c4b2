"""Rate limit for anonymous search by photo: each request runs VGG16, so it is worth protecting."""

from __future__ import annotations

import ipaddress
import logging
from functools import wraps

from django.utils.crypto import salted_hmac
from rest_framework.settings import api_settings
from rest_framework.throttling import AnonRateThrottle

from ..conf import settings
from ..logs import OccasionalWarning
from ..tenants import tenant_key

logger = logging.getLogger("visual_search")
# With the cache down every search said so: one line per search. Once a minute per process, and what to do.
CACHE_WARNING = OccasionalWarning(
    logger,
    "Search rate limit not checked, the cache is unavailable (%s): searches are served without the limit "
    "meanwhile; check that the server of CACHES is running (said once a minute per process).",
)
# On the request (Django's HttpRequest, under DRF's Request too): the history entry its search added.
COUNTED = "_visual_search_counted"


class SearchRateThrottle(AnonRateThrottle):
    """Searches per client IP at ``VISUAL_SEARCH["SEARCH_THROTTLE_RATE"]`` ("30/min"), per account
    for signed-in customers.

    ``None`` switches it off. Signed-in customers were not limited at all, and signing up to a shop
    costs a script nothing. Counts live in Django's default cache, so with several web processes use
    a shared cache (Redis, Memcached).
    """

    scope = "visual_search"

    def get_rate(self) -> str | None:
        return settings.SEARCH_THROTTLE_RATE

    def get_cache_key(self, request, view) -> str:
        user = getattr(request, "user", None)
        ident = f"user-{user.pk}" if user is not None and user.is_authenticated else self.get_ident(request)
        # A keyed hash, not the customer's IP address itself, which the cache (a Redis snapshot on
        # disk, KEYS *) showed for as long as the rate's window.
        # Each shop's own counts on a multi-tenant platform (tenants.py).
        return tenant_key(self.cache_format % {"scope": self.scope, "ident": salted_hmac(self.scope, ident).hexdigest()[:32]})

    def get_ident(self, request) -> str:
        # DRF's own, without REST_FRAMEWORK["NUM_PROXIES"], counts by the whole X-Forwarded-For header
        # when there is one: a header the client writes, so a script sending a new one per request was
        # never throttled. Without NUM_PROXIES, see nearest_client().
        remote = request.META.get("REMOTE_ADDR") or ""
        ident = nearest_client(request, remote) if api_settings.NUM_PROXIES is None else super().get_ident(request)
        return client_network(ident) or client_network(remote) or "unknown"

    def allow_request(self, request, view) -> bool:
        if request.method != "POST":
            # Only a search runs the model. A CORS preflight that reaches the view (a proxy adding the
            # CORS headers rather than django-cors-headers, which answers it first), or a GET
            # answered 405, used up a customer's search: with "1/min", the search after it was 429.
            return True
        # Read the rate on every request, not once per class, so settings changes apply at once.
        self.rate = self.get_rate()
        self.num_requests, self.duration = self.parse_rate(self.rate)
        self.counted = None
        try:
            allowed = super().allow_request(request, view)
        except Exception as exc:  # noqa: BLE001 - the cache (Redis) is down: serve, do not fail the search
            CACHE_WARNING(exc)
            return True
        setattr(getattr(request, "_request", request), COUNTED, self.counted)
        return allowed

    def throttle_success(self) -> bool:
        super().throttle_success()
        self.counted = (self.key, self.now, self.duration)  # what refund() takes back
        return True

    @classmethod
    def refund(cls, request) -> None:
        """Take back the count of ``request``'s search: the server could not answer it (503).

        Its own entry only, once: where that is gone already (the window passed, the cache
        cleared), nothing is taken, never another search's count. Two searches of one client at the
        same moment may overwrite each other's change, as DRF's own counting may: a refund lost, or
        one search more let through, never an error. The cache down meanwhile is logged, not raised."""
        request = getattr(request, "_request", request)
        counted = getattr(request, COUNTED, None)
        if not counted:
            return
        setattr(request, COUNTED, None)
        key, stamp, duration = counted
        try:
            history = cls.cache.get(key, [])
            if stamp in history:
                history.remove(stamp)
                cls.cache.set(key, history, duration)
        except Exception as exc:  # noqa: BLE001 - the cache (Redis) went down meanwhile
            CACHE_WARNING(exc)


def refund_server_failures(dispatch):
    """``dispatch`` (a search view's, through ``method_decorator``), after which a search answered
    503 (the model loading after a deploy, the database or index restarting) no longer counts
    towards ``SEARCH_THROTTLE_RATE``: a client retrying after ``Retry-After`` used up its searches on
    the server's failures and was then refused (429). A 4xx (a damaged photo, one too large) still
    counts, and so does a 500: a bug a script found may answer 500 to the same request every time,
    and would cost the model's work unthrottled.
    """

    @wraps(dispatch)
    def wrapper(request, *args, **kwargs):
        response = dispatch(request, *args, **kwargs)
        if response.status_code == 503:
            SearchRateThrottle.refund(request)
        return response

    return wrapper


def nearest_client(request, remote: str) -> str:
    """The customer's address without ``NUM_PROXIES``: where the connection comes from a proxy on
    this host or a private network (nginx, a load balancer, a container network: loopback,
    private or link-local addresses), the address that proxy saw, the last entry of
    ``X-Forwarded-For`` (entries before it are the client's own text); else the connection's own
    address, as a client on the internet writes that header itself. A shop behind a proxy thus
    counts each customer apart with no setting, and a forged header gains nothing."""
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    try:
        ip = ipaddress.ip_address(remote)
    except ValueError:
        return remote
    ip = getattr(ip, "ipv4_mapped", None) or ip
    if forwarded.strip() and (ip.is_private or ip.is_loopback or ip.is_link_local):
        return forwarded.split(",")[-1].strip()
    return remote


def client_network(address: str | None) -> str | None:
    """The throttle's bucket for a client address: an IPv4 address itself, an IPv6 one's /64 (one
    customer's network, whose 2**64 addresses a script could otherwise take one by one); None for
    what is no address (a proxy's header written by the client: memcached refused such keys, and
    an unavailable cache lets every search through)."""
    try:
        ip = ipaddress.ip_address(str(address or "").strip())
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is None:
        return f"{ipaddress.ip_network(f'{ip}/64', strict=False).network_address}/64"
    return str(getattr(ip, "ipv4_mapped", None) or ip)
