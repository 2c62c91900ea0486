#!/usr/bin/env python
"""Benchmarks of nst_tf: ``python scripts/benchmark.py optimize [--sizes 256 512] [--json out.json]``.

A thin wrapper around the suites in ``benchmarks/`` (outside the package): one
subcommand per suite; it parses flags, runs the suite, prints Markdown tables, and
optionally writes JSON (``--json``) or appends the Markdown to a file (``--markdown``).
Each suite records the background load of other processes next to its figures; it
never pauses them. Flags are checked before TensorFlow is imported.
"""

import argparse
import os
import shlex
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)  # nst_tf and benchmarks/ of this checkout.

from nst_tf.cli import ArgumentParser, import_tensorflow  # noqa: E402 (after the path it needs)


class _Removed(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        parser.error(f"{option_string} was removed: benchmarks no longer pause other processes; each table "
                     f"records their load (bg cores). Use --wait-quiet SECONDS to wait for a quiet machine")


def _parser():
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--warmup", type=int, default=2, help="untimed repetitions first (default 2)")
    common.add_argument("--repeats", type=int, default=None,
                        help="timed repetitions; the median is reported (default: optimize 10, optimize-variants 6)")
    common.add_argument("--no-peak", action="store_true", help="skip the float32 3x3 conv peak measurement")
    common.add_argument("--squeezenet-weights", default="auto",
                        help="'auto' (../shared/assets file when present, else random), 'none', or a path")
    common.add_argument("--json", metavar="PATH", help="write the results (machine, settings, rows) as JSON")
    common.add_argument("--markdown", metavar="PATH", help="append the Markdown section to this file")
    common.add_argument("--pause-training", nargs="?", action=_Removed, help=argparse.SUPPRESS)
    common.add_argument("--assets", metavar="DIR",
                        help="shared assets: images, SqueezeNet weights, training photos (default: $NST_TF_ASSETS, "
                             "else ../shared/assets next to the repository root)")
    common.add_argument("--verbose", action="store_true", help="show TensorFlow's start-up messages")
    common.add_argument("--wait-quiet", type=float, default=0, metavar="SECONDS",
                        help="first wait up to SECONDS for other processes to use < 0.25 cores (default 0: no wait)")

    parser = ArgumentParser(
        prog="benchmark.py", description="Benchmarks of nst_tf on this machine (see BENCHMARKS.md for recorded results).")
    sub = parser.add_subparsers(dest="suite", required=True, metavar="SUITE")
    optimize = sub.add_parser("optimize", parents=[common],
                              help="seconds per optimization step, GFLOP/s, %% of the conv peak")
    optimize.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="image sides, pixels")
    optimize.add_argument("--backbones", nargs="+", default=["vgg19", "vgg16", "squeezenet1_1"])
    optimize.add_argument("--stylize-process", action="store_true",
                          help="apply the stylize command's TensorFlow settings first "
                               "(nst_tf.cli.configure_stylize_process: frozen oneDNN weights, one inter-op thread)")

    variants = sub.add_parser("optimize-variants", parents=[common],
                              help="the step under alternative settings, side by side with a baseline")
    variants.add_argument("--backbone", default="vgg19")
    variants.add_argument("--size", type=int, default=512, help="image side, pixels")
    variants.add_argument("--variants", nargs="+", default=None,
                          help="variant names (default: all; see benchmarks.optimize.VARIANTS)")
    variants.add_argument("--max-workers", type=int, default=4,
                          help="worker processes alive at once, baseline included (default 4)")
    variants.add_argument("--log-dir", help="folder for the workers' logs (default: a temporary folder)")
    variants.add_argument("--no-gram", action="store_true", help="skip timing the Gram implementations alone")

    ttq = sub.add_parser("time-to-quality", parents=[common],
                         help="wall time of L-BFGS / coarse-to-fine / bfloat16 to the tf-tutorial preset's loss")
    ttq.add_argument("--backbone", default="squeezenet1_1", choices=("vgg19", "squeezenet1_1"))
    ttq.add_argument("--size", type=int, default=512, help="output longest side, pixels")
    ttq.add_argument("--baseline-iterations", type=int, default=1000, help="Adam steps of the preset")
    ttq.add_argument("--budget-factor", type=float, default=1.0,
                     help="stop a candidate after this multiple of the baseline's time")

    precision = sub.add_parser("precision", parents=[common],
                               help="bfloat16 vs float32: step time side by side and final loss")
    precision.add_argument("--backbone", default="vgg19")
    precision.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    precision.add_argument("--iterations", type=int, default=200, help="Adam steps of the loss comparison")
    precision.add_argument("--loss-size", type=int, default=256, help="image size of the loss comparison")

    memory = sub.add_parser("memory", parents=[common], help="peak resident memory of a step per size")
    memory.add_argument("--backbone", default="vgg19")
    memory.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    memory.add_argument("--bfloat16-sizes", type=int, nargs="*", default=[2048])

    model_help = "a .keras TransformerNet; 'auto' (default): the first shipped model found; 'none': random weights"
    fast_inference = sub.add_parser("fast-inference", parents=[common],
                                    help="TransformerNet s / image, float32 vs bfloat16, %% of the conv peak")
    fast_inference.add_argument("--model", default="auto", help=model_help)
    fast_inference.add_argument("--sizes", type=int, nargs="+", default=[256, 512, 1024], help="image sides, pixels")
    fast_inference.add_argument("--breakdown-size", type=int, default=512,
                                help="size of the conv-group and variant tables, pixels (0: skip them)")
    fast_inference.add_argument("--variants", nargs="*", default=None,
                                help="variant names from benchmarks.fast.VARIANTS (default: "
                                     "DEFAULT_VARIANTS; the flag alone: no variant table)")

    fast_memory = sub.add_parser("fast-memory", parents=[common],
                                 help="peak memory of tiled 4096 px and untiled stylization, fresh processes")
    fast_memory.add_argument("--model", default="auto", help=model_help)
    fast_memory.add_argument("--image-size", type=int, default=4096, help="side of the tiled image, pixels")
    fast_memory.add_argument("--tiles", type=int, nargs="+", default=[512, 1024], help="tile sides, pixels")
    fast_memory.add_argument("--overlap", type=int, default=32, help="tile overlap, pixels")
    fast_memory.add_argument("--untiled-sizes", type=int, nargs="*", default=[1024, 2048],
                             help="sides of the untiled cases, pixels")
    fast_memory.add_argument("--precision", choices=["float32", "bfloat16"], default="float32")

    fast_training = sub.add_parser("fast-training", parents=[common],
                                   help="FastStyleTrainer images per second for each loss network")
    fast_training.add_argument("--loss-networks", nargs="+", default=["vgg16", "vgg19", "squeezenet1_1"])
    fast_training.add_argument("--size", type=int, default=256, help="crop side, pixels")
    fast_training.add_argument("--batch-size", type=int, default=4)
    fast_training.add_argument("--precisions", nargs="+", choices=["float32", "bfloat16"],
                               default=["float32", "bfloat16"])

    fast_quality = sub.add_parser("fast-quality", parents=[common],
                                  help="perceptual loss of the shipped networks vs optimization")
    fast_quality.add_argument("--models", nargs="+", default=None,
                              help=".keras networks (default: the shipped ones that exist)")
    fast_quality.add_argument("--size", type=int, default=256, help="longest side of the photos, pixels")
    fast_quality.add_argument("--iterations", type=int, nargs="+", default=[50, 100, 300])
    fast_quality.add_argument("--optimizer", choices=["adam", "lbfgs"], default="adam")
    fast_quality.add_argument("--learning-rate", type=float, default=None, help="default: StyleConfig's (pixels)")
    fast_quality.add_argument("--max-photos", type=int, default=None, help="only the first N photos (sorted)")
    fast_quality.add_argument("--objective-model", default=None,
                              help="judge every network by this .keras network's training objective "
                                   "(default: each by its own)")
    fast_quality.add_argument("--styles", nargs="+", default=None,
                              help="only these styles of multi-style networks (default: all but 'photo')")

    peers = sub.add_parser("fast-peers", parents=[common],
                           help="our fast networks (single, multi-style; widths; precisions) vs pytorch/examples'")
    peers.add_argument("--size", type=int, default=512, help="image side, pixels (512)")
    peers.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.5], help="width multipliers (1.0 0.5)")
    peers.add_argument("--num-styles", type=int, default=13, help="styles of the multi-style networks (13)")

    multistyle_help = "a multi-style .keras TransformerNet; 'none' (default): random weights, 13 styles"
    augment = sub.add_parser("augment-throughput", parents=[common],
                             help="StyleAugmentation images/s vs the multi-style network's own inference")
    augment.add_argument("--model", default="none", help=multistyle_help)
    augment.add_argument("--size", type=int, default=224, help="image side, pixels")
    augment.add_argument("--batch-size", type=int, default=8)
    augment.add_argument("--batches", type=int, default=2, help="batches per timed repetition")

    retrieval = sub.add_parser("augment-retrieval", parents=[common],
                               help="does SqueezeNet still retrieve a photo once stylized? (Luo's experiment)")
    retrieval.add_argument("--model", required=True, help="a multi-style .keras TransformerNet")
    retrieval.add_argument("--photos", help="folder of photos (default: BSDS500 test photos of the assets)")
    retrieval.add_argument("--max-photos", type=int, default=None, help="only the first N photos (sorted)")
    retrieval.add_argument("--strengths", type=float, nargs="+", default=[0.25, 0.5, 1.0])
    retrieval.add_argument("--styles", nargs="+", default=None, help="style names (default: all but 'photo')")
    retrieval.add_argument("--image-size", type=int, default=None, help="longest side, pixels (default: as is)")
    retrieval.add_argument("--classifier", choices=["vgg19"], default=None,
                           help="also report top-1 ImageNet label agreement (needs VGG19 weights with the top)")
    retrieval.add_argument("--classifier-weights", default="imagenet",
                           help="'imagenet' (Keras cache or download) or the path of "
                                "vgg19_weights_tf_dim_ordering_tf_kernels.h5")

    tflite = sub.add_parser("tflite", parents=[common],
                            help="TFLite (float32, float16, int8) beside the SavedModel: file size, CPU latency, PSNR")
    tflite.add_argument("--model", default="auto", help=model_help)
    tflite.add_argument("--sizes", type=int, nargs="+", default=[256, 512], help="image sides, pixels")
    tflite.add_argument("--quantizations", nargs="+", choices=["float32", "float16", "int8"], default=None,
                        help="TFLite quantizations (default: all)")
    tflite.add_argument("--num-threads", type=int, default=None, help="TFLite interpreter threads (default: runtime's)")

    serving = sub.add_parser("serving", parents=[common],
                             help="bounded gRPC load test through the development server")
    serving.add_argument("--model", default="styles", help="exported model in saved_models/")
    serving.add_argument("--requests", type=int, default=2000, help="requests per concurrency level")
    serving.add_argument("--image-size", type=int, default=256, help="image side, pixels")
    serving.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    serving.add_argument("--server", help="gRPC host:port of a running server (default: start a dev server)")
    return parser


def _run_fast(args, weights):
    from benchmarks import fast as benchmark_fast

    if args.suite == "fast-peers":
        from benchmarks.peers import run_peers_suite

        return run_peers_suite(args.size, args.widths, args.num_styles, warmup=args.warmup, repeats=args.repeats or 7)
    model = getattr(args, "model", "auto")
    model = None if model.lower() == "none" else model
    if args.suite == "fast-inference":
        variants = benchmark_fast.DEFAULT_VARIANTS if args.variants is None else args.variants
        return benchmark_fast.run_inference_suite(model, sizes=args.sizes, warmup=args.warmup,
                                                  repeats=args.repeats or 5, peak=not args.no_peak,
                                                  breakdown_size=args.breakdown_size or None, variants=variants)
    if args.suite == "fast-memory":
        return benchmark_fast.run_memory_suite(model, image_size=args.image_size, tiles=args.tiles,
                                               overlap=args.overlap, untiled_sizes=args.untiled_sizes,
                                               precision=args.precision)
    if args.suite == "fast-training":
        return benchmark_fast.run_training_suite(args.loss_networks, size=args.size, batch_size=args.batch_size,
                                                 warmup=args.warmup, repeats=args.repeats or 5,
                                                 precisions=args.precisions, squeezenet_weights=weights,
                                                 peak=not args.no_peak)
    return benchmark_fast.run_quality_suite(args.models or benchmark_fast.DEFAULT_MODELS, size=args.size,
                                            iterations=args.iterations, optimizer=args.optimizer,
                                            learning_rate=args.learning_rate, squeezenet_weights=weights,
                                            max_photos=args.max_photos, styles=args.styles,
                                            objective_model=args.objective_model)


def _run_augment(args, weights):
    from benchmarks import augmentation

    if args.suite == "augment-throughput":
        model = None if args.model.lower() == "none" else args.model
        return augmentation.run_throughput_suite(model, size=args.size, batch_size=args.batch_size,
                                                 batches=args.batches, warmup=args.warmup,
                                                 repeats=args.repeats or 3)
    return augmentation.run_retrieval_suite(
        args.model, photos=args.photos, max_photos=args.max_photos, strengths=args.strengths, styles=args.styles,
        image_size=args.image_size, squeezenet_weights=weights, classifier=args.classifier,
        classifier_weights=args.classifier_weights)


def _run(args):
    from benchmarks import controls as benchmark_controls
    from benchmarks import core
    from benchmarks import optimize as benchmark

    weights = None if args.squeezenet_weights.lower() == "none" else args.squeezenet_weights
    if args.suite.startswith("fast-"):
        return _run_fast(args, weights)
    if args.suite.startswith("augment-"):
        return _run_augment(args, weights)
    if args.suite == "tflite":
        from benchmarks.tflite import run_tflite_suite

        model = None if args.model.lower() == "none" else args.model
        return run_tflite_suite(model, sizes=args.sizes, quantizations=args.quantizations, warmup=args.warmup,
                                repeats=args.repeats or 5, num_threads=args.num_threads)
    if args.suite == "serving":
        from benchmarks.serving import run_serving_suite

        return run_serving_suite(args.model, os.path.join(ROOT, "saved_models"), args.server, args.requests,
                                 args.image_size, args.concurrency)
    if args.suite == "time-to-quality":
        return benchmark_controls.time_to_quality(core.assets_dir(), args.backbone, size=args.size,
                                                  baseline_iterations=args.baseline_iterations,
                                                  budget_factor=args.budget_factor)
    if args.suite == "precision":
        return benchmark_controls.precision_comparison(core.assets_dir(), args.backbone, sizes=args.sizes,
                                                       iterations=args.iterations, loss_size=args.loss_size,
                                                       warmup=args.warmup, repeats=args.repeats or 8)
    if args.suite == "memory":
        return benchmark_controls.peak_memory(args.sizes, args.backbone,
                                              extra=[(size, "bfloat16") for size in args.bfloat16_sizes])
    if args.suite == "optimize":
        return benchmark.run_optimize_suite(sizes=args.sizes, backbones=args.backbones, warmup=args.warmup,
                                            repeats=args.repeats or 10, peak=not args.no_peak,
                                            squeezenet_weights=weights)
    return benchmark.run_optimize_variants_suite(
        backbone=args.backbone, size=args.size, variants=args.variants or benchmark.DEFAULT_VARIANTS,
        warmup=args.warmup, repeats=args.repeats or 6, max_workers=args.max_workers, peak=not args.no_peak,
        gram=not args.no_gram, squeezenet_weights=weights, log_dir=args.log_dir)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    if args.assets:
        os.environ["NST_TF_ASSETS"] = os.path.abspath(args.assets)  # Read by the suites and their workers.
    import_tensorflow(args.verbose)
    if getattr(args, "stylize_process", False):
        from nst_tf.cli import configure_stylize_process

        configure_stylize_process()
    from benchmarks import core

    if args.wait_quiet and not core.wait_for_quiet(args.wait_quiet):
        print(f"the machine stayed busy for {args.wait_quiet:.0f} s; measuring anyway", file=sys.stderr)
    result = _run(args)
    result.command = "python scripts/benchmark.py " + " ".join(shlex.quote(a) for a in argv)
    text = result.to_markdown()
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            handle.write(result.to_json())
    if args.markdown:
        with open(args.markdown, "a", encoding="utf-8") as handle:
            handle.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
