"""The names the publish step and ``perfmodel track`` import: the report's stages live in load,
cells, seeds, comparisons, history, plots and page (see page.py for the order)."""
from .page import Report, build_report, render_html, render_markdown, write_error_page, write_report

__all__ = ["Report", "build_report", "render_html", "render_markdown", "write_error_page",
           "write_report"]
