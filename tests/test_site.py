"""The published site as a user meets it: a plain ``asv publish`` (perfmodel's publisher plugin
loaded by asv.conf.json) writes the summary and the vendored scripts; headless Chromium, with every
host but 127.0.0.1 unresolvable, draws a graph from a local server and reaches the summary; opened
from a file, the page says what to run instead of asv's "no internet" reason. Skipped when
chromium/chromedriver (or selenium) are absent. Screenshots: $PERFMODEL_SCREENSHOTS (default the
test's tmp folder)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "asv_results"
PLUGIN = json.loads("\n".join(line for line in (ROOT / "asv.conf.json").read_text().splitlines()
                              if not line.lstrip().startswith("//")))["plugins"]


def asv_publish(tmp: Path, name: str, plugins: list[str], with_output: bool = False):
    """``asv publish`` of the CPU fixture into tmp/name, with the given plugins."""
    results = tmp / "results"
    if not results.exists():
        shutil.copytree(FIXTURE, results)
    conf = {"version": 1, "project": "perfmodel", "repo": str(ROOT), "branches": ["main"],
            "dvcs": "git", "environment_type": "virtualenv", "results_dir": str(results),
            "html_dir": str(tmp / name), "benchmark_dir": str(ROOT / "benchmarks"),
            "plugins": plugins}
    (tmp / f"{name}.json").write_text(json.dumps(conf))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "asv", "publish", "--no-pull", "--config",
                           str(tmp / f"{name}.json")], capture_output=True, text=True, cwd=tmp,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return (tmp / name, proc.stdout + proc.stderr) if with_output else tmp / name


def _shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("PERFMODEL_SCREENSHOTS") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def chromium():
    pytest.importorskip("selenium")
    from tools import site_check as check  # noqa: PLC0415 (a development tool, as a module)

    browser, driver = check.find_chromium()
    if not browser or not driver:
        pytest.skip("chromium / chromedriver not installed")
    return check


def test_plain_asv_publish_writes_the_whole_site(tmp_path):
    html = asv_publish(tmp_path, "html", PLUGIN)
    index = (html / "index.html").read_text()
    tags = [line for line in index.splitlines() if "<script" in line or "<link" in line]
    assert not [t for t in tags if "://" in t], "the page still loads files from the internet"
    assert "integrity=" not in index  # refused by Chromium for a page opened from a file
    for tag in tags:  # every local file the page names is there
        for attr in ("src=\"", "href=\""):
            if attr in tag:
                path = tag.split(attr, 1)[1].split("\"", 1)[0]
                assert (html / path).is_file(), path
    assert (html / "vendor" / "jquery-3.3.1" / "LICENSE.txt").is_file()
    assert 'id="nav-li-perfmodel-summary"' in index and ">Summary tables<" in index
    assert (html / "summary.html").is_file() and (html / "summary.md").is_file()
    assert "perfmodel summary" in (html / "summary.html").read_text()
    # html/ as git keeps it is what the publisher writes there
    assert (html / "README.md").read_bytes() == (ROOT / "html" / "README.md").read_bytes()


def test_site_draws_from_a_server_and_explains_a_file(chromium, tmp_path):
    check = chromium
    shots = _shots(tmp_path)
    # asv's page as asv alone publishes it needs the internet: with DNS blocked it does not
    # draw (so the check below can fail)
    raw = asv_publish(tmp_path, "html-asv-only", [])
    before = check.check(raw, timeout=15)
    assert not before["ok"] and before["error_page"]

    html = asv_publish(tmp_path, "html", PLUGIN)
    seen = check.check(html, screenshot=shots / "site-served.png")
    assert not seen["external"], seen["external"]
    assert not seen["error_page"] and not seen["errors"], seen["errors"]
    assert seen["pixels"] and seen["pixels"]["coloured"] > 100, seen
    assert seen["summary_linked"] and seen["summary"]["tables"] >= 8
    assert seen["summary"]["images"] and all(ok for _, ok in seen["summary"]["images"])
    assert seen["ok"]

    notice = open_file(check, html / "index.html", shots / "site-file.png")
    assert "asv preview" in notice["text"] and "web server" in notice["text"], notice
    assert "internet" not in notice["text"] and not notice["url"].endswith("error.html")
    assert notice["summary_link"] == (html / "summary.html").as_uri()
    summary = open_file(check, html / "summary.html", shots / "summary-file.png")
    assert summary["tables"] >= 8 and summary["images"] and all(summary["images"]), summary


def open_file(check, page: Path, screenshot: Path, timeout: float = 20.0) -> dict:
    """Open ``page`` as file:// in headless Chromium; what it shows after asv's scripts ran."""
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    browser, driver_path = check.find_chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    profile = tempfile.mkdtemp(prefix="site-file-profile-")
    for flag in check.CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=driver_path))
    try:
        driver.get(page.as_uri())
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if page.name != "index.html" or driver.execute_script(
                    "return !!document.getElementById('perfmodel-file-notice');"):
                break
            time.sleep(0.25)
        time.sleep(1.0)  # asv's own error dialog, if any, would be up by now
        driver.save_screenshot(str(screenshot))
        return driver.execute_script(
            "const a = document.querySelector('#perfmodel-file-notice a');"
            "return {url: location.href, text: document.body.innerText,"
            " summary_link: a ? a.href : null,"
            " tables: document.querySelectorAll('table').length,"
            " images: Array.from(document.images).map(i => i.complete && i.naturalWidth > 0)};")
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


EVIL = "bench_x.Evil.track_<img src=x onerror=window.__pwned=1>"
ESCAPES = "bench_x.Evil.track_\x1b]0;owned\x07\x1b[2J"


@pytest.fixture(scope="module")
def crafted(tmp_path_factory) -> tuple[Path, str]:
    """The fixture plus two benchmarks named with markup and escapes (in benchmarks.json and every
    results file), a pretty_name and code with markup, and a newer machine with no readable
    results; then a plain ``asv publish`` with the plugin: (html folder, its output). Once for
    the two tests below (asv publish takes seconds)."""
    tmp_path = tmp_path_factory.mktemp("crafted")
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    bench = json.loads((results / "benchmarks.json").read_text())
    good = "bench_attention.Attention.time_forward"
    bench[good]["pretty_name"] = "<i onmouseover=window.__pwned=1>fwd</i>"
    bench[good]["code"] = "def time_forward(self):\n    return 1 < 2  # <b>bold</b>"
    for name in (EVIL, ESCAPES):
        bench[name] = {"name": name, "params": [], "param_names": [], "unit": "unit",
                       "type": "track", "version": "1", "code": "<script>x</script>",
                       "timeout": 60}
    (results / "benchmarks.json").write_text(json.dumps(bench))
    for f in (results / "fixture-cpu").glob("*-*.json"):
        d = json.loads(f.read_text())
        for name in (EVIL, ESCAPES):
            d["results"][name] = [[1.0], [], "1"] + [None] * (len(d["result_columns"]) - 3)
        f.write_text(json.dumps(d))
    newest = results / "cpu-newest"
    newest.mkdir()
    (newest / "machine.json").write_text(json.dumps({"machine": "cpu-newest", "version": 1}))
    (newest / "0123abcd-virtualenv-py3.11.json").write_text("{not json")
    return asv_publish(tmp_path, "html", PLUGIN, with_output=True)


def test_no_benchmark_asv_would_render_as_markup_reaches_its_pages(crafted):
    """asv 0.6.6's summary grid and navigation tree put a benchmark's name (and pretty_name, code,
    parameter names) into the page as HTML; a crafted benchmarks.json and results carry any text
    there. The publisher (perfmodel.report.site.clean_asv_data, order -10) takes such benchmarks
    out of the list asv writes to index.json and deletes their graphs. The same publish has a
    newest machine whose results give no summary: the other machine still gets summary.html."""
    good = "bench_attention.Attention.time_forward"
    html, out = crafted
    index = json.loads((html / "index.json").read_text())
    assert good in index["benchmarks"] and EVIL not in index["benchmarks"]
    assert ESCAPES not in index["benchmarks"]
    assert "pretty_name" not in index["benchmarks"][good]
    assert "<" not in index["benchmarks"][good]["code"] and "&lt;b&gt;" in \
        index["benchmarks"][good]["code"]
    graphs = [str(p) for p in (html / "graphs").rglob("*.json")]
    assert graphs and not [g for g in graphs if "Evil" in g]
    for where in ("regressions.json", "summarylist.json"):
        if (html / where).exists():
            assert "Evil" not in (html / where).read_text(), where
    assert "onerror" not in (html / "index.json").read_text()
    assert "left out of asv's pages: benchmark 'bench_x.Evil.track_<img" in out
    assert "\x1b" not in out and "\\x1b]0;owned\\x07\\x1b[2J" in out
    # the newest machine's results give no summary: the other machine has the front page
    assert "perfmodel summary: fixture-cpu" in (html / "summary.html").read_text()
    assert "No summary" in (html / "summary" / "cpu-newest.html").read_text()


def test_the_published_page_runs_no_script_from_a_benchmark_name(chromium, crafted, tmp_path):
    """In Chromium: asv's page, as published, never runs the crafted name's onerror; the same page
    with the benchmark put back into index.json (what asv writes without the publisher) runs it,
    so the check can fail."""
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    html = tmp_path / "html"
    shutil.copytree(crafted[0], html)  # the control below edits its index.json
    browser, driver_path = chromium.find_chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    profile = tempfile.mkdtemp(prefix="site-xss-profile-")
    for flag in chromium.CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(flag)

    def pwned() -> object:
        with chromium.serve(html) as base:
            driver = webdriver.Chrome(options=opts, service=Service(executable_path=driver_path))
            try:
                driver.set_page_load_timeout(30)
                driver.get(f"{base}/index.html")
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and not driver.execute_script(
                        "return document.querySelectorAll('.benchmark-container').length"):
                    time.sleep(0.25)
                time.sleep(1.0)  # the grid's images have failed to load by now
                return driver.execute_script("return window.__pwned === undefined ? null : "
                                             "window.__pwned")
            finally:
                driver.quit()
    try:
        assert pwned() is None
        index = json.loads((html / "index.json").read_text())
        entry = dict(index["benchmarks"]["bench_attention.Attention.time_forward"], name=EVIL,
                     params=[], param_names=[])
        index["benchmarks"][EVIL] = entry
        (html / "index.json").write_text(json.dumps(index))
        assert pwned() == 1
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def _links(page: Path) -> list[str]:
    """The href/src of every element of an HTML page, or of a markdown page as GitHub's markdown
    (cmark-gfm) renders it."""
    from html.parser import HTMLParser  # noqa: PLC0415

    text = page.read_text(encoding="utf-8")
    if page.suffix == ".md":
        cmarkgfm = pytest.importorskip("cmarkgfm")
        text = cmarkgfm.github_flavored_markdown_to_html(text)
    found = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.extend(v for k, v in attrs if k in ("href", "src") and v)
    Parser().feed(text)
    return found


def broken_links(html_dir: Path) -> list[str]:
    """'page -> link' for every relative link of every .html and .md page under html_dir whose
    target file is not there (links to other sites and to anchors are not files)."""
    from urllib.parse import unquote, urlsplit  # noqa: PLC0415

    out = []
    for page in sorted(html_dir.rglob("*")):
        if page.suffix not in (".html", ".md") or "vendor" in page.relative_to(html_dir).parts:
            continue  # vendor/: the third-party packages' own documentation
        for link in _links(page):
            url = urlsplit(link)
            if url.scheme or url.netloc or not url.path:
                continue
            if not (page.parent / unquote(url.path)).exists():
                out.append(f"{page.relative_to(html_dir)} -> {link}")
    return out


def test_every_link_of_the_published_site_resolves(tmp_path):
    """A plain ``asv publish`` of three machines: the fixture's (front page), a copy of it under
    another name (summary/<name>.html and .md, with plots) and one whose results give no summary
    (an error page in summary/). Every relative link of every page, html and md, finds its
    file; a page written with a link to nothing fails this test (checked first)."""
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    other = results / "second-cpu"
    other.mkdir()
    for f in (FIXTURE / "fixture-cpu").glob("*.json"):
        d = json.loads(f.read_text())
        if f.name == "machine.json":
            d["machine"] = "second-cpu"
        else:
            d["params"]["machine"] = "second-cpu"
        (other / f.name).write_text(json.dumps(d))
    (results / "no-summary").mkdir()
    (results / "no-summary" / "machine.json").write_text(json.dumps({"machine": "no-summary",
                                                                    "version": 1}))
    html = asv_publish(tmp_path, "html", PLUGIN)
    pages = {p.relative_to(html).as_posix() for p in html.rglob("summary*") if p.is_file()}
    assert {"summary.html", "summary.md"} <= pages
    subs = {p.name for p in (html / "summary").iterdir()}
    assert "no-summary.html" in subs
    assert any(s.endswith(".md") for s in subs) and any(s.endswith("_files") for s in subs)
    # the check itself finds a broken link
    (html / "summary" / "planted.md").write_text("[gone](nowhere/plot.png)\n")
    assert broken_links(html) == ["summary/planted.md -> nowhere/plot.png"]
    (html / "summary" / "planted.md").unlink()
    assert broken_links(html) == []
