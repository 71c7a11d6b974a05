"""A leading underscore tells a maintainer what is safe to change: no module reads another
module's private names. A name another module needs is public (issue 22)."""

from pathlib import Path

from package_sources import PACKAGES, ROOT, modules, private_uses


def _private_uses(packages: dict[str, Path], root: Path) -> list[str]:
    """``file:line: module._name`` for every use, the file relative to ``root``."""
    found = modules(packages)
    known = set(found)
    return [f"{use.path.relative_to(root)}:{use.line}: {use.name}"
            for name, path in found.items() for use in private_uses(path, name, known)]


def test_no_module_uses_another_modules_private_names():
    assert len(modules()) > 40  # the walk saw the whole package
    uses = _private_uses(PACKAGES, ROOT)
    assert not uses, "make these names public (or keep them in their module):\n" + "\n".join(uses)


def _tree(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        path = root / "pkg" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return {"pkg": root / "pkg"}


#: A small package whose modules share private names in every way the check knows.
PLANTED = {
    "__init__.py": "from pkg._version import __version__\n",
    "_version.py": "__version__ = '1'\n",
    "store.py": "_SHARD = 1\n_cache = {}\nPUBLIC = 2\n\n\ndef _helper():\n    return _SHARD\n",
    "writer.py": ("from pkg.store import PUBLIC, _SHARD\n"
                  "from .store import _helper as helper\n"),
    "loop.py": ("import pkg.store\n"
                "import pkg.store as store_module\n"
                "from pkg import store\n\n\n"
                "def run():\n"
                "    return pkg.store._cache, store_module._helper(), store._SHARD, store.PUBLIC\n"),
    "sub/__init__.py": "",
    "sub/_inner.py": "VALUE = 1\n",
    "sub/user.py": "from pkg.sub._inner import VALUE\nfrom . import _inner\n",
    "outside.py": "from pkg.sub._inner import VALUE\nimport pkg.sub._inner\n",
    "third_party.py": "from os import _exit\nimport os\nimport os.path as osp\n\nos._exit, osp._get_sep\n",
}


def test_the_check_names_file_and_line_of_each_planted_private_use(tmp_path):
    uses = _private_uses(_tree(tmp_path, PLANTED), tmp_path)
    assert sorted(uses) == sorted([
        "pkg/loop.py:7: pkg.store._cache",
        "pkg/loop.py:7: pkg.store._helper",
        "pkg/loop.py:7: pkg.store._SHARD",
        "pkg/outside.py:1: pkg.sub._inner",
        "pkg/outside.py:2: pkg.sub._inner",
        "pkg/writer.py:1: pkg.store._SHARD",
        "pkg/writer.py:2: pkg.store._helper",
    ])


def test_a_private_module_is_open_to_its_own_package_and_dunders_to_all(tmp_path):
    clean = {name: text for name, text in PLANTED.items() if name not in ("writer.py", "loop.py", "outside.py")}
    assert _private_uses(_tree(tmp_path, clean), tmp_path) == []


def test_a_module_may_use_its_own_private_names(tmp_path):
    own = {"__init__.py": "", "a.py": "import pkg.a\n_X = 1\n\n\ndef f():\n    return pkg.a._X, _X\n"}
    assert _private_uses(_tree(tmp_path, own), tmp_path) == []


def test_files_behind_a_symlinked_folder_are_walked_once(tmp_path):
    packages = _tree(tmp_path, {"__init__.py": "", "a.py": ""})
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "models").symlink_to(tmp_path / "models")
    assert sorted(modules({**packages, "pkg.models": tmp_path / "models"})) == ["pkg", "pkg.a", "pkg.models"]


def test_only_the_fake_dataset_package_reads_its_manifest_by_key():
    """Other modules read a fake dataset's figures through FakeSet's typed properties (its
    ``record``, a :class:`~copycat_tf.fakeset.Manifest`), never the file's dict by key."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    found = []
    for folder in ("copycat_tf", "cli", "models"):
        for path in sorted((root / folder).rglob("*.py")):
            if path.is_symlink() or "fakeset" in path.relative_to(root).parts:
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Attribute) \
                        and node.value.attr == "manifest":
                    found.append(f"{path.relative_to(root)}:{node.lineno}")
    assert not found, found
