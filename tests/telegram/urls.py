from django.urls import include, path

urlpatterns = [
    path("telegram/", include("visual_search.contrib.telegram.urls")),
]
