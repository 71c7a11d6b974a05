"""``copycat-tf``: steal an image classifier through its prediction API, and measure the copy.

Each command parses options and calls one library function; errors the user can fix print
one line and exit with status 2.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys

import click

from copycat_tf._version import __version__
from copycat_tf.cli import progress
from copycat_tf.cli.helptext import HelpContext
from copycat_tf.errors import CopycatError

# Commands import on use, so `--help` and `inspect` start without loading TensorFlow.
COMMANDS = {
    "inspect": "copycat_tf.cli.inspect_cmd:inspect_command",
    "train-target": "copycat_tf.cli.train_target_cmd:train_target_command",
    "label": "copycat_tf.cli.label_cmd:label_command",
    "train": "copycat_tf.cli.train_cmd:train_command",
    "evaluate": "copycat_tf.cli.evaluate_cmd:evaluate_command",
    "steal": "copycat_tf.cli.steal_cmd:steal_command",
    "demo": "copycat_tf.cli.demo_cmd:demo_command",
    "audit": "copycat_tf.cli.audit_cmd:audit_command",
}

_debug = False
# TensorFlow's C++ start-up chatter (CUDA probes, CPU flags) is noise on a user's terminal.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class _QuietTensorFlowImport:
    """Import TensorFlow with file descriptor 2 pointed at /dev/null.

    Its C++ start-up writes absl and CUDA notices ("All log messages before
    absl::InitializeLog() ...") straight to fd 2, past ``TF_CPP_MIN_LOG_LEVEL``, which would
    bury the one-line error of a command that fails after training started. Only that one
    import is silenced; Python errors it raises still reach the user.
    """
    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _SilencedLoader(spec.loader)
        return spec


class _SilencedLoader:
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__spec__.loader = module.__loader__ = self.loader
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 2)
            os.close(null)
            self.loader.exec_module(module)
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class LazyGroup(click.Group):
    context_class = HelpContext

    def list_commands(self, ctx):
        return list(COMMANDS)

    def get_command(self, ctx, name):
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="copycat-tf")
@click.option("--debug", is_flag=True, help="Show full tracebacks instead of one-line errors.")
@click.option("-v", "--verbose", is_flag=True, help="Log every step, every training epoch included.")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings, errors and the results: no progress bars.")
def cli(debug: bool, verbose: bool, quiet: bool):
    """Measure how easily an image classifier can be copied through its predictions alone.

    The Copycat CNN attack (Correia-Silva et al., IJCNN 2018): query a black-box target
    with unlabeled images from outside its problem domain, keep its answers as a fake
    dataset, and train a copycat on them.

    \b
    Quick start:
      copycat-tf demo                                  # everything, on bundled data
      copycat-tf inspect target.onnx                   # the target's input/output contract
      copycat-tf steal target.onnx --queries ./imagenet --out runs/steal
    """
    global _debug
    _debug = debug
    if not verbose and "tensorflow" not in sys.modules:
        sys.meta_path.insert(0, _QuietTensorFlowImport())
    if quiet:
        progress.QUIET = True
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO,
        format="copycat-tf: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("tensorflow", "absl", "h5py", "matplotlib", "PIL", "tf2onnx"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbose else logging.ERROR)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the CLI, turning failures into one clear line."""
    try:
        cli.main(args=argv, prog_name="copycat-tf", standalone_mode=False)
    except CopycatError as exc:
        if _debug:
            raise
        click.echo(f"copycat-tf: error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        # One line, as for every other error; the usage block is one --help away.
        command = exc.ctx.command_path if exc.ctx is not None else "copycat-tf"
        click.echo(f"copycat-tf: error: {exc.format_message()} (see `{command} --help`)", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        click.echo(f"copycat-tf: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        click.echo("copycat-tf: interrupted; rerun the same command to resume", err=True)
        sys.exit(130)
    except Exception as exc:  # the last line of defence: never a bare traceback
        if _debug:
            raise
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        click.echo(
            f"copycat-tf: internal error: {type(exc).__name__}: {first} "
            "(rerun with --debug for the traceback)",
            err=True,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
