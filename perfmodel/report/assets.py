"""Third-party files of asv's web page, served from html/ instead of public CDNs.

``asv publish`` writes an index.html that loads jQuery, flot, bootstrap and a few plugins from
CDNs, so the published site shows nothing without internet. ``localize(html_dir)`` finds those
references, fetches the same packages (same versions as far as the npm registry has them) with
``npm pack`` into a cache outside the repository, copies the needed files under
``html/vendor/<package>-<version>/`` and rewrites the references to those local paths.

Nothing third-party is kept in this repository: the files come from the registry at publish time
and are cached (``$PERFMODEL_ASSET_CACHE``, else ``$XDG_CACHE_HOME/perfmodel/site-assets``, else
``~/.cache/perfmodel/site-assets``). A machine without network (a GPU box) uses a copy of that
cache folder.
"""
from __future__ import annotations

import base64
import hashlib
import html
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError


@dataclass(frozen=True)
class Asset:
    url_tail: str        # how the CDN URL in asv's page ends (hosts are not matched)
    package: str         # npm package name
    version: str         # npm version
    file: str            # file inside the package (``package/`` prefix stripped)
    also: tuple = ()     # other files the page needs beside it (globs), e.g. bootstrap's fonts
    note: str = ""


# What asv 0.6.6's www/index.html loads. jQuery, bootstrap, blueimp-md5 and flot-orderbars are the
# very files the page names (their SRI hashes match and are kept). The flot 0.8.3 npm package has
# only the unminified sources of the files the CDN serves minified, so those are used as they are;
# the stupidtable plugin 1.0.1 was never published to npm: its npm package (stupid-table-plugin)
# starts at 1.1.3, whose $.fn.stupidtable(sortFns) API is the one asv calls.
ASSETS = (
    Asset("/jquery-3.3.1.min.js", "jquery", "3.3.1", "dist/jquery.min.js"),
    Asset("/flot/0.8.3/jquery.flot.min.js", "flot", "0.8.3", "jquery.flot.js",
          note="unminified source of the same version"),
    Asset("/flot/0.8.3/jquery.flot.time.min.js", "flot", "0.8.3", "jquery.flot.time.js",
          note="unminified source of the same version"),
    Asset("/flot/0.8.3/jquery.flot.selection.min.js", "flot", "0.8.3", "jquery.flot.selection.js",
          note="unminified source of the same version"),
    Asset("/flot/0.8.3/jquery.flot.categories.min.js", "flot", "0.8.3",
          "jquery.flot.categories.js", note="unminified source of the same version"),
    Asset("/flot-orderbars@1.0.0/js/jquery.flot.orderBars.js", "flot-orderbars", "1.0.0",
          "js/jquery.flot.orderBars.js"),
    Asset("/stupidtable/1.0.1/stupidtable.min.js", "stupid-table-plugin", "1.1.3",
          "stupidtable.min.js", note="1.0.1 is not on npm; 1.1.3 has the same API"),
    Asset("/blueimp-md5/2.19.0/js/md5.min.js", "blueimp-md5", "2.19.0", "js/md5.min.js"),
    Asset("/bootstrap@3.1.1/dist/js/bootstrap.min.js", "bootstrap", "3.1.1",
          "dist/js/bootstrap.min.js"),
    Asset("/bootstrap@3.1.1/dist/css/bootstrap.min.css", "bootstrap", "3.1.1",
          "dist/css/bootstrap.min.css", also=("dist/fonts/*",)),
)

VENDOR_DIR = "vendor"
_TAG = re.compile(r"<(script|link)\b[^>]*>", re.IGNORECASE)
_ATTR = re.compile(r"""\s(src|href|integrity|crossorigin|referrerpolicy)\s*=\s*("[^"]*"|'[^']*')""",
                   re.IGNORECASE)


def cache_dir() -> Path:
    if os.environ.get("PERFMODEL_ASSET_CACHE"):
        return Path(os.environ["PERFMODEL_ASSET_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "perfmodel" / "site-assets"


def _safe_extract(tgz: Path, dest: Path) -> None:
    with tarfile.open(tgz) as tar:
        try:
            tar.extractall(dest, filter="data")
        except TypeError:  # Python without extraction filters
            for member in tar.getmembers():
                target = (dest / member.name).resolve()
                if not str(target).startswith(str(dest.resolve())) or member.issym() or member.islnk():
                    raise UserError(f"refusing unsafe path {member.name!r} in {tgz.name}")
            tar.extractall(dest)


def fetch_package(package: str, version: str, cache: Path | None = None) -> Path:
    """The unpacked npm package ``package@version`` (its ``package/`` folder), from the cache or
    fetched with ``npm pack`` (which checks the tarball against the registry's integrity hash)."""
    cache = cache or cache_dir()
    dest = cache / f"{package}-{version}"
    if (dest / ".complete").exists():
        return dest / "package"
    npm = shutil.which("npm")
    if npm is None:
        raise UserError(f"{package}@{version} is not in {cache} and npm is not installed to fetch "
                        f"it (install Node.js/npm, or copy a filled {cache} from another machine)")
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        try:
            proc = subprocess.run([npm, "pack", f"{package}@{version}", "--pack-destination", tmp,
                                   "--silent"], capture_output=True, text=True, timeout=300,
                                  cwd=tmp)
        except subprocess.TimeoutExpired:
            raise UserError(f"npm pack {package}@{version} timed out (no network?)") from None
        tgzs = list(Path(tmp).glob("*.tgz"))
        if proc.returncode != 0 or len(tgzs) != 1:
            last = (proc.stderr.strip().splitlines() or ["no tarball written"])[-1]
            raise UserError(f"npm pack {package}@{version} failed: {last}")
        unpack = Path(tmp) / "unpacked"
        _safe_extract(tgzs[0], unpack)
        if dest.exists():
            shutil.rmtree(dest)
        unpack.rename(dest)
    (dest / ".complete").write_text(f"{package}@{version}\n")
    return dest / "package"


def _sri_ok(path: Path, integrity: str) -> bool:
    """True when ``path`` has one of the Subresource Integrity hashes in ``integrity``."""
    data = path.read_bytes()
    for token in integrity.split():
        algo, _, want = token.partition("-")
        if algo in ("sha256", "sha384", "sha512"):
            got = base64.b64encode(hashlib.new(algo, data).digest()).decode()
            if got == want:
                return True
    return False


@dataclass
class Localized:
    """What ``localize`` did to one page."""

    page: Path
    replaced: list[str] = field(default_factory=list)      # local paths now referenced
    kept_integrity: list[str] = field(default_factory=list)  # local files that match asv's SRI hash
    remote: list[str] = field(default_factory=list)          # URLs still remote (unknown or failed)
    problems: list[str] = field(default_factory=list)


def _asset_for(url: str) -> Asset | None:
    for asset in ASSETS:
        if url.endswith(asset.url_tail):
            return asset
    return None


def install_asset(asset: Asset, html_dir: Path, cache: Path | None = None) -> str:
    """Copy the asset (and its companions) under html_dir/vendor; returns its page-relative path."""
    root = fetch_package(asset.package, asset.version, cache)
    base = f"{VENDOR_DIR}/{asset.package}-{asset.version}"
    files = [root / asset.file]
    for pattern in asset.also:
        files += sorted(root.glob(pattern))
    for src in files:
        if not src.is_file():
            raise UserError(f"{asset.package}@{asset.version} has no {src.relative_to(root)}")
        dst = html_dir / base / src.relative_to(root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return f"{base}/{asset.file}"


def localize(html_dir: str | os.PathLike, page: str = "index.html",
             cache: Path | None = None) -> Localized:
    """Rewrite the CDN references of ``html_dir/page`` to files under ``html_dir/vendor``.

    Idempotent (local references are left alone). A reference that cannot be served locally stays
    as it was and is listed in ``remote``; the page then still works with internet.
    """
    html_dir = Path(html_dir)
    path = html_dir / page
    if not path.is_file():
        raise UserError(f"{path} does not exist: run `asv publish` first")
    text = path.read_text(encoding="utf-8")
    out = Localized(path)
    installed: dict[Asset, str] = {}

    def rewrite(match: re.Match) -> str:
        tag = match.group(0)
        attrs = {m.group(1).lower(): html.unescape(m.group(2)[1:-1]) for m in _ATTR.finditer(tag)}
        url = attrs.get("src") or attrs.get("href") or ""
        if not re.match(r"^(https?:)?//", url):
            return tag
        asset = _asset_for(url)
        if asset is None:
            out.remote.append(url)
            out.problems.append(f"no local copy known for {url}")
            return tag
        try:
            if asset not in installed:
                installed[asset] = install_asset(asset, html_dir, cache)
        except UserError as err:
            out.remote.append(url)
            out.problems.append(str(err))
            return tag
        local = installed[asset]
        keep_sri = bool(attrs.get("integrity")) and _sri_ok(html_dir / local, attrs["integrity"])
        if keep_sri:
            out.kept_integrity.append(local)

        def attr(m: re.Match) -> str:
            name = m.group(1).lower()
            if name in ("src", "href"):
                return f' {name}="{local}"'
            if name == "integrity" and keep_sri:
                return m.group(0)
            return ""  # crossorigin / referrerpolicy / a hash of the CDN's minified build
        out.replaced.append(local)
        return _ATTR.sub(attr, tag)

    new = _TAG.sub(rewrite, text)
    if new != text:
        path.write_text(new, encoding="utf-8")
    return out
