"""Errors that reach the user as one clear line (the CLI exits with status 2), and the
argument checks that raise them."""

from __future__ import annotations

import math
from numbers import Integral, Real


class CopycatError(Exception):
    """A problem with the user's input or environment, stated so the user can fix it.

    The message names the file or argument, what was received and what to do.
    """


class BudgetExceeded(CopycatError):
    """A query would take the oracle past its query budget; nothing was sent."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """One line about ``exc`` for an error message: ``Type: first line`` (a
    :class:`CopycatError` speaks for itself, without its type).

    Example:

    >>> first_line(ValueError("bad header\\nmore detail"))
    'ValueError: bad header'
    >>> first_line(CopycatError("budget spent"))
    'budget spent'
    >>> first_line(OSError())
    'OSError'
    """
    text = (str(exc).strip().splitlines() or [""])[0][:limit]
    if isinstance(exc, CopycatError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def check_whole(name: str, value, *, minimum: int = 1, optional: bool = False) -> None:
    """Refuse ``value`` unless it is a whole number >= ``minimum`` (or ``None``, when ``optional``).

    ``name`` is the argument's name; underscores are shown as dashes, as the CLI spells it.

    Example:

    >>> check_whole("batch_size", 64)
    >>> check_whole("batch_size", 0)
    Traceback (most recent call last):
    ...
    copycat_tf.errors.CopycatError: batch-size must be a whole number >= 1; received 0
    """
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise CopycatError(f"{name.replace('_', '-')} must be a whole number >= {minimum}; received {value!r}")


def check_positive_number(name: str, value, *, optional: bool = False) -> None:
    """Refuse ``value`` unless it is a finite number > 0 (or ``None``, when ``optional``).

    Example:

    >>> check_positive_number("learning_rate", float("nan"))
    Traceback (most recent call last):
    ...
    copycat_tf.errors.CopycatError: learning-rate must be a number > 0; received nan
    """
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value) or value <= 0:
        raise CopycatError(f"{name.replace('_', '-')} must be a number > 0; received {value!r}")
