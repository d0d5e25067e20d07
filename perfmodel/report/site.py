"""The publish step: after ``asv publish``, make html/ browse without internet and add the summary.

``publish_site(html_dir, results_dir, ...)`` is what ``perfmodel track`` calls after ``asv publish``:
1. serves asv's third-party JavaScript/CSS from html/vendor (see assets.py) instead of CDNs;
2. writes the summary (html/summary.md, html/summary.html and its plots under html/summary_files/);
3. links the summary from the asv page's navigation bar.
Each step reports problems instead of raising, so that a bad result file or a missing npm never
costs the user the asv site itself.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UserError
from . import assets

NAV_MARK = "<!-- perfmodel: summary link -->"
NAV_ITEM = (NAV_MARK + '\n\t<li id="nav-li-perfmodel-summary"><a href="summary.html" '
            'title="tables in the seeds\' forms, history and changes">Summary tables</a></li>\n')


@dataclass
class Published:
    html_dir: Path
    summary_md: Path | None = None
    summary_html: Path | None = None
    vendored: list[str] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def offline(self) -> bool:
        return not self.remote

    def lines(self) -> list[str]:
        out = [f"site: {self.html_dir / 'index.html'} ("
               + ("renders offline" if self.offline else
                  f"{len(self.remote)} file(s) still load from the internet") + ")"]
        if self.summary_html:
            out.append(f"summary: {self.summary_md} and {self.summary_html}")
        out += [f"warning: {p}" for p in self.problems]
        return out


def link_summary(index: Path) -> bool:
    """Add a 'Summary tables' entry to the asv page's navigation bar (once)."""
    text = index.read_text(encoding="utf-8")
    if NAV_MARK in text:
        return False
    anchor = re.search(r'<li id="nav-li-regressions">.*?</li>\s*\n', text)
    if anchor is None:
        anchor = re.search(r"</ul>", text)
        if anchor is None:
            return False
        new = text[:anchor.start()] + NAV_ITEM + text[anchor.start():]
    else:
        new = text[:anchor.end()] + NAV_ITEM + text[anchor.end():]
    index.write_text(new, encoding="utf-8")
    return True


def publish_site(html_dir: str | os.PathLike = "html", results_dir: str | os.PathLike = "results",
                 machine: str | None = None, commit: str | None = None, history: int = 10,
                 repo: str | os.PathLike | None = ".", vendor: bool = True,
                 plots: bool = True) -> Published:
    """Make ``asv publish``'s html_dir render offline and add the summary to it.

    Call after every ``asv publish`` (which rewrites index.html). Returns what was done; problems
    are listed in ``.problems`` rather than raised. Raises UserError only when html_dir has no
    index.html (asv publish did not run).
    """
    from .render import write_report  # noqa: PLC0415  (pandas, jinja2, matplotlib)

    html_dir = Path(html_dir)
    index = html_dir / "index.html"
    if not index.is_file():
        raise UserError(f"{index} does not exist: run `asv publish` first")
    out = Published(html_dir)
    if vendor:
        loc = assets.localize(html_dir, "index.html")
        out.vendored, out.remote = sorted(set(loc.replaced)), loc.remote
        out.problems += loc.problems
    try:
        written = write_report(results_dir=results_dir, machine=machine, commit=commit,
                               output=html_dir / "summary.md", history=history, repo=repo,
                               plots=plots, html=True, back_link="index.html")
        out.summary_md, out.summary_html = written.markdown, written.html
        out.problems += [f"summary: {n}" for n in written.notes]
    except UserError as err:
        from .render import write_error_page  # noqa: PLC0415
        out.summary_html = write_error_page(html_dir / "summary.html", str(err))
        out.problems.append(f"no summary: {err}")
    link_summary(index)
    return out
