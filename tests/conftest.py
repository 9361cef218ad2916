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


def _estimate(item) -> float:
    """The seconds a slow test's marker states (``@pytest.mark.slow(30)``); 1 if it states none."""
    marker = item.get_closest_marker("slow")
    return float(marker.args[0]) if marker.args else 1.0


def pytest_collection_modifyitems(config, items):
    """The tests marked slow (seconds each: runs, subprocesses, Slurm) go first, shared out
    among the xdist workers by their stated seconds.

    pytest-xdist's load scheduling hands each worker a first run of consecutive tests (a
    quarter of its share: ``len(items) // workers // 4``, xdist 3.x) and the rest to whichever
    worker is free. So the slow tests are dealt longest first, each to the worker whose first
    run holds the fewest seconds so far, and each first run is filled up with quick tests: the
    workers start their long tests together and end together. (Sorted to the front in one
    run, the slow tests all went to one worker, which ran a minute after the others ended.)
    Should xdist deal otherwise, every test still runs; only the balance suffers.
    """
    for item in items:  # reports carry it to the summary below (xdist's controller too)
        if item.get_closest_marker("slurm"):
            item.user_properties.append(("marker", "slurm"))
    slow = sorted((i for i in items if i.get_closest_marker("slow")), key=_estimate, reverse=True)
    quick = [i for i in items if not i.get_closest_marker("slow")]
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    first_run = max(len(items) // workers // 4, 2)
    runs: list[list] = [[] for _ in range(workers)]
    seconds = [0.0] * workers
    for item in slow:
        j = min(range(workers), key=lambda k: (seconds[k], len(runs[k])))
        runs[j].append(item)
        seconds[j] += _estimate(item)
    if workers == 1 or max(len(run) for run in runs) > first_run:
        items[:] = slow + quick
        return
    order = []
    for run in runs:
        take = first_run - len(run)
        order += run + quick[:take]
        del quick[:take]
    items[:] = order + quick


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
