"""The console as a person sees it on a terminal: log lines never glued onto a progress bar,
one line per training unless -v, and -q for results only."""

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import pytest
from onnx_factory import make_linear_classifier


def _on_a_terminal(*args, cwd) -> tuple[int, str]:
    """Run ``copycat-tf ARGS`` with stdout and stderr on a pseudo-terminal; return (status, screen text)."""
    primary, secondary = pty.openpty()
    # A real terminal has a size (a fresh pseudo-terminal's is 0x0, where bars draw nothing).
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "COLUMNS": "120"}
    process = subprocess.Popen([sys.executable, "-m", "copycat_tf.cli.main", *map(str, args)], stdin=subprocess.DEVNULL,
                               stdout=secondary, stderr=secondary, cwd=cwd, env=env)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # the terminal closes when the process is gone
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    return process.wait(timeout=600), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_log_lines_stay_off_the_progress_bar_and_training_says_one_line(tmp_path):
    target = tmp_path / "target.onnx"
    make_linear_classifier(target, image_shape=(12, 12, 1))
    status, screen = _on_a_terminal("steal", target, "--queries", "noise:uniform", "--budget", 1200,
                                    "--epochs", 2, "--out", tmp_path / "run", cwd=tmp_path)
    assert status == 0, screen
    assert "labeling" in screen and "img/s" in screen  # a bar was drawn on the terminal
    assert re.search(r"copycat-tf: round 2/\d+", screen)  # the balanced strategy logged while buying
    for line in re.split(r"[\r\n]", screen):
        assert "copycat-tf: " not in line or line.lstrip("\x1b[A ").startswith("copycat-tf: "), line
    epochs = re.findall(r"copycat epoch (\d+)/(\d+)", screen)
    assert epochs and all(done == total for done, total in epochs)  # only each training's last epoch


@pytest.mark.slow
def test_quiet_prints_results_only_and_verbose_every_epoch(tmp_path):
    target = tmp_path / "target.onnx"
    make_linear_classifier(target, image_shape=(12, 12, 1))
    args = ("steal", target, "--queries", "noise:uniform", "--budget", 300, "--strategy", "paper",
            "--epochs", 3, "--out", tmp_path / "run")
    status, quiet = _on_a_terminal("-q", *args, cwd=tmp_path)
    assert status == 0, quiet
    assert "labeling" not in quiet and "copycat-tf: stage" not in quiet and "epoch" not in quiet
    assert "copycat agrees with the target" in quiet
    status, verbose = _on_a_terminal("-v", *args, "--overwrite", cwd=tmp_path)
    assert status == 0, verbose
    assert {f"copycat epoch {k}/3" for k in (1, 2, 3)} <= set(re.findall(r"copycat epoch \d/3", verbose))


@pytest.mark.slow
def test_steal_closes_each_bar_before_the_next_stage_and_a_rerun_names_only_its_budget(tmp_path):
    target = tmp_path / "target.onnx"
    make_linear_classifier(target, image_shape=(8, 8, 1), num_classes=10)
    args = ("steal", target, "--queries", "noise:uniform", "--budget", 1200, "--epochs", 2,
            "--test-data", "digits:test", "--out", tmp_path / "run")
    status, screen = _on_a_terminal(*args, cwd=tmp_path)
    assert status == 0, screen
    buying, training, evaluating = (screen.index(f"copycat-tf: stage {k}/3: ") for k in (1, 2, 3))
    # Every step of the buying stage drew its own bar there, and none is redrawn later.
    for bar in ("labeling:", "round 2/2 scout:", "round 2/2 scoring:"):
        assert bar in screen[buying:training], (bar, screen)
        assert bar not in screen[training:], (bar, screen)
    assert "training copycat:" in screen[training:evaluating] and "training copycat:" not in screen[evaluating:]
    assert "querying both models:" in screen[evaluating:]
    # Each bar's last frame is its step finished: closed when done, never left behind mid-way.
    for bar, total in (("labeling:", "1200/1200"), ("round 2/2 scout:", "3/3"), ("round 2/2 scoring:", "6000/6000"),
                       ("training copycat:", "2/2"), ("querying both models:", "359/359")):
        counts = re.findall(re.escape(bar) + r"[^\r\n|]*\|[^|\r\n]*\| *(\d+/\d+) \[", screen)
        assert counts and counts[-1] == total, (bar, counts)
    assert "600/600" in screen[buying:training]  # the first round's own bar, finished

    status, rerun = _on_a_terminal(*args, cwd=tmp_path)
    assert status == 0, rerun
    assert [int(n) for n in re.findall(r"\(budget (\d+)\)", rerun)] in ([], [1200])
    assert "fake dataset complete: 1,200 records for 1,200 queries, reused" in rerun
    assert re.search(r"copycat complete in \S+, reused \(--overwrite trains it again\)", rerun)
    assert "labeling:" not in rerun and "training copycat:" not in rerun  # nothing bought or trained again
