"""The report: the summary tables, history and changes from asv results (page.py writes them:
page.write_report), and the site that ``asv publish`` writes with them (site.py, through the
publisher plugin, publisher.py). The ``perfmodel report`` command is
perfmodel/commands/report.py.

Heavy imports (pandas, asv, matplotlib, jinja2) happen only when a function runs, so importing
the package, as asv does for the publisher plugin, stays quick.
"""
from __future__ import annotations

__all__ = ["publish_site"]  # the summary itself: page.write_report


def publish_site(*args, **kwargs):
    """See perfmodel.report.site.publish_site (called by the asv publisher plugin,
    perfmodel/report/publisher.py, during ``asv publish``)."""
    from .site import publish_site as _publish  # noqa: PLC0415
    return _publish(*args, **kwargs)
