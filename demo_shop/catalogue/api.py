"""The shop's own fields in visual search results (VISUAL_SEARCH["API_RESULT_SERIALIZER"])."""

from rest_framework import serializers

from visual_search.api.serializers import SearchResultSerializer


class ProductResultSerializer(SearchResultSerializer):
    price = serializers.DecimalField(source="object.price", max_digits=8, decimal_places=2)
    category = serializers.CharField(source="object.category.name")
