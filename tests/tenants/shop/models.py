"""Each shop's own catalogue, in its own schema: nothing visual-search specific in here."""

from django.db import models


class Product(models.Model):
    name = models.CharField(max_length=200)
    image = models.ImageField(upload_to="products/", blank=True)

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return f"/products/{self.pk}/"
