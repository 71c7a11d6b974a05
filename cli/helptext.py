"""Help pages whose lines never end inside an option name.

click wraps help with :mod:`textwrap`, which breaks lines after a hyphen: ``--eval-data``
could end one line as ``--eval-`` and start the next with ``data``, and a reader copying
it gets an option that does not exist. :class:`Command` (and the group, through
:class:`HelpContext`) wraps help text with every hyphen held as U+2011, a non-breaking
hyphen of the same width, and puts the hyphens back once the page is laid out: lines
break at spaces only.

Example:

>>> import click
>>> @click.command(cls=Command)
... @click.option("--eval-data", help="Score the copy on --eval-data images, with --test-data labels.")
... def measure(eval_data):
...     '''Measure the copy.'''
>>> page = measure.get_help(HelpContext(measure, info_name="measure", terminal_width=44))
>>> [line for line in page.splitlines() if line.endswith("-")]
[]
>>> "--eval-data" in page and "\\u2011" not in page
True
"""

from __future__ import annotations

import click

#: Stands in for "-" while click wraps: textwrap never breaks after it, and it is as wide.
_HELD_HYPHEN = "\u2011"


def _hold(text: str) -> str:
    return text.replace("-", _HELD_HYPHEN)


class WholeWordsFormatter(click.HelpFormatter):
    """A click help formatter that wraps at spaces only (see the module docstring)."""

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, _hold(args), prefix)

    def write_text(self, text: str) -> None:
        super().write_text(_hold(text))

    def write_dl(self, rows, col_max: int = 30, col_spacing: int = 2) -> None:
        super().write_dl([(first, _hold(second)) for first, second in rows], col_max, col_spacing)

    def getvalue(self) -> str:
        return super().getvalue().replace(_HELD_HYPHEN, "-")


class HelpContext(click.Context):
    formatter_class = WholeWordsFormatter


class Command(click.Command):
    """Every copycat-tf command: ``@click.command("name", cls=Command)``."""

    context_class = HelpContext
