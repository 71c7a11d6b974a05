"""PRADA replay speed: the vectorised replay against a plain one-query-at-a-time transcription.

Times, interleaved and best of ``--repeat``, on Fashion-MNIST training images (28x28, float
pixels in [0, 1], true labels standing in for the model's predictions, i.i.d. order):

    project     ``copycat_tf.audit.detection.replay_prada`` (chunked float32 matrix products,
                sorted pool grown between checks)
    reference   the algorithm as written: each query's distances to its class's growing set
                with one numpy expression, and at each check the pool rebuilt from every
                distance so far (the shape of the authors' reference code, vectorised per
                query instead of per set member)

on ``--compare`` queries (the reference is quadratic), checks that both give the same
alarm and W curve, then times the project alone on ``--count`` queries (30,000 by default:
the audit's largest default budget). Prints wall and CPU seconds.

Usage:
    python -m benchmarks.perf.prada                   # 5,000 compared, 30,000 project alone
    python -m benchmarks.perf.prada --count 100000 --repeat 1
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from benchmarks.measure import interleaved, machine
from benchmarks.row import Row, add_json_option, write_rows


def plain_prada(x: np.ndarray, labels: np.ndarray, delta: float = 0.9):
    from scipy.stats import shapiro

    x = x.reshape(len(x), -1).astype(np.float32)
    members, joined_with, threshold = {}, {}, {}
    distances = np.full(len(x), np.nan)
    checks, ws, first = [], [], None
    for i, (query, c) in enumerate(zip(x, labels.tolist())):
        if c not in members:
            members[c], joined_with[c], threshold[c] = [query], [0.0], 0.0
        else:
            d = float(np.sqrt(((np.asarray(members[c]) - query) ** 2).sum(axis=1).min()))
            distances[i] = d
            if d > threshold[c]:
                members[c].append(query)
                joined_with[c].append(d)
                threshold[c] = max(threshold[c], np.mean(joined_with[c]) - np.std(joined_with[c]))
        if i % 10 == 0:
            seen = labels[:i + 1]
            given = ~np.isnan(distances[:i + 1])
            counts = np.bincount(seen[given], minlength=int(labels.max()) + 1)
            pool = distances[:i + 1][given & (counts[seen] >= 10)]
            if len(pool) > 100:
                pool = pool[np.abs(pool - pool.mean()) < 3 * pool.std()]
            if len(pool) > 100:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", UserWarning)
                    w = shapiro(pool).statistic
                checks.append(i)
                ws.append(w)
                if w < delta and first is None:
                    first = i
    return first, np.array(checks), np.array(ws)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__.splitlines()[0])
    parser.add_argument("--compare", type=int, default=5000, help="queries for the side-by-side")
    parser.add_argument("--count", type=int, default=30000, help="queries for the project alone")
    parser.add_argument("--repeat", type=int, default=3)
    add_json_option(parser)
    args = parser.parse_args(argv)

    from copycat_tf.audit.detection import replay_prada
    from copycat_tf.datasets import load_labelled

    train = load_labelled("fashion-mnist:train")
    images = train.images.astype(np.float32) / 255.0
    labels = train.labels
    host = machine()
    print(f"{host}; Fashion-MNIST 28x28 training images in their file order", flush=True)

    n = args.compare
    project = replay_prada(images[:n], labels[:n])
    first, checks, ws = plain_prada(images[:n], labels[:n])
    same = project.first_alarm == first and np.array_equal(project.check_indices, checks) \
        and np.allclose(project.w, ws, rtol=1e-4)
    print(f"  same alarm and W curve on {n:,} queries: {same} (alarm {project.first_alarm}, "
          f"{len(ws)} checks, min W {project.min_w:.4f})", flush=True)
    best = interleaved({"project": lambda: replay_prada(images[:n], labels[:n]),
                        "reference": lambda: plain_prada(images[:n], labels[:n])}, args.repeat)
    print(f"{n:,} queries: project {best['project']:.2f} s, reference {best['reference']:.2f} s, "
          f"ratio project / reference = {best['project'] / best['reference']:.3f}", flush=True)

    count = min(args.count, len(images))
    runs = []
    for _ in range(args.repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        result = replay_prada(images[:count], labels[:count])
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    wall, cpu = min(runs)
    print(f"{count:,} queries of 28x28: project {wall:.2f} s wall, {cpu:.2f} s CPU (best of {args.repeat}); "
          f"{len(result.w):,} checks, growing sets {result.growing_set:,}, alarm {result.first_alarm}")
    write_rows(args.json, [
        Row("prada", f"replay, {n:,} queries", "wall", best["project"], "s", reference=best["reference"],
            machine=host),
        Row("prada", f"replay, {count:,} queries, project alone", "wall", wall, "s", machine=host),
        Row("prada", f"replay, {count:,} queries, project alone", "cpu", cpu, "s", machine=host)])


if __name__ == "__main__":
    main()
