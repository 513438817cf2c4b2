"""The shop's catalogue. Nothing here knows about visual search: settings.VISUAL_SEARCH registers it."""

from django.db import models
from django.urls import reverse


class Category(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("catalogue:category", args=[self.slug])


class Product(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(unique=True)
    category = models.ForeignKey(Category, on_delete=models.PROTECT, related_name="products")
    description = models.TextField(blank=True)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    image = models.ImageField(upload_to="products/", blank=True)
    # The shop's own rule: a product staff have not published is shown nowhere (visibility.py).
    is_public = models.BooleanField(default=True, help_text="Shown to customers.")

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("catalogue:product", args=[self.slug])


class ProductImage(models.Model):
    """A gallery photo: shop-floor pictures of the product, also searched (result="product")."""

    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="images")
    image = models.ImageField(upload_to="gallery/")

    class Meta:
        ordering = ["pk"]

    def __str__(self):
        return f"{self.product} photo {self.pk}"
