"""perfmodel's part of the published site, added to what ``asv publish`` wrote into html/.

``publish_site`` is what the publisher plugin (publisher.py) runs inside ``asv publish``:
1. copies perfmodel's files (www/: the vendored scripts, README.md, perfmodel-site.js, error.html);
2. writes the summary tables and plots of every machine in results/: the machine with the newest
   results that give a summary in summary.md / summary.html, the others in
   summary/<machine>.md / .html (a machine whose results give none gets a page saying why);
3. edits asv's index.html: its CDN tags load the vendored copies, perfmodel-site.js runs first,
   and the navigation bar gets a "Summary tables" entry (a menu of machines when there are several).

Step 3 edits the page because asv 0.6 has no other way: its index.html is copied from asv's own
www/ folder (no template setting), and the publishers' ``button_label`` goes into index.json's
"pages", which none of asv's scripts reads; its navigation bar is fixed HTML.

Before asv's own publishers run, ``clean_asv_data`` (the publisher ``SafeNames``) takes out of
asv's benchmark list and graphs what asv's scripts would render as HTML: asv 0.6's summary grid,
navigation tree and tooltips put a benchmark's name, pretty_name, code and parameter names into
the page as markup, and a crafted benchmarks.json can hold any text there. asv writes index.json
from that same list after every publisher, so what is taken out never reaches the page.

Problems are collected, not raised: a bad result file must not cost the user asv's site.
"""
from __future__ import annotations

import html
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from . import assets

DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+")  # bench_x.Class.time_y
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MARKUP = re.compile(r"[<>&\"'`]")
MAX_ASV_CELLS = 100_000  # asv's list view walks every cell of every benchmark's grid
SITE_JS = "perfmodel-site.js"
SUMMARY = "summary"          # summary.md / summary.html, and the folder of the other machines
NAV_ID = "nav-li-perfmodel-summary"
NAV_START, NAV_END = "<!-- perfmodel summary -->", "<!-- /perfmodel summary -->"
# the navigation entry's label and tooltip (publisher.py's SummaryTables shows them to asv too)
LABEL = "Summary tables"
DESCRIPTION = "perfmodel: the seed tables, history and changes of each machine, with plots"


@dataclass
class Published:
    html_dir: Path
    summaries: list[tuple[str, str]] = field(default_factory=list)  # (machine, page), newest first
    vendored: list[str] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    history: list[str] = field(default_factory=list)  # what the summaries show as history only

    @property
    def offline(self) -> bool:
        return not self.remote

    @property
    def summary_html(self) -> Path | None:
        return self.html_dir / self.summaries[0][1] if self.summaries else None

    @property
    def summary_md(self) -> Path | None:
        page = self.summary_html
        return page.with_suffix(".md") if page and page.with_suffix(".md").exists() else None

    def lines(self) -> list[str]:
        out = []
        if self.remote:
            out.append(f"{len(self.remote)} file(s) of the page still load from the internet: "
                       + ", ".join(self.remote))
        out += [f"summary of {m}: {self.html_dir / page}" for m, page in self.summaries]
        out += [f"warning: {p}" for p in self.problems]
        out += [f"note: {h}" for h in self.history]
        return out


def _file_name(machine: str, taken: set[str]) -> str:
    """A file name for a machine's summary: the machine name is data, never a path."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", machine).strip(".-")[:100] or "machine"
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}-{i}"
    taken.add(name)
    return name


def write_summaries(html_dir: Path, results_dir, repo, history: int, plots: bool,
                    machine: str | None, out: Published) -> None:
    """Every machine's summary: ``machine`` (default: the one with the newest results) in
    summary.html, or, when its results give no summary, the next machine that has one; the
    others in summary/. A machine without a summary costs its own page only."""
    from .load import STALE_NOTE, newest_first  # noqa: PLC0415 (pandas)
    from .page import write_error_page, write_report  # noqa: PLC0415 (pandas, matplotlib)

    def one(name, output, back_link) -> str | None:
        """Writes one summary; None, or why there is none."""
        try:
            written = write_report(results_dir=results_dir, machine=name, output=output,
                                   history=history, repo=repo, plots=plots, html=True,
                                   back_link=back_link)
        except Exception as err:  # noqa: BLE001 (asv's own pages must be published regardless)
            return str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
        stale = [n for n in written.notes if n.startswith(STALE_NOTE)]
        out.problems += [f"summary of {name}: {n}" for n in written.notes if n not in stale]
        if stale:  # a change of method starts new lines: its older results are history
            out.history.append(f"summary of {name}: {len(stale)} benchmark(s) have results of an "
                               "older version, shown in asv's graphs but not beside the new ones "
                               "(the summary's notes name them)")
        return None

    ranked = newest_first(results_dir)
    order = ([machine] if machine else []) + [m for m in ranked if m != machine]
    front, failed, taken = None, [], set()
    for name in order:
        stem = None
        if front is None:
            why = one(name, html_dir / f"{SUMMARY}.md", "index.html")
            if why is None:
                front = name
                out.summaries.insert(0, (name, f"{SUMMARY}.html"))
                continue
        else:
            stem = _file_name(name, taken)
            why = one(name, html_dir / SUMMARY / f"{stem}.md", "../index.html")
            if why is None:
                out.summaries.append((name, f"{SUMMARY}/{stem}.html"))
                continue
        failed.append((name, why, stem))
    for name, why, stem in failed:  # the page keeps the name its summary would have had
        out.problems.append(f"no summary for {name}: {why}")
        write_error_page(html_dir / SUMMARY / f"{stem or _file_name(name, taken)}.html", why,
                         "../index.html")
    if front is None:
        write_error_page(html_dir / f"{SUMMARY}.html", "; ".join(
            f"{name}: {why}" for name, why, _ in failed) or f"no machine's results in {results_dir}")
        out.summaries.insert(0, ("(none)", f"{SUMMARY}.html"))


def _asv_problem(name, entry) -> str | None:
    """Why a benchmark must not reach asv's pages, or None."""
    if not isinstance(name, str) or not DOTTED.fullmatch(name):
        return "its name is not a dotted Python identifier"
    names, params = entry.get("param_names") or [], entry.get("params") or []
    if not isinstance(names, list) or not all(isinstance(n, str) and IDENTIFIER.fullmatch(n)
                                              for n in names):
        return "a parameter name is not a Python identifier"
    try:
        cells = math.prod(len(p) for p in params)
    except TypeError:
        return "its parameters are not lists"
    if cells > MAX_ASV_CELLS:
        return f"it declares {cells} parameter cells (more than {MAX_ASV_CELLS})"
    return None


def clean_asv_data(html_dir, benchmarks: dict, graphs) -> list[str]:
    """Take out of asv's benchmark list (``benchmarks``, what asv writes to index.json after the
    publishers) and graphs every benchmark that asv's scripts would put into the page as markup,
    and delete the graph files asv saved for them; text asv shows as HTML that may stay is made
    text (``code``, in tooltips) or dropped (``pretty_name``: asv then shows the name). Returns
    one line per benchmark taken out (names escaped for the log)."""
    from ..untrusted import visible  # noqa: PLC0415

    lines = []
    for name in list(benchmarks):
        entry = benchmarks[name] if isinstance(benchmarks[name], dict) else {}
        why = _asv_problem(name, entry)
        if why is None:
            if isinstance(entry.get("code"), str):
                entry["code"] = html.escape(entry["code"])
            if "pretty_name" in entry and (not isinstance(entry["pretty_name"], str) or MARKUP.search(
                    entry["pretty_name"]) or not entry["pretty_name"].isprintable()):
                del entry["pretty_name"]
            continue
        del benchmarks[name]
        # asv 0.6's GraphSet keeps its graphs in _graphs (path -> Graph) and _groups (name ->
        # graphs, whose summary graphs asv's grid publisher saves) and has no remove;
        # tests/test_site.py fails if that changes
        graphs._groups.pop(name, None)
        for path, graph in list(graphs):
            if graph.benchmark_name == name:
                del graphs._graphs[path]
                try:
                    os.unlink(os.path.join(html_dir, path + ".json"))
                except OSError:
                    pass  # not saved (asv saves only graphs with data)
        lines.append(f"left out of asv's pages: benchmark {visible(repr(name))[:200]}: {why}")
    return lines


def nav_entry(summaries: list[tuple[str, str]], label: str, title: str) -> str:
    """The navigation bar's entry: a link, or a menu when there are several machines (their
    names are data: escaped as HTML, their control and bidirectional characters as text)."""
    from ..untrusted import visible  # noqa: PLC0415

    def esc(text: str) -> str:
        return html.escape(visible(text))
    first = summaries[0][1] if summaries else f"{SUMMARY}.html"
    if len(summaries) <= 1:
        return (f'<li id="{NAV_ID}"><a href="{esc(first)}" title="{esc(title)}">{esc(label)}'
                f"</a></li>")
    items = "".join(f'<li><a href="{esc(page)}">{esc(machine)}'
                    + (" (front page)" if i == 0 else "") + "</a></li>"
                    for i, (machine, page) in enumerate(summaries))
    return (f'<li id="{NAV_ID}" class="dropdown"><a href="{esc(first)}" class="dropdown-toggle" '
            f'data-toggle="dropdown" title="{esc(title)}">{esc(label)} <b class="caret"></b></a>'
            f'<ul class="dropdown-menu">{items}</ul></li>')


def edit_index(index: Path, entry: str, out: Published) -> None:
    """asv's index.html: local third-party files, perfmodel-site.js first, the summary entry."""
    text, loc = assets.localize(index.read_text(encoding="utf-8"))
    out.vendored, out.remote = sorted(set(loc.replaced)), loc.remote
    out.problems += [f"no local copy of {url}: the page loads it from the internet"
                     for url in loc.remote]
    if SITE_JS not in text:
        first_script = text.lower().find("<script")
        if first_script < 0:
            out.problems.append(f"{index}: no <script> tag; {SITE_JS} not added")
        else:
            text = (text[:first_script] + f'<script src="{SITE_JS}"></script>\n    '
                    + text[first_script:])
    text = re.sub(rf"\s*{re.escape(NAV_START)}.*?{re.escape(NAV_END)}", "", text, flags=re.S)
    anchor = (re.search(r'<li id="nav-li-regressions">.*?</li>', text, re.S)
              or re.search(r'<li id="nav-li-summarylist">.*?</li>', text, re.S))
    if anchor is None:
        out.problems.append(f"{index}: asv's navigation bar not found; no summary entry")
    else:
        text = (text[:anchor.end()] + f"\n\t{NAV_START}{entry}{NAV_END}" + text[anchor.end():])
    index.write_text(text, encoding="utf-8")


def publish_site(html_dir: str | os.PathLike = "html", results_dir: str | os.PathLike = "results",
                 machine: str | None = None, history: int = 10,
                 repo: str | os.PathLike | None = ".", plots: bool = True,
                 label: str | None = None, title: str | None = None) -> Published:
    """Add perfmodel's part to the site ``asv publish`` wrote in html_dir (see the module doc).

    ``machine`` goes first (summary.html); default: the one with the newest results. Raises
    UserError only when html_dir has no index.html (asv publish did not run).
    """
    label, title = label or LABEL, title or DESCRIPTION
    html_dir = Path(html_dir)
    index = html_dir / "index.html"
    if not index.is_file():
        raise UserError(f"{index} does not exist: run `asv publish` first")
    out = Published(html_dir)
    assets.copy_www(html_dir)
    write_summaries(html_dir, results_dir, repo, history, plots, machine, out)
    edit_index(index, nav_entry(out.summaries, label, title), out)
    return out
