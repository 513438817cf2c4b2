"""URLs of the Oscar test shop, as docs/oscar.md tells a shop to write them."""

from django.apps import apps
from django.conf import settings
from django.conf.urls.static import static
from django.urls import include, path

urlpatterns = [
    path("i18n/", include("django.conf.urls.i18n")),  # Oscar's layout links to set_language
    path("api/visual-search/", include("visual_search.api.urls")),
    path("visual-search/", include("visual_search.contrib.oscar.urls")),
    path("dashboard/visual-search/", apps.get_app_config("visual_search_oscar").urls),
    path("", include(apps.get_app_config("oscar").urls[0])),
] + static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)
