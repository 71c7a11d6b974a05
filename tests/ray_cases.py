"""Labeling cases run on an in-process Ray (``ray.init(num_cpus=3)``), for test_ray_engine.py.

Run inside a :class:`loopback_ns.LoopbackNamespace` as ``python ray_cases.py CASES.json
RESULTS.json``: one Ray start serves every case. Each case is a :func:`label` call with
the Ray engine; ``kill_after`` freezes the oracle actor (SIGSTOP) once that many records
are in, so the batches sent to it next cannot be answered, then kills it (SIGKILL) a
second later: the run must buy those batches again from the restarted actor. Results
(or the error's text) go to RESULTS.json; the test compares the folders with the local
engine's.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path


def _actor_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes().startswith(b"ray::_OracleActor"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _freeze_then_kill(state: dict):
    def progress(report):
        if state.get("killed") is None and report.labeled >= state["kill_after"]:
            (pid,) = _actor_pids()
            os.kill(pid, signal.SIGSTOP)
            threading.Timer(1.0, os.kill, (pid, signal.SIGKILL)).start()
            state["killed"] = pid

    return progress


def run_case(case: dict) -> dict:
    from copycat_tf.errors import CopycatError
    from copycat_tf.execution import Execution
    from copycat_tf.fakeset import label
    from copycat_tf.fakeset.ray_engine import RayEngine
    from copycat_tf.oracle import OnnxOracle

    state = {"kill_after": case.get("kill_after")}
    try:
        with RayEngine(actors=case.get("actors"), window=case.get("window")) as engine:
            oracle = OnnxOracle(case["target"], budget=case.get("oracle_budget"))
            fakeset = label(oracle, case["specs"], case["budget"], case["out"], labels=case.get("labels", "hard"),
                            seed=case.get("seed", 0), batch_size=case["batch_size"], shard_size=case["shard_size"],
                            execution=Execution(engine=engine,
                                                label_progress=_freeze_then_kill(state) if state["kill_after"] else None))
            after = _actor_pids()
    except CopycatError as exc:
        return {"error": str(exc)}
    return {"count": fakeset.count, "oracle_spent": oracle.queries_spent, "killed": state.get("killed"),
            "actors_after": after}


def main(cases_path: str, results_path: str) -> None:
    import ray

    # Three CPUs: room for two oracle actors beside the decoding.
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False)
    cases = json.loads(Path(cases_path).read_text())
    results = {case["name"]: run_case(case) for case in cases}
    ray.shutdown()
    Path(results_path).write_text(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:])
