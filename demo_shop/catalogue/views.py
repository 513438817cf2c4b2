from django.db.models import Count, Prefetch
from django.shortcuts import get_object_or_404, render

from .models import Category, Product


def shop_context(request):
    """The category menu on every page."""
    return {"menu_categories": Category.objects.annotate(n=Count("products")).filter(n__gt=0)}


def home(request):
    categories = Category.objects.prefetch_related(Prefetch("products", queryset=Product.objects.order_by("name")))
    return render(request, "catalogue/home.html", {"categories": categories})


def category(request, slug):
    category = get_object_or_404(Category, slug=slug)
    return render(request, "catalogue/category.html", {"category": category, "products": category.products.all()})


def product(request, slug):
    product = get_object_or_404(Product.objects.select_related("category"), slug=slug)
    return render(request, "catalogue/product.html", {"product": product, "gallery": product.images.all()})
