"""Check in headless Chromium, with the network blocked, that a published asv site draws a graph.

    python3 -m tools.site_check HTML_DIR [--benchmark NAME] [--screenshot PNG]

(a development tool: run from the repository root; tests/test_site.py imports it as a module)

Serves HTML_DIR on 127.0.0.1 (a thread with http.server), opens index.html in Chromium driven by
chromedriver (Debian packages chromium, chromium-driver; Python package selenium), with every host
name but 127.0.0.1 resolving to nothing, so that a page that still needs a CDN fails. It opens the
graph page of one benchmark and reads the flot canvas back: the check passes when the canvas
exists and has drawn pixels of a colour other than the background and the axes' grey, and when
every resource the page loaded came from 127.0.0.1. Exit status 0 when it draws, 1 when not.
"""
from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

CHROMIUM_FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",  # no DNS: no CDN, no internet
    "--window-size=1280,900",
]

# Counts canvas pixels that are neither transparent/white nor grey (flot's axes and grid are grey,
# the data lines are coloured), and the pixels that are not background at all.
PIXELS_JS = """
const c = document.querySelector(arguments[0]);
if (!c) { return null; }
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let drawn = 0, coloured = 0;
for (let i = 0; i < d.length; i += 4) {
  const r = d[i], g = d[i + 1], b = d[i + 2], a = d[i + 3];
  if (a === 0 || (r > 245 && g > 245 && b > 245)) continue;
  drawn++;
  if (Math.max(r, g, b) - Math.min(r, g, b) > 40) coloured++;
}
return {width: c.width, height: c.height, drawn: drawn, coloured: coloured};
"""


def find_chromium() -> tuple[str | None, str | None]:
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")
                    if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    return browser, driver


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serve(directory: Path):
    handler = functools.partial(_Quiet, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def first_graph_benchmark(html_dir: Path) -> str:
    """A benchmark with a drawn graph: the first name in asv's index.json that has a graph file."""
    index = json.loads((html_dir / "index.json").read_text())
    names = sorted(index["benchmarks"])
    with_graphs = {p.stem for p in (html_dir / "graphs").rglob("*.json")}
    for name in names:
        if name in with_graphs:
            return name
    if not names:
        raise SystemExit(f"{html_dir}/index.json lists no benchmarks")
    return names[0]


def check(html_dir: str | os.PathLike, benchmark: str | None = None,
          screenshot: str | os.PathLike | None = None, timeout: float = 30.0) -> dict:
    """Open the graph of ``benchmark`` (default: the first one) and return what was seen."""
    from selenium import webdriver  # noqa: PLC0415
    from selenium.webdriver.chrome.service import Service  # noqa: PLC0415

    html_dir = Path(html_dir)
    browser, driver_path = find_chromium()
    if not browser or not driver_path:
        raise SystemExit("chromium and chromedriver are needed (apt-get install chromium "
                         "chromium-driver)")
    benchmark = benchmark or first_graph_benchmark(html_dir)
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    profile = tempfile.mkdtemp(prefix="site-check-profile-")
    for flag in CHROMIUM_FLAGS + [f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    os.environ.setdefault("SE_AVOID_STATS", "true")
    seen: dict = {"benchmark": benchmark}
    try:
        with serve(html_dir) as base:
            driver = webdriver.Chrome(options=opts, service=Service(executable_path=driver_path))
            try:
                driver.set_page_load_timeout(timeout)
                driver.get(f"{base}/index.html#{benchmark}")
                deadline = time.monotonic() + timeout
                pixels = None
                while time.monotonic() < deadline:
                    pixels = driver.execute_script(PIXELS_JS, "#main-graph canvas.flot-base")
                    if pixels and pixels["coloured"] > 0:
                        break
                    if driver.current_url.endswith("error.html"):  # asv: a script failed to load
                        break
                    time.sleep(0.25)
                time.sleep(0.5)  # let flot finish the overview and legend before the picture
                seen["url"] = driver.current_url
                seen["title"] = driver.title
                seen["pixels"] = pixels
                seen["resources"] = driver.execute_script(
                    "return performance.getEntriesByType('resource').map(e => e.name)"
                    ".concat([location.href]);")
                seen["external"] = [u for u in seen["resources"] if not u.startswith(base)]
                seen["errors"] = [e["message"] for e in driver.get_log("browser")
                                  if e.get("level") == "SEVERE"]
                seen["error_page"] = driver.current_url.endswith("error.html")
                if screenshot:
                    driver.save_screenshot(str(screenshot))
                    seen["screenshot"] = str(screenshot)
                # the summary: linked from the page's navigation bar, its tables and plots load
                links = driver.execute_script(
                    "return Array.from(document.querySelectorAll('#nav a')).map(a => a.href);")
                seen["summary_linked"] = f"{base}/summary.html" in links
                if seen["summary_linked"]:
                    driver.get(f"{base}/summary.html")
                    seen["summary"] = driver.execute_script(
                        "return {tables: document.querySelectorAll('table').length, "
                        "images: Array.from(document.images).map(i => [i.getAttribute('src'), "
                        "i.complete && i.naturalWidth > 0])};")
                    more = driver.execute_script(
                        "return performance.getEntriesByType('resource').map(e => e.name);")
                    seen["external"] += [u for u in more if not u.startswith(base)]
            finally:
                driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    seen["ok"] = bool(seen.get("pixels") and seen["pixels"]["coloured"] > 0
                      and not seen["external"] and not seen["error_page"])
    return seen


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("html_dir", nargs="?", default="html")
    p.add_argument("--benchmark", help="benchmark whose graph to open (default: the first)")
    p.add_argument("--screenshot", help="write a PNG of the page here")
    args = p.parse_args(argv)
    seen = check(args.html_dir, args.benchmark, args.screenshot)
    print(json.dumps(seen, indent=1))
    print("graph draws offline" if seen["ok"] else "graph does NOT draw offline", file=sys.stderr)
    return 0 if seen["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
