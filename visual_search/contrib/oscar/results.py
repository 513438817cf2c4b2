"""Oscar's products in search results: title, price and availability as Oscar's pricing strategy says.

Name it in settings: ``VISUAL_SEARCH["RESULT_ADAPTER"] =
"visual_search.contrib.oscar.results.OscarResultAdapter"``. Each result then carries ``price``
(incl. tax when the strategy knows the tax, else excl. tax; a string with its currency's decimals,
"12.90" EUR and "1200" JPY, or None when the product has no price), ``currency`` and ``available`` (``is_available_to_buy``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.db import models
from django.db.models.fields.files import FieldFile
from oscar.apps.partner.strategy import Selector
from oscar.core.thumbnails import get_thumbnailer

from visual_search.results import ResultAdapter, currency_decimals

logger = logging.getLogger("visual_search")


class OscarResultAdapter(ResultAdapter):
    """Prices and stock from the customer's strategy (``request.strategy``, set by Oscar's basket
    middleware; else ``Selector().strategy()``), thumbnails from Oscar's thumbnailer when installed."""

    strategy = None
    thumbnailer = None

    def prepare(self, objects: Sequence[models.Model], request=None) -> None:
        # One strategy and one set of stock records for the whole list, not one query per result.
        models.prefetch_related_objects(list(objects), "stockrecords", "children__stockrecords")
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
        price = info.price
        amount = None
        if price.exists:
            amount = price.incl_tax if price.is_tax_known else price.excl_tax
        return {
            # The currency's decimals, as the cards write a number: "1200" yen, not "1200.00".
            "price": f"{amount:.{currency_decimals(price.currency)}f}" if amount is not None else None,
            "currency": price.currency if price.exists else None,
            "available": bool(info.availability.is_available_to_buy),
        }
