"""A shop's own models, as the app finds them: nothing visual-search specific in here."""

import uuid

from django.db import models


class Product(models.Model):
    name = models.CharField(max_length=200)
    category = models.CharField(max_length=100, blank=True)
    in_stock = models.BooleanField(default=True)
    image = models.ImageField(upload_to="products/", blank=True)

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return f"/products/{self.pk}/"


class ProductImage(models.Model):
    product = models.ForeignKey(Product, on_delete=models.CASCADE, related_name="images")
    image = models.ImageField(upload_to="gallery/")


class Gadget(models.Model):
    """A shop whose primary keys are UUIDs (stored as 32 hex digits where the database has no uuid type)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    name = models.CharField(max_length=200)
    photo = models.ImageField(upload_to="gadgets/", blank=True)

    def __str__(self):
        return self.name


class Leaflet(models.Model):
    """A shop whose keys are long codes: longer than the 64 characters an ImageEmbedding id holds."""

    code = models.CharField(primary_key=True, max_length=100)
    picture = models.ImageField(upload_to="leaflets/", blank=True)


class FeaturedProduct(Product):
    """A proxy: the same rows as Product, registered on its own by some shops."""

    class Meta:
        proxy = True


class DigitalProduct(Product):
    """Multi-table inheritance: a Product too, saved with its own class as the signals' sender."""

    download_url = models.URLField(blank=True)
