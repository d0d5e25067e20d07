"""Stage 6, page: the stages in order, then the summary as markdown and as HTML.

Both pages are Jinja templates with autoescape on, and every value they show passes
untrusted.visible (``_finalize``), so no control or bidirectional character reaches them. The
HTML page is rendered straight from the tables' cells (no markdown step, so no raw HTML can pass
through); the markdown page escapes what GitHub's markdown would read as markup, a link or a
block (``md`` below) and HTML-escapes the rest.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import UserError
from ..names import BACKLOG_SHARE, HOST_BOUND_SHARE, NA, WAIT_SHARE, WIDE_SHARE
from ..untrusted import visible
from ..verdict import device_of
from .attention_tables import attention_tables
from .cells import HOST_BOUND_MARK, HOST_UNKNOWN_MARK, KIND_LABELS, KINDS, Table, normalize
from .commits import base, commit_order, continued, git_log, resolve, tables_commits
from .comparisons import model_comparisons
from .fold import fold
from .gaterule import clone_tiers, gate_rule
from .history import (compare_table, coverage, headline_cells, history_table,
                      history_window)
from .load import STALE_NOTE, load
from .model_tables import model_tables
from .pivot import pivot
from .plots import plot_attention, plot_history, plot_model, safe_plot
from .why_na import why_na

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


@dataclass
class Newer:
    """When the tables are not all at the newest commit (commits.tables_commits): each class's
    tables' commit with how many of the class's cells it measured (of the most any commit did),
    the commit where the history and the changes end, how many cells it measured, and how many
    commits with results are newer than the newest tables' commit."""
    commit: str
    at: list                    # (label, commit, cells, widest) per class with results
    newest_cells: int
    commits: int
    share: float = WIDE_SHARE


@dataclass
class Report:
    machine: str
    commit: str
    info: dict
    tables: list[Table]
    plots: dict[str, str]                       # title -> relative path
    notes: list[str]
    machine_info: dict = field(default_factory=dict)
    compare: tuple[str, str] | None = None
    history_frame: pd.DataFrame | None = None
    left_out: int = 0                           # values and files left out (load.py's notes)
    issue_cells: int = 0                        # steps with the host's issue time recorded
    bound_steps: int = 0                        # of them, host-bound (names.host_bound)
    internal: int = 0                           # tables lost to an internal error (page.guarded)
    unknown_steps: int = 0                      # of them, not told (names.host_bound: None)
    newer: Newer | None = None                  # tables not all at the newest (tables_commits)
    commits: dict = field(default_factory=dict)  # kind -> the commit its tables read

    @property
    def commit_kinds(self) -> list[tuple[str, str]]:
        """(commit, the classes whose tables read it) for each tables' commit, ``commit`` first;
        one entry, with an empty label, when every table reads ``commit``."""
        by: dict[str, list[str]] = {}
        for kind in KINDS:
            by.setdefault(self.commits.get(kind, self.commit), []).append(KIND_LABELS[kind])
        if len(by) == 1:
            return [(next(iter(by)), "")]
        first = sorted(by, key=lambda c: c != self.commit)
        return [(c, " and ".join(by[c])) for c in first]

    def table(self, key: str) -> Table:
        for t in self.tables:
            if t.key == key:
                return t
        raise KeyError(key)

    @property
    def sections(self) -> list[tuple[int, str, list[Table]]]:
        """(number, name, tables) in the summary's order (``number_tables`` set them)."""
        out: dict[str, list[Table]] = {}
        for t in self.tables:
            out.setdefault(t.section, []).append(t)
        return [(i, name, ts) for i, (name, ts) in enumerate(out.items(), 1)]

    def _marked(self, mark: str) -> int:
        return sum(c.endswith(mark) for t in self.tables for r in t.rows for c in r)

    @property
    def host_bound(self) -> int:
        """How many table cells carry the host-bound mark (one step shows in several forms)."""
        return self._marked(HOST_BOUND_MARK)

    @property
    def host_unknown(self) -> int:
        """How many table cells carry the mark of a step whose host's share was not told."""
        return self._marked(HOST_UNKNOWN_MARK)


def build_report(results_dir="results", machine=None, commit=None, history=10, compare=None,
                 repo=".", plots_dir: Path | None = None, plots_prefix: str = "") -> Report:
    rs = load(results_dir, machine)
    git_order, info = git_log(repo)
    order = commit_order(rs, git_order)
    # the tables' commit; the history and the change table end at ``last``: the same commit when
    # one is asked for, else the newest that measured a cell of the commit before it
    # (commits.continued: a run of a few chunks starts no line), where the tables take the newest
    # of the widest (commits.widest: a GPU box's quick-tier commits would leave the seed forms n/a)
    if commit is None:
        at = tables_commits(rs, order)  # each class's tables: its widest commit, or newer
        ran = [c for c, _, most in at.values() if most]  # a class with no results has no say
        full = max(ran, key=order.index) if ran else order[-1]  # the newest names the page
        commits = {kind: c if most else full for kind, (c, _, most) in at.items()}
        last = continued(rs, order)
        if order.index(full) > order.index(last):  # the tables' commit is never past the end
            last = full
        if last != order[-1]:
            apart = order[order.index(last) + 1:]
            rs.notes.info(f"the history and the changes end at {last[:8]}: the newer commit(s) "
                          f"{', '.join(c[:8] for c in apart)} measured no cell that the commit "
                          "before them did (a run of a few chunks); perfmodel report --commit "
                          "REF reads one of them")
    else:
        full = last = resolve(rs, commit, repo, order)
        at, commits = {}, dict.fromkeys(KINDS, full)
    pair = None
    if compare:
        pair = (resolve(rs, compare[0], repo, order), resolve(rs, compare[1], repo, order))
    else:  # the commit before that shares nearly as many cells with ``last`` as any
        before = base(rs, order, last)
        if before is not None:
            pair = (before, last)
    notes = rs.notes
    # every table and plot but the history reads its class's commit: normalize only their rows,
    # and pivot each kind of result once
    read = set(commits.values())
    norm = normalize(rs.frame[rs.frame["commit"].isin(read)], rs.benchmarks, notes)
    norm_last = (norm[norm["commit"] == last] if last in read and not norm.empty
                 else normalize(rs.at(last), rs.benchmarks, notes))
    piv = guarded(notes, "pivot", pivot, norm, commits) if not norm.empty else None
    tables: list[Table] = []
    if piv is not None:
        for build in (model_tables, model_comparisons, attention_tables):
            tables += guarded(notes, build.__name__, build, piv) or []
    if not tables:
        notes.info(f"no attention or model results at {', '.join(c[:8] for c in read)} on "
                   f"{rs.machine}")
    heads = (guarded(notes, "headline_cells", headline_cells, norm_last, last,
                     coverage(rs.frame, history_window(order, last, history)))
             if not norm_last.empty else [])
    hist_tables, hist = guarded(notes, "history_table", history_table, rs, norm_last, last,
                                order, history, info, heads or []) or ([], pd.DataFrame())
    tables += hist_tables
    if pair:
        try:  # the gate's settings (benchmarks/tiers.py) judge the change table
            rule = gate_rule(rs.machine, repo)
        except UserError as err:
            notes.leave("the change table", "changes", str(err))
        else:
            tables += [_titled(t, "Changes") for t in guarded(
                notes, "compare_table", compare_table, rs, pair[0], pair[1], info, rule) or []]
    try:  # the tier's reasons for the cells it leaves out, from the clone's tiers
        tiers = clone_tiers(repo)
    except UserError:
        tiers = None
    tables += guarded(notes, "why_na", why_na, norm, rs.benchmarks, commits,
                      device_of(rs.machine), tiers) or []
    stale = any(n.startswith(STALE_NOTE) and any(c[:8] in n for c in read)
                for n in notes)  # load.py: older versions left out
    tables = number_tables([fold(t, stale) for t in tables])
    plots = {}
    if plots_dir is not None and piv is not None:
        for title, fn, name in (("attention time and memory vs seq_len", plot_attention,
                                 "attention.png"),
                                ("model step time per preset and context", plot_model,
                                 "model.png")):
            p = safe_plot(notes, title, fn, piv, plots_dir / name)
            if p:
                plots[title] = f"{plots_prefix}{name}"
        p = safe_plot(notes, "history", plot_history, hist, plots_dir / "history.png")
        if p:
            plots["history of the headline benchmarks"] = f"{plots_prefix}history.png"
    minfo = dict(rs.machine_info)
    if "ram" in minfo:  # load.py checked: ASCII digits, at most 20
        minfo["ram"] = f"{int(minfo['ram']) / 2**30:.0f} GiB"
    frames = (piv.attention, piv.model) if piv is not None else ()
    issued = sum(int(df[c].notna().sum()) for df in frames for c in df.columns
                 if c.endswith("_issue"))  # none: a CPU, or results of an older suite
    bound = sum(int(df[c].sum()) for df in frames for c in df.columns
                if c.endswith("_host_bound"))
    unknown = sum(int(df[c].sum()) for df in frames for c in df.columns
                  if c.endswith("_host_unknown"))
    newer = None
    if at and (last != full or len(read) > 1):
        measured = rs.frame[(rs.frame["commit"] == last) & (rs.frame["status"] != NA)]
        newer = Newer(last, [(KIND_LABELS[k], c, n, most) for k, (c, n, most) in at.items()
                             if most], len(measured), order.index(last) - order.index(full))
    return Report(rs.machine, full, info, tables, plots, list(notes), minfo, pair, hist,
                  notes.left_out, issued, bound, notes.internal, unknown, newer, commits)


def _titled(t: Table, section: str) -> Table:
    """A table built with its old number in the title ("8. Changes ..."): page.py numbers."""
    t.title = re.sub(r"^\d+[a-z]?\.\s+", "", t.title)
    t.section = t.section or section
    return t


def number_tables(tables: list[Table]) -> list[Table]:
    """Sections numbered 1, 2, ... in order of first appearance, tables 1.1, 1.2, ... within
    them: every number and every title in the summary once. Tables of one section are kept
    together in their order."""
    sections: dict[str, list[Table]] = {}
    for t in tables:
        sections.setdefault(t.section or "Tables", []).append(t)
    seen: dict[str, int] = {}
    out = []
    for si, (name, ts) in enumerate(sections.items(), 1):
        for ti, t in enumerate(ts, 1):
            t.section, t.number = name, f"{si}.{ti}"
            n = seen[t.title] = seen.get(t.title, 0) + 1
            if n > 1:  # two tables of one name (should not happen): told apart, never merged
                t.title = f"{t.title} ({n})"
            out.append(t)
    tables[:] = out
    return out


def guarded(notes, name: str, build, *args):
    """A table that cannot be built is a note, never a lost report. The data checks in load.py
    and cells.py name the file and field of what they leave out; reaching this is a case they do
    not foresee, i.e. a bug (exit status 3), said with the table it cost."""
    try:
        return build(*args)
    except Exception as err:  # noqa: BLE001 (any failure of one table)
        notes.internal += 1
        notes.info(f"{name} not built: internal error {type(err).__name__}: {str(err)[:200]} "
                   "(please report it)")
        return None


_MD_PUNCT = re.compile(r"([\\`*_~\[\]|!$])")  # code, emphasis, strikethrough, links, cells, math


def md(text) -> str:
    """Text -> markdown that GitHub (GFM) shows as that text: no links (autolinks of www.,
    scheme:// and e-mail addresses included), images, HTML, emphasis, math, table cells or
    blocks; control and bidirectional characters written as escapes (untrusted.visible)."""
    from markupsafe import Markup  # noqa: PLC0415

    text = visible(" ".join(str(text).split()))
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MD_PUNCT.sub(r"\\\1", text)
    text = re.sub(r"(?i)(www)\.", r"\1\\.", text)  # GFM links www.x; not www\.x
    text = re.sub(r":(?=//)", r"\\:", text)  # nor http\://x
    # GFM finds e-mail addresses in text after escapes are undone (a\@b.c is still linked);
    # an @ in a code span of its own splits the text, and copies as @
    text = text.replace("@", "`@`")
    return Markup(text)


def md_block(text) -> str:
    """``md`` for text that starts a line (a note is a list item, a caption a paragraph): no
    heading, list, sub-list or rule either (-1.5% stays as it is)."""
    from markupsafe import Markup  # noqa: PLC0415

    text = re.sub(r"^([#+-])(?=[\s#+-]|$)", r"\\\1", str(md(text)))
    return Markup(re.sub(r"^(\d{1,9})([.)])(?=\s|$)", r"\1\\\2", text))


def md_url(path) -> str:
    """A relative path of ours as a markdown link destination."""
    from urllib.parse import quote  # noqa: PLC0415

    from markupsafe import Markup  # noqa: PLC0415

    return Markup(quote(str(path)))


def _finalize(value):
    """Every {{ }} of both pages: data shown as text, its control and bidirectional characters
    as escapes (markdown's md filter did it already; its Markup passes)."""
    from markupsafe import Markup  # noqa: PLC0415

    return value if isinstance(value, Markup) or not isinstance(value, str) else visible(value)


def _env():
    import jinja2  # noqa: PLC0415
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined, finalize=_finalize)
    env.filters["md"] = md
    env.filters["md_block"] = md_block
    env.filters["md_url"] = md_url
    return env


def render_markdown(report: Report) -> str:
    return _env().get_template("summary.md.j2").render(r=report, **_legend())


def render_html(report: Report | None, back_link: str | None, error: str | None = None,
                markdown: str | None = None) -> str:
    """The HTML page; ``markdown``: the file name of its markdown twin beside it (linked)."""
    title = (f"perfmodel summary: {report.machine} at {report.commit[:8]}" if report else
             "perfmodel summary")
    return _env().get_template("summary.html.j2").render(r=report, title=title, error=error,
                                                         back_link=back_link, markdown=markdown,
                                                         **_legend())


def _legend() -> dict:
    return {"mark": HOST_BOUND_MARK, "unknown_mark": HOST_UNKNOWN_MARK,
            "share": f"{HOST_BOUND_SHARE:.0%}", "backlog": f"{BACKLOG_SHARE:g}",
            "wait": f"{WAIT_SHARE:g}"}


@dataclass
class Written:
    markdown: Path
    html: Path | None
    report: Report
    notes: list[str]


def write_report(results_dir="results", machine=None, commit=None, output="html/summary.md",
                 history=10, compare=None, repo=".", plots=True, html=False,
                 back_link: str | None = None) -> Written:
    """Write the summary (markdown; with ``html`` also the HTML page) and its plots beside it,
    under ``output``'s folder only."""
    output = Path(output)
    files = output.parent / (output.stem + "_files")
    report = build_report(results_dir, machine, commit, history, compare, repo,
                          plots_dir=files if plots else None, plots_prefix=f"{files.name}/")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(render_markdown(report), encoding="utf-8")
    html_path = None
    if html:
        html_path = output.with_suffix(".html")
        # the page links its own markdown twin (summary/<machine>.md beside summary/<machine>.html)
        html_path.write_text(render_html(report, back_link, markdown=output.name),
                             encoding="utf-8")
    return Written(output, html_path, report, report.notes)


def write_error_page(path: Path, message: str, back_link: str = "index.html") -> Path:
    """The HTML page that says why there is no summary (``message`` is escaped); ``back_link``:
    asv's index.html as seen from ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(None, back_link, error=message), encoding="utf-8")
    return path
