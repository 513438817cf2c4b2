from django.apps import AppConfig


class CatalogueConfig(AppConfig):
    name = "demo_shop.catalogue"
    label = "catalogue"
    verbose_name = "Catalogue"
    default_auto_field = "django.db.models.BigAutoField"
