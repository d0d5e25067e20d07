"""asv publisher plugin: ``asv publish`` writes perfmodel's summary and vendored scripts too.

asv.conf.json lists this module in ``plugins`` (as ".perfmodel.report.publisher": the leading dot
makes asv import it by its module name, with the current directory on sys.path). Importing it
defines a subclass of asv's OutputPublisher; ``asv publish`` calls ``publish`` of every such
subclass after it has written its own pages and graphs, so a plain ``asv publish`` gives the whole
site (see site.py for what is added). asv imports the plugins for every command, so this module
imports nothing heavy.
"""
from __future__ import annotations

from asv.console import log
from asv.publishing import OutputPublisher


class SummaryTables(OutputPublisher):
    name = "perfmodel-summary"
    button_label = "Summary tables"
    description = "perfmodel: the seed tables, history and changes of each machine, with plots"
    order = 10  # after asv's regressions page (order 3); asv writes index.html before any of them

    @classmethod
    def publish(cls, conf, repo, benchmarks, graphs, revisions):
        from ..errors import UserError  # noqa: PLC0415
        from .site import publish_site  # noqa: PLC0415

        try:
            site = publish_site(html_dir=conf.html_dir, results_dir=conf.results_dir,
                                repo=conf.repo, label=cls.button_label, title=cls.description)
        except UserError as err:
            log.warning(f"perfmodel: {err}")
            return
        for line in site.lines():
            (log.warning if line.startswith("warning:") else log.info)(f"perfmodel: {line}")
