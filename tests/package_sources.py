"""The package's own source files and what each imports, read with ``ast`` (nothing is imported).

Two tests walk the same sources: ``test_rehousing`` looks for import cycles, ``test_seams``
for private names used as seams between modules. Both take the folders to walk as an
argument so that they can also be run on a small synthetic tree.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Installed module name -> source folder (the top-level models/ and cli/ install under copycat_tf).
PACKAGES = {"copycat_tf": ROOT / "copycat_tf", "copycat_tf.models": ROOT / "models", "copycat_tf.cli": ROOT / "cli"}


def modules(packages: dict[str, Path] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> source file, for every ``.py`` file under the package folders.

    Files reached through a symlink are left out: ``copycat_tf/models`` and ``copycat_tf/cli``
    may be development symlinks to folders that are walked under their own name already.
    """
    found = {}
    for package, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            if not path.resolve().is_relative_to(folder.resolve()):
                continue
            parts = path.relative_to(folder).with_suffix("").parts
            found[".".join((package, *parts)).removesuffix(".__init__")] = path
    return found


def _package_of(name: str, path: Path) -> str:
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _base_module(node: ast.ImportFrom, package: str) -> str:
    """The absolute module a ``from ... import`` reads from, relative levels resolved."""
    if not node.level:
        return node.module or ""
    parts = package.split(".")
    return ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))


def imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Modules of ``known`` that ``path`` imports, at module level or inside functions."""
    found = set()
    package = _package_of(name, path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = _base_module(node, package)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.add(full if full in known else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in known and m != name}


def is_private(name: str) -> bool:
    """A leading underscore, dunders (``__version__``, ``__init__``) excepted."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


@dataclass(frozen=True)
class PrivateUse:
    """One use of another module's private name ``name`` (dotted) at ``path``, line ``line``."""

    path: Path
    line: int
    name: str


def _hidden_module_part(module: str, importer: str) -> str | None:
    """The private module on ``module``'s path that ``importer`` may not reach, if any.

    A private module (``copycat_tf.models._inputs``) is private to its package: modules of
    that package may import it, modules outside it may not.
    """
    parts = module.split(".")
    for index, part in enumerate(parts):
        owner = ".".join(parts[:index])
        if is_private(part) and importer != owner and not importer.startswith(owner + "."):
            return ".".join(parts[: index + 1])
    return None


def _dotted(node: ast.expr) -> list[str] | None:
    """``a.b.c`` as ``["a", "b", "c"]``; None for anything but names and attributes."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return [node.id, *reversed(parts)]


def private_uses(path: Path, name: str, known: set[str]) -> list[PrivateUse]:
    """Every place where ``path`` (module ``name``) imports or reads another module's private name.

    Catches ``from x import _y``, ``from . import _y``, ``import x._y`` and attribute reads on a
    module object (``import x`` then ``x._y``, ``from pkg import x`` then ``x._y``). Names a
    module defines for itself, dunders, and private modules imported within their own package
    are fine. Modules outside ``known`` (third-party ones) are not this check's business.
    """
    tree = ast.parse(path.read_text())
    package = _package_of(name, path)
    bound: dict[str, str] = {}  # local name -> module of the package it refers to
    found: list[PrivateUse] = []

    def check_module_path(module: str, node: ast.AST) -> None:
        hidden = _hidden_module_part(module, name)
        if hidden:
            found.append(PrivateUse(path, node.lineno, hidden))

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = _base_module(node, package)
            if base in known:
                check_module_path(base, node)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if full in known:  # a module imported from its package
                    check_module_path(full, node)
                    bound[alias.asname or alias.name] = full
                elif base in known and base != name and is_private(alias.name):
                    found.append(PrivateUse(path, node.lineno, full))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in known:
                    check_module_path(alias.name, node)
                top = alias.name.partition(".")[0]
                if alias.asname and alias.name in known:
                    bound[alias.asname] = alias.name
                elif not alias.asname and top in known:
                    bound[top] = top
    for node in ast.walk(tree):
        parts = _dotted(node) if isinstance(node, ast.Attribute) else None
        if not parts or parts[0] not in bound:
            continue
        module = bound[parts[0]]
        for attribute in parts[1:]:
            if is_private(attribute) and module != name:
                found.append(PrivateUse(path, node.lineno, f"{module}.{attribute}"))
                break
            module = f"{module}.{attribute}"
            if module not in known:
                break
    # ``x._y.z`` holds ``x._y`` too: one report per line and name.
    return sorted(set(found), key=lambda use: (use.line, use.name))
