"""asv's third-party JavaScript/CSS, shipped with perfmodel and served from html/vendor.

asv 0.6's index.html loads jQuery, flot, bootstrap and a few plugins from public CDNs, with
Subresource Integrity attributes. Without internet the page shows nothing, and opened from a file
Chromium refuses the integrity check ("requires the request to be CORS enabled"). perfmodel ships
the same packages (all MIT-licensed, each with its licence file) in ``perfmodel/report/www/vendor``,
taken from the npm registry once; ``localize`` points the page's tags at those copies. Nothing is
fetched when the site is published or viewed.

jQuery, bootstrap and flot-orderbars are byte for byte the files the CDN serves (their integrity
hashes match: tests/test_publish.py checks it). flot 0.8.3's npm package has only the unminified
sources of the files the CDN serves minified; stupidtable 1.0.1 was never published to npm, and
1.1.3 (stupid-table-plugin) has the ``$.fn.stupidtable(sortFns)`` call asv makes.
"""
from __future__ import annotations

import html
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

WWW = Path(__file__).parent / "www"   # copied into html/ as it is (vendor/, README.md, ...)
VENDOR = "vendor"

# how the CDN address in asv's page ends -> the shipped file, relative to www/
ASSETS = {
    "/jquery-3.3.1.min.js": "vendor/jquery-3.3.1/dist/jquery.min.js",
    "/flot/0.8.3/jquery.flot.min.js": "vendor/flot-0.8.3/jquery.flot.js",
    "/flot/0.8.3/jquery.flot.time.min.js": "vendor/flot-0.8.3/jquery.flot.time.js",
    "/flot/0.8.3/jquery.flot.selection.min.js": "vendor/flot-0.8.3/jquery.flot.selection.js",
    "/flot/0.8.3/jquery.flot.categories.min.js": "vendor/flot-0.8.3/jquery.flot.categories.js",
    "/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js":
        "vendor/flot-orderbars-1.0.0/js/jquery.flot.orderBars.js",
    "/stupidtable/1.0.1/stupidtable.min.js": "vendor/stupid-table-plugin-1.1.3/stupidtable.min.js",
    "/blueimp-md5/2.19.0/js/md5.min.js": "vendor/blueimp-md5-2.19.0/js/md5.min.js",
    "/bootstrap@3.1.1/dist/js/bootstrap.min.js": "vendor/bootstrap-3.1.1/dist/js/bootstrap.min.js",
    "/bootstrap@3.1.1/dist/css/bootstrap.min.css":
        "vendor/bootstrap-3.1.1/dist/css/bootstrap.min.css",
}

_TAG = re.compile(r"<(?:script|link)\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r"""\s([a-z-]+)\s*=\s*("[^"]*"|'[^']*')""", re.IGNORECASE)
_REMOTE = re.compile(r"^(https?:)?//", re.IGNORECASE)


@dataclass
class Localized:
    """What ``localize`` did to one page."""

    replaced: list[str] = field(default_factory=list)   # shipped files the page now loads
    remote: list[str] = field(default_factory=list)     # addresses still remote (unknown to us)


def copy_www(html_dir: str | Path) -> list[Path]:
    """Copy perfmodel's part of the site (www/) into html_dir; returns the files written."""
    html_dir = Path(html_dir)
    written = []
    for src in sorted(WWW.rglob("*")):
        if src.is_file() and "__pycache__" not in src.parts:
            dst = html_dir / src.relative_to(WWW)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            written.append(dst)
    return written


def shipped(url: str) -> str | None:
    """The shipped file (relative to www/ and to html/) that stands for a CDN address."""
    for tail, local in ASSETS.items():
        if url.endswith(tail):
            return local
    return None


def localize(text: str) -> tuple[str, Localized]:
    """asv's page with its CDN tags pointing at the shipped copies.

    The integrity, crossorigin and referrerpolicy attributes go: they are about the CDN, and a
    file:// page cannot pass an integrity check. Tags already local are left alone, so the
    function is idempotent; an address we have no copy of stays and is listed in ``remote``.
    """
    out = Localized()

    def rewrite(match: re.Match) -> str:
        tag = match.group(0)
        attrs = {m.group(1).lower(): html.unescape(m.group(2)[1:-1]) for m in _ATTR.finditer(tag)}
        url = attrs.get("src") or attrs.get("href") or ""
        if not _REMOTE.match(url):
            return tag
        local = shipped(url)
        if local is None:
            out.remote.append(url)
            return tag
        out.replaced.append(local)

        def attr(m: re.Match) -> str:
            name = m.group(1).lower()
            if name in ("src", "href"):
                return f' {name}="{local}"'
            if name in ("integrity", "crossorigin", "referrerpolicy"):
                return ""
            return m.group(0)
        return _ATTR.sub(attr, tag)

    return _TAG.sub(rewrite, text), out
