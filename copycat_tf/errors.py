"""Errors that reach the user as one clear line (the CLI exits with status 2)."""


class CopycatError(Exception):
    """A problem with the user's input or environment, stated so the user can fix it.

    The message names the file or argument, what was received and what to do.
    """


class BudgetExceeded(CopycatError):
    """A query would take the oracle past its query budget; nothing was sent."""
