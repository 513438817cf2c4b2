from django.urls import include, path

urlpatterns = [
    path("whatsapp/", include("visual_search.contrib.whatsapp.urls")),
]
