"""asv publisher plugins: ``asv publish`` writes perfmodel's summary and vendored scripts too,
and no benchmark asv's scripts would render as markup reaches asv's pages; asv's Regressions
page lists what the merge gate's rule calls slower (regressions.py).

asv.conf.json lists this module in ``plugins`` (as ".perfmodel.report.publisher": the leading dot
makes asv import it by its module name, with the current directory on sys.path). Importing it
defines a subclass of asv's OutputPublisher; ``asv publish`` calls ``publish`` of every such
subclass after it has written its graphs, in the order of their ``order``, and writes index.json
after all of them, so a plain ``asv publish`` gives the whole site (see site.py for what is added
and what is taken out). asv imports the plugins for every command, so this module imports
nothing heavy. What is logged went through perfmodel.untrusted.visible.
"""
from __future__ import annotations

from asv.console import log
from asv.publishing import OutputPublisher

from .site import DESCRIPTION, LABEL  # site.py imports nothing heavy (and not this module)


class SafeNames(OutputPublisher):
    name = "perfmodel-safe-names"
    button_label = "(perfmodel: benchmark names checked)"
    description = "perfmodel: benchmarks that asv's scripts would render as markup left out"
    order = -10  # before asv's summary grid (0), list (1) and regressions (3) read the list

    @classmethod
    def publish(cls, conf, repo, benchmarks, graphs, revisions):
        from .site import clean_asv_data  # noqa: PLC0415

        for line in clean_asv_data(conf.html_dir, benchmarks, graphs):
            log.warning(f"perfmodel: {line}")


class SummaryTables(OutputPublisher):
    name = "perfmodel-summary"
    button_label = LABEL
    description = DESCRIPTION
    order = 10  # after asv's regressions page (order 3); asv writes index.html before any of them

    @classmethod
    def publish(cls, conf, repo, benchmarks, graphs, revisions):
        from ..errors import UserError  # noqa: PLC0415
        from ..untrusted import visible  # noqa: PLC0415
        from .site import publish_site  # noqa: PLC0415

        try:
            site = publish_site(html_dir=conf.html_dir, results_dir=conf.results_dir,
                                repo=conf.repo, label=cls.button_label, title=cls.description)
        except UserError as err:
            log.warning(f"perfmodel: {visible(str(err))}")
            return
        except Exception as err:  # noqa: BLE001 (asv's own pages are written; keep them)
            log.warning(f"perfmodel: internal error, no summary tables: "
                        f"{visible(f'{type(err).__name__}: {err}')[:300]} (please report it)")
            return
        for line in site.lines():
            line = visible(line)
            (log.warning if line.startswith("warning:") else log.info)(f"perfmodel: {line}")


class GateVerdicts(OutputPublisher):
    name = "perfmodel-gate-verdicts"
    button_label = "(perfmodel: regressions by the gate's rule)"
    description = "perfmodel: asv's Regressions page keeps what the merge gate's rule calls slower"
    order = 4  # after asv's regressions (3) wrote regressions.json and its feed

    @classmethod
    def publish(cls, conf, repo, benchmarks, graphs, revisions):
        from ..errors import UserError  # noqa: PLC0415
        from ..untrusted import visible  # noqa: PLC0415
        from .regressions import judge_regressions, rewrite_feed  # noqa: PLC0415

        try:
            lines = judge_regressions(conf.html_dir, conf.results_dir, conf.repo, benchmarks,
                                      graphs, revisions)
            rewrite_feed(conf, benchmarks, revisions)
        except UserError as err:  # no gate settings (benchmarks/tiers.py) to judge by
            log.warning(f"perfmodel: the Regressions page is asv's own list, not the gate's "
                        f"rule: {visible(str(err))}")
            return
        except Exception as err:  # noqa: BLE001 (asv's pages are written; say the list is asv's)
            log.warning(f"perfmodel: internal error, the Regressions page is asv's own list "
                        f"(not the gate's rule): {visible(f'{type(err).__name__}: {err}')[:300]} "
                        "(please report it)")
            return
        for line in lines:
            line = visible(line)
            (log.warning if line.startswith("warning:") else log.info)(f"perfmodel: {line}")
