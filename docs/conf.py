"""Sphinx configuration for the trioraft documentation.

Build (from the repository root)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

Only Sphinx's built-in extensions are used, and nothing is fetched from the network.
"""

from __future__ import annotations

import os
import sys

# Import trioraft from this checkout, even when it is not installed; its pure-Python
# build, whose classes and functions keep their docstrings and signatures (the compiled
# build's do not: docs/performance.rst, "Issue 24").
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
os.environ["TRIORAFT_PURE"] = "1"

import trioraft

project = "trioraft"
author = "The trioraft developers"
copyright = "the trioraft developers"
version = trioraft.__version__
release = trioraft.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
]

root_doc = "index"
exclude_patterns = ["_build"]
nitpicky = False

highlight_language = "python3"

# autodoc: the public names live in private modules (trioraft._server, ...), and the
# reference documents each one explicitly under ``trioraft`` / ``trioraft.testing``.
autodoc_typehints = "description"
# Types of parameters the docstrings describe, and non-None return types. (With "all",
# every constructor and function would get an undescribed parameter list.)
autodoc_typehints_description_target = "documented_params"
autodoc_typehints_format = "short"
autodoc_member_order = "bysource"
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = False
autodoc_inherit_docstrings = True

html_theme = "alabaster"
html_title = f"trioraft {release}"
html_theme_options = {
    "description": "Raft consensus for Python, built on Trio",
    "fixed_sidebar": True,
}


def _tidy_signature(app, what, name, obj, options, signature, return_annotation):
    # ``start_server``/``serve`` mark an omitted ``init_arg`` with a private sentinel
    # object; show it the way the API contract writes it.
    if signature:
        signature = signature.replace("=<object object>", "=<omitted>")
    return signature, return_annotation


def setup(app):
    app.connect("autodoc-process-signature", _tidy_signature)
