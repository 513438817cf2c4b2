from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

urlpatterns = [
    path("", include("demo_shop.catalogue.urls")),
    # The no-JavaScript search page; the widget's form posts here.
    path("search/", include("visual_search.urls")),
    path("api/visual-search/", include("visual_search.api.urls")),
    # The whole project's schema, as a file for tools. People read the API's docs page instead:
    # /api/visual-search/docs/ (visual_search.api.urls serves it, and the API's own schema/).
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("admin/", admin.site.urls),
] + static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)

if "visual_search.contrib.telegram" in settings.INSTALLED_APPS:  # see VISUAL_SEARCH_TELEGRAM in settings.py
    urlpatterns.append(path("telegram/", include("visual_search.contrib.telegram.urls")))  # telegram/webhook/
if "visual_search.contrib.whatsapp" in settings.INSTALLED_APPS:  # see VISUAL_SEARCH_WHATSAPP in settings.py
    urlpatterns.append(path("whatsapp/", include("visual_search.contrib.whatsapp.urls")))  # whatsapp/webhook/
