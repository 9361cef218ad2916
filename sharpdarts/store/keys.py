"""What names a run: its key (experiment, seed, config hash) and its folder's id.

Two starts of the same key are the same run (skipped or resumed); the id only tells folders
apart. Ids are made of the start time and random digits, and a folder is claimed with an
atomic ``mkdir``, so ids are unique under concurrency; a host-and-process tag keeps ids from
different machines apart even in stores merged later.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import secrets
import socket

from sharpdarts.errors import UserError

__all__ = ["RUN_ID_RE", "check_experiment", "config_hash", "new_run_id", "normalise_config"]

RUN_ID_RE = re.compile(r"^\d{8}T\d{6}(?:\d{0,6})?Z-[0-9a-f]{4,}$")
_EXPERIMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+=-]*(/[A-Za-z0-9_][A-Za-z0-9_.+=-]*)*$")


def host_tag() -> str:
    """Four hex digits of this host's name and process id: ids made at the same millisecond
    on two machines (or in two processes) differ even before their random digits."""
    text = f"{socket.gethostname()}:{os.getpid()}"
    return hashlib.sha256(text.encode()).hexdigest()[:4]


def new_run_id() -> str:
    """A fresh run id: UTC start time to the millisecond, then four hex digits of the host and
    process (:func:`host_tag`) and six random ones. The store claims a run folder with an
    atomic ``mkdir`` as well, so two starts never share one even then."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return (
        now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z-"
        f"{host_tag()}{secrets.token_hex(3)}"
    )


def check_experiment(experiment: str) -> str:
    """The experiment name without surrounding slashes or spaces.

    Raises:
        UserError: the name is empty, has characters other than letters, digits and
            ``_-.+=`` between slashes, or a ``..`` part (it names a folder under the store).
    """
    experiment = str(experiment).strip().strip("/")
    if not experiment or not _EXPERIMENT_RE.match(experiment) or ".." in experiment.split("/"):
        raise UserError(
            f"invalid experiment name {experiment!r}: use letters, digits, '_', '-', '.', "
            "separated by '/' (e.g. 'cifar10/sharpdarts')."
        )
    return experiment


def _strip_comment(line: str) -> str:
    """``line`` up to a ``#`` outside a quoted string, without trailing spaces."""
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
    return "".join(out).rstrip()


def normalise_config(text: str) -> str:
    """Config text without comments, trailing spaces, blank lines or CRLF line ends.

    Line order is kept: in gin a later binding overrides an earlier one, so order is part of
    the meaning.
    """
    lines = (
        _strip_comment(line) for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    )
    return "\n".join(line for line in lines if line.strip()) + "\n"


def config_hash(config_text: str) -> str:
    """The first 12 hex digits of the sha256 of the normalised config text.

    Comments, blank lines, trailing whitespace and line-end style do not change the hash.
    """
    return hashlib.sha256(normalise_config(config_text).encode("utf-8")).hexdigest()[:12]
