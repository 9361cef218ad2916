"""A lock that holds on a shared (NFS) filesystem: an exclusively created lock file.

``flock`` is not enough for a results store that many machines share: on NFS it is emulated
(or silently local) depending on the mount, and a lock held by a machine that died is never
released. Here a lock is a file created with ``O_CREAT | O_EXCL``, which NFS (v3 and later)
performs atomically on the server, holding who took it (host, pid, process start, time,
a random token).

A lock is **stale**, and may be broken, when its holder is on this host and its process is
gone, or when it is older than ``stale_after`` seconds (a holder on another host cannot be
checked; the store's critical sections last well under a second). Breaking renames the lock
file to a unique name (atomic), checks that it renamed the very file it judged stale (its
token), and removes it; a lock renamed by mistake (taken fresh in between) is put back.
Release removes the file only while it still holds this holder's token.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import time
from pathlib import Path
from typing import Iterator

from sharpdarts.store.provenance import process_alive, process_start_time

__all__ = ["LockTimeout", "exclusive", "read_lock", "is_stale"]

STALE_AFTER_S = 120.0


class LockTimeout(TimeoutError):
    """The lock was not acquired within the timeout."""


def _holder() -> dict:
    pid = os.getpid()
    return {
        "host": socket.gethostname(),
        "pid": pid,
        "pid_start": process_start_time(pid),
        "time": time.time(),
        "token": secrets.token_hex(8),
    }


def read_lock(path: str | os.PathLike) -> dict | None:
    """The holder recorded in a lock file; None when there is no lock file. A lock file that
    cannot be parsed (being written, or torn) gives ``{}``."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        holder = json.loads(text)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def is_stale(path: str | os.PathLike, holder: dict, stale_after: float = STALE_AFTER_S) -> bool:
    """Whether the lock at ``path`` held by ``holder`` may be broken."""
    if holder.get("host") == socket.gethostname() and "pid" in holder:
        if not process_alive(holder["pid"], holder.get("pid_start")):
            return True
    try:
        age = time.time() - os.stat(path).st_mtime  # the file's own time: hosts' clocks differ
    except FileNotFoundError:
        return False
    return age > stale_after


def _try_create(path: Path, holder: dict) -> bool:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    try:
        os.write(fd, json.dumps(holder).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    return True


def _break(path: Path, judged: dict) -> None:
    """Removes the stale lock ``judged`` (and only it) from ``path``."""
    aside = path.with_name(f"{path.name}.stale.{secrets.token_hex(6)}")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return  # released or broken by someone else meanwhile
    taken = read_lock(aside) or {}
    if judged and taken.get("token") != judged.get("token"):
        # Someone took the lock between our look and our rename: give it back.
        with contextlib.suppress(FileExistsError, FileNotFoundError):
            os.link(aside, path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(aside)


@contextlib.contextmanager
def exclusive(
    path: str | os.PathLike,
    *,
    timeout: float | None = 600.0,
    stale_after: float = STALE_AFTER_S,
    poll: float = 0.02,
) -> Iterator[dict]:
    """Holds the lock file ``path`` for a ``with`` block (across processes and hosts).

    Args:
        path: the lock file (its folder is created when missing).
        timeout: seconds to wait for the lock; None waits for ever.
        stale_after: a lock older than this (seconds) is taken to be left by a dead holder.
        poll: the first wait between tries (it grows to 0.5 s, with jitter).

    Yields:
        The holder record written into the lock file.

    Raises:
        LockTimeout: the lock was not acquired within ``timeout``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = _holder()
    start, wait = time.monotonic(), poll
    while not _try_create(path, holder):
        current = read_lock(path)
        if current is not None and is_stale(path, current, stale_after):
            _break(path, current)
            continue
        if timeout is not None and time.monotonic() - start > timeout:
            raise LockTimeout(f"could not lock {path} within {timeout:g} s (held by {current})")
        time.sleep(wait * (0.5 + secrets.randbelow(1000) / 1000))
        wait = min(wait * 1.5, 0.5)
    try:
        yield holder
    finally:
        if (read_lock(path) or {}).get("token") == holder["token"]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
