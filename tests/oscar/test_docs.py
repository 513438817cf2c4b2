"""docs/oscar.md followed word for word, in a new shop laid out as Oscar's own docs say."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
pytestmark = pytest.mark.oscar
DOC = (Path(__file__).resolve().parents[2] / "docs" / "oscar.md").read_text()


def section(title: str) -> str:
    return DOC.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_the_install_line_brings_oscars_default_thumbnailer():
    # Oscar's INSTALLED_APPS name sorl.thumbnail; without the extra the shop stopped at start:
    # "No module named 'sorl'".
    assert '"django-oscar[sorl-thumbnail]>=4.2,<4.3"' in section("1. Install")


def test_the_urls_block_keeps_djangos_admin_that_the_admin_section_extends():
    [block] = re.findall(r"```python\n(# urls\.py\n.*?)```", section("3. URLs"), re.S)
    urls: dict = {}
    exec(compile(block, "docs/oscar.md urls.py", "exec"), urls)
    assert any(str(pattern.pattern) == "admin/" for pattern in urls["urlpatterns"])


def test_the_template_overrides_say_where_django_finds_them_before_oscars():
    # A shop app's templates/ listed after Oscar's apps (as the admin section asks) is never
    # reached: Oscar's own nav_primary.html wins, and the camera button silently is not there.
    for title in ("4. The navbar camera button", "5. Similar products on the product page"):
        assert "TEMPLATES" in section(title) and '"DIRS"' in section(title), title
