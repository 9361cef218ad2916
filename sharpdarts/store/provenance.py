"""Where, when and with what a run is made: git state and diff (read by
:func:`sharpdarts.core.run_folder.git_state`), device, packages, host, and the identity of the
process that runs it.

No torch at import: device detection imports it lazily (and reports a CPU without it).
"""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import socket
from pathlib import Path
from typing import Any

from sharpdarts import resources
from sharpdarts.core import run_folder

__all__ = [
    "PACKAGES",
    "collect_provenance",
    "parse_time",
    "process_alive",
    "process_start_time",
    "run_process_alive",
    "utc_now",
]

PACKAGES = ("torch", "torchvision", "numpy", "pandas", "gin-config", "sharpdarts")


# --------------------------------------------------------------------------------------------
# Time


def utc_now() -> str:
    """The current time as ISO 8601 UTC with seconds, e.g. ``2019-03-23T12:00:00+00:00``."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def parse_time(text: str | None) -> float | None:
    """Seconds since the epoch of an ISO 8601 time, or None when absent or unreadable."""
    if not text:
        return None
    try:
        return _dt.datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------
# Device, packages


def _device_info() -> tuple[str, int]:
    """('cpu', 0) or (the name of CUDA device 0, the number of visible CUDA devices)."""
    try:
        import torch
    except Exception:  # noqa: BLE001 - no torch means no accelerator to report
        return "cpu", 0
    try:
        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0), int(torch.cuda.device_count())
    except Exception:  # noqa: BLE001 - a broken driver is still a CPU run
        pass
    return "cpu", 0


def _package_versions() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    if versions.get("sharpdarts") is None:
        import sharpdarts

        versions["sharpdarts"] = getattr(sharpdarts, "__version__", None)
    return versions


def collect_provenance(
    repo_dir: str | os.PathLike | None = None, *, exclude: list | None = None
) -> dict:
    """Where and with what a run is made.

    Args:
        repo_dir: a folder inside the git repository to describe; by default the package's
            own folder, since the code that runs is what must be traced (git finds the
            repository around it; an installed copy outside any repository has no commit).
        exclude: paths (e.g. the results store) whose changes do not make the tree dirty.

    Returns:
        ``{'git': {'commit', 'branch', 'dirty'}, 'diff', 'host', 'python', 'platform',
        'packages', 'device', 'device_count'}``. ``commit`` is None outside a git repository
        or before the first commit; ``dirty`` is None outside a git repository.
    """
    repo = Path(repo_dir) if repo_dir is not None else resources.PACKAGE_DIR
    git = run_folder.git_state(repo, [Path(p) for p in (exclude or [])])
    device, count = _device_info()
    return {
        "git": {"commit": git["commit"], "branch": git["branch"], "dirty": git["dirty"]},
        "diff": git["diff"],
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": _package_versions(),
        "device": device,
        "device_count": count,
    }


# --------------------------------------------------------------------------------------------
# Processes


def process_start_time(pid: int) -> str | None:
    """The process start time (clock ticks since boot, Linux); None where unknown.

    Recorded beside the pid so that a pid reused by another process is not taken for ours.
    """
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields follow the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def process_alive(pid: Any, start_time: Any = None) -> bool:
    """Whether process ``pid`` exists on this host and, when ``start_time`` is given, is
    still the process that started then."""
    try:
        pid = int(pid)
    except (TypeError, ValueError):
        return False
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, owned by someone else
    except OSError:
        return False
    if start_time is not None:
        now = process_start_time(pid)
        if now is not None and now != str(start_time):
            return False  # the pid was reused by another process
    return True


def run_process_alive(info: dict) -> bool:
    """Whether the process of a 'running' run (its run.json ``info``) may still be alive.

    On another host the pid cannot be checked, so the run is taken to be alive.
    """
    if info.get("host") not in (None, socket.gethostname()):
        return True
    return process_alive(info.get("pid"), info.get("pid_start"))
