"""The pieces of the publish step and of ``perfmodel track`` that need no browser and no asv run:
the shipped third-party files, the page edit, machine names as data, the machine record."""
from __future__ import annotations

import base64
import hashlib
import json
import re
from pathlib import Path

import asv
import pytest

from perfmodel.errors import UserError
from perfmodel.report import assets, site
from perfmodel.commands.track import cell_counts
from perfmodel.identity import check_machine_name, machine_record, register_machine

ASV_INDEX = Path(asv.__file__).parent / "www" / "index.html"
FIXTURE = Path(__file__).parent / "fixtures" / "asv_results"
SHIPPED = Path(__file__).resolve().parent.parent / "results"


def test_every_cdn_file_of_asvs_page_is_shipped():
    text, done = assets.localize(ASV_INDEX.read_text())
    assert not done.remote, f"asv's page loads files perfmodel does not ship: {done.remote}"
    assert sorted(set(done.replaced)) == sorted(set(assets.ASSETS.values()))
    assert "integrity=" not in text and "crossorigin" not in text
    assert assets.localize(text)[0] == text  # idempotent
    for local in done.replaced:
        assert (assets.WWW / local).is_file(), local
        assert list((assets.WWW / local.split("/")[0] / local.split("/")[1]).glob("LICENSE*")) \
            or "MIT license" in (assets.WWW / local).read_text(errors="replace")[:600], local


def test_shipped_files_are_the_cdn_files_where_their_hash_says_so():
    """jQuery, bootstrap and flot-orderbars are the very bytes asv's page names (its SRI hash)."""
    matched = 0
    for tag in re.findall(r"<(?:script|link)\b[^>]*>", ASV_INDEX.read_text()):
        url = re.search(r'(?:src|href)="([^"]+)"', tag)
        sri = re.search(r'integrity="(sha\d+)-([^"]+)"', tag)
        local = assets.shipped(url.group(1)) if url else None
        if not sri or not local or not url.group(1).endswith(("jquery-3.3.1.min.js", "bootstrap.min.js",
                                                     "bootstrap.min.css", "orderBars.js")):
            continue
        digest = hashlib.new(sri.group(1), (assets.WWW / local).read_bytes()).digest()
        assert base64.b64encode(digest).decode() == sri.group(2), local
        matched += 1
    assert matched == 4


def test_page_edit_and_machine_names_as_data(tmp_path):
    index = tmp_path / "index.html"
    index.write_text(ASV_INDEX.read_text())
    evil = '"><script>alert(1)</script>\u202e\x1b[2J'
    entry = site.nav_entry([("cpu-a", "summary.html"), (evil, "summary/x.html")], "Summary", "t")
    assert "\u202e" not in entry and "\x1b" not in entry and "\\u202e\\x1b[2J" in entry
    out = site.Published(tmp_path)
    site.edit_index(index, entry, out)
    site.edit_index(index, entry, out)  # twice: one entry
    text = index.read_text()
    assert text.count('id="nav-li-perfmodel-summary"') == 1
    assert "<script>alert(1)" not in text and "&lt;script&gt;alert(1)" in text
    assert text.index(site.SITE_JS) < text.index("jquery")  # runs before asv's scripts
    taken: set[str] = set()
    names = [site._file_name(n, taken) for n in ("../../etc/passwd", "a/b", "a-b", "")]
    assert all("/" not in n and not n.startswith(".") for n in names)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("name", ["--machine=x", "-b", "a b", "../x", "", "x" * 201])
def test_machine_names_never_become_options_or_paths(name):
    with pytest.raises(UserError, match="machine name"):
        check_machine_name(name)


def test_machine_record_has_what_asv_records(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    register_machine("cpu-test", {"device": "cpu"})
    saved = json.loads((tmp_path / ".asv-machine.json").read_text())["cpu-test"]
    for key in ("machine", "os", "arch", "cpu", "num_cpu", "ram"):
        assert saved.get(key), key
    assert saved["machine"] == "cpu-test" and int(saved["num_cpu"]) >= 1 and int(saved["ram"]) > 0


def test_machine_record_holds_nothing_that_differs_between_boxes(monkeypatch):
    """asv draws one graph per distinct record: two boxes of one machine, whose kernel builds
    and memory totals differ (the H200's: 6.18.44-fc-v1252 and v1294, 135129063424 and
    135129055232 bytes), must get the same one."""
    from asv.machine import Machine  # noqa: PLC0415

    env = {"device": "cuda", "name": "NVIDIA H200", "driver": "580.159.04", "cuda": "13.0",
           "torch": "2.11.0+cu130", "triton": "3.6.0", "tf32": False}
    records = []
    for release, ram in (("6.18.44-fc-v1252-gpu", "135129063424"),
                         ("6.18.44-fc-v1294-gpu", "135129055232")):
        monkeypatch.setattr(Machine, "get_defaults", staticmethod(lambda r=release, m=ram: {
            "machine": "box", "os": f"Linux {r}", "num_cpu": "16", "arch": "x86_64",
            "cpu": "Intel(R) Xeon(R) Processor", "ram": m}))
        records.append(machine_record("h200", env))
    assert records[0] == records[1]
    assert records[0]["os"] == ("Linux | NVIDIA H200 driver 580.159.04 CUDA 13.0 torch "
                                "2.11.0+cu130 triton 3.6.0 tf32 off")
    assert records[0]["ram"] == str(125 * 2**30)


def test_the_shipped_results_of_a_machine_draw_one_graph():
    """Every shipped result file that records asv's machine fields records the machine's own
    (machine.json), so asv's graphs of a machine are one line; the only others are the three
    H100 files of 2026-11-23, written before perfmodel recorded those fields (no ram, cpu,
    num_cpu, arch: asv draws them apart, and nothing is known to fill them with)."""
    apart = []
    for machine in sorted(p.parent for p in SHIPPED.glob("*/machine.json")):
        own = json.loads((machine / "machine.json").read_text())
        for path in sorted(machine.glob("*-*.json")):
            params = json.loads(path.read_text())["params"]
            if "ram" not in params:
                apart.append(path.name[:8])
                continue
            assert {k: params[k] for k in own if k != "version"} == \
                {k: v for k, v in own.items() if k != "version"}, path
    assert sorted(apart) == ["152f55ec", "9498ff0a", "be84400e"]


def test_cell_counts_from_a_result_file():
    machine = "fixture-cpu"
    path = next((FIXTURE / machine).glob("*-*.json"))
    data = json.loads(path.read_text())
    column = data["result_columns"].index("result")
    values = [v for row in data["results"].values()
              for v in (row[column] if isinstance(row[column], list) else [row[column]])]
    counts = cell_counts(str(FIXTURE), machine, path.name.split("-")[0])
    assert sum(counts.values()) == len(values) and counts["measured"] > 0 and counts["n/a"] > 0
    assert cell_counts(str(FIXTURE), machine, "0" * 40) is None


def test_a_machine_without_results_costs_only_its_summary(tmp_path):
    html = tmp_path / "html"
    html.mkdir()
    (html / "index.html").write_text(ASV_INDEX.read_text())
    (tmp_path / "results" / "cpu-empty").mkdir(parents=True)
    (tmp_path / "results" / "cpu-empty" / "machine.json").write_text(
        json.dumps({"machine": "cpu-empty", "version": 1}))
    pub = site.publish_site(html, tmp_path / "results", repo=tmp_path, plots=False)
    assert pub.problems and "no summary" in pub.problems[0]
    assert "No summary" in (html / "summary.html").read_text()
    index = (html / "index.html").read_text()
    assert 'id="nav-li-perfmodel-summary"' in index and "vendor/jquery-3.3.1" in index
    assert (html / "vendor" / "jquery-3.3.1" / "dist" / "jquery.min.js").is_file()


def test_a_machine_whose_results_give_no_summary_costs_only_its_own_page(tmp_path):
    """The machine with the newest results used to take the front page with "No summary" and no
    other machine got a page; now the next machine with results takes summary.html."""
    import shutil  # noqa: PLC0415

    html = tmp_path / "html"
    html.mkdir()
    (html / "index.html").write_text(ASV_INDEX.read_text())
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    bad = results / "cpu-newest"
    bad.mkdir()
    (bad / "machine.json").write_text(json.dumps({"machine": "cpu-newest", "version": 1}))
    (bad / "0123abcd-virtualenv-py3.11.json").write_text("{not json")  # the newest results
    pub = site.publish_site(html, results, repo=tmp_path, plots=False)
    assert pub.summaries == [("fixture-cpu", "summary.html")]
    assert "perfmodel summary: fixture-cpu" in (html / "summary.html").read_text()
    assert [p for p in pub.problems if p.startswith("no summary for cpu-newest: ")]
    assert "No summary" in (html / "summary" / "cpu-newest.html").read_text()


def test_results_of_an_older_benchmark_version_are_one_note_per_machine(tmp_path):
    """A change of method (the split train step) starts new lines: every benchmark whose older
    results are left beside the new ones is a note on the summary page, and one line of the
    publish step's output per machine, not a warning per benchmark."""
    import shutil  # noqa: PLC0415

    html = tmp_path / "html"
    html.mkdir()
    (html / "index.html").write_text(ASV_INDEX.read_text())
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    bench = json.loads((results / "benchmarks.json").read_text())
    newer = [n for n in bench if ".Model.time_" in n][:3]
    for name in newer:  # the suite now files them under another version
        bench[name]["version"] = f"{bench[name].get('version')}-another-method"
    (results / "benchmarks.json").write_text(json.dumps(bench))
    pub = site.publish_site(html, results, repo=tmp_path, plots=False)
    assert not [p for p in pub.problems if "older version" in p], pub.problems
    notes = [line for line in pub.lines() if line.startswith("note: ")]
    assert notes == [f"note: summary of fixture-cpu: {len(newer)} benchmark(s) have results of "
                     "an older version, shown in asv's graphs but not beside the new ones (the "
                     "summary's notes name them)"]
    page = (html / "summary.md").read_text()
    assert all(f"not shown: {n.replace('_', chr(92) + '_')}" in page for n in newer)
