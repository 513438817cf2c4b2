from django.db.models import Count, Prefetch
from django.shortcuts import get_object_or_404, render

from .models import Category, Product
from .visibility import browsable


def shop_context(request):
    """The category menu on every page."""
    return {"menu_categories": Category.objects.annotate(n=Count("products")).filter(n__gt=0)}


def home(request):
    shown = browsable(Product, request).order_by("name")
    categories = Category.objects.prefetch_related(Prefetch("products", queryset=shown))
    return render(request, "catalogue/home.html", {"categories": categories})


def category(request, slug):
    category = get_object_or_404(Category, slug=slug)
    products = browsable(Product, request).filter(category=category)
    return render(request, "catalogue/category.html", {"category": category, "products": products})


def product(request, slug):
    product = get_object_or_404(browsable(Product, request).select_related("category"), slug=slug)
    return render(request, "catalogue/product.html", {"product": product, "gallery": product.images.all()})
