"""The shop's own fields in visual search results (VISUAL_SEARCH["API_RESULT_SERIALIZER"])."""

from rest_framework import serializers

from visual_search.api.serializers import SearchResultSerializer


class ProductResultSerializer(SearchResultSerializer):
    # A JSON number (35.9), which the widget writes as the page does; DRF's default is text ("35.90").
    price = serializers.DecimalField(source="object.price", max_digits=8, decimal_places=2, coerce_to_string=False)
    category = serializers.CharField(source="object.category.name")
