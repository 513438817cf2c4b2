from django.urls import include, path

urlpatterns = [path("api/visual-search/", include("visual_search.api.urls"))]
