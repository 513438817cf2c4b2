"""What a shop that type-checks (mypy with django-stubs, the package ships py.typed) sees of the
public API: the real names and signatures, not the ``Any`` of the lazy ``__getattr__``."""

import ast
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import visual_search

ROOT = Path(__file__).resolve().parent.parent


def test_type_checkers_see_every_public_name_from_its_module():
    tree = ast.parse((ROOT / "visual_search" / "__init__.py").read_text())
    [block] = [node for node in tree.body if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"]
    seen = {alias.name: f"visual_search.{node.module}" for node in block.body for alias in node.names if alias.asname == alias.name}
    assert seen == visual_search._API  # "from .x import name as name": re-exported, as mypy wants


SHOP = '''
from django.contrib import admin
from django.core.files.uploadedfile import UploadedFile

import visual_search
from visual_search.admin_mixins import VisualSearchAdminMixin
from tests.testapp.models import Product


def search(upload: UploadedFile, data: bytes) -> list[str]:
    results = visual_search.search_by_image(upload, Product, limit=12)
    results += visual_search.search_by_image(data, Product.objects.filter(name="x"))
    return [f"{r.object} {r.score:.2f}" for r in results]


def similar(product: Product) -> int:
    with visual_search.pause_indexing(reindex_on_exit=False):
        visual_search.register(Product, image_field="image")
    try:
        return len(visual_search.find_similar(product, limit=4, queryset=Product.objects.all()))
    except (visual_search.NotIndexed, visual_search.InvalidImage):
        return 0


@admin.register(Product)
class ProductAdmin(VisualSearchAdminMixin, admin.ModelAdmin[Product]):
    list_display = ["name"]


reveal_type(visual_search.search_by_image)
'''

CONFIG = """
[mypy]
plugins = mypy_django_plugin.main
strict = True
follow_imports = silent

[mypy.plugins.django-stubs]
django_settings_module = tests.settings
"""


@pytest.mark.skipif(
    not (importlib.util.find_spec("mypy") and importlib.util.find_spec("mypy_django_plugin")),
    reason="mypy and django-stubs are not installed (pip install mypy django-stubs)",
)
def test_a_shop_s_code_type_checks_with_mypy_and_django_stubs(tmp_path):
    """The public names were ``Any`` to mypy (a module ``__getattr__``), an upload (Django's
    ``UploadedFile``) was not the ``BinaryIO`` search_by_image asked for, and ``class
    ProductAdmin(VisualSearchAdminMixin, admin.ModelAdmin)`` was refused: "Definition of
    change_list_template in base class VisualSearchAdminMixin is incompatible"."""
    (tmp_path / "shop_code.py").write_text(textwrap.dedent(SHOP))
    (tmp_path / "mypy.ini").write_text(CONFIG)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(tmp_path / "mypy.ini"), "--cache-dir", str(tmp_path / "cache"),
         str(tmp_path / "shop_code.py")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert 'Revealed type is "def (image: bytes | typing.IO[bytes], model_or_queryset' in run.stdout
