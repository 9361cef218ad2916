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
    for item in items:  # reports carry it to the summary below (xdist's controller too)
        if item.get_closest_marker("slurm"):
            item.user_properties.append(("marker", "slurm"))


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


def pytest_terminal_summary(terminalreporter):
    """One line on the tests marked slurm, so that a log shows whether they ran on a cluster."""
    outcomes: dict[str, str] = {}
    why = ""
    for outcome in ("passed", "failed", "error", "skipped"):
        for report in terminalreporter.stats.get(outcome, []):
            if ("marker", "slurm") in getattr(report, "user_properties", []):
                outcomes.setdefault(report.nodeid, outcome)
                if outcome == "skipped" and isinstance(report.longrepr, tuple):
                    why = f" ({report.longrepr[2].removeprefix('Skipped: ')})"
    if outcomes:
        counts = {o: list(outcomes.values()).count(o) for o in dict.fromkeys(outcomes.values())}
        terminalreporter.write_line(
            "tests marked slurm: " + ", ".join(f"{n} {o}" for o, n in counts.items()) + why
        )
