"""Oscar's products in search results: title, price and availability as Oscar's pricing strategy says.

Name it in settings: ``VISUAL_SEARCH["RESULT_ADAPTER"] =
"visual_search.contrib.oscar.results.OscarResultAdapter"``. Each result then carries ``price``
(incl. tax when the strategy knows the tax, else excl. tax; a string with the decimals and the
rounding of Oscar's own pages, "12.90" EUR, "1200" JPY, "1290" HUF; "Free" with no currency for a
price of 0, as Oscar's pages say; None when the product has no price), ``currency`` and ``available``
(``is_available_to_buy``), and ``price_display``, the price as Oscar's pages write it ("€12.90"), which
the cards write.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from babel.numbers import format_currency, parse_pattern
from django.conf import settings
from django.db import models
from django.db.models.fields.files import FieldFile
from django.utils.translation import gettext as _
from oscar.apps.partner.strategy import Selector
from oscar.core.thumbnails import get_thumbnailer
from oscar.templatetags.currency_filters import currency as oscar_currency

from visual_search.results import ResultAdapter

logger = logging.getLogger("visual_search")


class OscarResultAdapter(ResultAdapter):
    """Prices and stock from the customer's strategy (``request.strategy``, set by Oscar's basket
    middleware; else ``Selector().strategy()``), thumbnails from Oscar's thumbnailer when installed."""

    strategy = None
    thumbnailer = None

    def prepare(self, objects: Sequence[models.Model], request=None) -> None:
        # One strategy and one set of stock records for the whole list, not one query per result;
        # and, as Oscar's base_queryset() does for its own lists, what its card asks of each product
        # before its basket button (its class, whether it has options): two queries a card otherwise.
        # A parent's price and stock come from its public variants' stock records, which Oscar's
        # strategy reads from _prefetched_public_children when a list has it (get_public_children),
        # else with two queries, asked twice a card (the price here, the stock line in the template).
        # Fetched now, for this list only: nothing outlives the request, so no price is stale.
        objects = list(objects)
        if objects:
            public_children = models.Prefetch(
                "children", queryset=type(objects[0])._default_manager.public().prefetch_related("stockrecords"),  # children.public()
                to_attr="_prefetched_public_children",
            )
            models.prefetch_related_objects(objects, "stockrecords", public_children, "product_class__options", "product_options")
        for obj in objects:
            if obj.product_class_id is not None:  # a variant's class is its parent's: Oscar asks it then
                obj.has_product_class_options = bool(obj.product_class.options.all())
                obj.has_product_options = bool(obj.product_options.all())
        self.strategy = getattr(request, "strategy", None) or Selector().strategy(
            request=request, user=getattr(request, "user", None)
        )
        try:
            self.thumbnailer = get_thumbnailer()
        except (ImportError, ValueError):
            # OSCAR_THUMBNAILER's library (sorl-thumbnail by default) is not installed: the app's own
            # thumbnails serve instead.
            self.thumbnailer = None

    def name(self, obj: models.Model) -> str:
        return obj.get_title()

    def thumbnail_url(self, obj: models.Model, image: FieldFile | None) -> str | None:
        if image and self.thumbnailer is not None:
            size = self.thumbnail_size
            try:
                return self.thumbnailer.generate_thumbnail(image, size=f"{size}x{size}").url
            except Exception:
                logger.exception("Oscar's thumbnailer failed on %s; using visual_search's thumbnail", image.name)
        return super().thumbnail_url(obj, image)

    def extra(self, obj: models.Model, request=None) -> dict[str, Any]:
        strategy = self.strategy or Selector().strategy(request=request, user=getattr(request, "user", None))
        info = strategy.fetch_for_parent(obj) if obj.is_parent else strategy.fetch_for_product(obj)
        return {**card_price(info.price), "available": bool(info.availability.is_available_to_buy)}


def card_price(price) -> dict[str, str | None]:
    """``price`` and ``currency`` of a result as Oscar's product page shows its price (partials/
    stock_record.html): incl. tax when the strategy knows the tax, else excl. tax; "Free" (in the
    customer's language, as Oscar words it) and no currency for a price of 0, where the cards read
    "0.00 EUR"; both None for no price. ``price_display``: the price as that page writes it, symbol
    and the customer's language included ("€12.90"), which every card writes: they read "12.90 EUR"."""
    if not price.exists:
        return {"price": None, "currency": None}
    if price.excl_tax == 0:
        return {"price": _("Free"), "currency": None, "price_display": _("Free")}
    amount = price.incl_tax if price.is_tax_known else price.excl_tax
    # What the cards write: Oscar's own filter, as the product page writes it ("€12.90", "12,90 €").
    return {"price": page_amount(amount, price.currency), "currency": price.currency,
            "price_display": oscar_currency(amount, price.currency)}


def page_amount(amount: Decimal, currency: str) -> str:
    """``amount`` as Oscar's product page shows it, in digits the cards write as they are ("1290",
    "12.90"; the cards add the code): rounded as Oscar's ``currency`` filter rounds it (babel's
    ``format_currency`` with ``OSCAR_CURRENCY_FORMAT``), to the currency's digits as CLDR has them and
    half to even. The ISO 4217 table of the widget (``results.CURRENCY_DECIMALS``, half up) gave
    "1290.50 HUF" on a card where the product page read "HUF 1,290": customers compare with that page.
    """
    options = _currency_options(currency)
    return format_currency(
        amount,
        currency,
        format=_plain(options.get("format")),
        locale="en",  # digits and a point: the cards' string, as the adapter always wrote it
        currency_digits=options.get("currency_digits", True),
        decimal_quantization=options.get("decimal_quantization", True),
    )


def _currency_options(currency: str) -> dict[str, Any]:
    """The options Oscar's ``currency`` filter passes to babel for ``currency``."""
    configured = getattr(settings, "OSCAR_CURRENCY_FORMAT", None)
    if isinstance(configured, dict):
        return dict(configured.get(currency, {}))
    return {"format": configured}


def _plain(pattern: str | None) -> str:
    """A babel pattern with ``pattern``'s decimals (a currency's standard pattern's: two), without
    grouping or symbol."""
    least, most = parse_pattern(pattern or "#,##0.00").frac_prec
    return "0" + ("." + "0" * least + "#" * (most - least) if most else "")
