"""The layout's promises (no import cycle, TensorFlow kept off light paths) and the three
seams the re-housing fixed: partial preprocessing overrides, inspecting dynamic-size models,
and evaluate's --queries-spent."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from cli_runner import run_cli
from onnx import TensorProto, helper, numpy_helper
from onnx_factory import make_linear_classifier
from package_sources import ROOT, imports, modules

from copycat_tf.oracle import OnnxOracle


def test_the_package_import_graph_has_no_cycle():
    found = modules()
    graph = {name: imports(path, name, set(found)) for name, path in found.items()}
    # A package's __init__ re-exports its submodules; a submodule importing its own package's
    # __init__ would be a cycle, and so is any loop between modules.
    state, stack = {}, []

    def visit(name):
        state[name] = "open"
        stack.append(name)
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                cycle = stack[stack.index(target):] + [target]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target)
        stack.pop()
        state[name] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    assert len(graph) > 40  # the walk saw the whole package


def test_no_library_module_imports_click():
    for name, path in modules().items():
        if name.startswith("copycat_tf.cli"):
            continue
        assert "click" not in imports(path, name, {"click"}) and "import click" not in path.read_text(), name


def _modules_loaded_by(*args) -> set[str]:
    code = ("import sys\nfrom copycat_tf.cli.main import main\n"
            f"sys.argv = ['copycat-tf', *{list(map(str, args))!r}]\n"
            "try:\n    main()\nexcept SystemExit as exit:\n    assert not exit.code, exit.code\n"
            "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return set(result.stderr.split())


def test_help_and_inspect_never_import_tensorflow(tmp_path):
    path = tmp_path / "m.onnx"
    make_linear_classifier(path)
    for args in (["--help"], ["steal", "--help"], ["audit", "--help"], ["inspect", path]):
        loaded = _modules_loaded_by(*args)
        assert "copycat_tf.cli.main" in loaded
        # scikit-learn (evaluation's metrics) loads SciPy: imported when scores are computed.
        assert not {"tensorflow", "keras", "tf2onnx", "sklearn"} & loaded, args


# -- bug 1: a partial preprocessing override keeps the other fields


def test_each_preprocessing_override_replaces_only_its_own_field(tmp_path):
    path = tmp_path / "float.onnx"
    make_linear_classifier(path)  # float input: default (pixel - 0) / 255
    assert OnnxOracle(path).contract.preprocessing.std == (255.0,)
    bgr = OnnxOracle(path, preprocessing={"channel_order": "bgr"}).contract.preprocessing
    assert (bgr.mean, bgr.std, bgr.channel_order) == ((0.0,), (255.0,), "bgr")
    shifted = OnnxOracle(path, preprocessing={"mean": (10.0,)}).contract.preprocessing
    assert (shifted.mean, shifted.std) == ((10.0,), (255.0,))

    before = run_cli("inspect", path, "--channel-order", "bgr")
    assert before.returncode == 0, before.stderr
    assert "(pixel - 0) / 255, channel order bgr" in before.stdout
    mean_only = run_cli("inspect", path, "--mean", "10")
    assert "(pixel - 10) / 255" in mean_only.stdout


def test_overrides_keep_the_preprocessing_stored_in_metadata(tmp_path):
    path = tmp_path / "meta.onnx"
    stored = {"preprocessing": {"mean": [127.5], "std": [127.5], "channel_order": "rgb"}}
    make_linear_classifier(path, metadata={"copycat_tf.contract": json.dumps(stored)})
    std_only = OnnxOracle(path, preprocessing={"std": (64.0,)}).contract.preprocessing
    assert (std_only.mean, std_only.std) == ((127.5,), (64.0,))


# -- bug 2: inspect shows a dynamic-size model, and counts Constant-node weights


def _dynamic_size_model(path: Path, constant_weights: bool = False) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])
    scale = numpy_helper.from_array(np.array([1.0, 2.0, 3.0], np.float32), "scale")
    nodes = [helper.make_node("ReduceMean", ["x", "axes"], ["m"], keepdims=0)]
    initializers = [numpy_helper.from_array(np.array([2, 3], np.int64), "axes")]
    if constant_weights:  # as PaddlePaddle exports weights: Constant nodes, no initializers
        nodes.append(helper.make_node("Constant", [], ["scale"], value=scale))
    else:
        initializers.append(scale)
    nodes += [helper.make_node("Mul", ["m", "scale"], ["s"]), helper.make_node("Softmax", ["s"], ["y"], axis=1)]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], initializers),
                              opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    onnx.save(model, path)


def test_inspect_shows_a_dynamic_size_model_and_says_what_labeling_needs(tmp_path):
    path = tmp_path / "dynamic.onnx"
    _dynamic_size_model(path)
    result = run_cli("inspect", path)
    assert result.returncode == 0, result.stderr
    assert "NCHW" in result.stdout and "3 classes" in result.stdout
    assert "dynamic height and width" in result.stdout and "--input-size" in result.stdout
    info = json.loads(run_cli("inspect", path, "--json").stdout)
    assert info["dynamic_size"] is True and info["num_classes"] == 3
    fixed = run_cli("inspect", path, "--input-size", "20,30")
    assert "NCHW, 20x30" in fixed.stdout and "dynamic height and width" not in fixed.stdout
    refused = run_cli("label", path, "--queries", "noise:uniform", "--out", tmp_path / "fake")
    assert refused.returncode == 2 and "--input-size" in refused.stderr


def test_inspect_counts_weights_held_in_constant_nodes(tmp_path):
    as_initializers, as_constants = tmp_path / "init.onnx", tmp_path / "const.onnx"
    _dynamic_size_model(as_initializers)
    _dynamic_size_model(as_constants, constant_weights=True)
    counts = [json.loads(run_cli("inspect", p, "--json").stdout)["parameters"] for p in (as_initializers, as_constants)]
    assert counts == [5, 5]  # axes (2) + scale (3), wherever they are stored


# -- bug 3: evaluate --queries-spent, the old --queries still accepted with a notice


def test_evaluate_takes_queries_spent_and_still_reads_the_old_spelling(tmp_path):
    target = tmp_path / "target.onnx"
    make_linear_classifier(target, image_shape=(8, 8, 1))
    test = tmp_path / "test.npz"
    rng = np.random.default_rng(0)
    np.savez(test, x=rng.integers(0, 256, (20, 8, 8, 1), np.uint8), y=rng.integers(0, 4, 20))
    for flag, out in (("--queries-spent", "new"), ("--queries", "old")):
        result = run_cli("evaluate", target, target, "--test-data", test, "--out", tmp_path / out, flag, "1234")
        assert result.returncode == 0, result.stderr
        assert json.loads((tmp_path / out / "report.json").read_text())["queries"] == 1234
        assert ("now --queries-spent" in result.stderr) == (flag == "--queries")
    assert "--queries-spent" in run_cli("evaluate", "--help").stdout
    assert "--queries " not in run_cli("evaluate", "--help").stdout


def test_pyproject_installs_every_package_of_the_namespace():
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {name for name, path in modules().items() if path.name == "__init__.py"}
    assert found == listed  # a package left out would be missing from every wheel and Docker image
    assert not any(name.split(".")[0] == "benchmarks" for name in listed)  # measurements stay out of the wheel


def test_no_script_folder_shadows_a_standard_module():
    """Scripts and tests put their own folder first on ``sys.path`` (benchmarks did, before they
    ran as ``python -m benchmarks...``): a ``http.py`` there hid the standard library's ``http``
    from every other script (urllib3 failed to import)."""
    root = Path(__file__).resolve().parent.parent
    scripts = [path for folder in ("benchmarks", "scripts", "tests") for path in (root / folder).rglob("*.py")]
    assert len(scripts) > 10
    shadowing = sorted(str(p.relative_to(root)) for p in scripts if p.stem in sys.stdlib_module_names)
    assert not shadowing, f"rename these, they hide standard modules: {shadowing}"
