"""The browser libraries the pages serve are the npm releases package.json pins, never a CDN's."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
VENDOR = ROOT / "webhook" / "static" / "vendor" / "echarts"


def test_the_committed_echarts_is_the_pinned_release_with_its_licence():
    pinned = json.loads((ROOT / "package.json").read_text())["dependencies"]["echarts"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", pinned), "package.json pins an exact version"
    locked = json.loads((ROOT / "package-lock.json").read_text())["packages"]["node_modules/echarts"]["version"]
    served = re.search(r'version="([^"]+)"', (VENDOR / "echarts.min.js").read_text()).group(1)
    assert pinned == locked == served
    assert "Apache License" in (VENDOR / "LICENSE").read_text()


def test_no_page_loads_a_script_or_style_from_elsewhere():
    templates = (ROOT / "webhook" / "templates").rglob("*.html")
    for template in templates:
        assert not re.search(r'(src|href)="(https?:)?//', template.read_text()), template


def test_the_pages_templates_and_static_files_are_packaged():
    import tomllib
    from fnmatch import fnmatch

    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert "churnsignal.webhook.pages" in setuptools["packages"]
    assert setuptools["package-dir"]["churnsignal.webhook.pages"] == "webhook/pages"
    patterns = setuptools["package-data"]["churnsignal.webhook"]
    shipped = [p for folder in ("templates", "static") for p in (ROOT / "webhook" / folder).rglob("*") if p.is_file()]
    assert shipped
    for path in shipped:
        relative = path.relative_to(ROOT / "webhook").as_posix()
        assert any(fnmatch(relative, pattern) and relative.count("/") == pattern.count("/") for pattern in patterns), \
            relative
