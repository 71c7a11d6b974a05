"""The CLI is a thin layer over small library calls: typed specs in, no long keyword lists.

Every library function or class the commands call takes at most :data:`MOST_PARAMETERS`
parameters; settings that travel together are typed specs (dataclasses such as
``TrainConfig``, ``TargetSpec``, ``AuditPlan``), built once at the boundary.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
from pathlib import Path

CLI = Path(__file__).resolve().parents[1] / "cli"
#: "About eight": the attack's ``label`` has nine (oracle, source, budget, out_dir, labels,
#: seed, batch_size, shard_size, execution).
MOST_PARAMETERS = 9


def library_calls():
    """``(command file, library name, object)`` for each library callable a command calls."""
    for path in sorted(CLI.glob("*.py")):
        tree = ast.parse(path.read_text())
        imported = {}
        for node in ast.walk(tree):
            module = node.module or "" if isinstance(node, ast.ImportFrom) else ""
            if module.startswith("copycat_tf") and not module.startswith("copycat_tf.cli"):
                for alias in node.names:
                    imported[alias.asname or alias.name] = module
        called = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
        for name in sorted(called & set(imported)):
            yield path.name, f"{imported[name]}.{name}", getattr(importlib.import_module(imported[name]), name)


def parameters(thing) -> list[str]:
    target = thing.__init__ if inspect.isclass(thing) else thing
    try:
        return [p for p in inspect.signature(target).parameters if p not in ("self", "args", "kwargs")]
    except (TypeError, ValueError):
        return []


def test_commands_call_library_functions_of_a_few_parameters():
    found = [(where, name, len(parameters(thing))) for where, name, thing in library_calls()
             if not dataclasses.is_dataclass(thing) and len(parameters(thing)) > MOST_PARAMETERS]
    assert not found, found


def test_no_library_callable_takes_a_catch_all_of_options():
    for where, name, thing in library_calls():
        if inspect.isclass(thing) and issubclass(thing, BaseException):
            continue
        target = thing.__init__ if inspect.isclass(thing) else thing
        try:
            kinds = {p.kind for p in inspect.signature(target).parameters.values()}
        except (TypeError, ValueError):
            continue
        assert inspect.Parameter.VAR_KEYWORD not in kinds, f"{where} calls {name}, which takes **options"


def test_the_checks_see_the_calls_that_matter():
    names = {name for _, name, _ in library_calls()}
    assert {"copycat_tf.pipeline.steal", "copycat_tf.audit.audit", "copycat_tf.fakeset.label",
            "copycat_tf.training.train_copycat"} <= names
