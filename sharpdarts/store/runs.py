"""One run's folder: provenance, metrics log, status and resume.

A run lives in ``RESULTS/runs/<experiment>/<run_id>/`` (the experiment name may contain
slashes, e.g. ``cifar10/sharpdarts``) and holds:

- ``run.json``: what was run (experiment, seed, kind, command, config hash), where and with what
  (git commit/branch/dirty, host, device, package versions), and how it went (status, reason,
  sessions, wall seconds, final metrics). Every write is atomic: a temp file in the same folder,
  fsync, then ``os.replace``, so a crash leaves either the old or the new file, never a torn one.
- ``config.gin`` (the config as asked) and ``operative_config.gin`` (written by the engine).
- ``git.diff`` when the working tree was dirty (``git.resume<N>.diff`` for a later session).
- ``metrics.jsonl``: one JSON object per epoch, appended and fsynced; an epoch is never logged
  twice (``log_epoch`` refuses, ``truncate_metrics`` drops epochs after a checkpoint on resume).
- ``checkpoint.pt``: written by the engine at ``Run.checkpoint_path``.

A run's key is (experiment, seed, config hash). ``start_run`` decides, under an exclusive file
lock (``fcntl.flock`` on ``RESULTS/runs/.lock``), whether to skip a completed run, resume an unfinished one in its own folder, or start a
new folder. Decisions, in order, over the folders that share the key:

1. any ``completed`` -> ``'skip'`` (the newest completed run is returned);
2. any ``running`` whose process is alive (same host, pid alive and not reused) -> UserError;
   ``running`` on another host cannot be checked and is treated as alive;
3. the newest resumable one -> ``'resume'``: ``interrupted``, ``running`` with a dead process
   (a crash or a kill), and ``failed`` unless it was failed with ``resumable=False``;
4. otherwise -> ``'new'``.

Failed runs resume by default (a crash, an out-of-memory error, a bug fixed since: the checkpoint
is still good). A run stopped because the loss became NaN or diverged should be failed with
``run.fail(reason, resumable=False)``: resuming from its checkpoint would only repeat the
divergence, so the next start of that key begins from scratch in a new folder and the failed
folder is kept as a record (tables only aggregate completed runs).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import difflib
import fcntl
import hashlib
import importlib.metadata
import json
import operator
import os
import platform
import re
import secrets
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from sharpdarts.errors import UserError

__all__ = [
    "Run",
    "collect_provenance",
    "config_hash",
    "find_run",
    "iter_run_dirs",
    "start_run",
    "utc_now",
]

RUN_JSON = "run.json"
METRICS = "metrics.jsonl"
CONFIG = "config.gin"
CHECKPOINT = "checkpoint.pt"
GIT_DIFF = "git.diff"
STATUSES = ("running", "completed", "failed", "interrupted")
KINDS = ("search", "train", "evaluate")
RUN_ID_RE = re.compile(r"^\d{8}T\d{6}(?:\d{0,6})?Z-[0-9a-f]{4,}$")
# Fields that start_run owns: ``extra`` may not set them (they define the key and the state).
RESERVED = frozenset({
    "experiment", "run_id", "seed", "kind", "config_hash", "status", "reason", "started",
    "ended", "session_started", "sessions", "wall_seconds", "wall_seconds_done", "resumes",
    "pid", "pid_start", "final", "last_epoch", "updated",
})
PACKAGES = ("torch", "torchvision", "numpy", "pandas", "gin-config", "sharpdarts")
# Untracked files larger than this are named in git.diff but not copied into it.
_MAX_UNTRACKED_BYTES = 256 * 1024
# mkstemp creates 0600 files; results are shared data, so honour the umask like open() does.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_EXPERIMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+=-]*(/[A-Za-z0-9_][A-Za-z0-9_.+=-]*)*$")


# --------------------------------------------------------------------------------------------
# Small helpers


def utc_now() -> str:
    """The current time as ISO 8601 UTC with seconds, e.g. ``2019-03-23T12:00:00+00:00``."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _parse_time(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return _dt.datetime.fromisoformat(text).timestamp()
    except (TypeError, ValueError):
        return None


def _json_default(obj: Any) -> Any:
    """Make numpy/torch scalars and arrays, paths and sets JSON-serialisable."""
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if hasattr(obj, "tolist"):  # numpy arrays and scalars, torch tensors
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "_asdict"):  # namedtuples such as Genotype
        return obj._asdict()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _dumps(obj: Any, **kwargs: Any) -> str:
    # NaN is kept (Python's json reads it back): a NaN loss is a result worth recording.
    return json.dumps(obj, default=_json_default, **kwargs)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically: temp file in the same folder, fsync, os.replace.

    On any failure the temp file is removed and ``path`` keeps its old content.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with contextlib.suppress(OSError):
            os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _normalise_config(text: str) -> str:
    """Config text without comments, trailing spaces, blank lines or CRLF line ends.

    Comments start at a ``#`` outside a quoted string. Line order is kept: in gin a later
    binding overrides an earlier one, so order is part of the meaning.
    """
    lines = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        out, quote, escaped = [], None, False
        for ch in line:
            if quote:
                out.append(ch)
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == quote:
                    quote = None
            elif ch in "'\"":
                quote = ch
                out.append(ch)
            elif ch == "#":
                break
            else:
                out.append(ch)
        stripped = "".join(out).rstrip()
        if stripped.strip():
            lines.append(stripped)
    return "\n".join(lines) + "\n"


def config_hash(config_text: str) -> str:
    """The first 12 hex digits of the sha256 of the normalised config text.

    Comments, blank lines, trailing whitespace and line-end style do not change the hash.
    """
    return hashlib.sha256(_normalise_config(config_text).encode("utf-8")).hexdigest()[:12]


def _check_experiment(experiment: str) -> str:
    experiment = str(experiment).strip().strip("/")
    if not experiment or not _EXPERIMENT_RE.match(experiment) or ".." in experiment.split("/"):
        raise UserError(
            f"invalid experiment name {experiment!r}: use letters, digits, '_', '-', '.', "
            "separated by '/' (e.g. 'cifar10/sharpdarts')."
        )
    return experiment


# --------------------------------------------------------------------------------------------
# Provenance


def _git(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            errors="replace",
            timeout=60,
            env={**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if check and proc.returncode != 0:
        return None
    return proc


def _git_state(repo_dir: Path, exclude: list[Path]) -> dict:
    """Commit, branch, dirty flag and diff of the repository holding ``repo_dir``.

    Not a git repository (or no git): everything None. No commit yet: commit None and dirty
    True whenever files exist (nothing is committed, so nothing can be traced). Files under
    ``exclude`` (the results store) never make the tree dirty.
    """
    state = {"commit": None, "branch": None, "dirty": None, "diff": ""}
    top = _git(repo_dir, "rev-parse", "--show-toplevel")
    if top is None:
        return state
    root = Path(top.stdout.strip())
    excludes = []
    for path in exclude:
        with contextlib.suppress(ValueError, OSError):
            rel = Path(path).resolve().relative_to(root.resolve())
            if str(rel) not in ("", "."):
                excludes.append(f":(exclude){rel.as_posix()}")
    spec = ["--", ".", *excludes]

    head = _git(root, "rev-parse", "--verify", "-q", "HEAD")
    state["commit"] = head.stdout.strip() if head is not None else None
    branch = _git(root, "symbolic-ref", "-q", "--short", "HEAD")
    state["branch"] = branch.stdout.strip() if branch is not None else None
    if state["branch"] is None and state["commit"] is not None:
        state["branch"] = "HEAD"  # detached

    status = _git(root, "status", "--porcelain=v1", "-z", "--untracked-files=all", *spec)
    if status is None:
        return state
    entries = [e for e in status.stdout.split("\0") if e]
    untracked = [e[3:] for e in entries if e.startswith("?? ")]
    state["dirty"] = bool(entries)
    if not state["dirty"]:
        return state

    parts = []
    if state["commit"] is not None:
        diff = _git(root, "diff", "--no-color", "--no-ext-diff", "HEAD", *spec)
    else:
        diff = _git(root, "diff", "--no-color", "--no-ext-diff", "--cached", *spec)
    if diff is not None and diff.stdout:
        parts.append(diff.stdout)
    skipped = []
    for name in untracked:
        file = root / name
        try:
            too_big = file.stat().st_size > _MAX_UNTRACKED_BYTES
        except OSError:
            continue
        if too_big:
            skipped.append(name)
            continue
        new = _git(root, "diff", "--no-color", "--no-index", "--", "/dev/null", name, check=False)
        if new is not None and new.returncode in (0, 1) and new.stdout:
            parts.append(new.stdout)
    if skipped:
        parts.append(
            "# untracked files too large to include:\n"
            + "".join(f"#   {name}\n" for name in skipped)
        )
    state["diff"] = "".join(p if p.endswith("\n") else p + "\n" for p in parts)
    return state


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


def _default_repo_dir() -> Path:
    # The code that runs is what must be traced: the repository holding this package.
    return Path(__file__).resolve().parents[2]


def collect_provenance(repo_dir: str | os.PathLike | None = None, *,
                       exclude: list | None = None) -> dict:
    """Where and with what a run is made.

    Args:
        repo_dir: a folder inside the git repository to describe; by default the one that
            holds the sharpdarts package.
        exclude: paths (e.g. the results store) whose changes do not make the tree dirty.

    Returns:
        ``{'git': {'commit', 'branch', 'dirty'}, 'diff', 'host', 'python', 'platform',
        'packages', 'device', 'device_count'}``. ``commit`` is None outside a git repository
        or before the first commit; ``dirty`` is None outside a git repository.
    """
    repo = Path(repo_dir) if repo_dir is not None else _default_repo_dir()
    git = _git_state(repo, [Path(p) for p in (exclude or [])])
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


def _pid_start_time(pid: int) -> str | None:
    """The process start time (clock ticks since boot, Linux); None where unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields follow the last ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    return fields[19] if len(fields) > 19 else None


def _pid_alive(pid: Any, start_time: Any = None) -> bool:
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
        now = _pid_start_time(pid)
        if now is not None and now != str(start_time):
            return False  # the pid was reused by another process
    return True


def _is_alive(info: dict) -> bool:
    """Whether a 'running' run's process may still be alive.

    On another host the pid cannot be checked, so the run is taken to be alive.
    """
    if info.get("host") not in (None, socket.gethostname()):
        return True
    return _pid_alive(info.get("pid"), info.get("pid_start"))


# --------------------------------------------------------------------------------------------
# The run


class Run:
    """One run folder. Every change to ``run.json`` goes through :meth:`update` (atomic)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.info: dict = json.loads((self.path / RUN_JSON).read_text(encoding="utf-8"))
        if not isinstance(self.info, dict):
            raise ValueError(f"{self.path / RUN_JSON} does not hold a JSON object")
        self._epochs: set[int] | None = None  # cache of logged epochs
        self._session_t0: float | None = None  # monotonic start of the session this process owns
        self._session_wall0: float | None = None  # wall time before it

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, status={self.status!r})"

    # ------------------------------------------------------------------ properties
    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def experiment(self) -> str | None:
        return self.info.get("experiment")

    @property
    def status(self) -> str | None:
        return self.info.get("status")

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    # ------------------------------------------------------------------ run.json
    def reload(self) -> dict:
        self.info = json.loads((self.path / RUN_JSON).read_text(encoding="utf-8"))
        return self.info

    def update(self, **fields: Any) -> dict:
        """Merge ``fields`` into run.json and write it atomically.

        The in-memory ``info`` changes only once the new file is in place, so a failed write
        leaves both the file and ``info`` as they were.
        """
        new = {**self.info, **fields, "updated": utc_now()}
        text = _dumps(new, indent=2, sort_keys=False) + "\n"
        _atomic_write_text(self.path / RUN_JSON, text)
        self.info = json.loads(text)
        return self.info

    def write_text(self, name: str, text: str) -> Path:
        """Write a text file (e.g. 'config.gin', 'operative_config.gin') into the folder."""
        name = str(name)
        if Path(name).name != name or name in ("", ".", "..", RUN_JSON, METRICS):
            raise ValueError(f"not a plain file name for a run folder: {name!r}")
        path = self.path / name
        _atomic_write_text(path, text)
        return path

    # ------------------------------------------------------------------ wall time
    def _own_session(self) -> None:
        """Start timing the session this process runs (called by start_run)."""
        self._session_t0 = time.monotonic()
        self._session_wall0 = float(self.info.get("wall_seconds_done") or 0.0)

    def wall_seconds(self) -> float:
        """Finished sessions plus the current one (if this process owns it)."""
        done = float(self.info.get("wall_seconds_done") or 0.0)
        if self.info.get("status") != "running":
            return float(self.info.get("wall_seconds") or done)
        if self._session_t0 is not None:
            return (self._session_wall0 or 0.0) + (time.monotonic() - self._session_t0)
        start = _parse_time(self.info.get("session_started"))
        return done + (max(0.0, time.time() - start) if start is not None else 0.0)

    def _close_session(self, end_time: str | None = None) -> dict:
        """The fields that close the current session (ended, wall_seconds, sessions)."""
        ended = end_time or utc_now()
        if end_time is None and self._session_t0 is not None:
            seconds = time.monotonic() - self._session_t0
        else:
            start = _parse_time(self.info.get("session_started"))
            stop = _parse_time(ended)
            seconds = max(0.0, stop - start) if start is not None and stop is not None else 0.0
        done = float(self.info.get("wall_seconds_done") or 0.0) + seconds
        sessions = [dict(s) for s in self.info.get("sessions") or []]
        if sessions and sessions[-1].get("ended") is None:
            sessions[-1].update(ended=ended, seconds=round(seconds, 3))
        self._session_t0 = None
        return {
            "ended": ended,
            "wall_seconds": round(done, 3),
            "wall_seconds_done": round(done, 3),
            "sessions": sessions,
        }

    # ------------------------------------------------------------------ metrics
    def _read_lines(self) -> tuple[list[dict], bool]:
        """Valid records, and whether anything (torn or bad lines) had to be dropped."""
        try:
            raw = self.metrics_path.read_bytes()
        except FileNotFoundError:
            return [], False
        records, dropped = [], False
        lines = raw.split(b"\n")
        if lines and lines[-1] != b"":
            dropped = True  # a torn last line: a crash mid-append
        for line in lines[:-1]:
            if not line.strip():
                continue
            try:
                rec = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                dropped = True
                continue
            if (not isinstance(rec, dict) or not isinstance(rec.get("epoch"), int)
                    or isinstance(rec.get("epoch"), bool)):
                dropped = True
                continue
            records.append(rec)
        return records, dropped

    def metrics(self) -> list[dict]:
        """Every complete epoch record, in file order (a torn last line is ignored)."""
        return self._read_lines()[0]

    def logged_epochs(self) -> list[int]:
        return [int(r["epoch"]) for r in self.metrics()]

    def _rewrite_metrics(self, records: list[dict]) -> None:
        text = "".join(_dumps(r) + "\n" for r in records)
        _atomic_write_text(self.metrics_path, text)
        self._epochs = {int(r["epoch"]) for r in records}

    def truncate_metrics(self, last_epoch: int | None) -> list[dict]:
        """Atomically keep only the records with ``epoch <= last_epoch`` (None keeps none).

        Used on resume from a checkpoint of ``last_epoch`` so that no epoch is ever logged
        twice; a torn last line (a crash mid-append) is dropped too. Returns what is kept.
        """
        records, dropped = self._read_lines()
        keep = [r for r in records if last_epoch is not None and int(r["epoch"]) <= last_epoch]
        if dropped or len(keep) != len(records) or not self.metrics_path.exists():
            self._rewrite_metrics(keep)
        else:
            self._epochs = {int(r["epoch"]) for r in keep}
        last = max((int(r["epoch"]) for r in keep), default=None)
        self.update(last_epoch=last)
        return keep

    def log_epoch(self, record: dict) -> None:
        """Append one epoch's record to metrics.jsonl (flushed and fsynced).

        Raises:
            ValueError: the record has no integer ``epoch``, or that epoch is already logged.
        """
        if "epoch" not in record:
            raise ValueError("an epoch record needs an 'epoch' field")
        try:
            if isinstance(record["epoch"], bool):
                raise TypeError
            epoch = operator.index(record["epoch"])
        except TypeError:
            raise ValueError(f"epoch must be an integer, got {record['epoch']!r}") from None
        if self._epochs is None:
            records, dropped = self._read_lines()
            if dropped:  # never append after a torn line: it would corrupt the new record
                self._rewrite_metrics(records)
            self._epochs = {int(r["epoch"]) for r in records}
        if epoch in self._epochs:
            raise ValueError(
                f"epoch {epoch} is already logged in {self.metrics_path}; "
                "call truncate_metrics(last_checkpoint_epoch) when resuming"
            )
        line = _dumps({**record, "epoch": epoch}) + "\n"
        with open(self.metrics_path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self._epochs.add(epoch)
        self.update(last_epoch=max(self._epochs), wall_seconds=round(self.wall_seconds(), 3))

    # ------------------------------------------------------------------ endings
    def finish(self, final: dict, **fields: Any) -> dict:
        """Mark the run completed with its final metrics (see docs/CONVENTIONS.md)."""
        return self.update(**{**fields, **self._close_session(), "status": "completed",
                              "reason": None, "final": dict(final)})

    def fail(self, reason: str, *, resumable: bool = True, **fields: Any) -> dict:
        """Mark the run failed. ``resumable=False`` (a NaN loss, a divergence) makes the next
        start of this key begin afresh in a new folder instead of resuming this one."""
        return self.update(**{**fields, **self._close_session(), "status": "failed",
                              "reason": str(reason), "resumable": bool(resumable)})

    def interrupt(self, reason: str = "interrupted", **fields: Any) -> dict:
        """Mark the run interrupted (Ctrl-C, SIGTERM, a time limit): it resumes next start."""
        return self.update(**{**fields, **self._close_session(), "status": "interrupted",
                              "reason": str(reason)})

    @contextlib.contextmanager
    def guard(self) -> Iterator["Run"]:
        """Mark the run interrupted on KeyboardInterrupt/SystemExit and failed on an exception
        when the body leaves it 'running'; the exception propagates."""
        try:
            yield self
        except (KeyboardInterrupt, SystemExit) as exc:
            if self.status == "running":
                self.interrupt(f"{type(exc).__name__}: {exc}".rstrip(": "))
            raise
        except BaseException as exc:
            if self.status == "running":
                self.fail(f"{type(exc).__name__}: {exc}")
            raise


# --------------------------------------------------------------------------------------------
# Finding runs


def iter_run_dirs(results_dir: str | os.PathLike) -> Iterator[Path]:
    """Every run folder under ``results_dir/runs``, readable or not, in sorted order.

    A run folder is one that holds run.json, metrics.jsonl or config.gin, or whose name looks
    like a run id. The search does not descend into run folders.
    """
    root = Path(results_dir) / "runs"
    if not root.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        if here == root:
            continue
        if (RUN_JSON in filenames or METRICS in filenames or CONFIG in filenames
                or RUN_ID_RE.match(here.name)):
            dirnames[:] = []
            yield here


def _new_run_id() -> str:
    now = _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


def find_run(results_dir: str | os.PathLike, run_id_or_path: str | os.PathLike) -> Run:
    """The run named by a run id (anywhere under ``results_dir/runs``), an
    ``experiment/run_id`` path, a unique prefix of a run id, or a run folder path."""
    text = str(run_id_or_path).strip()
    if text.startswith("run:"):
        text = text[4:]
    as_path = Path(text)
    if text and (as_path / RUN_JSON).is_file():
        return _load_or_user_error(as_path)
    rel = Path(results_dir) / "runs" / text
    if text and (rel / RUN_JSON).is_file():
        return _load_or_user_error(rel)
    folders = [d for d in iter_run_dirs(results_dir) if (d / RUN_JSON).is_file()]
    exact = [d for d in folders if d.name == text]
    if not exact:
        exact = [d for d in folders if text and d.name.startswith(text)]
    if len(exact) == 1:
        return _load_or_user_error(exact[0])
    if len(exact) > 1:
        names = ", ".join(str(d.relative_to(Path(results_dir) / "runs")) for d in exact[:10])
        raise UserError(f"run {text!r} is ambiguous under {results_dir}: it matches {names}.")
    ids = [d.name for d in folders]
    close = difflib.get_close_matches(text, ids, n=5, cutoff=0.5)
    hint = f" Close matches: {', '.join(close)}." if close else (
        f" There are {len(ids)} runs there." if ids else " There are no runs there yet.")
    raise UserError(f"unknown run {text!r} under {Path(results_dir) / 'runs'}.{hint}")


def _load_or_user_error(path: Path) -> Run:
    try:
        return Run(path)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read the run in {path}: {exc}") from exc


# --------------------------------------------------------------------------------------------
# Starting a run


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _same_key(exp_dir: Path, experiment: str, seed: Any, chash: str) -> list[Run]:
    runs = []
    if not exp_dir.is_dir():
        return runs
    for child in sorted(exp_dir.iterdir()):
        if not (child / RUN_JSON).is_file():
            continue
        try:
            run = Run(child)
        except (OSError, ValueError):
            continue  # a corrupt folder is never resumed nor overwritten
        info = run.info
        if (info.get("experiment") == experiment and info.get("config_hash") == chash
                and info.get("seed") == seed):
            runs.append(run)
    return runs


def _started_key(run: Run) -> tuple:
    return (run.info.get("started") or "", run.run_id)


def _decide(candidates: list[Run]) -> tuple[str, Run | None]:
    completed = [r for r in candidates if r.status == "completed"]
    if completed:
        return "skip", max(completed, key=lambda r: (r.info.get("ended") or "", r.run_id))
    for run in candidates:
        if run.status == "running" and _is_alive(run.info):
            where = run.info.get("host")
            raise UserError(
                f"this experiment, seed and config is already running in {run.path} "
                f"(pid {run.info.get('pid')} on {where}). Wait for it to end; if that process "
                "is gone (e.g. another machine crashed), set its run.json status to "
                "\"interrupted\" to resume it."
            )
    resumable = [
        r for r in candidates
        if r.status in ("interrupted", "running")
        or (r.status == "failed" and r.info.get("resumable", True))
    ]
    if resumable:
        return "resume", max(resumable, key=_started_key)
    return "new", None


def start_run(
    results_dir: str | os.PathLike,
    experiment: str,
    seed: int,
    config_text: str,
    *,
    command: list[str],
    kind: str,
    allow_dirty: bool = True,
    extra: dict | None = None,
    repo_dir: str | os.PathLike | None = None,
) -> tuple[Run, str]:
    """Start, resume or skip the run of (experiment, seed, config) in ``results_dir``.

    Args:
        results_dir: the results store; runs go to ``results_dir/runs/<experiment>/<run_id>``.
        experiment: the experiment name (may contain '/').
        seed: the random seed.
        config_text: the config as asked (saved as config.gin; its hash is part of the key).
        command: the command line (a list of arguments).
        kind: 'search', 'train' or 'evaluate'.
        allow_dirty: when False, a dirty working tree (or one that is not a git repository)
            is a UserError, raised before anything is written.
        extra: more fields for run.json (e.g. genotype name and lineage, gin_params, smoke,
            or ``device_count`` when a run uses fewer devices than are visible).
        repo_dir: the git repository to describe (default: the one holding sharpdarts).

    Returns:
        ``(run, decision)``, decision being 'new', 'resume' or 'skip'. A skipped run is
        returned untouched; a resumed one is 'running' again in its own folder (the caller
        then loads its checkpoint and calls ``truncate_metrics(checkpoint_epoch)``).

    Raises:
        UserError: the same key is running in a live process, the tree is dirty and
            ``allow_dirty`` is False, or the experiment name or kind is invalid.
    """
    experiment = _check_experiment(experiment)
    if kind not in KINDS:
        raise UserError(f"unknown run kind {kind!r}; expected one of {', '.join(KINDS)}.")
    extra = dict(extra or {})
    if RESERVED & extra.keys():
        raise ValueError(f"start_run's extra may not set {sorted(RESERVED & extra.keys())}")
    results_dir = Path(results_dir)
    chash = config_hash(config_text)
    # Provenance first (git can be slow), outside the lock.
    prov = collect_provenance(repo_dir, exclude=[results_dir])
    git = prov["git"]

    def check_dirty() -> None:
        if allow_dirty:
            return
        if git["commit"] is None or git["dirty"] is None:
            raise UserError(
                "the code is not at a git commit (not a git repository, or no commit yet), so "
                "this run could not be traced to its code. Commit your changes, or pass "
                "--allow-dirty."
            )
        if git["dirty"]:
            raise UserError(
                f"the git working tree is dirty (uncommitted changes on {git['branch']} at "
                f"{git['commit'][:12]}). Commit your changes, or pass --allow-dirty to record "
                "the diff beside the run."
            )

    exp_dir = results_dir / "runs" / experiment
    with _locked(results_dir / "runs" / ".lock"):
        decision, run = _decide(_same_key(exp_dir, experiment, seed, chash))
        if decision == "skip":
            return run, "skip"
        check_dirty()
        host = socket.gethostname()
        pid = os.getpid()
        now = utc_now()
        session = {"started": now, "ended": None, "pid": pid, "host": host,
                   "commit": git["commit"], "dirty": git["dirty"], "device": prov["device"]}
        if decision == "resume":
            info = run.info
            fields: dict = {}
            if info.get("status") == "running":
                # The process died without a word: its session ends at its last update.
                fields.update(run._close_session(info.get("updated") or info.get("started")))
                fields["crashes"] = int(info.get("crashes") or 0) + 1
            sessions = fields.get("sessions", [dict(s) for s in info.get("sessions") or []])
            n = int(info.get("resumes") or 0) + 1
            for tmp in run.path.glob(f".{RUN_JSON}.*.tmp"):  # left by a kill mid-write
                with contextlib.suppress(OSError):
                    tmp.unlink()
            if git["dirty"] and prov["diff"]:
                _atomic_write_text(run.path / f"git.resume{n}.diff", prov["diff"])
            fields.update(
                status="running", reason=None, resumable=None, ended=None, pid=pid,
                pid_start=_pid_start_time(pid), host=host, session_started=now,
                resumes=n, sessions=[*sessions, session],
                last_command=list(command),
            )
            fields.update(extra)
            run.update(**fields)
            run._own_session()
            return run, "resume"

        exp_dir.mkdir(parents=True, exist_ok=True)
        while True:
            path = exp_dir / _new_run_id()
            try:
                os.mkdir(path)  # atomic: two starts can never share a folder
                break
            except FileExistsError:
                continue
        info = {
            "experiment": experiment,
            "run_id": path.name,
            "seed": seed,
            "kind": kind,
            "command": list(command),
            "config_hash": chash,
            "git": dict(git),
            "status": "running",
            "reason": None,
            "started": now,
            "ended": None,
            "session_started": now,
            "wall_seconds": 0.0,
            "wall_seconds_done": 0.0,
            "resumes": 0,
            "sessions": [session],
            "pid": pid,
            "pid_start": _pid_start_time(pid),
            "host": host,
            "device": prov["device"],
            "device_count": prov["device_count"],
            "python": prov["python"],
            "platform": prov["platform"],
            "packages": prov["packages"],
            "last_epoch": None,
            "final": None,
        }
        info.update(extra)
        text = _dumps(info, indent=2) + "\n"
        _atomic_write_text(path / RUN_JSON, text)
        run = Run(path)
        run._own_session()
        run.write_text(CONFIG, config_text)
        if git["dirty"] and prov["diff"]:
            run.write_text(GIT_DIFF, prov["diff"])
        return run, "new"

