"""The published site renders without internet: asv publish of the fixture, perfmodel's publish
step, then headless Chromium (DNS blocked except 127.0.0.1) must draw a benchmark graph and reach
the summary. Skipped when chromium/chromedriver (or selenium) are absent, or when the site's
third-party files can neither be fetched (npm) nor found in the cache."""
from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = Path(__file__).parent / "fixtures" / "asv_results"


def _site_check():
    spec = importlib.util.spec_from_file_location("site_check", ROOT / "scripts" / "site_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_published_site_draws_a_graph_offline(tmp_path):
    pytest.importorskip("selenium")
    check = _site_check()
    browser, driver = check.find_chromium()
    if not browser or not driver:
        pytest.skip("chromium / chromedriver not installed")
    from perfmodel.report import assets, publish_site

    cached = all((assets.cache_dir() / f"{a.package}-{a.version}" / ".complete").exists()
                 for a in assets.ASSETS)
    if not cached and shutil.which("npm") is None:
        pytest.skip("no npm to fetch the site's third-party files and no cache of them")

    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    conf = {"version": 1, "project": "perfmodel", "repo": str(ROOT), "branches": ["main"],
            "dvcs": "git", "environment_type": "virtualenv", "results_dir": str(results),
            "html_dir": str(tmp_path / "html"), "benchmark_dir": str(ROOT / "benchmarks")}
    (tmp_path / "asv.conf.json").write_text(json.dumps(conf))
    proc = subprocess.run([sys.executable, "-m", "asv", "publish", "--config",
                           str(tmp_path / "asv.conf.json")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    html = tmp_path / "html"
    index_before = (html / "index.html").read_text()
    assert "cdn" in index_before  # asv's page as published needs the internet ...

    # ... and with the network blocked it does not draw (the check can fail)
    raw = tmp_path / "html-as-published"
    shutil.copytree(html, raw)
    before = check.check(raw, timeout=15)
    assert not before["ok"] and before["error_page"]

    pub = publish_site(html, results, machine="fixture-cpu", repo=ROOT)
    assert pub.offline, pub.problems
    index = (html / "index.html").read_text()
    assert "https://" not in "".join(line for line in index.splitlines()
                                      if "<script" in line or "<link" in line)
    assert (html / "summary.html").is_file() and (html / "summary.md").is_file()

    seen = check.check(html, screenshot=tmp_path / "graph.png")
    assert not seen["external"], seen["external"]
    assert not seen["error_page"]
    assert seen["pixels"] and seen["pixels"]["coloured"] > 100, seen
    assert seen["summary_linked"] and seen["summary"]["tables"] >= 8
    assert seen["summary"]["images"] and all(ok for _, ok in seen["summary"]["images"])
    assert seen["ok"]
