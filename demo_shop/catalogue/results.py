"""How the demo's products appear in visual search results (VISUAL_SEARCH["RESULT_ADAPTER"])."""

from django.db.models import prefetch_related_objects

from visual_search.results import ResultAdapter


class ProductResultAdapter(ResultAdapter):
    """A product's price in kronor on every result card: the JSON API, the search page, similar products.

    The demo's products have no stock: ``available`` is left out (an unpublished product is not a
    result at all, see visibility.py).
    """

    def prepare(self, objects, request=None):
        # The API's ProductResultSerializer shows each product's category: one query, not one per result.
        prefetch_related_objects(list(objects), "category")

    def extra(self, obj, request=None):
        # The Decimal itself, not its text: the cards write it as the page writes its own prices
        # ("35,90 SEK" on a German page); text would show as it comes ("35.90 SEK" beside it).
        return {"price": obj.price, "currency": "SEK"}
