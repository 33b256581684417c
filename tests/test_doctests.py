"""The Examples in the public API's docstrings run, and give what they show."""

import doctest
import importlib

import pytest

MODULES = ["stemunmix.columns", "stemunmix.core.selection", "stemunmix.learn.gmm"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    result = doctest.testmod(module, optionflags=flags)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
