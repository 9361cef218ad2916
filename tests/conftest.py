"""Shared test set-up: deterministic seeds and one torch thread per xdist worker."""
import os

import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on two cores: more threads each would only contend.
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _isolated_user_registry(tmp_path, monkeypatch):
    """Promotions made by a test go to a temporary registry, never experiments/genotypes.json."""
    monkeypatch.setenv("SHARPDARTS_GENOTYPES", str(tmp_path / "user_genotypes.json"))
