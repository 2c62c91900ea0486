"""A bounded load test of the serving path: client -> gRPC -> server -> SavedModel.

:func:`run_serving_suite` sends a fixed number of ``Predict`` requests at each
concurrency level and reports throughput, p50/p99 latency and errors, the server's
resident memory before and after, and the in-process throughput of the same
SavedModel (no RPC) for comparison.  Goals (``serving/README.md``): zero errors,
memory growth under 10 %, gRPC throughput at concurrency 4 at least 85 % of
in-process.

Command line (starts a development server on loopback unless ``--server`` is given)::

    nst-tf-loadtest --model styles --requests 2000 --image-size 256   # = python -m serving.loadtest
"""

import json
import pathlib
import statistics
import sys
import tempfile
import threading
import time
from concurrent import futures

import numpy as np

from nst_tf.cli import add_verbose_argument, ArgumentParser, import_tensorflow, program_name


def _percentile(values, q):
    return float(np.percentile(values, q)) if values else float("nan")


def _drive(call, requests, concurrency):
    """Runs ``call()`` `requests` times from `concurrency` threads; returns (seconds, latencies, errors)."""
    lock = threading.Lock()
    state = {"next": 0}
    latencies, errors = [], []

    def worker():
        while True:
            with lock:
                if state["next"] >= requests:
                    return
                state["next"] += 1
            start = time.perf_counter()
            try:
                call()
            except Exception as error:  # noqa: BLE001 - every failure is counted and reported.
                with lock:
                    errors.append(f"{type(error).__name__}: {error}")
                continue
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)

    start = time.perf_counter()
    with futures.ThreadPoolExecutor(concurrency) as pool:
        for future in [pool.submit(worker) for _ in range(concurrency)]:
            future.result()
    return time.perf_counter() - start, latencies, errors


def run_serving_suite(client_factory, requests=2000, image_size=256, concurrencies=(1, 4, 16), in_process=None,
                      in_process_concurrency=4, server_memory=None, warmup_requests=4, style=None):
    """Measures the serving path under load.

    Args:
        client_factory: callable() -> a :class:`serving.client.GrpcClient` (or
            RestClient) of the model; one client per concurrency level.
        requests: int. Requests per concurrency level. Defaults to 2000.
        image_size: int. Side, pixels, of the square uint8 test image (batch of 1).
            Defaults to 256.
        concurrencies: sequence of int. Threads sending requests. Defaults to (1, 4, 16).
        in_process: callable(uint8 [1, H, W, 3]) -> anything, or None. The same model
            called in this process (e.g. a loaded SavedModel's ``serving_default``);
            timed over `requests` calls at `in_process_concurrency`. None skips it.
        in_process_concurrency: int. Threads for the in-process measurement. Defaults to 4.
        server_memory: callable() -> resident bytes of the server, or None. Read after a
            warm-up burst at the highest concurrency and after the last run.
        warmup_requests: int. Untimed requests sent first at each level (times the
            highest concurrency for the initial burst). Defaults to 4.
        style: str or None. The style of a multi-style network (``client.stylize(image, style)``).

    Returns:
        dict: ``image_size``, ``requests``, ``runs`` (one dict per concurrency:
        ``concurrency``, ``throughput_rps``, ``p50_ms``, ``p99_ms``, ``mean_ms``,
        ``errors``, ``first_error``), ``in_process_rps``, ``grpc_vs_in_process`` (the
        throughput at `in_process_concurrency` divided by ``in_process_rps``),
        ``server_memory_before_mb``, ``server_memory_after_mb``, ``server_memory_growth``
        (after / before - 1).
    """
    from nst_tf.export import warmup_image

    image = warmup_image(image_size)[None]
    report = {"image_size": image_size, "requests": requests, "runs": [], "style": style}
    extra = () if style is None else (style,)
    # Warm up at the highest concurrency first: the server's allocator pools, kernel caches and the
    # activations of that many requests in flight are its steady state, not growth.
    client = client_factory()
    try:
        peak = max(concurrencies)
        _drive(lambda: client.stylize(image, *extra), warmup_requests * peak, peak)
    finally:
        client.close()
    memory_before = server_memory() if server_memory else None
    for concurrency in concurrencies:
        client = client_factory()
        try:
            for _ in range(warmup_requests):
                client.stylize(image, *extra)
            seconds, latencies, errors = _drive(lambda: client.stylize(image, *extra), requests, concurrency)
        finally:
            client.close()
        report["runs"].append({
            "concurrency": concurrency, "throughput_rps": len(latencies) / seconds, "seconds": seconds,
            "p50_ms": 1000 * _percentile(latencies, 50), "p99_ms": 1000 * _percentile(latencies, 99),
            "mean_ms": 1000 * statistics.fmean(latencies) if latencies else float("nan"),
            "errors": len(errors), "first_error": errors[0] if errors else None})
    memory_after = server_memory() if server_memory else None
    if memory_before and memory_after:
        report.update(server_memory_before_mb=memory_before / 2 ** 20, server_memory_after_mb=memory_after / 2 ** 20,
                      server_memory_growth=memory_after / memory_before - 1)
    if in_process is not None:
        for _ in range(warmup_requests):
            in_process(image)
        seconds, latencies, errors = _drive(lambda: in_process(image), requests, in_process_concurrency)
        report["in_process_rps"] = len(latencies) / seconds
        matching = [r for r in report["runs"] if r["concurrency"] == in_process_concurrency]
        if matching and report["in_process_rps"]:
            report["grpc_vs_in_process"] = matching[0]["throughput_rps"] / report["in_process_rps"]
    return report


def format_report(report):
    """A few human-readable lines of a :func:`run_serving_suite` report."""
    lines = [f"{report['requests']} requests of {report['image_size']} px images per concurrency level"]
    for run in report["runs"]:
        lines.append(f"  concurrency {run['concurrency']:>2}: {run['throughput_rps']:7.2f} req/s, p50 "
                     f"{run['p50_ms']:7.1f} ms, p99 {run['p99_ms']:7.1f} ms, errors {run['errors']}")
    if "in_process_rps" in report:
        ratio = report.get("grpc_vs_in_process")
        lines.append(f"  in process: {report['in_process_rps']:.2f} req/s"
                     + (f"; gRPC reaches {100 * ratio:.0f} % of it" if ratio else ""))
    if "server_memory_growth" in report:
        lines.append(f"  server memory: {report['server_memory_before_mb']:.0f} MB -> "
                     f"{report['server_memory_after_mb']:.0f} MB ({100 * report['server_memory_growth']:+.1f} %)")
    return "\n".join(lines)


def measure_model(model, saved_models="saved_models", server=None, requests=2000, image_size=256,
                  concurrencies=(1, 4, 16)):
    """Runs :func:`run_serving_suite` on an exported model through the gRPC client.

    Args:
        model: str. Model name: ``saved_models/<model>/<version>/`` must exist.
        saved_models: str or path-like. Folder of model base paths.
        server: str or None. gRPC ``host:port`` of a running server; None starts a
            development server on loopback for the run (and reports its memory).
        requests, image_size, concurrencies: as :func:`run_serving_suite`.

    Returns:
        The report dict of :func:`run_serving_suite`, plus ``model`` and ``version``.

    Raises:
        FileNotFoundError: no exported version of `model`.
        RuntimeError: the development server did not start.
    """
    import tensorflow as tf

    from nst_tf.export import list_versions

    from .client import GrpcClient
    from .testing import start_dev_server

    base = pathlib.Path(saved_models).resolve() / model
    versions = list_versions(base)
    if not versions:
        raise FileNotFoundError(f"no exported version in {base}; export one first (nst-tf export)")
    loaded = tf.saved_model.load(str(base / str(versions[-1])))
    serve, style = loaded.signatures["serving_default"], None
    if "style_names" in loaded.signatures:  # A multi-style network: its first style.
        style = loaded.signatures["style_names"](style_index=tf.constant([0]))["style_names"].numpy()[0].decode()
        default = serve
        serve = lambda images: default(images=images, style=tf.constant([style]))  # noqa: E731
    process = None
    with tempfile.TemporaryDirectory() as folder:
        if server is None:
            config = pathlib.Path(folder) / "models.config"
            config.write_text(f'model_config_list {{ config {{ name: "{model}" base_path: "{base}" '
                              'model_platform: "tensorflow" } }\n')
            process = start_dev_server(config, pathlib.Path(folder) / "server.log", models=[model])
            server = process.grpc_address
        try:
            report = run_serving_suite(lambda: GrpcClient(server, model, timeout=120), requests, image_size,
                                       concurrencies, in_process=lambda x: serve(images=x),
                                       server_memory=process.memory_bytes if process else None, style=style)
        finally:
            if process is not None:
                process.stop()
    report.update(model=model, version=versions[-1])
    return report


def main(argv=None):
    parser = ArgumentParser(prog=program_name(f"{__package__}.loadtest"),
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help="model name, e.g. styles")
    parser.add_argument("--saved-models", default="saved_models", help="model base paths (%(default)s)")
    parser.add_argument("--server", help="gRPC host:port of a running server (default: start a dev server)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per concurrency level (%(default)s)")
    parser.add_argument("--image-size", type=int, default=256, help="image side, px (%(default)s)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16], help="levels (1 4 16)")
    parser.add_argument("--json", help="also write the report to this file")
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    import_tensorflow(args.verbose)
    try:
        report = measure_model(args.model, args.saved_models, args.server, args.requests, args.image_size,
                               args.concurrency)
    except (FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
