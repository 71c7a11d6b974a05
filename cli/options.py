"""Options shared by several commands, each defined once, with the library's own constants.

Commands never import each other; what two of them share lives here (options) or in
:mod:`copycat_tf.cli.progress` and :mod:`copycat_tf.cli.output` (what they show).
"""

from __future__ import annotations

import functools
import inspect
import os

import click

from copycat_tf.contract import CHANNEL_ORDERS, LAYOUTS
from copycat_tf.errors import CopycatError
from copycat_tf.fakeset import LABEL_MODES
from copycat_tf.fakeset.ray_engine import ENGINES, INSTALL_HINT, RayEngine, open_engine
from copycat_tf.models import ARCHITECTURES
from copycat_tf.oracle import ContractOverrides, HttpOptions, TargetSpec, is_url
from copycat_tf.oracle.http import (
    HTTP_OUTPUT_KINDS,
    PROTOCOLS,
    merge_headers,
    parse_header_lines,
    parse_headers,
    read_header_file,
)
from copycat_tf.queries import RESIZE_POLICIES
from copycat_tf.queries.batch_memory import MAX_QUERY_BATCH, METERED_QUERY_BATCH, QUERY_BATCH_VALUES, query_batch_size
from copycat_tf.strategies import DEFAULT_STRATEGY, STRATEGIES, strategy_named
from copycat_tf.training import BALANCE_MODES, PSEUDO_LABEL_THRESHOLD, TrainConfig
from copycat_tf.training.devices import parse_devices

ARCH_HELP = (f"Architecture: {', '.join(ARCHITECTURES)}. small_cnn is fast on a CPU; vgg16 is the "
             "paper's copycat (slow on a CPU).")
#: Where a URL target's headers may come from besides --header: newline-separated
#: 'Name: value' lines, kept out of the process list and shell history.
HEADERS_VARIABLE = "COPYCAT_TF_HEADERS"
TARGET_HELP = ("TARGET is an ONNX file, or the http(s) URL of a model served with the Open Inference "
               "Protocol v2 (KServe, Triton, MLServer: .../v2/models/NAME) or TF Serving REST "
               "(.../v1/models/NAME); see README, Remote targets.")
QUERIES_HELP = ("Query images, repeatable: a folder (searched recursively, each image sent once), "
                "views:FOLDER (endless seeded crops, rescales and flips of a folder's images: 500 "
                "photographs of the right kind can be spent as 10,000 queries), a .txt list of image "
                "paths, a .npy/.npz array, noise:uniform, noise:gaussian, photos (the built-in "
                "photo pool) or procedural (drawn pictures: dead leaves, 1/f noise, fractals); "
                "':WEIGHT' sets a source's share, e.g. --queries photos --queries views:./pd:0.2. "
                "Unlabelled images of the target's own kind are the papers' biggest lever "
                "(Correia-Silva et al. 2021: +0.19 on a facial-expression copy at 100k queries).")


def _floats(ctx, param, value):
    if value is None:
        return None
    try:
        return tuple(float(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected one or three comma-separated numbers; received {value!r}") from None


def _size(ctx, param, value):
    if value is None:
        return None
    try:
        height, width = (int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected HEIGHT,WIDTH; received {value!r}") from None
    return height, width


def _image_shape(ctx, param, value):
    if value is None:
        return None
    try:
        height, width, channels = (int(v) for v in value.split(","))
    except ValueError:
        raise click.BadParameter(f"expected HEIGHT,WIDTH,CHANNELS such as 32,32,3; received {value!r}") from None
    return height, width, channels


def _stack(options):
    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def oracle_options(command):
    """Add the target-contract overrides (``--mean``, ``--std``, ``--layout``, ...)."""
    return _stack([
        click.option("--mean", callback=_floats, metavar="M[,M,M]",
                     help="Model input = (pixel - mean) / std, pixel units. Default: from the "
                          "model's metadata, else 0. Overrides only the mean."),
        click.option("--std", callback=_floats, metavar="S[,S,S]",
                     help="See --mean. Default: from metadata, else 255 for float inputs "
                          "([0, 1] scaling) and 1 for uint8 inputs (raw pixels). Overrides only the std."),
        click.option("--channel-order", type=click.Choice(CHANNEL_ORDERS),
                     help="Channel order the model expects (default: from metadata, else rgb)."),
        click.option("--layout", type=click.Choice(LAYOUTS),
                     help="Input layout; default detected from the channel axis."),
        click.option("--output", "output_name", metavar="NAME",
                     help="Output holding the class rows, when the model has several."),
        click.option("--output-kind", type=click.Choice(HTTP_OUTPUT_KINDS),
                     help="What the output holds; default probed with a few noise images "
                          "(labels: a remote API answering one class per image)."),
        click.option("--input-size", callback=_size, metavar="H,W",
                     help="Image size for models whose input size is dynamic."),
        click.option("--provider", "providers", multiple=True, metavar="NAME",
                     help="onnxruntime execution provider, repeatable in priority order "
                          "(default CPUExecutionProvider). ONNX files only."),
        # A TARGET that is an http(s) URL: a model behind an inference API.
        click.option("--protocol", type=click.Choice(PROTOCOLS),
                     help="URL targets: the inference protocol (default read from the URL's path: "
                          "/v2/models/NAME is v2, /v1/models/NAME is tfserving)."),
        click.option("--header", "headers", multiple=True, metavar="@FILE|'NAME: VALUE'",
                     help=f"URL targets: request headers, repeatable. Keep a token off the command "
                          f"line: @FILE reads 'Name: value' lines from FILE (blank and # lines "
                          f"ignored), and {HEADERS_VARIABLE} holds such lines too; a 'NAME: VALUE' "
                          f"given here adds a header or replaces one of the same name. Values are "
                          f"never shown, written to disk or logged."),
        click.option("--rate", metavar="N/s",
                     help="URL targets: at most N requests per second (or N/min), retries included."),
        click.option("--concurrency", type=click.IntRange(min=1), metavar="N",
                     help="URL targets: requests in flight at once (default 1)."),
        click.option("--timeout", type=click.FloatRange(min=0, min_open=True), metavar="SECONDS",
                     help="URL targets: seconds per request attempt (default 30)."),
        click.option("--insecure", is_flag=True, default=None,
                     help="URL targets: do not verify TLS certificates (verified by default)."),
        click.option("--class-names", metavar="A,B,...",
                     help="URL targets answering class names: the names in class-index order."),
    ])(command)


def target_spec(target: str, options: dict, price_per_1k: float | None = None) -> TargetSpec:
    """Pop the target options out of a command's options as one :class:`TargetSpec`."""
    given = oracle_kwargs(options, target)
    overrides = ContractOverrides(**{name: given.pop(name) for name in
                                     ("preprocessing", "layout", "output", "output_kind", "input_size", "class_names")
                                     if name in given})
    headers = tuple(f"{name}: {value}" for name, value in given.pop("headers", {}).items())
    http = HttpOptions(headers=headers, **{name: given.pop(name) for name in
                                           ("protocol", "rate", "concurrency", "timeout", "insecure") if name in given})
    providers = tuple(given.pop("providers")) if "providers" in given else None
    return TargetSpec(target, overrides=overrides, http=http, providers=providers, price_per_1k=price_per_1k)


def oracle_kwargs(options: dict, target: str) -> dict:
    """Pop the --mean/--std/... values out of a command's options as ``open_oracle`` arguments.

    Each of ``--mean``, ``--std`` and ``--channel-order`` overrides only its own field of
    the preprocessing; the others keep the model's metadata or its input type's default.
    A URL ``target`` also gets the headers of :data:`HEADERS_VARIABLE` (see
    :func:`request_headers`).
    """
    overrides = {name: options.pop(key) for name, key in
                 (("mean", "mean"), ("std", "std"), ("channel_order", "channel_order"))}
    overrides = {name: value for name, value in overrides.items() if value is not None}
    kwargs = {
        "preprocessing": overrides or None,
        "layout": options.pop("layout"),
        "output": options.pop("output_name"),
        "output_kind": options.pop("output_kind"),
        "input_size": options.pop("input_size"),
        "providers": list(options.pop("providers")) or None,
        "protocol": options.pop("protocol"),
        "headers": request_headers(target, options.pop("headers")),
        "rate": options.pop("rate"),
        "concurrency": options.pop("concurrency"),
        "timeout": options.pop("timeout"),
        "insecure": options.pop("insecure"),
        "class_names": options.pop("class_names"),
    }
    # Only what was given: open_oracle() refuses an option that does not fit the target.
    return {name: value for name, value in kwargs.items() if value is not None}


def request_headers(target: str, given) -> dict[str, str] | None:
    """The headers for ``target``: :data:`HEADERS_VARIABLE` (URL targets only), then each
    ``--header @FILE``, then the ``--header 'Name: value'`` options, a later source replacing
    an earlier one's header of the same name. None when there are none.
    """
    environment = os.environ.get(HEADERS_VARIABLE, "")
    layers = [parse_header_lines(environment, HEADERS_VARIABLE)] if is_url(target) and environment.strip() else []
    layers += [read_header_file(text[1:]) for text in given if text.startswith("@")]
    inline = [text for text in given if not text.startswith("@")]
    if inline:
        layers.append(parse_headers(inline))
    return merge_headers(*layers) if layers else None


def target_argument(command):
    """The TARGET argument, with :data:`TARGET_HELP` as the second paragraph of the command's help."""
    summary, _, rest = inspect.cleandoc(command.__doc__).partition("\n\n")
    command.__doc__ = f"{summary}\n\n{TARGET_HELP}\n\n{rest}"
    return click.argument("target", type=click.Path(dir_okay=False))(command)


def renamed_option(old: str, new: str, *, why: str = "", **attrs):
    """Still read ``old``, an option renamed ``new``: hidden from ``--help``, a one-line notice
    on stderr, and its value given to the command as ``new``'s when ``new`` is not given.

    ``attrs`` are ``new``'s click type and checks, so the old spelling accepts what the new
    one does.
    """
    dest = new.lstrip("-").replace("-", "_")
    hidden = f"renamed_{dest}"

    def decorate(function):
        @functools.wraps(function)
        def command(*args, **kwargs):
            value = kwargs.pop(hidden)
            if value is not None:
                click.echo(f"copycat-tf: {old} is now {new}{why}", err=True)
                if kwargs.get(dest) is None:
                    kwargs[dest] = value
            return function(*args, **kwargs)

        return click.option(old, hidden, hidden=True, **attrs)(command)

    return decorate


def _devices(ctx, param, value):
    try:
        return parse_devices(value)
    except CopycatError as exc:
        raise click.BadParameter(str(exc)) from None


devices_option = click.option(
    "--devices", callback=_devices, metavar="N|all",
    help="Train the copycat on N GPUs of this machine, or all of them (tf.distribute.MirroredStrategy; "
         "the batch is split between them). Default: one device. Several machines: see README, Scaling.")


def engine_options(command):
    """Add ``--engine``, ``--ray-address``, ``--ray-actors`` and ``--ray-threads``: where labeling runs."""
    return _stack([
        click.option("--engine", type=click.Choice(ENGINES), default="local", show_default=True,
                     help=f"Where labeling runs: in this process, or on a Ray cluster ({INSTALL_HINT}). "
                          "Both write the same fake dataset; a run started on one resumes on the other."),
        click.option("--ray-address", metavar="auto|HOST:PORT",
                     help="The cluster for --engine ray: auto (the one `ray start` made on this machine) "
                          "or its head node's HOST:PORT. Default: RAY_ADDRESS, else Ray started in this "
                          "process."),
        click.option("--ray-actors", type=click.IntRange(min=1), metavar="N",
                     help="Oracle actors for --engine ray, each holding the whole target (default: one "
                          "per GPU for a GPU --provider, else the cluster's CPUs / --ray-threads). Fewer "
                          "actors keep a large target's memory down."),
        click.option("--ray-threads", type=click.IntRange(min=1), default=1, show_default=True, metavar="N",
                     help="onnxruntime threads (and CPUs reserved) per oracle actor."),
    ])(command)


def labeling_engine(options: dict):
    """Pop the --engine/--ray-* values: a context manager giving ``"local"`` or a RayEngine."""
    engine, address = options.pop("engine"), options.pop("ray_address")
    actors, threads = options.pop("ray_actors"), options.pop("ray_threads")
    if engine == "local":
        for name, given in (("--ray-address", address is not None), ("--ray-actors", actors is not None),
                            ("--ray-threads", threads != 1)):
            if given:
                raise click.UsageError(f"{name} needs --engine ray", ctx=click.get_current_context())
        return open_engine("local")
    return RayEngine(address, actors=actors, threads=threads)


def arch_option(text: str = ARCH_HELP):
    """``--arch``, checked by the library so a wrong name is one clear error line."""
    return click.option("--arch", default="small_cnn", show_default=True, metavar="NAME", help=text)


weights_option = click.option(
    "--weights", metavar="imagenet|PATH",
    help="Start a vgg16, mobilenet_v2 or resnet50 copycat from pretrained backbone weights, as the "
         "papers do: 'imagenet' (Keras downloads them once, then reads its cache; offline, put the "
         "file there) or a Keras weights file of the backbone without its top. Training then first "
         "fits the new head on the frozen backbone, then fine-tunes. Checked before any query is bought.")

fine_tune_option = click.option(
    "--fine-tune", type=click.Choice(("top", "all")), default="top", show_default=True,
    help="With --weights: what fine-tuning trains besides the head: the backbone's last block "
         "(fast on a CPU) or all of it. BatchNorm keeps its pretrained statistics either way.")


shape_option = click.option(
    "--image-shape", callback=_image_shape, metavar="H,W,C",
    help="Size and channels (1 or 3) to fit a folder dataset's images to, e.g. 64,64,3.",
)

resize_option = click.option(
    "--resize", type=click.Choice(RESIZE_POLICIES), default=RESIZE_POLICIES[0], show_default=True,
    help="Fit images to the target's size by stretching, centre-cropping or padding.")

learning_rate_option = click.option(
    "--learning-rate", type=float, metavar="LR",
    help="Starting learning rate, decayed along a half cosine over the epochs (default: the "
         "architecture's).")

epochs_option = click.option(
    "--epochs", type=int, metavar="N",
    help="Training epochs (default: the architecture's; a copycat's are raised to at least 500 "
         "training steps on small fake datasets).")

seed_option = click.option(
    "--seed", type=int, default=0, show_default=True,
    help="Seeds every random choice: query order, mixing, noise and crops, weights, shuffling "
         "and held-out slices. The same seed and inputs give the same run.")

labels_option = click.option(
    "--labels", type=click.Choice(LABEL_MODES), default="hard", show_default=True,
    help="hard: the target's top class only (the paper's threat model); soft: also its "
         "probabilities, kept when labeling and learnt when training (which needs a fake "
         "dataset labelled soft).")

semi_supervised_option = click.option(
    "--semi-supervised/--no-semi-supervised", default=False, show_default=True,
    help="After training, let the copycat label images the target never saw (kept only where it is "
         f"at least {PSEUDO_LABEL_THRESHOLD:.0%} sure, judged on the image and its mirror image) and train on "
         "them too, under strong augmentation (FixMatch-style pseudo-labels). Costs no queries: the images "
         "are never sent to the target. Off by default until measured (see BENCHMARKS.md).")

price_option = click.option(
    "--price-per-1k", type=click.FloatRange(min=0), metavar="PRICE",
    help="Price of 1,000 queries, to state what the queries bought cost on a paid API.")


def queries_option(default: tuple[str, ...] | None = None):
    """``--queries``, required unless a ``default`` is given."""
    return click.option("--queries", multiple=True, required=default is None, default=default,
                        show_default=default is not None, metavar="SRC[:WEIGHT]", help=QUERIES_HELP)


def budget_option(default: int):
    """``--budget``: the queries a command may buy."""
    # A plain int: the library's own check says what a budget must be.
    return click.option("--budget", type=int, default=default, show_default=True,
                        metavar="N", help="Queries to buy from the target (one image each).")


def batch_size_option():
    """``--batch-size`` of querying: images per call (training batches are ``train``'s own)."""
    return click.option("--batch-size", type=click.IntRange(min=1), metavar="N",
                        help="Images sent in one call to a model (one request to a URL target); default: "
                             f"as many as fit {QUERY_BATCH_VALUES * 4 // 2**20} MiB of float32 model input, "
                             f"at most {MAX_QUERY_BATCH:,} ({METERED_QUERY_BATCH} for a paid target): "
                             f"{query_batch_size((240, 240, 3))} at 240x240x3, "
                             f"{query_batch_size((32, 32, 3))} at 32x32x3.")

deterministic_option = click.option(
    "--deterministic", is_flag=True,
    help="Make TensorFlow's training ops deterministic, so the same --seed gives the same "
         "copycat to the bit (slower; see BENCHMARKS.md).")

strategy_option = click.option(
    "--strategy", type=click.Choice(STRATEGIES), default=DEFAULT_STRATEGY, show_default=True,
    help="balanced: spend the budget in rounds of transformed queries chosen to reach the "
         "target's rare classes, training a scout copycat between rounds; paper: the papers' "
         "single pass over the queries as they come.")


labelled_test_option = click.option(
    "--test-data", metavar="SPEC",
    help="Labelled test images to compare TARGET and the copycat on: a named split "
         "(fashion-mnist:test, digits:test, mnist:test), a .npz with x and y, or a folder of "
         "class subfolders.")

eval_data_option = click.option(
    "--eval-data", metavar="SPEC",
    help="Any images to measure the copy on, labelled or not: a folder (flat, or of class "
         "subfolders), a .npz with x (and y), or a named split. Agreement always, accuracies "
         "when labelled; never sent as attack queries. Vendor models rarely come with labelled data.")


def overwrite_option(what: str):
    """``--overwrite``: the same meaning in every command (delete only the tool's own files)."""
    return click.option("--overwrite", is_flag=True,
                        help=f"Start {what} again: delete copycat-tf's own files in --out first "
                             "(other files there are kept).")


def run_options(budget: int):
    """Options shared by `steal` and `demo`: the attack's budget and the copycat's training."""
    return _stack([
        budget_option(budget),
        strategy_option,
        arch_option(),
        weights_option,
        fine_tune_option,
        epochs_option,
        labels_option,
        click.option("--balance", type=click.Choice(BALANCE_MODES),
                     help="Rebalance rare classes when training the copycat (default: "
                          "sqrt-weights with --strategy balanced, none with paper)."),
        seed_option,
        deterministic_option,
        overwrite_option("the run"),
    ])


def train_config(strategy: str, balance: str | None, **copycat) -> TrainConfig:
    """The copycat's :class:`TrainConfig` from the run options named as its fields (``arch``,
    ``weights``, ``epochs``, ...); ``balance`` defaults to the strategy's."""
    return TrainConfig(balance=balance or strategy_named(strategy).copycat_balance, **copycat)
