"""The whole analysis in one call, and its report (PNG figures, report.html
and the results files).

An edge of the package (DESIGN.md layer 3), in four rooms:

- ``pipeline``: :func:`analyze`, the steps through the public signal methods
  (what ``stemunmix demo`` and ``stemunmix analyze`` do is what a notebook
  user can do step by step), and the :class:`Analysis` it returns;
- ``choices``: what the pipeline chooses from the data where the user gives
  nothing (window, components, domains), each with why; the rules
  themselves are array functions in :mod:`stemunmix.core.selection`;
- ``figures``: the report's figures (matplotlib ``Figure`` objects, no
  pyplot);
- ``differences``: what each domain differs in (displacement, intensity,
  width), with sigma and significance;
- ``page``: ``report.html``, ``summary.json`` and the saved signals;
- ``folder``: the results folder, written whole or not at all (staged,
  ``manifest.json`` last, swapped into place, locked), checked on load.
"""

from stemunmix.report.choices import choose_window
from stemunmix.report.folder import (
    ResultsError,
    check_results,
    load_results,
    results_folder,
)
from stemunmix.report.page import save_results, save_signal, summary, write_report
from stemunmix.report.pipeline import (
    METHODS,
    Analysis,
    analyze,
    as_image,
    domain_agreement,
)

__all__ = [
    "METHODS",
    "Analysis",
    "ResultsError",
    "check_results",
    "load_results",
    "results_folder",
    "analyze",
    "as_image",
    "choose_window",
    "domain_agreement",
    "save_results",
    "save_signal",
    "summary",
    "write_report",
]
