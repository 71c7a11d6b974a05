"""Options defined once: one name, one meaning and one help text across every command;
help pages that never split an option name; headers kept off the command line."""

from __future__ import annotations

import re

import pytest
from cli_runner import run_cli
from onnx_factory import make_linear_classifier

from copycat_tf.cli.helptext import HelpContext
from copycat_tf.cli.main import COMMANDS, cli
from copycat_tf.cli.options import HEADERS_VARIABLE, TARGET_HELP, request_headers

#: A URL nothing listens on: header errors must come before any request.
NOWHERE = "http://127.0.0.1:9/v2/models/m"
TOKEN = "Bearer opt-5e3c1b0a9f7d"

# Options several commands share, which must read the same everywhere (help text and
# choices); --overwrite and --batch-size differ only in what they name and their default.
SHARED = ("--queries", "--labels", "--seed", "--price-per-1k", "--resize", "--test-data", "--eval-data",
          "--budget", "--learning-rate", "--arch", "--epochs", "--header", "--devices", "--semi-supervised")


def _commands():
    group = HelpContext(cli, info_name="copycat-tf", terminal_width=80, **cli.context_settings)
    return group, {name: cli.get_command(group, name) for name in COMMANDS}


def _help_at_80_columns():
    group, commands = _commands()
    pages = {"copycat-tf": cli.get_help(group)}
    for name, command in commands.items():
        pages[name] = command.get_help(command.context_class(command, info_name=name, parent=group))
    return pages


def _options(command):
    """The command's options as its users see them: --help (and -h) included."""
    group = HelpContext(cli, info_name="copycat-tf", **cli.context_settings)
    context = group if command is cli else command.context_class(command, info_name=command.name, parent=group)
    return [p for p in command.get_params(context) if p.param_type_name == "option"]


def test_every_help_page_keeps_every_option_name_whole_at_80_columns():
    group, commands = _commands()
    known = {name for command in [cli, *commands.values()] for p in _options(command)
             for name in p.opts + p.secondary_opts} | {"--logdir"}  # tensorboard's, in train's examples
    for name, page in _help_at_80_columns().items():
        for line in page.splitlines():
            assert not re.search(r"\w-$", line), f"{name}: a line ends inside a word: {line!r}"
        for option in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", page):
            assert option in known, f"{name} --help names {option}, which no command has"


def test_help_through_the_console_script_at_80_columns():
    page = run_cli("audit", "--help", env={"COLUMNS": "80"}).stdout
    assert "--eval-data" in page and "--misinformation-tau" in page and "\u2011" not in page
    assert not [line for line in page.splitlines() if re.search(r"\w-$", line)]


def test_every_command_with_a_target_says_what_a_target_may_be():
    with_target = {name for name, command in _commands()[1].items()
                   if any(p.name == "target" for p in command.params)}
    assert with_target == {"inspect", "label", "steal", "audit", "evaluate"}
    for name, page in _help_at_80_columns().items():
        if name in with_target:
            assert " ".join(TARGET_HELP.split()) in " ".join(page.split()), name


def test_no_short_flag_means_two_things():
    _, commands = _commands()
    meanings = {}
    for command in [cli, *commands.values()]:
        for option in _options(command):
            longs = [o for o in option.opts + option.secondary_opts if o.startswith("--")]
            for short in [o for o in option.opts + option.secondary_opts if not o.startswith("--")]:
                meanings.setdefault(short, set()).add(longs[0])
    assert meanings == {"-h": {"--help"}, "-v": {"--verbose"}, "-q": {"--quiet"}}


def test_shared_options_read_the_same_in_every_command():
    _, commands = _commands()
    seen = {}
    for name, command in commands.items():
        for option in _options(command):
            if option.opts[0] in SHARED and not option.hidden:
                choices = getattr(option.type, "choices", None)
                seen.setdefault(option.opts[0], set()).add((option.help, tuple(choices or ())))
    assert {opt: len(texts) for opt, texts in seen.items()} == {opt: 1 for opt in SHARED}


def test_every_command_has_the_options_its_library_call_takes():
    _, commands = _commands()
    visible = {name: {o.opts[0] for o in _options(command) if not o.hidden} for name, command in commands.items()}
    assert {"--resize", "--batch-size", "--price-per-1k"} <= visible["steal"]
    assert {"--overwrite", "--resize", "--batch-size", "--price-per-1k"} <= visible["audit"]
    assert {"--price-per-1k", "--batch-size", "--resize", "--overwrite"} <= visible["label"]
    assert not any("--cost-per-1k" in options for options in visible.values())


@pytest.mark.slow
def test_audit_overwrite_starts_again_and_keeps_other_files(tmp_path):
    # Needs copycat_tf.audit.audit(overwrite=...), which the audit rewrite adds.
    target = tmp_path / "t.onnx"
    make_linear_classifier(target, image_shape=(8, 8, 1), num_classes=3)
    out = tmp_path / "audit"
    args = ("audit", target, "--queries", "noise:uniform", "--budgets", 16, "--defences", "none",
            "--epochs", 1, "--eval-queries", 16, "--no-detection", "--strategy", "paper", "--out", out)
    assert run_cli(*args).returncode == 0
    (out / "notes.txt").write_text("mine")
    run_cli(*args, "--seed", 1).assert_clean_error("--overwrite")
    again = run_cli(*args, "--seed", 1, "--overwrite")
    assert again.returncode == 0, again.stderr
    assert (out / "notes.txt").read_text() == "mine"


def test_label_still_reads_cost_per_1k_with_a_one_line_notice(tmp_path):
    target = tmp_path / "t.onnx"
    make_linear_classifier(target, image_shape=(8, 8, 3))
    result = run_cli("label", target, "--queries", "noise:uniform", "--budget", 20, "--out", tmp_path / "fake",
                     "--cost-per-1k", 2.5)
    assert result.returncode == 0, result.stderr
    assert "copycat-tf: --cost-per-1k is now --price-per-1k" in result.stderr.splitlines()
    assert "cost      0.05 at 2.5 per 1,000 queries" in result.stdout
    run_cli("label", target, "--queries", "noise:uniform", "--out", tmp_path / "x",
            "--cost-per-1k", "-1").assert_clean_error("-1")
    run_cli("label", target, "-q", "noise:uniform", "--out", tmp_path / "y").assert_clean_error("-q")


# ----------------------------------------------------------- headers off the command line


def test_a_header_file_with_a_bad_line_names_the_file_and_line_never_the_value(tmp_path):
    headers = tmp_path / "headers.txt"
    headers.write_text(f"# the vendor's key\n\nX-Team: red\n{TOKEN}\n")
    result = run_cli("inspect", NOWHERE, "--header", f"@{headers}")
    result.assert_clean_error(f"header file {headers} line 4 is not 'Name: value'")
    assert TOKEN.split()[1] not in result.stdout + result.stderr


def test_a_missing_header_file_is_one_line(tmp_path):
    run_cli("inspect", NOWHERE, "--header", f"@{tmp_path / 'absent.txt'}").assert_clean_error(
        "absent.txt cannot be read (No such file or directory)")
    (tmp_path / "folder").mkdir()
    run_cli("label", NOWHERE, "--queries", "photos", "--out", tmp_path / "o",
            "--header", f"@{tmp_path / 'folder'}").assert_clean_error("folder cannot be read")


def test_a_bad_environment_line_names_the_variable_never_the_value(tmp_path):
    result = run_cli("inspect", NOWHERE, env={HEADERS_VARIABLE: f"X-Team: red\n{TOKEN}"})
    result.assert_clean_error(f"{HEADERS_VARIABLE} line 2 is not 'Name: value'")
    assert TOKEN.split()[1] not in result.stdout + result.stderr


def test_the_environment_is_for_url_targets_only(tmp_path):
    target = tmp_path / "t.onnx"
    make_linear_classifier(target, image_shape=(8, 8, 3))
    result = run_cli("inspect", target, env={HEADERS_VARIABLE: f"Authorization: {TOKEN}"})
    assert result.returncode == 0, result.stderr


def test_command_line_headers_add_to_and_replace_the_environment_and_files(tmp_path, monkeypatch):
    headers = tmp_path / "headers.txt"
    headers.write_text("authorization: Bearer from-file\nX-Team: blue\n")
    monkeypatch.setenv(HEADERS_VARIABLE, "Authorization: Bearer from-env\nX-Region: eu\n")
    assert request_headers(NOWHERE, [f"@{headers}", "X-Team: red"]) == {
        "X-Region": "eu", "authorization": "Bearer from-file", "X-Team": "red"}
    assert request_headers(NOWHERE, ()) == {"Authorization": "Bearer from-env", "X-Region": "eu"}
    assert request_headers("model.onnx", ()) is None
    monkeypatch.setenv(HEADERS_VARIABLE, "  \n")
    assert request_headers(NOWHERE, ()) is None


@pytest.mark.parametrize("form", ["file", "environment"])
def test_header_help_shows_the_secret_free_forms_first(form):
    page = run_cli("label", "--help").stdout
    flat = " ".join(page.split())
    start = flat.index("--header @FILE|'NAME: VALUE'")
    text = flat[start:]
    first = text.index("@FILE reads") if form == "file" else text.index(HEADERS_VARIABLE)
    assert first < text.index("a 'NAME: VALUE' given here")
