"""Benchmark suite ``serving``: a bounded gRPC load test (``serving.loadtest``) as a SuiteResult."""

from benchmarks.core import SuiteResult, Table, machine_info


def serving_result(report):
    """A ``serving.loadtest`` report as SuiteResult ``serving``: requests/s, p50 and p99 ms, errors per level."""
    from serving import loadtest

    columns = [("concurrency", "concurrency", "{}"), ("throughput_rps", "requests/s", "{:.2f}"),
               ("p50_ms", "p50 ms", "{:.1f}"), ("p99_ms", "p99 ms", "{:.1f}"), ("errors", "errors", "{}")]
    table = Table(f"gRPC Predict through the development server, {report['image_size']} px, "
                  f"{report['requests']} requests per level", columns, report["runs"])
    notes = [line.strip() for line in loadtest.format_report(report).splitlines()[1:] if "concurrency" not in line]
    settings = {k: report.get(k) for k in ("model", "version", "image_size", "requests")}
    return SuiteResult("serving", machine_info(), settings, {"serving": table}, notes)


def run_serving_suite(model, saved_models, server=None, requests=2000, image_size=256, concurrency=(1, 4, 16)):
    """Load-tests one exported model through the development server (or `server`, host:port)."""
    from serving import loadtest

    return serving_result(loadtest.measure_model(model, saved_models, server, requests, image_size,
                                                 tuple(concurrency)))
