"""Recipes cache trained weights; tests must never read or write the user's cache."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _session_cache(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("IFSCOPE_CACHE", str(tmp_path_factory.mktemp("ifscope-cache")))
    yield
    mp.undo()
