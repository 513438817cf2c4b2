"""A shop whose media live on an object store (django-storages' S3, GCS, Azure): no local paths,
signed URLs that expire, a name saved again overwriting its file, errors that pass, slow reads.

The product's image field has a storage of its own here (``STORAGES`` aliases, Django 4.2+), not
the default one: everything must go through the field's storage. See tests/remote_storage.py.
"""

import hashlib
import io
import re
import time
from urllib.parse import unquote, urlsplit

import pytest
from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.core.cache import cache, caches
from django.core.cache.backends import locmem
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, storages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.forms import modelform_factory
from django.template import Context, Template
from PIL import Image

import visual_search
from visual_search.admin import ImageEmbeddingAdmin
from visual_search.embeddings.images import to_srgb
from visual_search import previews
from visual_search.admin_mixins import VisualSearchAdminMixin
from visual_search.conf import settings as visual_search_settings
from visual_search.contrib.messaging.pictures import stored_bytes
from tests.conftest import catalogue_image, staff_on_site
from tests.remote_storage import BUCKET, RemoteStorage, expiry
from tests.testapp.models import Product, ProductImage
from visual_search.models import ImageEmbedding
from visual_search.results import THUMBNAIL_RETRY_AFTER, describe, thumbnail
from visual_search import thumbnails
from visual_search.thumbnails import cache_key
from visual_search.tasks import embed_objects

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def bucket(monkeypatch):
    """The products' and gallery images' storage: one bucket, as ``storage=storages["products"]``."""
    storage = RemoteStorage()
    for model in (Product, ProductImage):
        monkeypatch.setattr(model._meta.get_field("image"), "storage", storage)
    cache.clear()
    yield storage
    cache.clear()


def row(obj):
    return ImageEmbedding.objects.for_object(obj).get(field_name="image")


def product(name, picture, data=None):
    item = Product(name=name)
    item.image.save(f"{name}.jpg", ContentFile(data or catalogue_image(picture).read_bytes()))
    return item


def camera_photo(picture, side=2400):
    """A catalogue picture as a shop uploads it: a camera's JPEG, thousands of px a side."""
    image = Image.open(catalogue_image(picture)).convert("RGB").resize((side, side), Image.Resampling.BICUBIC)
    grain = Image.effect_noise((side, side), 24).convert("RGB")  # a sensor's noise: what makes photos megabytes
    buffer = io.BytesIO()
    Image.blend(image, grain, 0.15).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def test_a_product_saved_to_a_bucket_is_indexed_and_found_without_local_paths(bucket):
    milk = product("milk", "Arla-Standard-Milk")
    assert bucket.exists("products/milk.jpg") and row(milk).status == "ready"
    found = visual_search.search_by_image(catalogue_image("Arla-Standard-Milk").read_bytes(), Product)
    assert found[0].object.pk == milk.pk


def test_a_photo_uploaded_again_under_the_same_name_is_embedded_again(bucket):
    """S3's default AWS_S3_FILE_OVERWRITE = True (GCS's file_overwrite too): staff upload a new
    photo named as the old one, the file is replaced, and the product's name of it is unchanged."""
    milk = product("milk", "Arla-Standard-Milk")
    before = row(milk).checksum
    # As the admin's change form does it: the object loaded, the upload saved through a ModelForm.
    form = modelform_factory(Product, fields=["name", "image"])(
        {"name": "milk"}, {"image": SimpleUploadedFile("milk.jpg", catalogue_image("Banana").read_bytes())},
        instance=Product.objects.get(pk=milk.pk),
    )
    milk = form.save()
    assert milk.image.name == "products/milk.jpg"  # overwritten in place
    assert row(milk).status == "ready" and row(milk).checksum != before
    found = visual_search.search_by_image(catalogue_image("Banana").read_bytes(), Product)
    assert found[0].object.pk == milk.pk and found[0].similarity > 0.99


def test_a_storage_error_that_passes_is_retried_not_failed(bucket):
    milk = product("milk", "Arla-Standard-Milk")
    ImageEmbedding.objects.update(status="pending", checksum="")
    bucket.fail_next["open"] = [ConnectionError("Connection reset by peer")]
    embed_objects.apply(args=("testapp.product", "image", [milk.pk], True))
    assert row(milk).status == "ready"
    assert bucket.reads.count("products/milk.jpg") == 2


def test_a_file_missing_from_the_bucket_fails_with_what_to_do(bucket):
    """Older django-storages S3 releases raise botocore's ClientError (404) for a missing key, no
    FileNotFoundError: the task retried it 8 times, the sweep queued it again for ever, and staff
    never read that the file is missing. An error of a file that is there is still retried."""
    bucket.missing_as_client_error = True
    milk = product("milk", "Arla-Standard-Milk")
    bucket.delete("products/milk.jpg")
    result = embed_objects.apply(args=("testapp.product", "image", [milk.pk], True))
    assert result.successful()
    assert row(milk).status == "failed"
    assert "missing from storage" in row(milk).error


def test_a_missing_file_says_what_to_do(bucket, settings):
    """The reason staff read in the admin's error column said only that the file is missing."""
    milk = product("milk", "Arla-Standard-Milk")
    bucket.delete("products/milk.jpg")
    call_command("visual_search_reindex", "--force", verbosity=0)
    error = row(milk).error
    assert error.startswith("The image file 'products/milk.jpg' is missing from storage.")
    assert "Upload the image again" in error and "visual_search_reindex --only failed" in error
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "ASYNC": True}
    out = io.StringIO()
    call_command("visual_search_status", stdout=out)
    assert "1 image failed" in out.getvalue() and "It is missing from storage" in out.getvalue()


def test_a_file_too_large_to_index_is_not_read_whole(bucket, settings):
    """The worker read the whole file into memory, then refused it for its size: a 300 MB TIFF
    uploaded by mistake was downloaded whole by each worker process that tried it. Its size is known
    on opening (S3: the HEAD request its file object makes), before any byte is downloaded."""
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "MAX_INDEX_BYTES": 100_000}
    big = Product(name="poster")
    big.image.save("poster.jpg", ContentFile(catalogue_image("Lemon").read_bytes() + b"\0" * 1_000_000))
    assert row(big).status == "failed" and "larger than" in row(big).error
    assert bucket.bytes_read == 0


def test_result_urls_are_signed_afresh_for_each_page(bucket, rf, monkeypatch):
    """Signed URLs expire (an hour by default): none may be remembered, or the next customer gets broken pictures."""
    milk = product("milk", "Arla-Standard-Milk")
    product("banana", "Banana")
    found = visual_search.find_similar(milk, limit=2)
    first = describe(found)
    later = bucket.now() + 7200
    monkeypatch.setattr(bucket, "now", lambda: later)
    again = describe(visual_search.find_similar(milk, limit=2))
    assert all(expiry(item["image_url"]) > later for item in again)
    assert first[0]["image_url"] != again[0]["image_url"]
    html = Template("{% load visual_search %}{% similar_products milk limit=2 as similar %}{% for s in similar %}{{ s.image_url }}{% endfor %}").render(Context({"milk": milk}))
    assert f"X-Expires={int(later) + 3600}" in html.replace("&amp;", "&")
    assert expiry(row(milk).image_url()) > later


def test_a_thumbnail_not_made_for_a_storage_error_is_tried_again_soon(bucket, monkeypatch):
    """A bucket that timed out once was remembered as "no thumbnail" for the cache's TIMEOUT (for
    ever with None): every card showed the full-size original, megabytes each, on every page."""
    milk = product("milk", "Arla-Standard-Milk")
    image = Product.objects.get(pk=milk.pk).image
    original = f"{BUCKET}products/milk.jpg?"
    bucket.fail_next["open"] = [ConnectionError("Read timed out")]
    assert thumbnail(image, 64).startswith(original)
    calls = len(bucket.calls)
    assert thumbnail(image, 64).startswith(original) and len(bucket.calls) == calls  # not at every page
    later = time.time() + THUMBNAIL_RETRY_AFTER + 1
    monkeypatch.setattr(locmem.time, "time", lambda: later)
    assert thumbnail(image, 64).startswith(f"{BUCKET}visual_search/thumbnails/")


def no_modification_times(name):
    raise NotImplementedError("subclasses of Storage must provide a get_modified_time() method")


@pytest.mark.parametrize("times", [True, False], ids=["modification-times", "no-modification-times"])
def test_a_thumbnail_reads_its_original_once(bucket, monkeypatch, times):
    """A storage without modification times (an FTP's, a database's) had the original downloaded
    twice: once for its checksum (what names the thumbnail), once more to make the thumbnail."""
    milk = product("milk", "Arla-Standard-Milk")
    if not times:
        monkeypatch.setattr(bucket, "get_modified_time", no_modification_times)
    bucket.reads.clear()
    assert "visual_search/thumbnails/" in thumbnail(Product.objects.get(pk=milk.pk).image, 64)
    assert bucket.reads == ["products/milk.jpg"]
    cache.clear()  # another process: the thumbnail is found in the storage by the row's checksum, not made again
    assert "visual_search/thumbnails/" in thumbnail(Product.objects.get(pk=milk.pk).image, 64)
    assert bucket.reads == ["products/milk.jpg"]


def test_reindex_command_on_a_bucket(bucket):
    milk = product("milk", "Arla-Standard-Milk")
    bucket.reads.clear()
    call_command("visual_search_reindex", "--force", verbosity=0)
    assert row(milk).status == "ready" and bucket.reads == ["products/milk.jpg"]


class ProductAdmin(VisualSearchAdminMixin, admin.ModelAdmin):
    list_display = ["name"]


def pictures(page: str, bucket) -> tuple[list[str], int]:
    """The bucket's files a staff page shows as pictures, and the bytes a browser downloads for them."""
    names = [unquote(urlsplit(src.replace("&amp;", "&")).path)[len(urlsplit(BUCKET).path):]
             for src in re.findall(r'<img src="([^"]+)"', page) if src.startswith(BUCKET)]
    return names, sum(bucket.size(name) for name in names)


def test_staff_pages_show_thumbnails_not_the_originals(bucket, client, settings):
    """The image index (100 rows a page, each with its picture and its duplicate's) and the product's
    duplicate warnings showed each original as <img src>: on a bucket, staff's browsers downloaded
    every full-size product photo to show it 48 to 240 px wide. They show the result cards' thumbnails."""
    staff = staff_on_site(client, settings, {Product: ProductAdmin, ImageEmbedding: ImageEmbeddingAdmin})
    apple = camera_photo("Pink-Lady")
    first = product("pink-lady", "Pink-Lady", apple)
    copy = product("apple-copy", "Pink-Lady", apple)
    for name in ("Arla-Standard-Milk", "Banana", "Lemon", "Mango"):
        product(name.lower(), name, camera_photo(name))
    originals = sum(bucket.size(f"products/{name}") for name in bucket.listdir("products")[1])
    page = staff.get("/shopadmin/visual_search/imageembedding/").content.decode()
    shown, downloaded = pictures(page, bucket)
    assert len(shown) == 8  # six rows, and each of the pair in the other's duplicate column
    assert all(name.startswith("visual_search/thumbnails/") for name in shown), shown
    assert downloaded < originals / 3, (downloaded, originals)
    assert page.count(f'href="{BUCKET}products/') == 8  # each picture still links to the file
    mine = row(copy)
    page = staff.get(f"/shopadmin/visual_search/imageembedding/{mine.pk}/change/").content.decode()
    shown, _ = pictures(page, bucket)
    assert len(shown) == 2 and all(name.startswith("visual_search/thumbnails/") for name in shown)
    page = staff.get(f"/shopadmin/testapp/product/{copy.pk}/change/").content.decode()
    assert "This image is a possible duplicate of" in page
    shown, _ = pictures(page, bucket)
    assert len(shown) == 2 and all(name.startswith("visual_search/thumbnails/") for name in shown)
    assert row(first).status == "ready"


def test_a_staff_picture_that_cannot_be_made_small_shows_the_original(bucket, client, settings):
    """As on result cards: a storage error (tried again soon) shows the file, never a broken picture."""
    staff = staff_on_site(client, settings, {ImageEmbedding: ImageEmbeddingAdmin})
    product("milk", "Arla-Standard-Milk")
    forget_thumbnails(bucket)  # indexed before indexing made them: the page makes its own
    bucket.fail_next["exists"] = [ConnectionError("Read timed out")]
    page = staff.get("/shopadmin/visual_search/imageembedding/").content.decode()
    assert pictures(page, bucket)[0] == ["products/milk.jpg"]


def forget_thumbnails(storage):
    """As before indexing made thumbnails: none in the storage, none remembered."""
    for name in storage.listdir("visual_search/thumbnails")[1] if storage.exists("visual_search/thumbnails") else []:
        storage.delete(f"visual_search/thumbnails/{name}")
    cache.clear()


def test_two_buckets_of_one_storage_class_keep_their_own_thumbnails(bucket):
    """Which thumbnail an image has was remembered by the storage's class and the file's name: a
    gallery in another bucket (S3Storage(bucket_name="gallery") beside the products' S3Storage), or
    two shops' buckets, with a file of the same name got the first one's thumbnail name, a picture
    missing from their own bucket (or the other's photo where that name exists there too)."""
    gallery = RemoteStorage(base_url="https://shop-gallery.bucket.example/")
    for storage, picture in ((bucket, "Arla-Standard-Milk"), (gallery, "Banana")):
        storage.save("products/milk.jpg", ContentFile(catalogue_image(picture).read_bytes()))
    mine = thumbnail(Product(image="products/milk.jpg").image, 64)
    shelf = ProductImage(image="products/milk.jpg")
    shelf.image.storage = gallery
    theirs = thumbnail(shelf.image, 64)
    assert theirs.startswith("https://shop-gallery.bucket.example/visual_search/thumbnails/")
    name = urlsplit(theirs).path.lstrip("/")
    assert gallery.exists(name), "the gallery's card shows a thumbnail its bucket does not have"
    with gallery.open(name) as handle:
        assert Image.open(handle).getpixel((32, 32)) != Image.open(bucket.open(urlsplit(mine).path.lstrip("/"))).getpixel((32, 32))


def test_a_storage_built_from_settings_alone_keeps_its_thumbnail_cache_keys():
    """Thumbnails remembered before the key told storages apart are found again after an upgrade:
    a storage given no arguments (MEDIA_ROOT's, S3Storage configured by AWS_* settings) is keyed as before."""
    plain = FileSystemStorage()
    before = hashlib.sha256(b"django.core.files.storage.filesystem.FileSystemStorage|products/milk.jpg|320").hexdigest()
    assert cache_key(plain, "products/milk.jpg", 320).endswith(before)
    assert cache_key(FileSystemStorage(location="/srv/gallery"), "products/milk.jpg", 320) != cache_key(plain, "products/milk.jpg", 320)


@pytest.mark.parametrize("default", ["media-root", "another-bucket"])
def test_messengers_upload_pictures_from_the_image_field_s_own_storage(bucket, settings, default):
    """Telegram (from a host it cannot fetch from) and WhatsApp (always) upload each result's
    thumbnail from the shop's storage: it was looked up in the default storage only, where a field
    with a storage of its own has none of its files, and the results went out as links or text. A
    default storage on another bucket, with a file of that very name, gave the other file."""
    if default == "another-bucket":
        settings.STORAGES = {**settings.STORAGES, "default": {"BACKEND": "tests.remote_storage.RemoteStorage",
                                                              "OPTIONS": {"base_url": "https://shop-other.bucket.example/"}}}
    milk = product("milk", "Arla-Standard-Milk")
    url = thumbnail(Product.objects.get(pk=milk.pk).image, 64)
    name = urlsplit(url).path.lstrip("/")
    if default == "another-bucket":
        storages["default"].save(name, ContentFile(b"\xff\xd8 another shop's picture"))
    with bucket.open(name) as handle:
        assert stored_bytes(url, 10**6) == handle.read()
    assert stored_bytes(url.replace("shop-media", "elsewhere"), 10**6) is None  # no storage of the shop's


def thumbnail_of(name, storage):
    """The thumbnail of ``name`` that the cache remembers at THUMBNAIL_SIZE, or None."""
    return cache.get(cache_key(storage, name, int(visual_search_settings.THUMBNAIL_SIZE)))


def test_indexing_makes_the_thumbnail_so_no_page_downloads_the_original(bucket, client, settings):
    """Pages made each thumbnail the first time they showed it: a staff page of 100 index rows
    downloaded 100 camera photos from the bucket in one request, and a customer's first search after
    a reindex waited for its results' thumbnails. The indexing task makes it, from the bytes it read."""
    staff = staff_on_site(client, settings, {ImageEmbedding: ImageEmbeddingAdmin})
    bucket.reads.clear()
    milk = product("milk", "Arla-Standard-Milk", camera_photo("Arla-Standard-Milk"))
    product("banana", "Banana", camera_photo("Banana"))
    assert bucket.reads == ["products/milk.jpg", "products/banana.jpg"]  # the original read once, to embed it
    made = thumbnail_of("products/milk.jpg", bucket)
    assert made and made.startswith("visual_search/thumbnails/") and bucket.exists(made)
    with bucket.open(made) as handle:
        assert max(Image.open(handle).size) == visual_search_settings.THUMBNAIL_SIZE
    bucket.reads.clear()
    page = staff.get("/shopadmin/visual_search/imageembedding/").content.decode()
    found = describe(visual_search.search_by_image(catalogue_image("Arla-Standard-Milk").read_bytes(), Product))
    assert bucket.reads == [], "a page or a search opened an original"
    thumbs = sorted([made, thumbnail_of("products/banana.jpg", bucket)])
    assert sorted(pictures(page, bucket)[0]) == thumbs
    assert found[0]["id"] == milk.pk and sorted(urlsplit(item["image_url"]).path.lstrip("/") for item in found) == thumbs
    bucket.reads.clear()
    cache.clear()  # the cache forgot (its TIMEOUT): the thumbnail is found in the bucket, not made again
    staff.get("/shopadmin/visual_search/imageembedding/")
    assert bucket.reads == []


def test_a_thumbnail_that_cannot_be_made_while_indexing_does_not_fail_the_image(bucket, monkeypatch, caplog):
    """A bucket refusing the thumbnail's upload (or its modification time) leaves the image indexed,
    and the page makes the thumbnail when it first shows it, as before."""
    saved = bucket._save

    def refuse_thumbnails(name, content):
        if name.startswith("visual_search/thumbnails/"):
            raise ConnectionError("Connection reset by peer")
        return saved(name, content)

    monkeypatch.setattr(bucket, "_save", refuse_thumbnails)
    with caplog.at_level("WARNING", logger="visual_search"):
        milk = product("milk", "Arla-Standard-Milk")
        bucket.fail_next["exists"] = [ConnectionError("Read timed out")]
        banana = product("banana", "Banana")
    assert row(milk).status == row(banana).status == "ready"
    assert "No thumbnail of products/milk.jpg made while indexing (ConnectionError: Connection reset" in caplog.text
    assert "No thumbnail of products/banana.jpg made while indexing (ConnectionError: Read timed out" in caplog.text
    assert thumbnail_of("products/milk.jpg", bucket) is None
    monkeypatch.setattr(bucket, "_save", saved)
    assert "visual_search/thumbnails/" in thumbnail(Product.objects.get(pk=milk.pk).image, visual_search_settings.THUMBNAIL_SIZE)


def test_a_photo_uploaded_again_under_the_same_name_gets_its_own_thumbnail(bucket, client, settings):
    """The cache remembered the thumbnail by the file's name: a photo replaced under the same name
    (S3's AWS_S3_FILE_OVERWRITE) showed the old picture on cards and staff pages until it expired."""
    staff = staff_on_site(client, settings, {ImageEmbedding: ImageEmbeddingAdmin})
    milk = product("milk", "Arla-Standard-Milk")
    forget_thumbnails(bucket)  # a thumbnail made by a page, as before
    [before] = pictures(staff.get("/shopadmin/visual_search/imageembedding/").content.decode(), bucket)[0]
    form = modelform_factory(Product, fields=["name", "image"])(
        {"name": "milk"}, {"image": SimpleUploadedFile("milk.jpg", catalogue_image("Banana").read_bytes())},
        instance=Product.objects.get(pk=milk.pk),
    )
    form.save()
    [after] = pictures(staff.get("/shopadmin/visual_search/imageembedding/").content.decode(), bucket)[0]
    assert after != before and after == thumbnail_of("products/milk.jpg", bucket)
    with bucket.open(after) as new, bucket.open("products/milk.jpg") as original:
        # The original as a browser shows it (the catalogue photos are Adobe RGB), as thumbnails are made.
        assert Image.open(new).convert("RGB").resize((8, 8)).getpixel((4, 4)) == pytest.approx(
            to_srgb(Image.open(original)).convert("RGB").resize((8, 8)).getpixel((4, 4)), abs=12)


class CountingCache:
    """Round-trips to the cache: a get_many is one, whatever it does inside."""

    def __init__(self, cache, monkeypatch):
        self.calls = []
        self._busy = False
        for method in ("get", "get_many", "set", "set_many", "add", "delete"):
            monkeypatch.setattr(cache, method, self._counted(method, getattr(cache, method)))

    def _counted(self, method, original):
        def call(*args, **kwargs):
            if self._busy:
                return original(*args, **kwargs)
            self.calls.append(method)
            self._busy = True
            try:
                return original(*args, **kwargs)
            finally:
                self._busy = False
        return call


def test_a_page_of_100_index_rows_looks_its_thumbnails_up_in_one_cache_call(bucket, client, settings, monkeypatch):
    """Each row's picture asked the cache for its thumbnail on its own: 100 round-trips to Redis a page."""
    staff = staff_on_site(client, settings, {ImageEmbedding: ImageEmbeddingAdmin})
    data = catalogue_image("Lemon").read_bytes()
    products = Product.objects.bulk_create(Product(name=f"lemon {i}", image=f"products/lemon-{i}.jpg") for i in range(100))
    kind = ContentType.objects.get_for_model(Product)
    rows = ImageEmbedding.objects.bulk_create(
        ImageEmbedding(content_type=kind, object_id=str(p.pk), field_name="image", result_type=kind, result_id=str(p.pk),
                       status="ready", source_name=p.image.name, fingerprint="f")
        for p in products
    )
    for row_ in rows:
        bucket.save(row_.source_name, ContentFile(data))
        previews.small_url(row_)  # made, as the indexing task makes them
    counted = CountingCache(caches["default"], monkeypatch)
    bucket.reads.clear()
    page = staff.get("/shopadmin/visual_search/imageembedding/").content.decode()
    assert bucket.reads == []
    shown = pictures(page, bucket)[0]
    assert len(shown) == 100 and all(name.startswith("visual_search/thumbnails/") for name in shown)
    assert counted.calls == ["get_many"], counted.calls  # was 100 "get"


def requests(bucket) -> dict[str, int]:
    """The bucket's requests since ``bucket.calls`` was cleared, by kind: the originals' and the thumbnails'."""
    counted: dict[str, int] = {}
    for call in bucket.calls:
        method, name = call.split(" ", 1)
        kind = f"{method} {'thumbnail' if name.startswith('visual_search/thumbnails/') else 'original'}"
        counted[kind] = counted.get(kind, 0) + 1
    return counted


def test_indexing_and_pages_ask_the_bucket_for_no_modification_time(bucket, client, settings):
    """The task asked the bucket for each image's modification time to name its thumbnail (S3: a
    HEAD request per image, in the decode thread of a reindex), and a page the cache had forgotten
    asked again for each of its pictures. The thumbnail is named by the SHA-256 of the bytes the task
    read (the row's checksum): pages take it from the rows, and ask the bucket only whether it is there."""
    staff = staff_on_site(client, settings, {ImageEmbedding: ImageEmbeddingAdmin})
    pictures_ = ["Arla-Standard-Milk", "Banana", "Lemon"]
    for name in pictures_:
        product(name.lower(), name)
    bucket.calls.clear()
    call_command("visual_search_reindex", "--force", verbosity=0)
    assert requests(bucket).get("mtime original", 0) == 0, requests(bucket)
    assert requests(bucket)["open original"] == 3
    cache.clear()  # the cache forgot: pages find the thumbnails the task made, without the originals
    bucket.calls.clear()
    page = staff.get("/shopadmin/visual_search/imageembedding/").content.decode()
    assert requests(bucket) == {"exists thumbnail": 3}
    assert sorted(pictures(page, bucket)[0]) == sorted(thumbnail_of(f"products/{n.lower()}.jpg", bucket) for n in pictures_)
    cache.clear()
    bucket.calls.clear()
    found = describe(visual_search.search_by_image(catalogue_image("Banana").read_bytes(), Product))
    assert requests(bucket) == {"exists thumbnail": len(found)}
    assert all("/visual_search/thumbnails/" in item["image_url"] for item in found)


def test_a_forced_reindex_makes_no_thumbnail_again(bucket, monkeypatch):
    """``visual_search_reindex --force`` (and the admin's reindex action) rendered every image's
    thumbnail again and asked the bucket whether it was there, though the cache said it was made
    for these very bytes: neither is done now. A changed file still gets its own."""
    for name, picture in (("milk", "Arla-Standard-Milk"), ("banana", "Banana"), ("lemon", "Lemon")):
        product(name, picture)
    rendered = []
    monkeypatch.setattr(thumbnails, "render", lambda data, size, render=thumbnails.render: rendered.append(size) or render(data, size))
    before = thumbnail_of("products/milk.jpg", bucket)
    assert before and bucket.exists(before)
    bucket.calls.clear()
    call_command("visual_search_reindex", "--force", verbosity=0)
    assert requests(bucket) == {"open original": 3} and rendered == []
    assert thumbnail_of("products/milk.jpg", bucket) == before
    cache.clear()  # the cache forgot: each is found in the bucket, not written again
    bucket.calls.clear()
    call_command("visual_search_reindex", "--force", verbosity=0)
    assert requests(bucket) == {"open original": 3, "exists thumbnail": 3}
    assert thumbnail_of("products/milk.jpg", bucket) == before
    bucket.save("products/milk.jpg", ContentFile(catalogue_image("Mango").read_bytes()))  # replaced in the bucket
    rendered.clear()
    call_command("visual_search_reindex", "--force", verbosity=0)
    assert len(rendered) == 1 and thumbnail_of("products/milk.jpg", bucket) not in (before, None)
