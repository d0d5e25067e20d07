"""Text from results, file names and git is shown, never obeyed (issue 19): no terminal escape
or bidirectional control reaches the terminal, a log or a page; summary.md is inert as GitHub
renders markdown (cmark-gfm); the exit status tells a bug from data left out."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import unicodedata
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytest.importorskip("asv")
pytest.importorskip("pandas")

from perfmodel.cli import main  # noqa: E402
from perfmodel.untrusted import log_text, visible  # noqa: E402
from tests.test_report_untrusted import fixture_files, make_repo  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "asv_results"
MACHINE = "fixture-cpu"
ROOT = Path(__file__).resolve().parent.parent
# a window title, a screen clear, a fake colour, a CSI as one C1 byte, bidi overrides and isolates
ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[32mOK\x1b[0m\x9b1m\u202eevil\u2066x\u2069\u200f"
MARKDOWN = ["see https://evil.example/x and http://a.b", "visit www.evil.example now",
            "mail root@evil.example or mailto:a@b.c", "*emphasis* and _under_ and ~~gone~~",
            "$x^2$ math | a | cell |", "1. a list", "- another"]


def bad_chars(text: str) -> list[str]:
    """Characters that move the cursor, recolour, retitle or reorder: C0/C1 controls but the
    line break, and format characters (bidirectional controls among them)."""
    return sorted({repr(c) for c in text if c != "\n"
                   and unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")})


def escaped_results(tmp_path: Path) -> tuple[Path, Path]:
    """The fixture with a benchmark key and a file name holding escapes, and a git repository
    whose commit subjects hold markdown and escapes, for the fixture's three commits."""
    results = tmp_path / "results"
    (results / MACHINE).mkdir(parents=True)
    shutil.copy(FIXTURE / MACHINE / "machine.json", results / MACHINE / "machine.json")
    shutil.copy(FIXTURE / "benchmarks.json", results / "benchmarks.json")
    repo = tmp_path / "repo"
    hashes = make_repo(repo, [f"{MARKDOWN[i]} {ESCAPES}" for i in range(3)])
    for src, h in zip(fixture_files(), hashes):
        d = json.loads(src.read_text())
        d["commit_hash"] = h
        d["results"][f"bench_x.Gone.time_{ESCAPES}"] = d["results"][
            "bench_attention.Attention.time_forward"]
        (results / MACHINE / f"{h[:8]}-{d['env_name']}.json").write_text(json.dumps(d))
    (results / MACHINE / f"{ESCAPES}.json").write_text("{not json")
    return results, repo


def test_nothing_from_results_or_git_reaches_the_terminal_or_pages_unescaped(tmp_path, capsys):
    results, repo = escaped_results(tmp_path)
    out = tmp_path / "out"
    code = main(["report", "--results", str(results), "--machine", MACHINE, "--repo", str(repo),
                 "-o", str(out / "s.md"), "--html", "--no-plots"])
    got = capsys.readouterr()
    assert code == 1
    assert not bad_chars(got.out + got.err), bad_chars(got.out + got.err)
    assert visible(ESCAPES) in got.err  # named, as escapes: the unreadable file, the unknown key
    assert "\\x1b]0;owned\\x07" in got.err and "\\u202eevil" in got.err
    for page in ("s.md", "s.html"):
        text = (out / page).read_text()
        assert not bad_chars(text), (page, bad_chars(text))
        assert "u202eevil" in text  # the subject is there, its override written out


class Tags(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.links, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.links += [v for k, v in attrs if k in ("href", "src")]

    def handle_data(self, data):
        self.text.append(data)


def test_summary_md_is_inert_as_github_renders_it(tmp_path):
    """A commit subject with a URL, www., an e-mail address, emphasis, strikethrough, math, pipes
    or a list marker was a link, emphasis or a table cell in summary.md on GitHub."""
    cmarkgfm = pytest.importorskip("cmarkgfm")
    from perfmodel.report.page import md, md_block  # noqa: PLC0415

    results, repo = escaped_results(tmp_path)
    out = tmp_path / "out" / "s.md"
    assert main(["report", "--results", str(results), "--machine", MACHINE, "--repo", str(repo),
                 "-o", str(out), "--compare", "HEAD~2", "HEAD"]) == 1
    text = out.read_text()
    page = Tags()
    page.feed(cmarkgfm.github_flavored_markdown_to_html(text))
    assert set(page.tags) <= {"h1", "h2", "h3", "p", "ul", "li", "a", "img", "table", "thead",
                              "tbody", "tr", "th", "td", "code"}, set(page.tags)
    assert all(link.startswith("s_files/") for link in page.links), page.links
    assert page.tags.count("table") == text.count("\n|---") + text.count("\n|:--")
    shown = " ".join("".join(page.text).split())
    for subject in MARKDOWN[:3]:  # each subject (of the three commits) reads as it was written
        assert subject in shown, subject
    # and every form, within a line (md) and starting one (md_block: a note, a caption)
    for line in MARKDOWN:
        for before, f in (("x ", md), ("", md_block)):
            html = cmarkgfm.github_flavored_markdown_to_html(f"- {before}{f(line)}\n")
            one = Tags()
            one.feed(html)
            assert set(one.tags) <= {"ul", "li", "code"} and not one.links, (line, html)
            assert " ".join("".join(one.text).split()) == before + line, (line, html)


def test_logs_and_escapes(tmp_path):
    """perfmodel track and gate write asv's output to a log through log_text; their terminal
    lines through say."""
    from perfmodel.asvchild import AsvChild  # noqa: PLC0415

    log_path = tmp_path / "log"
    with open(log_path, "w") as log:
        child = AsvChild([sys.executable, "-c", f"print({ESCAPES!r}); print('ok')"], str(tmp_path),
                       None, log, 30)
        lines = list(child.lines())
        assert child.wait() == 0 and len(lines) == 2
    text = log_path.read_text()
    assert not bad_chars(text) and visible(ESCAPES) in text and text.endswith("ok\n")
    assert log_text("a\x1b[2J\nb\n") == "a\\x1b[2J\nb\n"
    assert visible(visible(ESCAPES)) == visible(ESCAPES)
    assert visible("\udcff.json") == "\\udcff.json"  # an undecodable file name


def test_an_internal_error_is_one_line_and_status_3(tmp_path, capsys, monkeypatch):
    import perfmodel.report.page as page  # noqa: PLC0415

    # a table that fails for a reason no check foresaw costs that table: the rest is written
    def broken(*_, **__):
        raise RuntimeError("planted")
    broken.__name__ = "model_comparisons"  # the note names the table's builder
    monkeypatch.setattr(page, "model_comparisons", broken)
    out = tmp_path / "out" / "s.md"
    code = main(["report", "--results", str(FIXTURE), "--machine", MACHINE, "--repo", str(tmp_path),
                 "-o", str(out), "--no-plots"])
    err = capsys.readouterr().err
    assert code == 3 and "model_comparisons not built: internal error RuntimeError: planted" in err
    text = out.read_text()
    assert "Attention forward and backward, float32" in text and "Model variants" not in text

    # an error outside any table: one line, status 3, not 1 (data left out) nor a traceback
    monkeypatch.setattr(page, "build_report", broken)
    code = main(["report", "--results", str(FIXTURE), "--machine", MACHINE, "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 3 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("perfmodel: internal error: RuntimeError: planted (at ")


def test_plot_labels_from_results_are_text(tmp_path):
    """An implementation named with escapes and "$" (matplotlib's mathtext) is a legend label as
    written: no mathtext, no missing-glyph warning naming the control characters."""
    results = tmp_path / "results"
    shutil.copytree(FIXTURE, results)
    odd = repr(f"eager{ESCAPES}$x^2$")
    bench = json.loads((results / "benchmarks.json").read_text())
    for name, entry in bench.items():
        if name.startswith("bench_attention."):
            entry["params"][0][0] = odd
    (results / "benchmarks.json").write_text(json.dumps(bench))
    for f in (results / MACHINE).glob("*-*.json"):
        d = json.loads(f.read_text())
        for name, row in d["results"].items():
            if name.startswith("bench_attention."):
                row[d["result_columns"].index("params")][0][0] = odd
        f.write_text(json.dumps(d))
    out = tmp_path / "out" / "s.md"
    # a process of its own: matplotlib logs its warnings, which pytest would capture
    proc = subprocess.run([sys.executable, "-m", "perfmodel", "report", "--results", str(results),
                           "--machine", MACHINE, "-o", str(out)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, env={"PYTHONPATH": str(ROOT), "HOME": str(
                              tmp_path), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"})
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr[-2000:]
    assert (tmp_path / "out" / "s_files" / "attention.png").stat().st_size > 1000


def test_the_model_plot_says_which_panels_are_parts_of_a_train_step(tmp_path, monkeypatch):
    import matplotlib.axes  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    from perfmodel.report.pivot import Pivot  # noqa: PLC0415
    from perfmodel.report.plots import plot_model  # noqa: PLC0415

    titles = []
    monkeypatch.setattr(matplotlib.axes.Axes, "set_title",
                        lambda self, text, *a, **k: titles.append(text))
    rows = []
    for c in (128, 256):
        row = dict(preset="small", precision="fp32", variant="sdpa", context=c)
        for m, t in (("fwd", 1e-5), ("fwd_bwd", 3e-5), ("train", 4e-5)):
            row.update({f"{m}_mean": t * c, f"{m}_status": "OK"})
        rows.append(row)
    model = pd.DataFrame(rows)
    empty = pd.DataFrame()
    for split, want in (((), []), (("bwd", "fwd_bwd", "train"),
                                   ["forward+backward: part of a train step"])):
        titles.clear()
        p = Pivot(dict.fromkeys(("attention", "model", "warmup"), "0" * 40), empty, model, empty, {}, split)
        assert plot_model(p, tmp_path / f"m{len(split)}.png") is not None
        assert [t for t in titles if "part of" in t] == want
