"""The one exception type that the command line turns into exit status 2."""


class UserError(Exception):
    """A mistake in what the user asked for (a name, a binding, a file), not a bug.

    The command line prints the message as one paragraph, without a traceback, and exits
    with status 2. Raise it before anything is written, so that nothing is left behind.
    """
