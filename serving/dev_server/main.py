"""``nst-tf-dev-server`` (``python -m serving.dev_server``): flags, the model config, and the gRPC and REST
servers together.

The flags are parsed before TensorFlow is imported, so ``--help`` and a bad flag answer at
once; TensorFlow then loads without its start-up lines (:func:`nst_tf.cli.import_tensorflow`;
``--verbose`` or a ``TF_CPP_MIN_LOG_LEVEL`` of the user's shows them).
"""

import argparse
import logging
import os
import pathlib
import signal
import sys
import threading

from google.protobuf import text_format

from nst_tf.cli import ArgumentParser, import_tensorflow, program_name
from nst_tf.config import check_int

from .limits import DEFAULT_TIMEOUT_SECONDS, RequestLimits

logger = logging.getLogger("dev_server")


class DevModelServer:
    """The gRPC and REST servers over one ModelManager.

    Args:
        manager: ModelManager.
        port: int. gRPC port; 0 picks a free one.
        rest_api_port: int or None. REST port; 0 picks a free one; None disables REST.
        host: str. Address to listen on. Defaults to ``"127.0.0.1"``.
        grpc_threads: int. Worker threads of the gRPC server. Defaults to 16.
        rest_timeout: float. Seconds a REST socket read may wait. Defaults to 30.

    The request size limits are the manager's (``manager.limits``).
    """

    def __init__(self, manager, port=8500, rest_api_port=None, host="127.0.0.1", grpc_threads=16,
                 rest_timeout=DEFAULT_TIMEOUT_SECONDS):
        from .grpc_api import make_grpc_server
        from .rest_api import make_rest_server

        self.manager = manager
        self.host = host
        self.grpc_server = make_grpc_server(manager, grpc_threads)
        try:
            self.port = self.grpc_server.add_insecure_port(f"{host}:{port}")
        except RuntimeError:  # grpcio raises where older versions returned 0.
            self.port = 0
        if not self.port:
            raise OSError(f"cannot listen on {host}:{port} (gRPC): address in use or not available")
        self.rest_server = None
        if rest_api_port is not None:
            try:
                self.rest_server = make_rest_server(manager, host, rest_api_port, manager.limits, rest_timeout)
            except OSError as error:
                self.grpc_server.stop(0)
                raise OSError(f"cannot listen on {host}:{rest_api_port} (REST): {error.strerror or error}") from None
        self.rest_api_port = self.rest_server.server_address[1] if self.rest_server else None
        self._rest_thread = None

    def start(self):
        self.grpc_server.start()
        logger.info("Running gRPC ModelServer at %s:%d ...", self.host, self.port)
        if self.rest_server is not None:
            self._rest_thread = threading.Thread(target=self.rest_server.serve_forever, name="rest", daemon=True)
            self._rest_thread.start()
            logger.info("Exporting HTTP/REST API at:%s:%d ...", self.host, self.rest_api_port)

    def stop(self, grace=1.0):
        self.manager.stop()
        if self.rest_server is not None:
            self.rest_server.shutdown()
            self.rest_server.server_close()
        self.grpc_server.stop(grace).wait()


def _bool(text):
    value = text.lower()
    if value not in ("true", "false", "1", "0"):
        raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")
    return value in ("true", "1")


def _positive_int(text):
    try:
        return check_int("value", int(text), 1)
    except ValueError:  # Not a number, or below 1 (ConfigError is a ValueError): a usage error.
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None


def build_parser():
    parser = ArgumentParser(
        prog=program_name(__package__),
        description="Development stand-in for tensorflow_model_server (TF Serving's gRPC Predict, "
        "GetModelMetadata, GetModelStatus and REST API). For development and tests; production runs TF Serving.")
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (%(default)s; 0 picks a free one)")
    parser.add_argument("--rest_api_port", type=int, default=0,
                        help="REST port (%(default)s: no REST API, as in TF Serving)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument("--model_config_file", help="text ModelServerConfig with a model_config_list")
    parser.add_argument("--model_name", default="default", help="model name without a config file (%(default)s)")
    parser.add_argument("--model_base_path", help="model base path without a config file")
    parser.add_argument("--model_base_path_prefix",
                        help="serve base_path /models/<name> from PREFIX/<name> (default: saved_models/ beside "
                             "the config's folder when the config's absolute base paths do not exist here)")
    parser.add_argument("--file_system_poll_wait_seconds", type=float, default=1.0,
                        help="seconds between scans for new versions (%(default)s; 0: scan once)")
    parser.add_argument("--enable_model_warmup", type=_bool, nargs="?", const=True, default=True,
                        help="replay assets.extra/tf_serving_warmup_requests on load (%(default)s)")
    parser.add_argument("--enable_batching", type=_bool, nargs="?", const=True, default=False,
                        help="accepted for compatibility; the development server never batches")
    parser.add_argument("--batching_parameters_file", help="accepted for compatibility; ignored")
    parser.add_argument("--grpc_max_threads", type=int, default=16, help="gRPC worker threads (%(default)s)")
    parser.add_argument("--max_image_size", type=_positive_int, default=RequestLimits.max_image_size,
                        help="largest image side, px, of a request (the export's --max-image-size, %(default)s); "
                             "also sets the largest gRPC message and REST body accepted")
    parser.add_argument("--rest_timeout_seconds", type=float, default=DEFAULT_TIMEOUT_SECONDS,
                        help="seconds a REST client may take to send each part of a request (%(default)s)")
    parser.add_argument("--verbose", action="store_true",
                        help="log every REST request, and show TensorFlow's start-up and device messages "
                             "(also shown when TF_CPP_MIN_LOG_LEVEL is set)")
    return parser


def load_config(args):
    """The ModelServerConfig that the flags describe (a config file, or one model)."""
    from tensorflow_serving.config import model_server_config_pb2

    config = model_server_config_pb2.ModelServerConfig()
    if args.model_config_file:
        text = pathlib.Path(args.model_config_file).read_text()
        text_format.Parse(text, config)
    elif args.model_base_path:
        config.model_config_list.config.add(name=args.model_name, base_path=os.path.abspath(args.model_base_path),
                                            model_platform="tensorflow")
    else:
        raise ValueError("pass --model_config_file, or --model_base_path (and --model_name)")
    return config


def _base_path_prefix(args, config):
    """``--model_base_path_prefix``, or ``saved_models/`` beside the config's folder when the config's
    absolute base paths (``/models/<name>``, as Docker mounts them) do not exist on this machine."""
    if args.model_base_path_prefix is not None or not args.model_config_file:
        return args.model_base_path_prefix
    bases = [pathlib.Path(m.base_path) for m in config.model_config_list.config]
    local = pathlib.Path(args.model_config_file).resolve().parent.parent / "saved_models"
    if bases and all(b.is_absolute() and not b.exists() for b in bases) and local.is_dir():
        logger.info("base paths %s do not exist here; serving them from %s (--model_base_path_prefix)",
                    [str(b) for b in bases], local)
        return str(local)
    return None


def main(argv=None):
    """``nst-tf-dev-server`` (``python -m serving.dev_server``): serve until SIGTERM or Ctrl-C; returns the exit
    status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname).1s %(name)s] %(message)s")
    import_tensorflow(args.verbose)
    from .manager import ModelManager

    try:
        config = load_config(args)
        manager = ModelManager(config, _base_path_prefix(args, config), warmup=args.enable_model_warmup,
                               limits=RequestLimits(args.max_image_size))
    except (OSError, ValueError, text_format.ParseError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.enable_batching:
        logger.warning("--enable_batching: the development server runs every request on its own")
    try:  # Bind the ports first: a port in use fails at once, not after loading the models.
        server = DevModelServer(manager, args.port, args.rest_api_port or None, args.host, args.grpc_max_threads,
                                args.rest_timeout_seconds)
    except OSError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for name, path in manager.base_paths.items():
        if not path.is_dir():
            logger.warning("Model %s: base path %s not found; polling for it", name, path)
    manager.poll(settle=False)  # Like TF Serving, answer only once the configured models are loaded.
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    manager.start(args.file_system_poll_wait_seconds)
    stop.wait()
    logger.info("Shutting down")
    server.stop()
    return 0

