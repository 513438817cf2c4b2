from django.contrib import admin

from visual_search.admin_mixins import VisualSearchAdminMixin

from .models import Category, Product, ProductImage


class ProductImageInline(admin.TabularInline):
    model = ProductImage
    extra = 0


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Product)
class ProductAdmin(VisualSearchAdminMixin, admin.ModelAdmin):
    """The mixin adds the "visual search" column and filter, and the reindex and requeue actions."""

    list_display = ["name", "category", "price", "is_public"]
    list_filter = ["category", "is_public"]
    search_fields = ["name"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [ProductImageInline]


@admin.register(ProductImage)
class ProductImageAdmin(VisualSearchAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "product"]
    list_select_related = ["product"]
