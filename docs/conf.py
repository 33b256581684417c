"""Sphinx configuration of the stemunmix documentation."""

import stemunmix

project = "stemunmix"
author = "the stemunmix developers"
copyright = "2026, the stemunmix developers"
version = release = stemunmix.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "notebooks/.ipynb_checkpoints"]
myst_heading_anchors = 3
autodoc_member_order = "bysource"
autodoc_typehints = "none"
napoleon_numpy_docstring = True
napoleon_google_docstring = False
html_theme = "alabaster"
html_title = f"stemunmix {version}"
suppress_warnings = ["myst.xref_missing"]
