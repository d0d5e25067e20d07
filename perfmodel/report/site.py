"""perfmodel's part of the published site, added to what ``asv publish`` wrote into html/.

``publish_site`` is what the publisher plugin (publisher.py) runs inside ``asv publish``:
1. copies perfmodel's files (www/: the vendored scripts, README.md, perfmodel-site.js, error.html);
2. writes the summary tables and plots of every machine in results/: the machine with the newest
   results in summary.md / summary.html, the others in summary/<machine>.md / .html;
3. edits asv's index.html: its CDN tags load the vendored copies, perfmodel-site.js runs first,
   and the navigation bar gets a "Summary tables" entry (a menu of machines when there are several).

Step 3 edits the page because asv 0.6 has no other way: its index.html is copied from asv's own
www/ folder (no template setting), and the publishers' ``button_label`` goes into index.json's
"pages", which none of asv's scripts reads; its navigation bar is fixed HTML.

Problems are collected, not raised: a bad result file must not cost the user asv's site.
"""
from __future__ import annotations

import html
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from . import assets

SITE_JS = "perfmodel-site.js"
SUMMARY = "summary"          # summary.md / summary.html, and the folder of the other machines
NAV_ID = "nav-li-perfmodel-summary"
NAV_START, NAV_END = "<!-- perfmodel summary -->", "<!-- /perfmodel summary -->"


@dataclass
class Published:
    html_dir: Path
    summaries: list[tuple[str, str]] = field(default_factory=list)  # (machine, page), newest first
    vendored: list[str] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

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


def machines(results_dir: str | os.PathLike) -> list[str]:
    """Machines with a record in results_dir (asv's results/<machine>/machine.json)."""
    root = Path(results_dir)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "machine.json").is_file())


def write_summaries(html_dir: Path, results_dir, repo, history: int, plots: bool,
                    machine: str | None, out: Published) -> None:
    from .render import write_error_page, write_report  # noqa: PLC0415 (pandas, matplotlib)

    def one(name, output, back_link):
        try:
            written = write_report(results_dir=results_dir, machine=name, output=output,
                                   history=history, repo=repo, plots=plots, html=True,
                                   back_link=back_link)
        except Exception as err:  # noqa: BLE001 (asv's own pages must be published regardless)
            text = str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}"
            write_error_page(output.with_suffix(".html"), text)
            out.problems.append(f"no summary for {name or 'the newest machine'}: {text}")
            return None
        # "newest results of A, B; choose with --machine": here every machine gets its page
        notes = [n for n in written.notes if name is not None or "(newest results)" not in n]
        out.problems += [f"summary of {written.report.machine}: {n}" for n in notes]
        return written.report.machine

    first = one(machine, html_dir / f"{SUMMARY}.md", "index.html")
    if first is None:
        out.summaries.append(("(none)", f"{SUMMARY}.html"))
        return
    out.summaries.append((first, f"{SUMMARY}.html"))
    taken: set[str] = set()
    for other in machines(results_dir):
        if other == first:
            continue
        stem = _file_name(other, taken)
        if one(other, html_dir / SUMMARY / f"{stem}.md", "../index.html") is not None:
            out.summaries.append((other, f"{SUMMARY}/{stem}.html"))


def nav_entry(summaries: list[tuple[str, str]], label: str, title: str) -> str:
    """The navigation bar's entry: a link, or a menu when there are several machines."""
    esc = html.escape
    first = summaries[0][1] if summaries else f"{SUMMARY}.html"
    if len(summaries) <= 1:
        return (f'<li id="{NAV_ID}"><a href="{esc(first)}" title="{esc(title)}">{esc(label)}'
                f"</a></li>")
    items = "".join(f'<li><a href="{esc(page)}">{esc(machine)}'
                    + (" (newest results)" if i == 0 else "") + "</a></li>"
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
    if label is None or title is None:
        from .publisher import SummaryTables  # noqa: PLC0415
        label = label or SummaryTables.button_label
        title = title or SummaryTables.description
    html_dir = Path(html_dir)
    index = html_dir / "index.html"
    if not index.is_file():
        raise UserError(f"{index} does not exist: run `asv publish` first")
    out = Published(html_dir)
    assets.copy_www(html_dir)
    write_summaries(html_dir, results_dir, repo, history, plots, machine, out)
    edit_index(index, nav_entry(out.summaries, label, title), out)
    return out
