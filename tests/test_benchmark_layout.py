"""benchmarks/: a package run with ``python -m`` from the repository root, never editing
``sys.path`` nor importing from tests/; one runner and one JSON row for the perf figures."""

import ast
import doctest
import subprocess
import sys
from pathlib import Path

import pytest

import benchmarks.perf
from benchmarks import row
from benchmarks.perf import __main__ as runner

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
#: What tests/ holds that a benchmark could import by plain name (onnx_factory, http_serving...).
TEST_MODULES = {"tests"} | {path.stem for path in (ROOT / "tests").glob("*.py")}


def _sources() -> list[Path]:
    return sorted(path for path in BENCHMARKS.rglob("*.py") if "__pycache__" not in path.parts)


def _scripts() -> list[str]:
    """``benchmarks.KIND.NAME`` of every runnable script: the modules of perf/, research/, data/ with a main."""
    found = []
    for kind in ("perf", "research", "data"):
        for path in sorted((BENCHMARKS / kind).glob("*.py")):
            tree = ast.parse(path.read_text())
            if not path.stem.startswith("_") and any(
                    isinstance(node, ast.FunctionDef) and node.name == "main" for node in tree.body):
                found.append(f"benchmarks.{kind}.{path.stem}")
    return found


def test_no_benchmark_file_edits_sys_path():
    sources = _sources()
    assert len(sources) > 15
    editing = [str(p.relative_to(ROOT)) for p in sources if "sys.path" in p.read_text()]
    assert not editing, f"run benchmarks with `python -m benchmarks...` from the root instead: {editing}"


def test_no_benchmark_imports_from_tests():
    offenders = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            offenders += [f"{path.relative_to(ROOT)}: {name}" for name in names
                          if name.split(".")[0] in TEST_MODULES]
    assert not offenders, f"move what these need under benchmarks/ (tests may import it from there): {offenders}"


def test_every_script_is_in_one_of_the_three_kinds():
    loose = sorted(p.name for p in BENCHMARKS.glob("*.py")
                   if "def main(" in p.read_text() or '__name__ == "__main__"' in p.read_text())
    assert not loose, f"a runnable benchmark belongs in perf/, research/ or data/: {loose}"
    assert {"benchmarks.perf.labeling", "benchmarks.research.quality", "benchmarks.data.targets"} <= set(_scripts())


def test_the_perf_runner_lists_every_perf_benchmark():
    done = subprocess.run([sys.executable, "-m", "benchmarks.perf", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0] for line in done.stdout.splitlines()[1:]}
    assert listed == {name.rpartition(".")[2] for name in _scripts() if name.startswith("benchmarks.perf.")}
    assert "python -m benchmarks.perf NAME" in done.stdout


def test_the_perf_runner_refuses_an_unknown_name_with_the_choices(capsys):
    assert runner.main(["labelling"]) == 2
    error = capsys.readouterr().err
    assert "NAME: no benchmark 'labelling'" in error and "labeling" in error
    assert runner.main([]) == 2  # no NAME: the usage, as an error


def test_a_row_survives_json_and_computes_its_ratio():
    line = row.Row("memory", "label, 100,000 queries", "peak_rss", 120.0, "MiB", reference=100.0,
                   machine="2 cores").to_json()
    back = row.Row.from_json(line)
    assert back.ratio == pytest.approx(1.2)
    assert back == row.Row.from_json(line) and "\n" not in line
    assert row.Row("prada", "alone", "wall", 1.0, "s").ratio is None


@pytest.mark.parametrize("module", [row, benchmarks.perf])
def test_docstring_examples_run(module):
    assert doctest.testmod(module).failed == 0


@pytest.mark.slow
@pytest.mark.parametrize("name", _scripts())
def test_every_script_answers_help_when_run_with_python_m(name):
    done = subprocess.run([sys.executable, "-m", name, "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"usage: python -m {name}" in done.stdout
    if name.startswith("benchmarks.perf."):
        assert "--json FILE" in done.stdout  # every perf figure can be written as rows
