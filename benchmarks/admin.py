"""The staff's pages at catalogue scale: the shop's product list with the visual search column
(``VisualSearchAdminMixin``) and the package's *Product image index*, served by Django's test
client from the benchmarks' SQLite database.

Rows are synthetic (their cost does not depend on images): ``size`` products of the test app,
each with its own image row of the current fingerprint, one in ten with a gallery image as well,
one in 500 failed, one in 1,000 flagged as a possible duplicate. Each page is requested once to
warm up, then ``repeats`` times; the median is reported, in milliseconds.
"""

from __future__ import annotations

import statistics
import time

PAGES = {
    "product list": "/bench-admin/testapp/product/",
    "product list, failed only": "/bench-admin/testapp/product/?visual_search=failed",
    "product list, by status": "/bench-admin/testapp/product/?o=3",
    "product list, duplicates only": "/bench-admin/testapp/product/?visual_search_duplicate=yes",
    "image index": "/bench-admin/visual_search/imageembedding/",
    "image index, searched by product name": "/bench-admin/visual_search/imageembedding/?q=Item+1999",
}


def _catalogue(size: int) -> None:
    import numpy as np
    from django.contrib.contenttypes.models import ContentType

    from tests.testapp.models import Product, ProductImage
    from visual_search.models import ImageEmbedding
    from visual_search.serving import current_fingerprint

    ImageEmbedding.objects.all().delete()
    ProductImage.objects.all().delete()
    Product.objects.all().delete()
    products = Product.objects.bulk_create([Product(name=f"Item {n}", image=f"products/{n}.jpg") for n in range(size)], batch_size=5000)
    gallery = ProductImage.objects.bulk_create(
        [ProductImage(product=p, image=f"gallery/{p.pk}.jpg") for p in products[::10]], batch_size=5000
    )
    product_type, image_type = ContentType.objects.get_for_model(Product), ContentType.objects.get_for_model(ProductImage)
    fingerprint, vector = current_fingerprint(), np.zeros(512, dtype=np.float32).tobytes()

    def row(content_type, obj, result, n):
        failed = n % 500 == 0
        return ImageEmbedding(
            content_type=content_type, object_id=str(obj.pk), field_name="image", result_type=product_type,
            result_id=str(result.pk), fingerprint=fingerprint, status="failed" if failed else "ready",
            error="The file is not an image we can read." if failed else "", vector=None if failed else vector,
        )

    rows = [row(product_type, p, p, n) for n, p in enumerate(products)]
    rows += [row(image_type, g, g.product, n + 1) for n, g in enumerate(gallery)]
    created = ImageEmbedding.objects.bulk_create(rows, batch_size=5000)
    flagged = created[1::1000]
    for first, second in zip(flagged, created[2::1000]):
        first.duplicate_of, first.duplicate_score = second, 0.999
    ImageEmbedding.objects.bulk_update(flagged, ["duplicate_of", "duplicate_score"], batch_size=5000)


def run(sizes: list[int], repeats: int = 3) -> dict:
    from django.contrib import admin
    from django.contrib.auth.models import User
    from django.test import Client, override_settings
    from django.test.utils import setup_test_environment
    from django.urls import path

    from tests.testapp.models import Product
    from visual_search.admin import ImageEmbeddingAdmin
    from visual_search.admin_mixins import VisualSearchAdminMixin
    from visual_search.models import ImageEmbedding

    class ProductAdmin(VisualSearchAdminMixin, admin.ModelAdmin):
        list_display = ["name", "category"]
        search_fields = ["name"]

    site = admin.AdminSite(name="bench-admin")
    site.register(Product, ProductAdmin)
    site.register(ImageEmbedding, ImageEmbeddingAdmin)
    urls = type("urls", (), {"urlpatterns": [path("bench-admin/", site.urls)]})
    setup_test_environment()
    staff = User.objects.filter(username="bench-staff").first() or User.objects.create_superuser("bench-staff", "staff@example.com", "pw")
    figures: dict = {}
    with override_settings(ROOT_URLCONF=urls, ALLOWED_HOSTS=["testserver"]):
        client = Client()
        client.force_login(staff)
        for size in sizes:
            _catalogue(size)
            print(f"\n  {size:,} products ({ImageEmbedding.objects.count():,} image rows):")
            for name, url in PAGES.items():
                assert client.get(url).status_code == 200, url  # warm-up
                times = []
                for _ in range(repeats):
                    start = time.perf_counter()
                    response = client.get(url)
                    times.append((time.perf_counter() - start) * 1000)
                rows = response.content.decode().count('class="action-select"')
                median = round(statistics.median(times), 1)
                figures[f"{name} ms at {size}"] = median
                print(f"    {name:40s} {median:8.1f} ms  ({rows} rows shown; runs {', '.join(f'{t:.0f}' for t in times)})", flush=True)
    return figures
