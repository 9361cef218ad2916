"""The one exception type that the command line turns into exit status 2."""


class UserError(Exception):
    """A mistake in what the user asked for (a name, a binding, a file), not a bug.

    The command line prints the message as one paragraph, without a traceback, and exits
    with status 2. Raise it before anything is written, so that nothing is left behind.
    """


def one_line(exc: BaseException) -> str:
    """An exception's message on one line (a KeyError's without its quotes)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    return " ".join(text.split())
