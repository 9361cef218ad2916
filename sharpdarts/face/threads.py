"""``--threads N``: how many CPU threads torch may use for one run.

On a shared machine torch's default (one thread per core) oversubscribes the CPUs, and a CPU
step becomes many times slower; ``--threads`` caps it. The number in effect is recorded in
run.json (``threads``), given or not, since it changes a CPU run's speed. The command line
wins over a config's ``make_context.threads``.
"""

from __future__ import annotations

from sharpdarts.errors import UserError


def check(threads: int | None) -> None:
    """Refuses a ``--threads`` below 1 (before anything is built or written).

    Raises:
        UserError: ``threads`` is below 1.
    """
    if threads is not None and threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}.")


def apply(threads: int | None) -> int:
    """Sets torch's intra-op threads to ``threads`` (when given) and returns the number in use.

    Called after the job is built, so that it wins over a config's ``make_context.threads``.

    Raises:
        UserError: ``threads`` is below 1.
    """
    check(threads)
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
        try:  # allowed only before the first parallel work of the process
            torch.set_num_interop_threads(threads)
        except RuntimeError:
            pass
    return torch.get_num_threads()
