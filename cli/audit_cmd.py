"""`copycat-tf audit`: how much of a model can be copied, per budget and output policy."""

import click

from copycat_tf.execution import Execution
from copycat_tf.audit import DEFAULT_BUDGETS, DEFAULT_DEFENCES, DEFAULT_EVAL_QUERIES, AuditPlan, audit
from copycat_tf.audit.detection import DEFAULT_DELTA
from copycat_tf.audit.label_defences import DEFAULT_TAU, DEFAULT_WATERMARK_RATE
from copycat_tf.cli.helptext import Command
from copycat_tf.cli.options import (
    arch_option,
    batch_size_option,
    deterministic_option,
    devices_option,
    engine_options,
    epochs_option,
    eval_data_option,
    fine_tune_option,
    labeling_engine,
    oracle_options,
    overwrite_option,
    price_option,
    queries_option,
    resize_option,
    seed_option,
    strategy_option,
    labelled_test_option,
    target_argument,
    target_spec,
    train_config,
    weights_option,
)
from copycat_tf.cli.progress import StageBars
from copycat_tf.errors import CopycatError
from copycat_tf.queries.spec import QuerySpec
from copycat_tf.report import kappa_text, percent


def _taus(ctx, param, value):
    try:
        return tuple(float(v) for v in str(value).split(","))
    except ValueError:
        raise click.BadParameter(f"expected numbers between 0 and 1 such as 0.3,0.5; received {value!r}") from None


@click.command("audit", cls=Command)
@target_argument
@queries_option()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False),
              help="The audit's folder (fakeset/, fakesets/, copycats/, audit.html, ...). Rerun to resume.")
@click.option("--budgets", default=",".join(map(str, DEFAULT_BUDGETS)), show_default=True, metavar="N,N,...",
              help="Query budgets to measure; only the largest is bought, smaller ones are its first N records.")
@click.option("--defences", default=",".join(DEFAULT_DEFENCES), show_default=True, metavar="NAME,...",
              help="Defences to simulate. Output policies: none (full probabilities), topK (top1 = "
                   "label only), roundD (D decimals), reverse-sigmoid (ART's, beta 1, gamma 0.1). "
                   "Label defences: misinformation (adaptive misinformation: wrong labels for "
                   "queries the model is unsure of), watermark (DAWN-style: a keyed share of "
                   "answers falsified, then the copy is tested for them).")
@click.option("--misinformation-tau", "misinformation_taus", default=str(DEFAULT_TAU), show_default=True,
              callback=_taus, metavar="T[,T,...]",
              help="Confidence below which adaptive misinformation answers falsely; a copycat is "
                   "trained behind each value given.")
@click.option("--watermark-rate", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=DEFAULT_WATERMARK_RATE, show_default=True, metavar="R",
              help="Share of queries the simulated watermark answers with a keyed wrong label.")
@click.option("--benign-data", metavar="SPEC",
              help="Images honest callers send (default --test-data): what label defences cost them, "
                   "and PRADA's control stream.")
@click.option("--prada-delta", type=click.FloatRange(0, 1, min_open=True), default=DEFAULT_DELTA,
              show_default=True, metavar="D",
              help="PRADA detection alarms when the Shapiro-Wilk W of query distances drops below D.")
@click.option("--no-detection", "detect", is_flag=True, flag_value=False, default=True,
              help="Skip the PRADA replay over the queries as bought.")
@labelled_test_option
@eval_data_option
@price_option
@click.option("--eval-queries", type=click.IntRange(min=0), default=DEFAULT_EVAL_QUERIES, show_default=True,
              metavar="N",
              help="Fresh query images bought to measure agreement when there is no --test-data "
                   "or --eval-data; part of the total the audit says it will buy first (0: none).")
@strategy_option
@arch_option()
@weights_option
@fine_tune_option
@epochs_option
@seed_option
@deterministic_option
@overwrite_option("the audit")
@batch_size_option()
@resize_option
@devices_option
@engine_options
@oracle_options
def audit_command(target, queries, out_dir, budgets, defences, misinformation_taus, watermark_rate, benign_data,
                  prada_delta, detect, test_data, eval_data, price_per_1k, eval_queries, strategy, arch, weights,
                  fine_tune, epochs, seed, deterministic, overwrite, batch_size, resize, devices, **options):
    """Measure how much of TARGET can be copied, for how many queries, behind which output policy.

    The largest budget's queries are bought once, keeping TARGET's full probabilities.
    Each output policy (--defences) is then applied offline to those answers, as an
    attacker behind it would have seen them, and for each budget N a copycat is trained
    from scratch on the first N records and scored against TARGET (performance ratio
    with --test-data, else agreement). Label-only stealing needs only the top-1 label,
    so policies that perturb probabilities do not stop it; the top1 rows show what is
    left to such an attacker. OUT/audit.html (self-contained, opens offline), audit.md
    and audit.json hold the contract, sha256, results, a curve, costs and a verdict.
    Every stage resumes: rerun the same command to finish an interrupted audit.

    \b
    Examples:
      copycat-tf audit vendor.onnx --queries ./imagenet --out runs/audit
      copycat-tf audit target.onnx --queries photos --budgets 1000,5000,20000 \\
          --test-data fashion-mnist:test --price-per-1k 1.50 --out runs/audit
      copycat-tf audit target.onnx --queries ./imagenet --defences top1,top5,round1 \\
          --strategy paper --epochs 5 --out runs/audit-paper
    """
    if test_data is not None and eval_data is not None:
        raise CopycatError("give --test-data or --eval-data, not both: each is the images the copycats "
                           "are scored on (--eval-data needs no labels)")
    plan = AuditPlan(budgets=budgets, defences=defences, misinformation_taus=misinformation_taus,
                     watermark_rate=watermark_rate, eval_queries=eval_queries, benign_data=benign_data,
                     detect=detect, prada_delta=prada_delta)
    config = train_config(strategy, None, arch=arch, weights=weights, fine_tune=fine_tune, epochs=epochs, seed=seed,
                          deterministic=deterministic)
    target = target_spec(target, options, price_per_1k)
    with labeling_engine(options) as engine, StageBars() as bars:
        queries = QuerySpec(tuple(queries), resize=resize, batch_size=batch_size)
        result = audit(target, queries, out_dir, plan=plan, strategy=strategy, train_config=config,
                       test_data=test_data if test_data is not None else eval_data,
                       execution=bars.watching(Execution(overwrite=overwrite, engine=engine, devices=devices)))
    _print(result)


def _print(result) -> None:
    report = result.report
    click.echo(f"target    {report['target']} (sha256 {report['sha256'][:16]}...)")
    click.echo(f"queries   {report['queries_spent']:,} bought for the attack, "
               f"{report['eval_queries_spent']:,} to measure agreement, "
               f"{report['evaluation_images_spent']:,} evaluation images: {report['total_queries_spent']:,} in all")
    priced = report["price_per_1k"] is not None
    click.echo(f"{'queries':>9}  {'defence':<16}{'ratio':>8}{'agreement':>11}{'per-class':>11}{'kappa':>7}"
               + (f"{'cost':>10}" if priced else ""))
    for row in result.results:
        line = (f"{row.queries:>9,}  {row.defence:<16}{percent(row.performance_ratio):>8}{percent(row.agreement):>11}"
                f"{percent(row.per_class_agreement):>11}{kappa_text(row.kappa):>7}")
        if priced:
            line += f"{row.cost:>10,.2f}"
        click.echo(line)
    for kind in ("html", "markdown", "json", "curve"):
        click.echo(f"report    {result.files[kind]}")
    click.echo(result.verdict)
