"""Command-line entry points: ``nst-tf stylize|train|export`` (= ``python scripts/<command>.py``).

Entry points only parse flags, build the library's config and call the library.
Flags and input files are checked before TensorFlow is imported, so a mistake
answers at once. A user mistake (a bad flag or any ``NstError``) prints one line
``error: ...`` and exits 2; Ctrl-C exits 130 after saving what a long run has made so far.
TensorFlow's C++ start-up lines are kept off the terminal unless ``--verbose`` is given
or the user set ``TF_CPP_MIN_LOG_LEVEL``.
"""

import argparse
import contextlib
import dataclasses
import difflib
import os
import pathlib
import sys
import tempfile
import time

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Read at start-up: a level the user set shows TensorFlow's own logging as they asked.
_USER_TF_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")


@contextlib.contextmanager
def _stderr_captured():
    """Sends file descriptor 2 to a temporary file; yields a function returning what was written.

    TensorFlow's native libraries print their start-up lines (oneDNN and CUDA notices,
    "All log messages before absl::InitializeLog() ...", "failed call to cuInit") with
    absl logging before it is initialized, which ignores ``TF_CPP_MIN_LOG_LEVEL``; only
    the file descriptor itself can keep them off the terminal.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)

        def text():
            sys.stderr.flush()
            sink.seek(0)
            return sink.read().decode(errors="replace")

        try:
            yield text
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def native_logs_hidden(verbose=False):
    """Keeps TensorFlow's native log lines off the terminal for the block; shows them if it fails.

    For work that logs from C++ after start-up (the TFLite converter's graph notices, for
    one), which ``TF_CPP_MIN_LOG_LEVEL`` set after the import no longer reaches. Nothing
    is hidden with `verbose` or when the user set ``TF_CPP_MIN_LOG_LEVEL``.

    Args:
        verbose: bool. Show the lines.
    """
    if verbose or _USER_TF_LOG_LEVEL is not None:
        yield
        return
    printed = ""
    try:
        with _stderr_captured() as captured:
            try:
                yield
            except BaseException:
                printed = captured()
                raise
    finally:
        sys.stderr.write(printed)


def import_tensorflow(verbose=False):
    """Imports TensorFlow and finds its devices without start-up noise on the terminal.

    Quiet unless `verbose` or the user set ``TF_CPP_MIN_LOG_LEVEL``; then TensorFlow
    logs as it normally does. If the import fails, what it printed is shown.

    Args:
        verbose: bool. Show TensorFlow's start-up lines.

    Returns:
        The ``tensorflow`` module.
    """
    if "tensorflow" not in sys.modules and not verbose and _USER_TF_LOG_LEVEL is None:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"  # Python-side INFO and WARNING lines, after absl starts.
    with native_logs_hidden(verbose or "tensorflow" in sys.modules):
        import tensorflow as tf

        tf.config.list_physical_devices()  # Device discovery prints the cuInit line; do it here.
    return tf


def configure_stylize_process(one_op_at_a_time=True):
    """TensorFlow settings of a process that only stylizes; call before any op runs.

    - ``TF_ONEDNN_ASSUME_FROZEN_WEIGHTS=1`` lets oneDNN cache its reordered conv filters
      (faster VGG19 steps). oneDNN reads it once, at the first convolution, so
      setting it after ``import tensorflow`` works. It gives wrong results where weights
      train, so ``train`` never sets it, nor does a call with an explicit ``argv`` (a
      library user or a test in a process that may also train).
    - ``one_op_at_a_time``: one inter-op thread. A VGG op already uses every core, and
      two concurrent ops (a Gram matrix beside the next convolution) slow each other
      down. SqueezeNet's small parallel branches are slower with it, so the CLI leaves
      it off for that backbone.

    BENCHMARKS.md, ``optimize-variants``, has the measurements. A user's own setting of
    either is kept.

    Args:
        one_op_at_a_time: bool, set ``inter_op_parallelism_threads`` to 1.
    """
    os.environ.setdefault("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS", "1")
    tf = import_tensorflow()

    if one_op_at_a_time and not os.environ.get("TF_NUM_INTEROP_THREADS"):
        try:
            tf.config.threading.set_inter_op_parallelism_threads(1)
        except RuntimeError:  # The runtime has started already: keep its thread pools.
            pass


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors: ``prog: error: ...`` and a "did you mean" for mistyped flags."""

    def parse_args(self, args=None, namespace=None):
        # A mistyped flag is the likely cause of any other error (a "required" flag
        # missing), so it is reported first.
        options = _option_strings(self)
        for token in sys.argv[1:] if args is None else args:
            if token == "--":
                break
            flag = token.split("=", 1)[0]
            if flag.startswith("--") and not any(option.startswith(flag) for option in options):
                self.error(f"unrecognized arguments: {flag}")
        return super().parse_args(args, namespace)

    def error(self, message):
        if message.startswith("unrecognized arguments:"):
            hints = []
            for word in message.split(":", 1)[1].split():
                flag = word.split("=", 1)[0]
                close = difflib.get_close_matches(flag, _option_strings(self), n=1, cutoff=0.6)
                if flag.startswith("-") and close:
                    hints.append(f"did you mean {close[0]}?" if len(message.split()) == 3
                                 else f"{flag}: did you mean {close[0]}?")
            if hints:
                message += " (" + "; ".join(hints) + ")"
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}. See {self.prog} --help.\n")


def _option_strings(parser):
    """Every ``--flag`` of `parser` and of its subcommands."""
    names = set()
    for action in parser._actions:
        names.update(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                names.update(_option_strings(sub))
    return sorted(names)


def program_name(module):
    """The command as the user typed it, for usage lines: an installed console script's name
    (``nst-tf-client``) or ``python -m <module>`` (``serving.client`` from the repository root,
    ``nst_tf_serving.client`` when installed)."""
    script = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return script if script.startswith("nst-tf") else f"python -m {module}"


def add_verbose_argument(parser):
    """``--verbose``, the flag that :func:`import_tensorflow` takes, for any command that imports TensorFlow."""
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's start-up and device messages (also shown when "
                             "TF_CPP_MIN_LOG_LEVEL is set)")



def _floats(text):
    return [float(v) for v in text.replace(",", " ").split()]


def _names(text):
    return [v for v in text.replace(",", " ").split() if v]


def _weights(text):
    """A weights flag: 'none' (random weights) becomes None; anything else is kept."""
    return None if text.lower() == "none" else text


def _stylize_epilog():
    from nst_tf.backbones import BACKBONES
    from nst_tf.config import DEFAULT_LOSS_WEIGHTS

    lines = ["defaults per backbone (content layers | style layers | content, style, TV weights):"]
    for name, spec in BACKBONES.items():
        weights = ", ".join(f"{w:g}" for w in DEFAULT_LOSS_WEIGHTS[name])
        lines.append(f"  {name}: {' '.join(spec.content_layers)} | {' '.join(spec.style_layers)} | {weights}")
    lines.append("VGG layers follow Gatys et al. 2016 (conv4_2; conv1_1..conv5_1).")
    lines.append("Exit status: 0 done, 2 bad input or diverged run, 130 interrupted (latest image saved).")
    return "\n".join(lines)


def _ints(text):
    return [int(v) for v in text.replace(",", " ").split()]


def add_stylize_arguments(parser):
    """Flags of ``stylize``. Each algorithm flag sets the StyleConfig field of the same name;
    flags left out take the preset's value, else the StyleConfig default (shown in brackets)."""
    from nst_tf.backbones import BACKBONES
    from nst_tf.config import COLOR_MATCH_MODES, INIT_MODES, LBFGS_SOLVERS, OPTIMIZERS, PRECISIONS, PRESETS, StyleConfig

    d = StyleConfig()
    io = parser.add_argument_group("files")
    io.add_argument("--content", required=True, nargs="+",
                    help="content photo (any format Pillow reads), or a folder of photos optimized one after "
                         "another into the --output folder (resumable: existing outputs are skipped); with --model "
                         "also several files or folders")
    io.add_argument("--style", nargs="+", help="one or more style images (not with --model)")
    io.add_argument("--output", required=True,
                    help="output image (.png, .jpg, .webp, .bmp, .tif); with a --content folder or several "
                         "--model inputs, a folder")
    io.add_argument("--center-crop", action="store_true",
                    help="optimize the centre square of the content: shorter side resized to --image-size, then "
                         "cropped to --image-size x --image-size, as training crops are (pixel-loss targets)")
    fast = parser.add_argument_group("fast style transfer (Johnson et al. 2016): a trained network instead "
                                     "of optimization")
    fast.add_argument("--model", help="trained TransformerNet (.keras) or SavedModel version folder")
    fast.add_argument("--tile", type=int, default=0, metavar="PX",
                      help="stylize images larger than PX in PX-sized tiles (bounded memory; .keras only; 0: off)")
    fast.add_argument("--overlap", type=int, default=32, metavar="PX", help="tile overlap, blended [32]")
    fast.add_argument("--style-name", metavar="NAME[:W,...]",
                      help="multi-style network: the style to apply, or a blend such as candy:0.7,udnie:0.3 "
                           "(weights are normalized; blending mixes the instance-norm parameters)")
    fast.add_argument("--style-strength", type=float, default=1.0, metavar="S",
                      help="multi-style network with a 'photo' style: 0 is its 'photo' style (the network's "
                           "rendering of the photo), 1 the style as trained, up to 2 stronger [1]")
    fast.add_argument("--batch-size", type=int, default=4, help="images of one size per forward pass [4]")
    io.add_argument("--mask", help="spatial control: a mask image with one grey level per style image "
                    "(darkest region takes the first style); PNG, same aspect as the content")
    io.add_argument("--save-every", type=int, default=0, metavar="N",
                    help="also save every N iterations as OUTPUT_<iteration>.ext (0: off)")
    io.add_argument("--print-every", type=int, default=0, metavar="N",
                    help="print the losses every N iterations (0: progress bar only)")
    io.add_argument("--jpeg-quality", type=int, default=95, help="JPEG quality 1-100 [95]")
    io.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    io.add_argument("--preset", choices=tuple(PRESETS),
                    help="a published recipe (layers, weights, optimizer, size, iterations, init); "
                    "explicit flags override it")
    a = parser.add_argument_group("algorithm (Gatys et al. 2016, 2017)")

    def arg(flag, help, **kwargs):
        field = flag[2:].replace("-", "_")
        default = getattr(d, field)
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        a.add_argument(flag, default=argparse.SUPPRESS, help=f"{help} [{shown}]", **kwargs)

    arg("--image-size", "longest side of the output, px", type=int)
    arg("--scales", "coarse-to-fine: increasing longest sides, e.g. 256,512,1024 (overrides --image-size)",
        type=_ints)
    arg("--scale-iterations", "iterations at each scale, e.g. 300,100,50 (default: --iterations each)", type=_ints)
    arg("--style-scale", "style image size relative to the output", type=float)
    arg("--style-blend-weights", "one weight per style image (None: equal)", type=_floats)
    arg("--backbone", "feature network", choices=tuple(BACKBONES))
    arg("--weights", "'imagenet' (Keras cache; downloads once), a weights file, or 'none' (random)", type=_weights)
    arg("--pooling", "pooling layers", choices=("max", "avg"))
    arg("--precision", "feature network precision; losses stay float32 (with --model: the network's, "
        "float32 or bfloat16; default: as saved)", choices=tuple(PRECISIONS))
    arg("--scale-precisions", "one --precision per --scales entry, e.g. bfloat16,bfloat16,float32 "
        "(None: --precision at each)", type=_names)
    arg("--jit-compile", "compile the step with XLA", action="store_true")
    arg("--content-layers", "comma-separated layer names (None: backbone default)", type=_names)
    arg("--style-layers", "comma-separated layer names (None: backbone default)", type=_names)
    arg("--style-layer-weights", "one weight per style layer (None: equal)", type=_floats)
    arg("--content-weight", "content loss weight (None: backbone default)", type=float)
    arg("--style-weight", "style loss weight (None: backbone default)", type=float)
    arg("--tv-weight", "total variation weight (None: backbone default)", type=float)
    arg("--optimizer", "adam, or lbfgs (see --lbfgs-solver; pixels bounded to [0, 255])", choices=OPTIMIZERS)
    arg("--iterations", "optimizer iterations (per scale unless --scale-iterations)", type=int)
    arg("--learning-rate", "Adam step size, pixel units of [0, 255]", type=float)
    arg("--adam-beta-1", "Adam beta_1", type=float)
    arg("--adam-beta-2", "Adam beta_2", type=float)
    arg("--adam-epsilon", "Adam epsilon, pixel units", type=float)
    arg("--lbfgs-memory", "L-BFGS correction pairs kept", type=int)
    arg("--lbfgs-solver", "scipy (L-BFGS-B, float64 on the host) or tf (projected L-BFGS, one compiled graph "
        "per iteration, float32; faster where the network is cheap)",
        choices=LBFGS_SOLVERS)
    arg("--init", f"{', '.join(INIT_MODES)}, or an image path")
    arg("--seed", "random seed; CPU runs repeat exactly", type=int)
    arg("--original-colors", "keep the content's colours: luminance-only transfer", action="store_true")
    arg("--color-match", "recolour the style with the content's colours before optimizing",
        choices=COLOR_MATCH_MODES)
    add_verbose_argument(parser)


def _check_minimums(args, **minimums):
    """Raises ConfigError for the first integer flag below its minimum (``save_every=0``: >= 0)."""
    from nst_tf.config import check_int

    for flag, minimum in minimums.items():
        check_int(f"--{flag.replace('_', '-')}", getattr(args, flag), minimum)


def _config_from_args(config_class, args, preset=None):
    """The config of the flags the user gave, over the preset (if any), over the defaults."""
    names = {field.name for field in dataclasses.fields(config_class)}
    given = {name: tuple(v) if isinstance(v, list) else v for name, v in vars(args).items() if name in names}
    if preset:
        return config_class.from_preset(preset, **given)
    return config_class(**given)


def check_stylize_args(args):
    """Checks the flags and input files of an optimization run; imports no TensorFlow.

    Returns:
        ``(config, output)``: the StyleConfig and the checked output path.

    Raises:
        ConfigError, ImageError, WeightsError: the first problem found, before anything slow.
    """
    from nst_tf import files, images, memory
    from nst_tf.config import INIT_MODES, StyleConfig
    from nst_tf.errors import ConfigError

    if not args.style:
        raise ConfigError("--style is required: give one or more style images (or --model for a trained "
                          "network). Received: style=None")
    if len(args.content) != 1:
        raise ConfigError(f"Optimization stylizes one content image at a time; several need --model. "
                          f"Received: content={args.content}")
    args.content = args.content[0]
    if pathlib.Path(args.content).is_dir():
        raise ConfigError(f"--content is a directory; this check takes one image file (a folder is checked by "
                          f"check_stylize_folder_args), or give a trained network with --model. "
                          f"Received: content='{args.content}'")
    config = _config_from_args(StyleConfig, args, args.preset)
    _check_minimums(args, save_every=0, print_every=0)
    output = images.check_output_path(args.output)
    intermediates = files.existing_numbered_outputs(output, args.save_every, sum(n for _, n in config.scale_plan()))
    files.check_outputs_spare_inputs([output, *intermediates], [args.content, *args.style, args.mask, config.init])
    inputs = [args.content, *args.style, *([args.mask] if args.mask else [])]
    if config.init not in INIT_MODES:  # An image path.
        inputs.append(config.init)
    for path in inputs:
        images.check_image_file(path)
    _check_weights_file(config)
    if not args.mask:
        config.blend_weights(len(args.style))  # Fail on a count mismatch before the run.
    # From the header alone: a size that cannot fit fails before any image is decoded.
    memory.check_fits(config, memory.output_size(images.read_size(args.content), config.output_size))
    return config, output


def _check_weights_file(config):
    """Raises WeightsError for a missing weights file or one named for another backbone."""
    from nst_tf.errors import WeightsError

    if config.weights not in ("imagenet", None):
        if not os.path.isfile(config.weights):
            raise WeightsError(f"Weights file not found. Pass an existing file, 'imagenet' or 'none'. "
                               f"Received: weights={config.weights!r}")
        if config.backbone != "squeezenet1_1" and "squeezenet" in pathlib.Path(config.weights).name.lower():
            raise WeightsError(f"These look like SqueezeNet weights, but the backbone is {config.backbone}: add "
                               f"--backbone squeezenet1_1. Received: weights={config.weights!r}")


def check_stylize_folder_args(args):
    """Checks the flags and files of ``stylize --content FOLDER`` (optimization); imports no TensorFlow.

    Returns:
        ``(config, contents, outputs)``: the StyleConfig, the photos (sorted, recursive) and
        one output per photo, ``OUTPUT/<stem>.png``.

    Raises:
        ConfigError, ImageError, WeightsError: the first problem found, before anything slow.
    """
    from nst_tf import files, images, memory
    from nst_tf.config import INIT_MODES, StyleConfig
    from nst_tf.errors import ConfigError

    folder = pathlib.Path(args.content[0])
    if not args.style:
        raise ConfigError(f"--style is required: give the style image(s) the photos of the folder are optimized "
                          f"toward (or --model for a trained network). Received: style=None, content='{folder}'")
    for flag in ("mask", "save_every", "print_every"):
        if getattr(args, flag):
            raise ConfigError(f"--{flag.replace('_', '-')} applies to one content image, not a folder. "
                              f"Received: {flag}={getattr(args, flag)!r}, content='{folder}'")
    config = _config_from_args(StyleConfig, args, args.preset)
    output = pathlib.Path(args.output)
    if output.suffix.lower() in images.SUPPORTED_OUTPUT_EXTENSIONS or output.is_file():
        raise ConfigError(f"A --content directory is optimized photo by photo into a folder: give a folder as "
                          f"--output (one <stem>.png per photo), or --model to apply a trained network. "
                          f"Received: output='{output}'")
    contents = _content_files([folder])
    stems = {}
    for path in contents:
        if path.stem in stems:
            raise ConfigError(f"Two photos of the folder share the name '{path.stem}' and would share one output; "
                              f"rename one. Received: '{stems[path.stem]}', '{path}'")
        stems[path.stem] = path
    outputs = [output / f"{path.stem}.png" for path in contents]
    files.check_outputs_spare_inputs(outputs, [*contents, *args.style, config.init])
    for path in args.style + ([config.init] if config.init not in INIT_MODES else []):
        images.check_image_file(path)
    _check_weights_file(config)
    config.blend_weights(len(args.style))
    for path, target in zip(contents, outputs):
        if not target.exists():  # Photos already done are not read again.
            images.check_image_file(path)
            size = (config.output_size,) * 2 if args.center_crop else images.read_size(path)
            memory.check_fits(config, memory.output_size(size, config.output_size))
    return config, contents, outputs


def run_folder_stylize(args):
    """``stylize --content FOLDER`` by optimization: every photo in turn, skipping those done; exit status."""
    config, contents, outputs = check_stylize_folder_args(args)
    _start_tensorflow(args)
    from nst_tf import optimize

    summary = optimize.stylize_files(contents, outputs, args.style, config, center_crop=args.center_crop,
                                     progress=not args.no_progress, quality=args.jpeg_quality)
    print(f"Stylized {len(summary['done'])} photo(s), skipped {len(summary['skipped'])} already done, "
          f"in {args.output}")
    return 0


def run_stylize(args):
    """Runs ``stylize`` from parsed flags; returns the exit status."""
    if args.model:
        return run_fast_stylize(args)
    if len(args.content) == 1 and pathlib.Path(args.content[0]).is_dir():
        return run_folder_stylize(args)
    config, output = check_stylize_args(args)
    _start_tensorflow(args)

    import numpy as np

    from nst_tf import images, optimize, spatial
    from nst_tf.errors import OptimizationError

    extractor = optimize.make_extractor(config)
    content, styles = optimize.load_inputs(args.content, args.style, config, extractor.min_input_size,
                                           center_crop=args.center_crop)
    region_mask = None
    if args.mask:
        region_mask = spatial.load_region_mask(args.mask, *content.shape[1:3], len(styles))

    def save(image, path):
        return images.save_image(image, path, quality=args.jpeg_quality)

    callbacks = []
    if args.save_every:
        callbacks.append(lambda i, image, _: i % args.save_every == 0 and save(
            _output_size(optimize.finish_image(np.asarray(image), _at_size(content, image), config), content),
            output.with_name(f"{output.stem}_{i:05d}{output.suffix}")))
    if args.print_every:
        callbacks.append(lambda i, _, losses: i % args.print_every == 0 and _print_losses(i, losses))
    try:
        result = optimize.stylize(content, styles, config, callbacks, progress=not args.no_progress,
                                  extractor=extractor, region_mask=region_mask)
    except OptimizationError as error:
        if error.image is not None:
            save(_output_size(error.image, content), output)
        raise
    save(result.image, output)
    last = result.history[-1] if result.history else {}
    summary = " ".join(f"{k}={v:.4g}" for k, v in last.items() if k != "scale")
    if result.interrupted:
        print(f"Interrupted after {result.iterations} iterations; saved the latest image to {output}",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"Saved {output} ({content.shape[2]}x{content.shape[1]} px, {result.iterations} iterations "
          f"in {result.seconds:.1f} s; {summary})")
    return 0


def _start_tensorflow(args):
    """Imports TensorFlow (quietly unless --verbose) and applies a stylize process's settings."""
    import_tensorflow(getattr(args, "verbose", False))
    if getattr(args, "stylize_process", False):
        configure_stylize_process(getattr(args, "backbone", None) != "squeezenet1_1")


def run_fast_stylize(args):
    """``stylize --model``: a trained style network on one or more photos; returns the exit status."""
    from nst_tf import files, images, memory
    from nst_tf.errors import ConfigError

    if args.style:
        raise ConfigError(f"--style and --model exclude each other: a trained network has its style built in. "
                          f"Drop --style, or drop --model to optimize. Received: style={args.style}, "
                          f"model='{args.model}'")
    if not os.path.exists(args.model):
        raise ConfigError(f"Model not found: give a .keras file or a SavedModel version folder. "
                          f"Received: model='{args.model}'")
    _check_minimums(args, tile=0, overlap=0, batch_size=1)
    if args.center_crop:
        raise ConfigError(f"--center-crop applies to optimization, not --model. Received: model='{args.model}'")
    if args.tile and args.tile < 2 * args.overlap:
        raise ConfigError(f"--tile must be at least twice --overlap. Received: tile={args.tile}, "
                          f"overlap={args.overlap}")
    inputs = _content_files(args.content)
    to_folder = len(inputs) > 1 or any(pathlib.Path(c).is_dir() for c in args.content)
    output = pathlib.Path(args.output)
    if to_folder:
        if output.suffix.lower() in images.SUPPORTED_OUTPUT_EXTENSIONS or output.is_file():
            raise ConfigError(f"Several inputs need a folder as --output. Received: output='{output}'")
        targets = [output / (p.stem + (p.suffix if p.suffix.lower() in images.SUPPORTED_OUTPUT_EXTENSIONS
                                       else ".png")) for p in inputs]
    else:
        targets = [output]
    for target in targets:
        images.check_output_path(target)
    files.check_outputs_spare_inputs(targets, [*inputs, args.model])
    precision = getattr(args, "precision", None)
    if precision is not None and precision not in _INFERENCE_PRECISIONS:
        raise ConfigError(f"--precision with --model must be one of {', '.join(_INFERENCE_PRECISIONS)}. "
                          f"Received: precision={precision}")
    for path in inputs:
        images.check_image_file(path)
    names = _keras_style_names(args.model)
    if names is not False:  # A .keras file names its styles: a wrong --style-name answers before TensorFlow.
        _style_selection(names, args.style_name, args.style_strength)
    # From the headers alone: a size that cannot fit fails before any image is decoded.
    memory.check_stylize_fits(args.model, [images.read_size(p) for p in inputs], getattr(args, "image_size", None),
                              args.batch_size, args.tile)
    _start_tensorflow(args)

    import numpy as np

    from nst_tf import color, stylizer, transformer

    model = stylizer.load_stylizer(args.model)
    if args.tile and not isinstance(model, transformer.TransformerNet):
        raise ConfigError(f"--tile needs the .keras file of the network (tiles share its normalization "
                          f"statistics). Received: model='{args.model}'")
    if precision is not None and not isinstance(model, transformer.TransformerNet):
        raise ConfigError(f"--precision needs the .keras file of the network; a SavedModel runs in the precision "
                          f"it was exported with. Received: model='{args.model}', precision={precision}")
    style = _style_selection(getattr(model, "style_names", None), args.style_name, args.style_strength)
    size = getattr(args, "image_size", None)
    photos = [images.load_image(p, max_size=size, min_size=transformer.MIN_INPUT_SIZE) for p in inputs]
    start = time.perf_counter()
    by_size = {}
    for index, photo in enumerate(photos):
        by_size.setdefault(photo.shape, []).append(index)
    results = [None] * len(photos)
    for indices in by_size.values():
        for first in range(0, len(indices), args.batch_size):
            chunk = indices[first:first + args.batch_size]
            if args.tile and max(photos[chunk[0]].shape[1:3]) > args.tile:
                for i in chunk:
                    results[i] = stylizer.stylize_tiled(model, photos[i], args.tile, args.overlap,
                                                        precision=precision, style=style)
            else:
                batch = stylizer.stylize_image(model, np.concatenate([photos[i] for i in chunk]),
                                               precision=precision, style=style)
                for i, result in zip(chunk, batch):
                    results[i] = result[None]
    for photo, result, target in zip(photos, results, targets):
        if getattr(args, "original_colors", False):
            result = color.transfer_luminance(result, photo)
        images.save_image(result, target, quality=args.jpeg_quality)
    seconds = time.perf_counter() - start
    where = output if to_folder else targets[0]
    print(f"Saved {len(targets)} image(s) to {where} in {seconds:.1f} s with {args.model}")
    return 0


def parse_style_selection(text):
    """``"candy"`` or ``"candy:0.7,udnie:0.3"`` -> ``{name: weight}`` (a bare name weighs 1).

    Raises:
        ConfigError: an empty entry or a weight that is not a number.
    """
    from nst_tf.errors import ConfigError

    selection = {}
    for entry in text.split(","):
        name, _, weight = entry.strip().partition(":")
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            value = None
        if not name or value is None:
            raise ConfigError(f"--style-name takes NAME or NAME:WEIGHT,NAME:WEIGHT,... (e.g. candy:0.7,udnie:0.3). "
                              f"Received: style_name={text!r}")
        selection[name] = selection.get(name, 0.0) + value
    return selection


def _keras_style_names(path):
    """The style names of a ``.keras`` network (None: a single-style network), read without
    TensorFlow; False when `path` is not a readable ``.keras`` file (a SavedModel)."""
    from nst_tf import files

    config = files.keras_model_config(path)
    return False if config is None else config.get("style_names")


def _style_selection(names, style_name, strength):
    """The blend weights over the styles `names` for ``--style-name`` and ``--style-strength``
    (None: a single-style network, `names` None)."""
    from nst_tf.config import style_selection_weights
    from nst_tf.errors import ConfigError

    if names is None:
        if style_name is not None or strength != 1.0:
            raise ConfigError(f"This network has a single style: --style-name and --style-strength need a "
                              f"multi-style network. Received: style_name={style_name!r}, strength={strength}")
        return None
    if style_name is None:
        raise ConfigError(f"This network has {len(names)} styles; choose one with --style-name "
                          f"({', '.join(names)}). Received: style_name=None")
    return style_selection_weights(names, parse_style_selection(style_name), strength)


def _content_files(paths):
    """The content files named: files as given, folders expanded to their images (sorted)."""
    from nst_tf import images
    from nst_tf.errors import ImageError

    files = []
    for path in map(pathlib.Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in
                           images.SUPPORTED_OUTPUT_EXTENSIONS + (".gif",))
            if not found:
                raise ImageError(f"The folder holds no images. Received: content='{path}'")
            files += found
        else:
            files.append(path)
    return files


def _at_size(content, image):
    """The content image at an intermediate scale's size (for colour restoration)."""
    import numpy as np

    from nst_tf import optimize

    return content if content.shape[1:3] == image.shape[1:3] else optimize.initial_image(np.asarray(image), [], content)


def _output_size(image, content):
    from nst_tf import optimize

    return image if image.shape == content.shape else optimize.initial_image(content, [], image)


def _print_losses(iteration, losses):
    from tqdm.auto import tqdm

    tqdm.write(f"iteration {iteration}: " + " ".join(f"{k}={v:.4g}" for k, v in losses.items()))


def _run(function, args):
    from nst_tf.errors import NstError
    from nst_tf.interrupts import EXIT_TERMINATED, terminate_as_interrupt

    with terminate_as_interrupt() as received:  # SIGTERM saves what Ctrl-C saves.
        try:
            status = function(args)
        except NstError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            print("Interrupted.", file=sys.stderr)
            status = EXIT_INTERRUPTED
    return EXIT_TERMINATED if received.signal and status == EXIT_INTERRUPTED else status


# --- commands: one description per command, shared by `nst-tf COMMAND` and scripts/COMMAND.py ---

_INFERENCE_PRECISIONS = ("float32", "bfloat16")  # nst_tf.stylizer.INFERENCE_PRECISIONS, without TensorFlow.


def _commands():
    """``{command: (parser keyword arguments, add_arguments, run)}``."""
    raw = argparse.RawDescriptionHelpFormatter
    return {
        "stylize": (dict(help="stylize a photo by optimization, or with a trained network (--model)",
                         description="Render a content photo in the style of one or more paintings by "
                         "optimization (Gatys, Ecker, Bethge, CVPR 2016), or apply a trained fast style "
                         "network (--model).", epilog=_stylize_epilog(), formatter_class=raw),
                    add_stylize_arguments, run_stylize),
        "train": (dict(help="train a fast style network (Johnson et al. 2016)",
                       description="Train a feed-forward style network (Johnson, Alahi, Fei-Fei, ECCV 2016) on "
                       "a folder of photos.", epilog=_train_epilog(), formatter_class=raw),
                  add_train_arguments, run_train),
        "export": (dict(help="export a style network as a SavedModel for TF Serving, or as TFLite",
                        description="Export a trained fast style network (.keras) as a versioned SavedModel "
                        "for TensorFlow Serving, with serving_default (uint8 pixels) and stylize_bytes (image "
                        "files) signatures; or, with --format tflite, as one .tflite file for phones and small "
                        "devices.", epilog="Exit status: 0 done, 2 bad input.", formatter_class=raw),
                   add_export_arguments, run_export),
    }


def build_parser(command=None, prog=None):
    """The parser of one command (``scripts/<command>.py``), or of ``nst-tf`` with every command."""
    commands = _commands()
    if command is not None:
        kwargs, add_arguments, run = commands[command]
        kwargs = {k: v for k, v in kwargs.items() if k != "help"}
        parser = ArgumentParser(prog=prog or f"{command}.py", **kwargs)
        add_arguments(parser)
        parser.set_defaults(run=run, command=command)
        return parser
    parser = ArgumentParser(prog=prog or "nst-tf", description="Neural style transfer on TensorFlow/Keras.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (kwargs, add_arguments, run) in commands.items():
        add_arguments(sub.add_parser(name, **kwargs))
        sub.choices[name].set_defaults(run=run)
    return parser


def _main(parser, argv):
    args = parser.parse_args(argv)
    # TensorFlow settings of a stylizing process, only in a process of its own (not a
    # library user's or a test's, where the same process may also train).
    args.stylize_process = argv is None and args.command == "stylize"
    return _run(args.run, args)


def main(argv=None):
    """``nst-tf COMMAND ...``: returns the exit status."""
    return _main(build_parser(), argv)


def stylize_main(argv=None):
    """``python scripts/stylize.py``: parse flags, stylize, return the exit status."""
    return _main(build_parser("stylize"), argv)


def train_main(argv=None):
    """``python scripts/train.py``: parse flags, train, return the exit status."""
    return _main(build_parser("train"), argv)


def export_main(argv=None):
    """``python scripts/export.py``: parse flags, export, return the exit status."""
    return _main(build_parser("export"), argv)


# --- export ---

# nst_tf.export's defaults, restated so that --help needs no TensorFlow (tests/test_cli.py keeps them equal).
_EXPORT_DEFAULTS = {"max_image_size": 2048, "output_formats": ("png", "jpeg"), "warmup_size": 256}
_TFLITE_QUANTIZATIONS = ("float32", "float16", "int8")  # nst_tf.tflite.QUANTIZATIONS, without TensorFlow.


def add_export_arguments(parser):
    """Flags of ``export``; each maps onto an argument of :func:`nst_tf.export.export_model`."""
    d = _EXPORT_DEFAULTS
    parser.add_argument("model", help="trained TransformerNet, .keras (saved_models/styles/styles.keras)")
    parser.add_argument("--name", help="model name in TF Serving (default: the file name without .keras)")
    parser.add_argument("--saved-models", default="saved_models",
                        help="folder of model base paths; writes SAVED_MODELS/NAME/VERSION (%(default)s)")
    parser.add_argument("--version", type=int,
                        help="version number (default: the highest present + 1; never overwrites)")
    parser.add_argument("--max-image-size", type=int, default=d["max_image_size"],
                        help="largest height or width, px, a request may have (%(default)s)")
    parser.add_argument("--output-format", default=d["output_formats"][0], choices=d["output_formats"],
                        help="encoding returned by the stylize_bytes signature (%(default)s)")
    parser.add_argument("--jpeg-quality", type=int, default=95, help="JPEG quality 1-100 (%(default)s)")
    parser.add_argument("--warmup-size", type=int, default=d["warmup_size"],
                        help="side, px, of the warm-up requests; 0 writes none (%(default)s)")
    parser.add_argument("--format", default="savedmodel", choices=("savedmodel", "tflite"),
                        help="savedmodel (TF Serving layout) or tflite (one .tflite file for phones; the image "
                             "size is set at run time) (%(default)s)")
    parser.add_argument("--tflite-quantization", choices=_TFLITE_QUANTIZATIONS,
                        help="with --format tflite: weights as float32, float16, or int8 (dynamic range) "
                             f"({_TFLITE_QUANTIZATIONS[0]})")
    parser.add_argument("--output", help="with --format tflite: the .tflite file (default: beside the model, "
                                         "NAME.tflite, or NAME_QUANTIZATION.tflite when quantized)")
    add_verbose_argument(parser)


def run_export(args):
    """Runs ``export`` from parsed flags; returns the exit status."""
    from nst_tf.errors import ConfigError

    if not os.path.isfile(args.model):
        raise ConfigError(f"Model file not found: give the .keras file of a trained network. "
                          f"Received: model='{args.model}'")
    if args.format == "tflite":
        return _run_tflite_export(args)
    for flag in ("tflite_quantization", "output"):
        if getattr(args, flag) is not None:
            raise ConfigError(f"--{flag.replace('_', '-')} applies to --format tflite only. "
                              f"Received: {flag}={getattr(args, flag)!r}, format='{args.format}'")
    import_tensorflow(args.verbose)
    from nst_tf import export

    name = export.check_model_name(args.name or pathlib.Path(args.model).stem)
    result = export.export_model(args.model, pathlib.Path(args.saved_models) / name, version=args.version,
                                 max_image_size=args.max_image_size, output_format=args.output_format,
                                 jpeg_quality=args.jpeg_quality, warmup_size=args.warmup_size, model_name=name)
    styles = f"; styles {', '.join(result.style_names)}" if result.style_names else ""
    print(f"Exported {name} version {result.version} to {result.path} (signatures "
          f"{', '.join(result.signatures)}{styles}; images up to {args.max_image_size} px; {result.seconds:.1f} s)")
    return 0


def _run_tflite_export(args):
    from nst_tf import files

    quantization = args.tflite_quantization or _TFLITE_QUANTIZATIONS[0]
    name = args.name or pathlib.Path(args.model).stem
    suffix = "" if quantization == _TFLITE_QUANTIZATIONS[0] else f"_{quantization}"
    output = pathlib.Path(args.output or pathlib.Path(args.model).with_name(f"{name}{suffix}.tflite"))
    files.check_outputs_spare_inputs([output], [args.model])  # Before TensorFlow: a mistake answers at once.
    import_tensorflow(args.verbose)
    from nst_tf import tflite

    with native_logs_hidden(args.verbose):  # The converter logs graph notices from C++.
        result = tflite.export_tflite(args.model, output, quantization)
    inputs = "images [1, H, W, 3]" + (f" and style_weights [1, {len(result.style_names)}] over "
                                      f"{', '.join(result.style_names)}" if result.style_names else "")
    print(f"Exported {result.path} (TFLite, {quantization}, {result.size_bytes / 1e6:.2f} MB; inputs {inputs}, "
          f"float32 in [0, 255], H and W set at run time; {result.seconds:.1f} s)")
    return 0


# --- train ---


def add_train_arguments(parser):
    """Flags of ``train``; each is the :class:`nst_tf.config.TrainConfig` field of the same name."""
    from nst_tf.config import OBJECTIVES, STRATEGIES, TRAIN_LAYERS, TrainConfig

    d = {field.name: field.default for field in dataclasses.fields(TrainConfig)}
    io = parser.add_argument_group("files")
    io.add_argument("--style", nargs="+",
                    help="style image; several train one multi-style network (conditional instance norm)")
    io.add_argument("--add-style", metavar="IMAGE",
                    help="add this style to the multi-style network --init-model, training only its "
                         "normalization parameters (minutes, not hours)")
    io.add_argument("--data", required=True, help="folder of training photos (JPEG/PNG/BMP/GIF, recursive)")
    io.add_argument("--output", required=True, help="trained TransformerNet, .keras (written at the end, atomically)")
    io.add_argument("--backup-dir", help="BackupAndRestore folder: rerun the same command to resume a killed run")
    io.add_argument("--log-dir", help="TensorBoard folder (losses, sample images; PNG samples in LOG_DIR/samples)")
    io.add_argument("--checkpoint-dir", help="keep the latest network as CHECKPOINT_DIR/transformer.keras")
    io.add_argument("--init-model", help="start from this .keras TransformerNet (fine-tuning)")
    io.add_argument("--targets", default=argparse.SUPPRESS,
                    help="with --objective pixel: folder of stylized targets, one per photo of --data with the same "
                         "file stem (e.g. made by stylize --content DATA --center-crop --image-size 256)")
    t = parser.add_argument_group("training (Johnson et al. 2016)")
    length = t.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int,
                        help="optimizer steps, exactly (a resumed run ends at the same step)")
    length.add_argument("--epochs", type=float, help="passes over the photos (default 2 when --steps is not given)")

    def arg(flag, help, **kwargs):
        field = flag[2:].replace("-", "_")
        shown = f" ({d[field]})" if d.get(field) is not None else ""
        t.add_argument(flag, default=argparse.SUPPRESS, help=help + shown, **kwargs)

    arg("--objective", "perceptual (Johnson et al.: loss network) or pixel (mean squared error to --targets, "
        "plus --tv-weight, default 0)", choices=OBJECTIVES)
    arg("--batch-size", "global batch", type=int)
    arg("--image-size", "training crop side, px", type=int)
    arg("--style-size", "style image longest side, px", type=int)
    arg("--learning-rate", "Adam step size", type=float)
    arg("--content-weight", "content loss weight (loss network default)", type=float)
    arg("--style-weight", "style loss weight (loss network default)", type=float)
    arg("--tv-weight", "total variation weight (loss network default)", type=float)
    arg("--saturation-weight", "weight of the loss that keeps the output out of tanh's flat tails, where "
        "white or black blobs form", type=float)
    arg("--droplet-weight", "weight of the loss that keeps instance normalization from painting smooth blobs "
        "(droplets)", type=float)
    arg("--loss-network", "frozen loss network", choices=tuple(TRAIN_LAYERS))
    arg("--loss-weights-file", "'imagenet' (Keras cache), a weights file, or 'none' (random; tests only)",
        type=_weights)
    arg("--seed", "random seed", type=int)
    arg("--strategy", "tf.distribute strategy", choices=STRATEGIES)
    arg("--save-every", "steps between backups, checkpoints and logs", type=int)
    t.add_argument("--mixed-precision", action="store_true", help="train under the mixed_bfloat16 policy")
    t.add_argument("--flip", action="store_true", help="random horizontal flips of the training crops")
    m = parser.add_argument_group("network and styles (Dumoulin et al. 2017)")
    m.add_argument("--style-names", type=_names, help="comma-separated style names (default: the files' stems)")
    m.add_argument("--photo-style", action="store_true",
                   help="add the 'photo' style (content loss only) that the style strength control blends toward")
    m.add_argument("--width-multiplier", type=float, default=argparse.SUPPRESS,
                   help=f"channel width of a new network; 0.5 is Johnson's half width ({d['width_multiplier']})")
    m.add_argument("--num-residual-blocks", type=int, default=argparse.SUPPRESS,
                   help=f"residual blocks of a new network ({d['num_residual_blocks']})")
    m.add_argument("--balance-style-weights", action="store_true",
                   help="scale --style-weight per style so that every style has the same style loss on the photos")
    add_verbose_argument(parser)


def _train_epilog():
    from nst_tf.config import TRAIN_LAYERS, TRAIN_LOSS_WEIGHTS

    lines = ["defaults per loss network (content layers | style layers | content, style, TV weights):"]
    for name, (content, style) in TRAIN_LAYERS.items():
        weights = ", ".join(f"{w:g}" for w in TRAIN_LOSS_WEIGHTS[name])
        lines.append(f"  {name}: {' '.join(content)} | {' '.join(style)} | {weights}")
    lines.append("Exit status: 0 done, 2 bad input or diverged run, 130 interrupted (resume with --backup-dir).")
    return "\n".join(lines)


def check_train_args(args):
    """Checks the flags and input files of a training run; imports no TensorFlow.

    Raises:
        ConfigError, ImageError: the first problem found.
    """
    from nst_tf import images
    from nst_tf.errors import ConfigError

    styles = list(args.style or []) + ([args.add_style] if args.add_style else [])
    if not styles:
        raise ConfigError("Give the style image(s) with --style (or --add-style with --init-model). "
                          "Received: style=None")
    if args.add_style and not getattr(args, "init_model", None):
        raise ConfigError(f"--add-style needs --init-model, the multi-style network to extend. "
                          f"Received: add_style={args.add_style!r}, init_model=None")
    for style in styles:
        images.check_image_file(style)
    if not os.path.isdir(args.data):
        raise ConfigError(f"Training data folder not found: --data must be a folder of photos. "
                          f"Received: data='{args.data}'")
    targets = getattr(args, "targets", None)
    if targets is not None and not os.path.isdir(targets):
        raise ConfigError(f"Targets folder not found: --targets must be a folder of stylized photos. "
                          f"Received: targets='{targets}'")
    init_model = getattr(args, "init_model", None)
    if init_model is not None and os.path.isdir(init_model):
        from nst_tf.files import folder_kind

        raise ConfigError(f"--init-model takes the .keras file of a trained network, not {folder_kind(init_model)}. "
                          f"Received: init_model='{init_model}'")
    for flag in ("init_model", "loss_weights_file"):
        value = getattr(args, flag, None)
        if value not in (None, "imagenet") and not os.path.isfile(value):
            raise ConfigError(f"--{flag.replace('_', '-')} file not found. Received: {flag}='{value}'")


def run_train(args):
    """Runs ``train`` from parsed flags; returns the exit status."""
    from nst_tf import memory
    from nst_tf.config import TrainConfig

    check_train_args(args)
    config = _config_from_args(TrainConfig, args)
    memory.check_train_fits(config)
    import_tensorflow(args.verbose)
    from nst_tf import training

    try:
        result = training.train(config)
    except KeyboardInterrupt:
        if config.backup_dir:
            print(f"Backup in {config.backup_dir}: rerun the same command to resume.", file=sys.stderr)
        raise
    last = {k: v[-1] for k, v in result["history"].items() if v}
    summary = " ".join(f"{k}={v:.4g}" for k, v in last.items())
    skipped = f", {result['skipped']} unreadable skipped" if result["skipped"] else ""
    print(f"Saved {result['output']} ({result['steps']} steps, {result['photos']} photos{skipped}, "
          f"{result['seconds']:.0f} s, {result['images_per_second']:.2f} images/s; {summary})")
    return 0
