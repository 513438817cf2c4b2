from django.http import HttpResponse
from django.urls import include, path

urlpatterns = [
    path("telegram/", include("visual_search.contrib.telegram.urls")),
    path("products/<int:pk>/", lambda request, pk: HttpResponse(), name="product"),  # tests.telegram.adapters.ReversedLinks
]
