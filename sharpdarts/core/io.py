"""The one atomic write and the one JSON-lines reader/writer of the project.

Every file that must never be seen half-written (run.json, checkpoints, the genotype
registry, shipped figures) goes through :func:`atomic_write`: a temp file in the same
folder, fsync, ``os.replace``, fsync of the folder. A crash or a full disk at any point
leaves the previous content in place.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

_UMASK = os.umask(0o022)
os.umask(_UMASK)


def json_default(obj: Any) -> Any:
    """JSON for numpy scalars and arrays, paths, sets and tensors (as lists)."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that keeps NaN (Python's json reads it back: a NaN loss is a result)."""
    return json.dumps(obj, default=json_default, **kwargs)


def fsync_dir(path: str | os.PathLike) -> None:
    """Flushes a folder's entries (a rename is durable only once its folder is synced)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike, data: str | bytes | Callable[[IO[bytes]], None]) -> Path:
    """Writes ``path`` atomically and durably.

    Args:
        path: the file to (re)write.
        data: text (UTF-8), bytes, or a function that writes into a binary file object
            (e.g. ``lambda f: torch.save(state, f)``).

    Returns:
        The path written. On any failure the temp file is removed, ``path`` keeps its old
        content, and the exception propagates.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            if isinstance(data, str):
                f.write(data.encode("utf-8"))
            elif isinstance(data, (bytes, bytearray, memoryview)):
                f.write(data)
            else:
                data(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """``atomic_write`` of ``obj`` as JSON with a final newline."""
    return atomic_write(path, dumps(obj, indent=indent) + "\n")


def append_jsonl(path: str | os.PathLike, record: Any) -> None:
    """Appends one JSON line and fsyncs it, so that a logged epoch survives a crash."""
    line = dumps(record) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | os.PathLike, *, strict: bool = False) -> list[dict]:
    """Every complete JSON object of a JSON-lines file, in order.

    A line that is not JSON (a last line cut short by a crash, say) is skipped unless
    ``strict``; a complete object that only lacks its final newline is kept. A missing file
    reads as no lines.
    """
    path = Path(path)
    if not path.exists():
        return []
    records: list[dict] = []
    text = path.read_text(encoding="utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            if strict:
                raise ValueError(f"{path}: line {number} is not JSON") from None
            continue
        if isinstance(value, dict):
            records.append(value)
    return records


def write_jsonl(path: str | os.PathLike, records: Iterable[Any]) -> Path:
    """Rewrites a JSON-lines file atomically (used when resume truncates the log)."""
    return atomic_write(path, "".join(dumps(r) + "\n" for r in records))
