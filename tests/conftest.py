"""Shared test set-up: deterministic seeds and one torch thread per xdist worker."""

import os

import gin
import pytest
import torch

# Tests use tiny tensors: one thread each avoids contention between xdist workers (and
# with anything else on a 2-core machine), which otherwise makes small convolutions 10x slower.
torch.set_num_threads(1)
# Commands the tests start in subprocesses inherit one thread too.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_collection_modifyitems(config, items):
    """The tests marked slow (seconds each: runs, subprocesses, compilation) go first.

    pytest-xdist deals the first quarter of the tests out in turn and the rest to whichever
    worker is free: with the long tests at the front the workers end together, where a long
    test dealt late (test_sweep.py sorts last) kept one worker going while the other waited.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _clean_gin():
    """Gin bindings are global: a test's config (e.g. a smoke run's tiny widths) must not leak
    into the next test of the same worker, which may build a configurable with defaults."""
    gin.clear_config()
    yield
    gin.clear_config()


@pytest.fixture(autouse=True)
def _isolated_user_registry(tmp_path, monkeypatch):
    """Promotions made by a test go to a temporary registry, never experiments/genotypes.json."""
    monkeypatch.setenv("SHARPDARTS_GENOTYPES", str(tmp_path / "user_genotypes.json"))
