"""Results files, commit subjects and machine names are untrusted: payloads planted in each of
them stay text in the summary (parsed, and in headless Chromium), no value becomes a git option,
and malformed values are left out with one note while the rest renders."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytest.importorskip("asv")
pytest.importorskip("pandas")

from perfmodel.cli import main  # noqa: E402
from perfmodel.report.load import MAX_FILE_BYTES  # noqa: E402
from perfmodel.report.page import write_report  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "asv_results"
MACHINE = "fixture-cpu"
ROOT = Path(__file__).resolve().parent.parent

# Each sets window.__pwned if it ever runs (and raises a dialog, which Chromium would report).
PAYLOADS = [
    "<script>window.__pwned=1;alert(1)</script>",
    '<img src=x onerror="window.__pwned=1;alert(1)">',
    '"><svg onload="window.__pwned=1;alert(1)">',
    "[x](javascript:window.__pwned=1;alert(1))",
    "'><iframe src=javascript:window.__pwned=1></iframe>",
]
# A directory and a file name cannot hold '/', so these two carry a slash-free payload.
NAME_PAYLOAD = "<img src=x onerror=window.__pwned=1;alert(1)>"


def git(repo, *args):
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
                                          "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
                                          "PATH": "/usr/bin:/bin", "HOME": str(repo)}).stdout


def make_repo(path: Path, subjects: list[str]) -> list[str]:
    path.mkdir()
    git(path, "init", "-q")
    hashes = []
    for i, subject in enumerate(subjects):
        (path / "f").write_text(str(i))
        git(path, "add", "f")
        git(path, "commit", "-q", "-m", subject)
        hashes.append(git(path, "rev-parse", "HEAD").strip())
    return hashes


def fixture_files() -> list[Path]:
    files = sorted((FIXTURE / MACHINE).glob("*.json"))
    files = [f for f in files if f.name != "machine.json"]
    return sorted(files, key=lambda f: json.loads(f.read_text())["date"])


def planted(tmp_path: Path) -> tuple[Path, Path, str]:
    """A results directory whose every untrusted field holds a payload, and its git repository."""
    machine = f"box{NAME_PAYLOAD}"
    results = tmp_path / "results"
    (results / machine).mkdir(parents=True)
    repo = tmp_path / "repo"
    hashes = make_repo(repo, [f"subject {p}" for p in PAYLOADS[:3]])
    bench = json.loads((FIXTURE / "benchmarks.json").read_text())
    name = f"bench_x.Payload.track_{PAYLOADS[0]}"
    bench[name] = {"name": name, "params": [[repr(p) for p in PAYLOADS]], "param_names": [
        PAYLOADS[1]], "unit": "status", "version": "1", "type": "track"}
    (results / "benchmarks.json").write_text(json.dumps(bench))
    info = json.loads((FIXTURE / MACHINE / "machine.json").read_text())
    info.update(machine=machine, cpu=PAYLOADS[2], os=PAYLOADS[3], ram=PAYLOADS[4])
    (results / machine / "machine.json").write_text(json.dumps(info))
    for i, (src, h) in enumerate(zip(fixture_files(), hashes)):
        d = json.loads(src.read_text())
        d["commit_hash"] = h
        d["params"]["machine"] = machine
        # the payload benchmark is a status that goes from 1 (OK) to 2 (OOM) at the last commit,
        # so table 8 lists every cell (a status change is listed on any cell; a time is judged
        # only on the gate's cells, which a made-up benchmark is not)
        d["results"][name] = [[2.0 ** (i == 2)] * len(PAYLOADS), [[repr(p) for p in PAYLOADS]],
                              "1"] + [None] * (len(d["result_columns"]) - 3)
        (results / machine / f"{h[:8]}-{d['env_name']}.json").write_text(json.dumps(d))
    (results / machine / f"{NAME_PAYLOAD}.json").write_text("{not json")
    return results, repo, machine


class Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]

    def handle_data(self, data):
        self.text.append(data)


def assert_inert(html: str, payloads: list[str]) -> None:
    page = Page()
    page.feed(html)
    assert not {"script", "svg", "iframe", "object", "embed"} & set(page.tags)
    assert not [a for a in page.attrs if a[1].lower().startswith("on")]
    assert not [a for a in page.attrs if a[2].strip().lower().startswith("javascript:")]
    assert all(v.endswith(".png") for t, k, v in page.attrs if t == "img" and k == "src")
    text = " ".join(" ".join(page.text).split())
    for p in payloads:  # each reached the page, as text
        assert p in text, p


def test_payloads_stay_text_in_the_summary(tmp_path):
    results, repo, machine = planted(tmp_path)
    out = tmp_path / "site" / "summary.md"
    w = write_report(results, machine, output=out, repo=repo, plots=True, html=True,
                     back_link="index.html")
    html = w.html.read_text()
    assert_inert(html, PAYLOADS + [NAME_PAYLOAD])

    # the markdown, rendered by a markdown processor that passes raw HTML, is just as inert
    markdown = pytest.importorskip("markdown")
    assert_inert(markdown.markdown(out.read_text(), extensions=["tables"]),
                 [PAYLOADS[0], PAYLOADS[3], NAME_PAYLOAD])

    if shutil.which("chromedriver") is None or not (shutil.which("chromium")
                                                    or shutil.which("chromium-browser")):
        pytest.skip("chromium / chromedriver not installed: the parsed check above still ran")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.common.exceptions import NoAlertPresentException  # noqa: PLC0415

    opts = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        opts.add_argument(flag)
    driver = webdriver.Chrome(options=opts, service=webdriver.ChromeService(
        executable_path=shutil.which("chromedriver")))
    try:
        driver.set_page_load_timeout(30)
        driver.get(w.html.resolve().as_uri())
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text  # noqa: B018
        assert driver.execute_script("return window.__pwned === undefined")
        # the control: a script in the same page does run and set the sentinel
        driver.execute_script("window.__pwned = 1")
        assert driver.execute_script("return window.__pwned") == 1
        assert driver.find_elements("css selector", "table")
    finally:
        driver.quit()


def tree_hashes(root: Path, skip: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and skip not in p.parents}


BAD_HASHES = ["--output={victim}", "--output", "-p", "--all", "HEAD", "--exec=touch {victim}",
              "$(touch {victim})", "..", "-", "abc", "g" * 40, "a" * 41]


def test_no_hash_from_results_reaches_git(tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    repo = tmp_path / "repo"
    make_repo(repo, ["one"])
    victim = results / MACHINE / "machine.json"
    newest = fixture_files()[-1]
    d = json.loads(newest.read_text())
    for i, bad in enumerate(BAD_HASHES):
        d["commit_hash"] = bad.format(victim=victim)
        (results / MACHINE / f"bad{i}.json").write_text(json.dumps(d))
    out = tmp_path / "out"
    before = tree_hashes(tmp_path, out)
    code = main(["report", "--results", str(results), "--machine", MACHINE, "--repo", str(repo),
                 "-o", str(out / "s.md"), "--html", "--no-plots"])
    assert tree_hashes(tmp_path, out) == before
    err = capsys.readouterr().err
    assert code == 1
    for i in range(len(BAD_HASHES)):  # one note per file, naming the field
        assert err.count(f"left out commit_hash in bad{i}.json:") == 1
    # a user's ref is never an option either
    for bad in BAD_HASHES[:2]:
        code = main(["report", "--results", str(results), "--machine", MACHINE, "--repo",
                     str(repo), "-o", str(out / "s.md"), "--no-plots",
                     f"--commit={bad.format(victim=victim)}"])
        assert code == 2 and tree_hashes(tmp_path, out) == before


# ------------------------------------------------------------------ malformed values

KEY = "bench_attention.Attention.time_forward"
STATUS_KEY = "bench_attention.Attention.track_status_forward"


def _col(d, key, column):
    return d["results"][key][d["result_columns"].index(column)]


def _set_col(d, key, column, value):
    d["results"][key][d["result_columns"].index(column)] = value


def _first_ok(d, key):
    return next(i for i, v in enumerate(_col(d, key, "result")) if v == v and v is not None)


def _put(d, key, column, value):
    vals = list(_col(d, key, column))
    vals[_first_ok(d, key)] = value
    _set_col(d, key, column, vals)


MALFORMED = {  # case -> (mutation of a parsed results file, the field its note must name)
    "date_text": (lambda d: d.update(date="yesterday"), "date"),
    "date_huge": (lambda d: d.update(date=1e20), "date"),
    "date_negative": (lambda d: d.update(date=-5), "date"),
    "date_nan": (lambda d: d.update(date=float("nan")), "date"),
    "hash_number": (lambda d: d.update(commit_hash=123), "commit_hash"),
    "params_text": (lambda d: _set_col(d, KEY, "params", "impl"), f"{KEY} params"),
    "params_short": (lambda d: _set_col(d, KEY, "params", _col(d, KEY, "params")[:-1]),
                     f"{KEY} params"),
    "params_string_inside": (lambda d: _set_col(d, KEY, "params", _col(d, KEY, "params")[:2]
                                                + ["16", _col(d, KEY, "params")[3]]),
                             f"{KEY} params"),
    "values_short": (lambda d: _set_col(d, KEY, "result", _col(d, KEY, "result")[:-1]),
                     f"{KEY} result"),
    "infinity": (lambda d: _put(d, KEY, "result", float("inf")), f"{KEY} result"),
    "minus_infinity": (lambda d: _put(d, KEY, "result", float("-inf")), f"{KEY} result"),
    "huge_number": (lambda d: _put(d, KEY, "result", 10**400), f"{KEY} result"),
    "text_value": (lambda d: _put(d, KEY, "result", "fast"), f"{KEY} result"),
    "status_code": (lambda d: _put(d, STATUS_KEY, "result", 7.0), f"{STATUS_KEY} result"),
    "samples": (lambda d: _put(d, KEY, "samples", [1.0, float("inf")]), f"{KEY} samples"),
    "stats": (lambda d: _put(d, KEY, "stats_ci_99_a", float("-inf")), f"{KEY} stats"),
}


def seed_tables(report) -> dict:
    return {t.key: t.rows for t in report.tables if t.key not in ("history", "compare")}


def test_malformed_values_are_left_out_with_one_note_each(tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    good = fixture_files()[-1]
    good_hash = json.loads(good.read_text())["commit_hash"]
    base = write_report(FIXTURE, MACHINE, commit=good_hash, output=tmp_path / "base" / "s.md",
                        repo=None, plots=False)
    for i, (case, (mutate, _)) in enumerate(MALFORMED.items()):
        d = json.loads(good.read_text())
        d["commit_hash"] = f"{i + 1:02x}" * 20  # a commit of its own
        mutate(d)
        (results / MACHINE / f"{case}.json").write_text(json.dumps(d))
    with open(results / MACHINE / "huge.json", "wb") as f:  # sparse: size is checked first
        f.truncate(MAX_FILE_BYTES + 1)
    (results / MACHINE / "garbage.json").write_text('{"version": 2, "results": {]')
    (results / MACHINE / "truncated.json").write_text(good.read_text()[:1000])
    bench = json.loads((FIXTURE / "benchmarks.json").read_text())
    bench["bench_attention.Attention.peakmem_backward"]["unit"] = "parsecs"
    (results / "benchmarks.json").write_text(json.dumps(bench))

    out = tmp_path / "out" / "s.md"
    code = main(["report", "--results", str(results), "--machine", MACHINE, "--commit",
                 good_hash, "--repo", str(tmp_path), "-o", str(out), "--html", "--no-plots"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    notes = [line for line in err.splitlines() if line.startswith("note: ")]
    expect = {f"{c}.json": field for c, (_, field) in MALFORMED.items()}
    expect.update({"huge.json": "the file", "garbage.json": "the file",
                   "truncated.json": "the file",
                   "benchmarks.json": "bench_attention.Attention.peakmem_backward unit"})
    for fname, field in expect.items():
        mine = [n for n in notes if f" in {fname}:" in n]
        assert len(mine) == 1 and mine[0].startswith(f"note: left out {field} in {fname}:"), \
            (fname, mine)
    assert "64 MiB limit" in next(n for n in notes if " in huge.json:" in n)

    # the good commit renders exactly as without the bad files
    w = write_report(results, MACHINE, commit=good_hash, output=out, repo=None, plots=False)
    assert seed_tables(w.report) == seed_tables(base.report)
    # and the commit with an Infinity shows that cell as n/a, not a number nor a blank OK
    inf = write_report(results, MACHINE, commit=f"{list(MALFORMED).index('infinity') + 1:02x}" * 20,
                       output=tmp_path / "inf" / "s.md", repo=None, plots=False)
    for t in w.report.tables + inf.report.tables:  # never a measurement, nor a change to one
        assert not [c for row in t.rows for c in row if "inf" in c.lower()], t.key
    statuses = [r[3] for r in inf.report.table("attention_float32").rows]
    assert "n/a" in statuses and statuses.count("OK") == [
        r[3] for r in base.report.table("attention_float32").rows].count("OK") - 1


@pytest.mark.parametrize("content", [None, "", "{]", '{"version": 1}', "[1, 2]"])
def test_missing_or_bad_benchmarks_json_is_one_line(tmp_path, capsys, content):
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    if content is None:
        (results / "benchmarks.json").unlink()
    else:
        (results / "benchmarks.json").write_text(content)
    code = main(["report", "--results", str(results), "-o", str(tmp_path / "o" / "s.md")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "benchmarks.json" in err
    assert not (tmp_path / "o").exists()
