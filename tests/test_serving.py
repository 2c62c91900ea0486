"""Serving contract suite: TF Serving's gRPC and REST APIs over the exported style networks.

By default it starts ``python -m serving.dev_server`` on free loopback ports over tiny
contract models (``serving/testing.py``).  Set ``NST_TF_SERVING_GRPC=host:8500``,
``NST_TF_SERVING_REST=http://host:8501`` and ``NST_TF_SERVING_MODELS=/folder/prepared``
to run the same tests, unchanged, against a real ``tensorflow_model_server`` serving a
folder prepared with ``python -m serving.testing`` (serving/README.md).
"""

import base64
import concurrent.futures
import contextlib
import http.server
import io
import json
import os
import pathlib
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest
import requests
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from helpers import ROOT, START_UP_NOISE  # noqa: I001
from nst_tf import export
from nst_tf.images import to_uint8
from nst_tf.stylizer import load_transformer
from serving import client as serving_client
from serving import testing
from serving.testing import CONTRACT_MAX_IMAGE_SIZE as MAX
from serving.testing import CONTRACT_MODEL, CONTRACT_STYLES, LIVE_MODEL, STYLES_MODEL

GRPC_ENV, REST_ENV, MODELS_ENV = "NST_TF_SERVING_GRPC", "NST_TF_SERVING_REST", "NST_TF_SERVING_MODELS"
CODE = grpc.StatusCode
TIMEOUT = 60

# Every test here talks to a server process (started once per module, about 25 s).
pytestmark = pytest.mark.slow


class Server:
    """Where the suite sends requests, and the folder the server reads models from."""

    def __init__(self, grpc_address, rest_url, models_dir, process=None):
        self.grpc_address, self.rest_url, self.models_dir, self.process = grpc_address, rest_url, models_dir, process
        self.channel = grpc.insecure_channel(grpc_address, options=[("grpc.max_receive_message_length", 2 ** 28)])
        self.predictions = prediction_service_pb2_grpc.PredictionServiceStub(self.channel)
        self.models = model_service_pb2_grpc.ModelServiceStub(self.channel)
        self.http = requests.Session()

    def rest(self, method, path, **kwargs):
        return self.http.request(method, f"{self.rest_url}{path}", timeout=TIMEOUT, **kwargs)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    external = [os.environ.get(name) for name in (GRPC_ENV, REST_ENV, MODELS_ENV)]
    if any(external):
        if not all(external):
            pytest.fail(f"set all of {GRPC_ENV}, {REST_ENV} and {MODELS_ENV} to test an external server")
        models_dir = pathlib.Path(external[2])
        if not (models_dir / "models.config").is_file():
            pytest.fail(f"{models_dir} was not prepared: run python -m serving.testing {models_dir}")
        target = Server(external[0], external[1], models_dir)
        yield target
        target.channel.close()
        return
    models_dir = tmp_path_factory.mktemp("contract_models")
    config = testing.prepare_contract_models(models_dir)
    with pytest.MonkeyPatch.context() as patch:  # As a user starts it: the quiet start-up is under test too.
        patch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
        process = testing.start_dev_server(config, models_dir / "server.log",
                                           models=[CONTRACT_MODEL, LIVE_MODEL, STYLES_MODEL],
                                           extra_args=["--max_image_size", str(MAX), "--rest_timeout_seconds", "2"])
    target = Server(process.grpc_address, process.rest_url, models_dir, process)
    try:
        yield target
    finally:
        target.channel.close()
        process.stop()


@pytest.fixture(scope="module")
def networks(server):
    """``{key: TransformerNet}`` of the contract models, loaded from the prepared folder."""
    return {path.stem: load_transformer(path) for path in (server.models_dir / "keras").glob("*.keras")}


def expected(networks, key, batch):
    return to_uint8(networks[key](np.asarray(batch, np.float32)))


def close(a, b):
    return a.shape == b.shape and np.abs(np.asarray(a, int) - np.asarray(b, int)).max() <= 1


def pixels(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def encode(array, fmt="PNG"):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=fmt)
    return buffer.getvalue()


def decode(data):
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def predict_request(model=CONTRACT_MODEL, signature="", inputs=None, version=None, label=None):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    if signature:
        request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    for name, value in (inputs or {}).items():
        request.inputs[name].CopyFrom(value if isinstance(value, type(request.inputs[name])) else
                                      tf.make_tensor_proto(value))
    return request


BATCH = pixels((2, 20, 24, 3))


def good_predict(server):
    """One valid request: the server is still serving."""
    response = server.predictions.Predict(predict_request(inputs={"images": BATCH[:1]}), timeout=TIMEOUT)
    assert tf.make_ndarray(response.outputs["stylized_images"]).shape == (1, 20, 24, 3)


# --- Both signatures, gRPC and REST --------------------------------------------------------------


def test_grpc_predict_serving_default(server, networks):
    response = server.predictions.Predict(predict_request(inputs={"images": BATCH}), timeout=TIMEOUT)
    assert response.model_spec.name == CONTRACT_MODEL and response.model_spec.version.value == 2
    assert response.model_spec.signature_name == "serving_default"
    served = tf.make_ndarray(response.outputs["stylized_images"])
    assert served.dtype == np.uint8 and close(served, expected(networks, "contract_2", BATCH))


def test_grpc_predict_stylize_bytes(server, networks):
    files = [encode(BATCH[0]), encode(pixels((16, 28, 3), 1), "JPEG")]  # Different sizes in one batch.
    request = predict_request(signature="stylize_bytes",
                              inputs={"image_bytes": tf.make_tensor_proto(files, dtype=tf.string)})
    response = server.predictions.Predict(request, timeout=TIMEOUT)
    outputs = tf.make_ndarray(response.outputs["stylized_image_bytes"])
    assert outputs.shape == (2,) and response.model_spec.signature_name == "stylize_bytes"
    for data, source in zip(outputs, files):
        assert data.startswith(b"\x89PNG")
        decoded = tf.io.decode_image(source, channels=3).numpy()
        assert close(decode(data), expected(networks, "contract_2", decoded[None])[0])


def test_rest_predict_row_and_columnar_formats(server, networks):
    reference = expected(networks, "contract_2", BATCH)
    row = server.rest("POST", f"/v1/models/{CONTRACT_MODEL}:predict", json={"instances": BATCH.tolist()})
    assert row.status_code == 200, row.text
    assert close(np.asarray(row.json()["predictions"]), reference)
    column = server.rest("POST", f"/v1/models/{CONTRACT_MODEL}:predict",
                         json={"signature_name": "serving_default", "inputs": {"images": BATCH[:1].tolist()}})
    assert column.status_code == 200, column.text
    assert close(np.asarray(column.json()["outputs"]), reference[:1])


def test_rest_predict_bytes_in_and_out_as_b64(server, networks):
    files = [encode(BATCH[1]), encode(pixels((12, 12, 3), 2))]
    answer = server.rest("POST", f"/v1/models/{CONTRACT_MODEL}:predict", json={
        "signature_name": "stylize_bytes", "instances": [{"b64": base64.b64encode(f).decode()} for f in files]})
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    assert [set(p) for p in predictions] == [{"b64"}, {"b64"}]  # "_bytes" outputs come back base64-encoded.
    for prediction, source in zip(predictions, files):
        assert close(decode(base64.b64decode(prediction["b64"])),
                     expected(networks, "contract_2", decode(source)[None])[0])


@pytest.mark.parametrize("rest", [False, True], ids=["grpc", "rest"])
def test_clients(server, networks, rest, tmp_path):
    address = server.rest_url if rest else server.grpc_address
    with serving_client.make_client(address, CONTRACT_MODEL, rest, timeout=TIMEOUT) as client:
        assert client.signature_io("serving_default") == ("images", "stylized_images")
        assert client.signature_io("stylize_bytes") == ("image_bytes", "stylized_image_bytes")
        assert close(client.stylize(BATCH), expected(networks, "contract_2", BATCH))
        assert close(client.stylize(BATCH[0]), expected(networks, "contract_2", BATCH[:1]))  # [H, W, 3] works.
        assert client.last_version == (None if rest else 2)
        (output,) = client.stylize_bytes([encode(BATCH[0])])
        assert close(decode(output), expected(networks, "contract_2", BATCH[:1])[0])
        assert [(s["version"], s["state"], s["error_code"]) for s in client.status()] == [
            (1, "AVAILABLE", "OK"), (2, "AVAILABLE", "OK")]
        with pytest.raises(serving_client.ServingClientError, match="no signature 'nope'"):
            client.signature_io("nope")


# --- Metadata and status -------------------------------------------------------------------------


def test_grpc_metadata(server):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = CONTRACT_MODEL
    response = server.predictions.GetModelMetadata(request, timeout=TIMEOUT)
    assert response.model_spec.name == CONTRACT_MODEL and response.model_spec.version.value == 2
    signatures = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(signatures)
    default = signatures.signature_def["serving_default"]
    assert list(default.inputs) == ["images"] and list(default.outputs) == ["stylized_images"]
    assert default.inputs["images"].dtype == tf.uint8.as_datatype_enum
    assert [d.size for d in default.inputs["images"].tensor_shape.dim] == [-1, -1, -1, 3]
    files = signatures.signature_def["stylize_bytes"]
    string = tf.string.as_datatype_enum
    assert files.inputs["image_bytes"].dtype == files.outputs["stylized_image_bytes"].dtype == string


def test_rest_metadata(server):
    answer = server.rest("GET", f"/v1/models/{CONTRACT_MODEL}/versions/1/metadata")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_spec"]["name"] == CONTRACT_MODEL and str(body["model_spec"]["version"]) == "1"
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert signatures["serving_default"]["inputs"]["images"]["dtype"] == "DT_UINT8"
    assert signatures["stylize_bytes"]["outputs"]["stylized_image_bytes"]["dtype"] == "DT_STRING"


def test_grpc_and_rest_status(server):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = CONTRACT_MODEL
    response = server.models.GetModelStatus(request, timeout=TIMEOUT)
    assert [(s.version, s.state, s.status.error_code) for s in response.model_version_status] == [
        (1, 30, 0), (2, 30, 0)]  # AVAILABLE, OK.
    request.model_spec.version.value = 1
    assert [s.version for s in server.models.GetModelStatus(request, timeout=TIMEOUT).model_version_status] == [1]
    answer = server.rest("GET", f"/v1/models/{CONTRACT_MODEL}")
    assert answer.status_code == 200
    assert [(s["version"], s["state"], s["status"]["error_code"]) for s in answer.json()["model_version_status"]] == [
        ("1", "AVAILABLE", "OK"), ("2", "AVAILABLE", "OK")]
    answer = server.rest("GET", f"/v1/models/{CONTRACT_MODEL}/labels/canary")
    assert [s["version"] for s in answer.json()["model_version_status"]] == ["2"]


# --- Version selection and a new version while serving --------------------------------------------


@pytest.mark.parametrize("selection, key", [
    ({}, "contract_2"), ({"version": 1}, "contract_1"), ({"version": 2}, "contract_2"),
    ({"label": "stable"}, "contract_1"), ({"label": "canary"}, "contract_2")],
    ids=["latest", "version1", "version2", "stable", "canary"])
@pytest.mark.parametrize("rest", [False, True], ids=["grpc", "rest"])
def test_version_and_label_selection(server, networks, selection, key, rest):
    address = server.rest_url if rest else server.grpc_address
    with serving_client.make_client(address, CONTRACT_MODEL, rest, timeout=TIMEOUT, **selection) as client:
        served = client.stylize(BATCH[:1])
        if not rest:
            assert client.last_version == int(key[-1])
    assert close(served, expected(networks, key, BATCH[:1]))
    other = "contract_1" if key == "contract_2" else "contract_2"
    assert not close(served, expected(networks, other, BATCH[:1]))  # The versions are told apart.


def test_new_version_appears_while_serving(server, networks):
    base = server.models_dir / LIVE_MODEL
    with serving_client.GrpcClient(server.grpc_address, LIVE_MODEL, timeout=TIMEOUT) as client:
        before = max(s["version"] for s in client.status() if s["state"] == "AVAILABLE")
        result = export.export_model(networks["contract_live_new"], base, max_image_size=MAX, warmup_size=16)
        assert result.version > before
        deadline, answered = time.monotonic() + 90, set()
        while True:  # Requests keep succeeding while the new version loads.
            served = client.stylize(BATCH[:1])
            answered.add(client.last_version)
            if client.last_version == result.version:
                break
            assert time.monotonic() < deadline, f"version {result.version} not served; states {client.status()}"
            time.sleep(0.2)
        assert close(served, expected(networks, "contract_live_new", BATCH[:1]))
        assert answered <= {before, result.version}
        while any(s["state"] == "AVAILABLE" and s["version"] != result.version for s in client.status()):
            assert time.monotonic() < deadline, "the previous version was not unloaded (policy: latest)"
            time.sleep(0.2)


def test_broken_version_is_reported_and_the_previous_one_keeps_serving(server):
    if server.process is None:
        pytest.skip("writes a broken version: development server only")
    base = server.models_dir / LIVE_MODEL
    broken = base / str(export.next_version(base))
    with serving_client.GrpcClient(server.grpc_address, LIVE_MODEL, timeout=TIMEOUT) as client:
        serving = client.stylize(BATCH[:1])
        serving_version = client.last_version
        (broken / "variables").mkdir(parents=True)  # Complete-looking, so the server tries to load it.
        (broken / "variables" / "variables.index").write_bytes(b"")
        (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
        try:
            deadline = time.monotonic() + 60
            while not [s for s in client.status() if s["version"] == int(broken.name) and s["state"] == "END"]:
                assert time.monotonic() < deadline, client.status()
                time.sleep(0.2)
            (state,) = [s for s in client.status() if s["version"] == int(broken.name)]
            assert state["error_code"] != "OK" and state["error_message"]
            assert close(client.stylize(BATCH[:1]), serving) and client.last_version == serving_version
        finally:
            shutil.rmtree(broken)


# --- Bad requests: the right status, and the server keeps serving ---------------------------------


def forged_png():
    png = encode(np.zeros((4, 4, 3), np.uint8))
    return png[:16] + struct.pack(">II", 90000, 100000) + png[24:]


def string_tensor(*items):
    return tf.make_tensor_proto(list(items), dtype=tf.string)


GRPC_BAD_PREDICT = {
    "wrong dtype": ({"inputs": {"images": BATCH.astype(np.float32)}}, CODE.INVALID_ARGUMENT),
    "wrong rank": ({"inputs": {"images": BATCH[0]}}, CODE.INVALID_ARGUMENT),
    "four channels": ({"inputs": {"images": pixels((1, 8, 8, 4))}}, CODE.INVALID_ARGUMENT),
    "zero-sized image": ({"inputs": {"images": np.zeros((1, 0, 8, 3), np.uint8)}}, CODE.INVALID_ARGUMENT),
    "empty batch": ({"inputs": {"images": np.zeros((0, 8, 8, 3), np.uint8)}}, CODE.INVALID_ARGUMENT),
    "too small": ({"inputs": {"images": pixels((1, 3, 8, 3))}}, CODE.INVALID_ARGUMENT),
    "oversized image": ({"inputs": {"images": pixels((1, MAX + 4, 8, 3))}}, CODE.INVALID_ARGUMENT),
    "undecodable bytes": ({"signature": "stylize_bytes", "inputs": {"image_bytes": string_tensor(b"no image")}},
                          CODE.INVALID_ARGUMENT),
    "forged huge header": ({"signature": "stylize_bytes", "inputs": {"image_bytes": string_tensor(forged_png())}},
                           CODE.INVALID_ARGUMENT),
    "oversized file": ({"signature": "stylize_bytes",
                        "inputs": {"image_bytes": string_tensor(encode(pixels((MAX + 8, 8, 3))))}},
                       CODE.INVALID_ARGUMENT),
    "pixels to bytes signature": ({"signature": "stylize_bytes", "inputs": {"image_bytes": BATCH}},
                                  CODE.INVALID_ARGUMENT),
    "unknown model": ({"model": "no_such_model", "inputs": {"images": BATCH}}, CODE.NOT_FOUND),
    "unknown version": ({"version": 99, "inputs": {"images": BATCH}}, CODE.NOT_FOUND),
    "unknown label": ({"label": "nightly", "inputs": {"images": BATCH}}, CODE.INVALID_ARGUMENT),
    "unknown signature": ({"signature": "classify", "inputs": {"images": BATCH}}, CODE.FAILED_PRECONDITION),
    "missing input": ({"inputs": {}}, CODE.INVALID_ARGUMENT),
    "wrong input name": ({"inputs": {"pixels": BATCH}}, CODE.INVALID_ARGUMENT),
}


@pytest.mark.parametrize("case", sorted(GRPC_BAD_PREDICT))
def test_grpc_bad_predict_requests(server, case):
    fields, code = GRPC_BAD_PREDICT[case]
    with pytest.raises(grpc.RpcError) as raised:
        server.predictions.Predict(predict_request(**fields), timeout=TIMEOUT)
    assert raised.value.code() == code, raised.value.details()
    if fields.get("model") == "no_such_model":
        # TF Serving's words; the development server adds the models it serves.
        assert raised.value.details().startswith("Servable not found for request: Latest(no_such_model)")
    good_predict(server)


def test_grpc_bad_output_filter_metadata_and_status_requests(server):
    request = predict_request(inputs={"images": BATCH})
    request.output_filter.append("no_such_output")
    calls = [(server.predictions.Predict, request, CODE.INVALID_ARGUMENT),
             (server.predictions.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest(
                 model_spec={"name": CONTRACT_MODEL}), CODE.INVALID_ARGUMENT),  # No metadata_field.
             (server.predictions.GetModelMetadata, get_model_metadata_pb2.GetModelMetadataRequest(
                 model_spec={"name": "no_such_model"}, metadata_field=["signature_def"]), CODE.NOT_FOUND),
             (server.models.GetModelStatus, get_model_status_pb2.GetModelStatusRequest(
                 model_spec={"name": "no_such_model"}), CODE.NOT_FOUND),
             (server.models.GetModelStatus, get_model_status_pb2.GetModelStatusRequest(
                 model_spec={"name": CONTRACT_MODEL, "version": {"value": 99}}), CODE.NOT_FOUND)]
    for method, message, code in calls:
        with pytest.raises(grpc.RpcError) as raised:
            method(message, timeout=TIMEOUT)
        assert raised.value.code() == code, (message, raised.value.details())
        good_predict(server)


def b64(data):
    return {"b64": base64.b64encode(data).decode()}


PREDICT = f"/v1/models/{CONTRACT_MODEL}:predict"
REST_BAD_REQUESTS = {
    "malformed JSON": ("POST", PREDICT, {"data": b"{instances: "}, 400),
    "empty body": ("POST", PREDICT, {"data": b""}, 400),
    "missing instances": ("POST", PREDICT, {"json": {"signature_name": "serving_default"}}, 400),
    "instances and inputs": ("POST", PREDICT, {"json": {"instances": [], "inputs": []}}, 400),
    "empty instances": ("POST", PREDICT, {"json": {"instances": []}}, 400),
    "ragged instances": ("POST", PREDICT, {"json": {"instances": [BATCH[0].tolist(), BATCH[0, :10].tolist()]}}, 400),
    "float values": ("POST", PREDICT, {"json": {"instances": (BATCH[:1] / 2).tolist()}}, 400),
    "oversized image": ("POST", PREDICT, {"json": {"instances": pixels((1, MAX + 4, 8, 3)).tolist()}}, 400),
    "undecodable bytes": ("POST", PREDICT, {"json": {"signature_name": "stylize_bytes",
                                                     "instances": [b64(b"no image")]}}, 400),
    "invalid base64": ("POST", PREDICT, {"json": {"signature_name": "stylize_bytes",
                                                  "instances": [{"b64": "%%%not base64"}]}}, 400),
    "unknown signature": ("POST", PREDICT, {"json": {"signature_name": "nope", "instances": BATCH.tolist()}}, 400),
    "unknown model": ("POST", "/v1/models/no_such_model:predict", {"json": {"instances": BATCH.tolist()}}, 404),
    "unknown version": ("POST", f"/v1/models/{CONTRACT_MODEL}/versions/99:predict",
                        {"json": {"instances": BATCH.tolist()}}, 404),
    "unknown label": ("POST", f"/v1/models/{CONTRACT_MODEL}/labels/nightly:predict",
                      {"json": {"instances": BATCH.tolist()}}, 400),
    "status of unknown model": ("GET", "/v1/models/no_such_model", {}, 404),
    "metadata of unknown model": ("GET", "/v1/models/no_such_model/metadata", {}, 404),
}


@pytest.mark.parametrize("case", sorted(REST_BAD_REQUESTS))
def test_rest_bad_requests(server, case):
    method, path, kwargs, status = REST_BAD_REQUESTS[case]
    answer = server.rest(method, path, **kwargs)
    assert answer.status_code == status, answer.text
    assert isinstance(answer.json().get("error"), str) and answer.json()["error"]
    good_predict(server)


# --- Deployment files -----------------------------------------------------------------------------


def test_deployment_files_agree():
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    config = text_format.Parse((ROOT / "serving" / "models.config").read_text(),
                               model_server_config_pb2.ModelServerConfig())
    entries = list(config.model_config_list.config)
    names = [entry.name for entry in entries]
    assert names and len(set(names)) == len(names)
    for entry in entries:
        assert entry.base_path == f"/models/{entry.name}" and entry.model_platform == "tensorflow"
        export.check_model_name(entry.name)
    shipped = {p.name for p in (ROOT / "saved_models").iterdir() if p.is_dir() and export.list_versions(p)}
    assert shipped <= set(names), f"exported but missing from serving/models.config: {shipped - set(names)}"
    batching = (ROOT / "serving" / "batching_parameters.txt").read_text()
    assert "max_batch_size { value:" in batching and "pad_variable_length_inputs: false" in batching
    yaml = pytest.importorskip("yaml")
    service = yaml.safe_load((ROOT / "serving" / "docker-compose.yml").read_text())["services"]["tf-serving"]
    assert service["image"].startswith("tensorflow/serving:")
    assert set(service["ports"]) == {"127.0.0.1:8500:8500", "127.0.0.1:8501:8501"}  # Loopback unless exposed.
    assert "../saved_models:/models:ro" in service["volumes"]
    for flag in ("--model_config_file=/config/models.config", "--enable_batching=true",
                 "--batching_parameters_file=/config/batching_parameters.txt", "--enable_model_warmup=true"):
        assert flag in service["command"]


# --- Command-line client --------------------------------------------------------------------------


def run_cli(args, capsys):
    code = serving_client.main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("rest", [False, True], ids=["grpc", "rest"])
def test_cli_stylizes_several_files(server, networks, tmp_path, capsys, rest):
    first, second = tmp_path / "a.png", tmp_path / "b.jpg"
    Image.fromarray(BATCH[0]).save(first)
    Image.fromarray(BATCH[1]).save(second, quality=95)
    address = ["--rest", "--server", server.rest_url] if rest else ["--server", server.grpc_address]
    code, out, err = run_cli(address + ["--model", CONTRACT_MODEL, "--version", "1", str(first), str(second),
                                        str(tmp_path / "out")], capsys)
    assert code == 0, err
    assert out.count("Saved") == 2
    assert close(decode((tmp_path / "out" / "a.png").read_bytes()), expected(networks, "contract_1", BATCH[:1])[0])
    assert decode((tmp_path / "out" / "b.png").read_bytes()).shape == (20, 24, 3)
    for mode in ("--pixels", "--raw"):
        output = tmp_path / f"c{mode}.png"
        code, out, err = run_cli(address + ["--model", CONTRACT_MODEL, mode, str(first), str(output)], capsys)
        assert code == 0, err
        assert close(decode(output.read_bytes()), expected(networks, "contract_2", BATCH[:1])[0])
    code, out, err = run_cli(address + ["--model", CONTRACT_MODEL, "--max-size", "12", str(first),
                                        str(tmp_path / "small.jpg")], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "small.jpg").size == (12, 10)


def test_cli_applies_exif_orientation_unless_raw(server, tmp_path, capsys):
    photo = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display.
    Image.fromarray(BATCH[0]).save(photo, exif=exif.tobytes(), quality=95)  # Stored 24 x 20 (width x height).
    for mode, size in (([], (20, 24)), (["--raw"], (24, 20))):
        output = tmp_path / f"out{len(mode)}.png"
        code, _, err = run_cli(["--server", server.grpc_address, "--model", CONTRACT_MODEL, *mode, str(photo),
                                str(output)], capsys)
        assert code == 0, err
        assert Image.open(output).size == size


def test_cli_errors_are_one_line(server, tmp_path, capsys):
    photo = tmp_path / "p.png"
    Image.fromarray(BATCH[0]).save(photo)
    Image.fromarray(pixels((MAX + 10, 8, 3))).save(tmp_path / "big.png")
    free = testing.free_port()
    cases = [
        (["--server", server.grpc_address, "--model", "no_such_model", str(photo), str(tmp_path / "o.png")],
         "does not serve model 'no_such_model'"),
        (["--rest", "--server", server.rest_url, "--model", "no_such_model", str(photo), str(tmp_path / "o.png")],
         "does not serve model 'no_such_model'"),
        (["--server", f"127.0.0.1:{free}", "--retries", "1", "--timeout", "5", "--model", CONTRACT_MODEL,
          str(photo), str(tmp_path / "o.png")], "Cannot reach the model server"),
        (["--rest", "--server", f"http://127.0.0.1:{free}", "--retries", "0", "--model", CONTRACT_MODEL,
          str(photo), str(tmp_path / "o.png")], "Cannot reach the model server"),
        (["--rest", "--server", f"http://{server.grpc_address}", "--model", CONTRACT_MODEL, str(photo),
          str(tmp_path / "o.png")], "answered in HTTP/2: that is a gRPC port"),
        (["--server", server.rest_url.split("://", 1)[-1], "--retries", "0", "--model", CONTRACT_MODEL, str(photo),
          str(tmp_path / "o.png")], "does not speak gRPC (it answered in HTTP/1): that looks like a REST port"),
        (["--server", server.grpc_address, "--model", CONTRACT_MODEL, str(tmp_path / "big.png"),
          str(tmp_path / "o.png")], "rejected the request"),
        (["--server", server.grpc_address, "--model", CONTRACT_MODEL, str(tmp_path / "missing.png"),
          str(tmp_path / "o.png")], "not found"),
        (["--server", server.grpc_address, "--model", CONTRACT_MODEL, "--label", "nightly", "--status"],
         "Unrecognized servable version label"),
    ]
    for args, message in cases:
        code, _, err = run_cli(args, capsys)
        assert code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1, (args, err)
    assert not (tmp_path / "o.png").exists()
    code, out, _ = run_cli(["--server", server.grpc_address, "--model", CONTRACT_MODEL, "--status", "--metadata"],
                           capsys)
    assert code == 0 and f"{CONTRACT_MODEL} version 2: AVAILABLE" in out and "stylize_bytes: inputs" in out


def _user_env():
    """The environment of a user who set no TensorFlow log level (the tests' conftest sets one)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))}


def test_python_m_serving_client(server, tmp_path):
    photo = tmp_path / "p.png"
    Image.fromarray(BATCH[0]).save(photo)
    completed = subprocess.run(
        [sys.executable, "-m", "serving.client", "--server", server.grpc_address, "--model", CONTRACT_MODEL,
         str(photo), str(tmp_path / "out.jpg")], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=_user_env())
    assert completed.returncode == 0, completed.stderr
    assert Image.open(tmp_path / "out.jpg").format == "JPEG"
    assert not any(word in completed.stderr for word in START_UP_NOISE), completed.stderr


def test_dev_server_starts_without_tensorflow_start_up_lines(server):
    if server.process is None:
        pytest.skip("an external server: its output is not ours to read")
    log = server.process.log_path.read_text(errors="replace")
    assert "Running gRPC ModelServer" in log and not any(word in log for word in START_UP_NOISE), log


NO_TENSORFLOW = """
import runpy, sys

rest_url, grpc_address = sys.argv[1:3]

def run(module, *argv):
    sys.argv = [module, *argv]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        print("exit", exit_.code, file=sys.stderr)

rest = ["--rest", "--server", rest_url, "--retries", "0", "--model", "m"]
for module in ("serving.client", "serving.dev_server", "serving.loadtest", "serving.testing"):
    run(module, "--help")
for module, flag in (("serving.client", "--modle"), ("serving.dev_server", "--model_nme"),
                     ("serving.loadtest", "--requets"), ("serving.testing", "--verbse")):
    run(module, flag, "x")
run("serving.client", "--model", "m", "--max-size", "-5", "in.png", "out.png")
run("serving.client", *rest, "--status")
run("serving.client", *rest, "--metadata")
print("tensorflow imported:", "tensorflow" in sys.modules, file=sys.stderr)
run("serving.client", "--server", grpc_address, "--retries", "0", "--model", "m", "--status")
print("tensorflow imported:", "tensorflow" in sys.modules, file=sys.stderr)
"""


def test_help_and_rest_status_answer_without_tensorflow():
    """--help of every serving command, its answer to a mistyped flag or a bad value, the REST
    client's reports and a gRPC status check load no TensorFlow (GetModelStatus has messages of
    its own: serving.status_messages)."""
    rest, grpc_address = f"http://127.0.0.1:{testing.free_port()}", f"127.0.0.1:{testing.free_port()}"
    run = subprocess.run([sys.executable, "-c", NO_TENSORFLOW, rest, grpc_address], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env=_user_env())
    lines = [line for line in run.stderr.splitlines() if line]
    expected = ["exit 0"] * 4 + ["exit 2"] * 7 + ["tensorflow imported: False", "exit 2", "tensorflow imported: False"]
    assert [line for line in lines if line.startswith(("exit", "tensorflow"))] == expected, run.stderr
    hints = [line for line in lines if "error: unrecognized arguments" in line]
    assert len(hints) == 4 and all(f"did you mean {right}?" in line for line, right in zip(
        hints, ("--model", "--model_name", "--requests", "--verbose"))), run.stderr
    assert any("--max-size must be a number of pixels >= 1. Received: max_size=-5" in line for line in lines)
    errors = [line for line in lines if line.startswith("error: ") and "max-size" not in line]
    assert len(errors) == 3 and all("Cannot reach the model server" in line for line in errors), run.stderr
    assert len(lines) == 22 and not any(word in run.stderr for word in START_UP_NOISE), run.stderr
    assert all(name in run.stdout for name in ("serving.client", "serving.dev_server", "serving.loadtest",
                                               "serving.testing")), run.stdout


# --- Installed commands ---------------------------------------------------------------------------


def _outside_the_repository(tmp_path):
    """cwd and environment of a user who installed the package and works in another folder."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    found = subprocess.run([sys.executable, "-c", "import nst_tf_serving"], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    if found.returncode != 0:
        pytest.skip("nst_tf_serving is not installed in this environment (pip install -e . installs it): "
                    f"{(found.stderr.strip().splitlines() or ['?'])[-1]}")
    return env


@pytest.mark.parametrize("module, flag", [("nst_tf_serving.client", "--model MODEL"),
                                          ("nst_tf_serving.dev_server", "--model_config_file")])
def test_installed_package_runs_from_any_folder(tmp_path, module, flag):
    env = _outside_the_repository(tmp_path)
    run = subprocess.run([sys.executable, "-m", module, "--help"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"usage: python -m {module} ") and flag in run.stdout, run.stdout


@pytest.mark.parametrize("script, flag", [("nst-tf-client", "--model MODEL"),
                                          ("nst-tf-dev-server", "--model_config_file"),
                                          ("nst-tf-loadtest", "--saved-models")])
def test_installed_console_scripts(tmp_path, script, flag):
    env = _outside_the_repository(tmp_path)
    path = shutil.which(script)
    if path is None:
        pytest.skip(f"{script} is not on PATH (pip install -e . installs it beside this Python's scripts)")
    run = subprocess.run([path, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"usage: {script} ") and flag in run.stdout, run.stdout


# --- Retries --------------------------------------------------------------------------------------


class FlakyModelService(model_service_pb2_grpc.ModelServiceServicer):
    """GetModelStatus: UNAVAILABLE for the first `failures` calls, then version 1 AVAILABLE."""

    def __init__(self, failures):
        self.failures, self.calls = failures, 0

    def GetModelStatus(self, request, context):  # noqa: N802 (the proto's method name)
        self.calls += 1
        if self.calls <= self.failures:
            context.abort(CODE.UNAVAILABLE, "still starting")
        response = get_model_status_pb2.GetModelStatusResponse()
        response.model_version_status.add(version=1, state=get_model_status_pb2.ModelVersionStatus.AVAILABLE)
        return response


@contextlib.contextmanager
def flaky_grpc_server(failures, port=0):
    """A gRPC ModelService on loopback: yields (address, FlakyModelService)."""
    service = FlakyModelService(failures)
    flaky = grpc.server(concurrent.futures.ThreadPoolExecutor(2))
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(service, flaky)
    port = flaky.add_insecure_port(f"127.0.0.1:{port}")
    flaky.start()
    try:
        yield f"127.0.0.1:{port}", service
    finally:
        flaky.stop(None)


@pytest.mark.parametrize("retries, failures, attempts", [(3, 2, 3), (3, 3, 4), (0, 1, 1), (9, 10, 5)])
def test_grpc_retry_policy_retries_unavailable(retries, failures, attempts):
    """gRPC's retry policy: `retries` retries of UNAVAILABLE, at most 4 (gRPC's cap of 5 attempts)."""
    with flaky_grpc_server(failures) as (address, service), \
            serving_client.GrpcClient(address, "m", retries=retries, backoff=0.01, timeout=TIMEOUT) as client:
        if failures < attempts:
            assert client.status()[0]["state"] == "AVAILABLE"
        else:
            with pytest.raises(serving_client.ServingClientError) as raised:
                client.status()
            message = str(raised.value)
            assert raised.value.code == "UNAVAILABLE" and "\n" not in message
            assert f"Cannot reach the model server at {address} (UNAVAILABLE after {attempts} attempts: " \
                   "still starting). Is it running? Start one with `nst-tf-dev-server`" in message
        assert service.calls == attempts


def test_grpc_wait_until_available_waits_for_a_server_that_starts_later():
    """wait_for_ready: the client tries, finds no server, and still succeeds once one starts (retries=0)."""
    port = testing.free_port()
    with serving_client.GrpcClient(f"127.0.0.1:{port}", "m", retries=0, timeout=TIMEOUT) as client:
        failed_to_connect = threading.Event()
        client.channel.subscribe(lambda state: state == grpc.ChannelConnectivity.TRANSIENT_FAILURE
                                 and failed_to_connect.set())
        waiting = concurrent.futures.ThreadPoolExecutor(1).submit(client.wait_until_available, TIMEOUT)
        assert failed_to_connect.wait(TIMEOUT), "the client never tried to connect"
        assert not waiting.done()
        with pytest.raises(serving_client.ServingClientError, match="Cannot reach the model server"):
            client.status()  # Without wait_for_ready a call fails at once.
        with flaky_grpc_server(1, port) as (_, service):
            waiting.result(TIMEOUT)
            assert service.calls == 2  # One UNAVAILABLE, polled again after the interval.


def test_cli_waits_for_the_server_with_wait(capsys):
    with flaky_grpc_server(3) as (address, service):
        code, out, err = run_cli(["--server", address, "--retries", "0", "--wait", str(TIMEOUT), "--model", "m",
                                  "--status"], capsys)
        assert code == 0 and out == "m version 1: AVAILABLE\n", err
        assert service.calls == 6  # Three UNAVAILABLE polls, AVAILABLE, then --status's two calls.
    code, _, err = run_cli(["--server", address, "--wait", "-1", "--model", "m", "--status"], capsys)
    assert code == 2 and err.startswith("error: --timeout must be > 0, --retries and --wait >= 0") and "wait=-1" in err


class FlakyRestHandler(http.server.BaseHTTPRequestHandler):
    """``GET /v1/models/m``: 503 for the first ``server.failures`` requests, then version 1 AVAILABLE;
    a request while ``server.hold`` is set is held until the event is cleared."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        self.server.calls += 1
        if self.server.hold.is_set():
            self.server.release.wait(TIMEOUT)
            return
        failing = self.server.calls <= self.server.failures
        body = json.dumps({"error": "still starting"} if failing else
                          {"model_version_status": [{"version": "1", "state": "AVAILABLE", "status": {}}]}).encode()
        self.send_response(503 if failing else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def flaky_rest_server(failures, hold=False):
    """A REST status endpoint on loopback: yields (url, server with ``calls``)."""
    flaky = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FlakyRestHandler)
    flaky.daemon_threads = True
    flaky.failures, flaky.calls, flaky.hold, flaky.release = failures, 0, threading.Event(), threading.Event()
    if hold:
        flaky.hold.set()
    thread = threading.Thread(target=flaky.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{flaky.server_address[1]}", flaky
    finally:
        flaky.release.set()
        flaky.shutdown()
        flaky.server_close()


@pytest.mark.parametrize("retries, failures", [(3, 2), (3, 3), (0, 1)])
def test_rest_retries_unavailable_through_the_session_adapter(retries, failures):
    with flaky_rest_server(failures) as (url, flaky), \
            serving_client.RestClient(url, "m", retries=retries, backoff=0.01, timeout=TIMEOUT) as client:
        retry = client.session.get_adapter(client.url()).max_retries
        assert retry.total == retries and retry.connect == retries and retry.status == retries
        # Predictions are POSTs and idempotent: retried on 502 and 503, not on a timeout (504).
        assert retry.is_retry("POST", 503) and retry.is_retry("POST", 502) and not retry.is_retry("POST", 504)
        if failures <= retries:
            assert client.status()[0]["state"] == "AVAILABLE"
        else:
            with pytest.raises(serving_client.ServingClientError) as raised:
                client.status()
            assert raised.value.code == "UNAVAILABLE" and "\n" not in str(raised.value)
            assert f"Cannot reach the model server at {url} (UNAVAILABLE after {retries + 1} attempts: HTTP 503: " \
                   "still starting)" in str(raised.value)
        assert flaky.calls == min(failures, retries) + 1


def test_rest_retries_no_timeout():
    """A server that takes longer than the timeout answers DEADLINE_EXCEEDED once, not once per retry."""
    with flaky_rest_server(0, hold=True) as (url, flaky), \
            serving_client.RestClient(url, "m", retries=3, backoff=0.01, timeout=0.5) as client:
        with pytest.raises(serving_client.ServingClientError, match="No answer from .* within 0.5 s") as raised:
            client.status()
        assert raised.value.code == "DEADLINE_EXCEEDED" and flaky.calls == 1


def test_rest_client_mounts_its_retries_only_for_its_server():
    session = requests.Session()
    with serving_client.RestClient("127.0.0.1:1", "m", retries=2, session=session) as client:
        assert session.get_adapter(client.url()).max_retries.total == 2
        assert session.get_adapter("http://example.com/").max_retries.total == 0


# --- Load test (tiny) -----------------------------------------------------------------------------


def test_loadtest_runs_tiny(server):
    from serving.loadtest import format_report, run_serving_suite

    loaded = tf.saved_model.load(str(server.models_dir / CONTRACT_MODEL / "2")).signatures["serving_default"]
    memory = server.process.memory_bytes if server.process else None
    report = run_serving_suite(lambda: serving_client.GrpcClient(server.grpc_address, CONTRACT_MODEL, timeout=TIMEOUT),
                               requests=20, image_size=32, concurrencies=(1, 4),
                               in_process=lambda x: loaded(images=x), server_memory=memory)
    assert [r["concurrency"] for r in report["runs"]] == [1, 4]
    assert all(r["errors"] == 0 and r["throughput_rps"] > 0 and r["p99_ms"] >= r["p50_ms"] for r in report["runs"])
    assert report["in_process_rps"] > 0 and report["grpc_vs_in_process"] > 0
    assert "concurrency  4" in format_report(report)
    from benchmarks.serving import serving_result

    assert [row["concurrency"] for row in serving_result(report).tables["serving"].rows] == [1, 4]


# --- The shipped styles ---------------------------------------------------------------------------


def test_shipped_models_serve_from_the_deployment_config(tmp_path):
    """serving/models.config + saved_models/, as shipped, through the development server."""
    shipped = sorted(p.name for p in (ROOT / "saved_models").iterdir() if p.is_dir() and export.list_versions(p))
    if not shipped:
        pytest.skip("no exported style in saved_models/ yet (python scripts/export.py saved_models/<name>/<name>.keras)")
    image = pixels((48, 64, 3), 5)
    process = testing.start_dev_server(ROOT / "serving" / "models.config", tmp_path / "server.log",
                                       base_path_prefix=ROOT / "saved_models", models=shipped)
    try:
        for name in shipped:
            with serving_client.GrpcClient(process.grpc_address, name, timeout=TIMEOUT) as client:
                names = client.style_names()  # A multi-style network: every style, by name.
                for style in names or [None]:
                    served = client.stylize(image, style)
                    assert client.last_version == export.list_versions(ROOT / "saved_models" / name)[-1]
                    (encoded,) = client.stylize_bytes([encode(image)], style)
                    assert close(decode(encoded), served[0])
                    keras_file = ROOT / "saved_models" / name / f"{name}.keras"
                    if keras_file.is_file():
                        network = load_transformer(keras_file)
                        extra = {} if style is None else {"style": network.style_weights(style)}
                        assert close(served, to_uint8(network(image[None].astype(np.float32), **extra)))
    finally:
        process.stop()


def test_dev_server_refuses_bad_configs(tmp_path, capsys):
    from serving import dev_server

    def config(text):
        path = tmp_path / f"c{len(list(tmp_path.iterdir()))}.config"
        path.write_text(text)
        return ["--model_config_file", str(path), "--port", "0"]

    entry = 'config { name: "a" base_path: "%s" model_platform: "tensorflow" }'
    cases = [([], "pass --model_config_file"),
             (config("model_config_list { config { name: "), "Expected"),
             (config("model_config_list { %s }" % (entry % "relative/a")), "absolute path"),
             (config("model_config_list { %s %s }" % (entry % "/m/a", entry % "/m/a")), "multiple times"),
             (["--model_config_file", str(tmp_path / "missing.config")], "No such file")]
    for args, message in cases:
        assert dev_server.main(args) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, (args, err)


def test_dev_server_max_image_size_flag_takes_positive_integers_only(capsys):
    from serving.dev_server.main import build_parser

    assert build_parser().parse_args(["--max_image_size", "64"]).max_image_size == 64
    for text in ("0", "-3", "1.5", "big"):
        with pytest.raises(SystemExit) as exit_info:
            build_parser().parse_args(["--max_image_size", text])
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert exit_info.value.code == 2 and err.count("error:") == 1 and (
            f"argument --max_image_size: expected a positive integer, got {text!r}" in err), err


# --- Bounded cost per request ---------------------------------------------------------------------


def declared_only(shape, dtype=tf.uint8):
    """A TensorProto that declares `shape` and carries no values (24 bytes)."""
    proto = tf.make_tensor_proto(np.zeros((0,), dtype.as_numpy_dtype))
    proto.tensor_shape.Clear()
    for size in shape:
        proto.tensor_shape.dim.add(size=size)
    return proto


HOSTILE_GRPC = {
    "declared 20000 px, no data": (predict_request(inputs={"images": declared_only([1, 20000, 20000, 3])}),
                                   CODE.INVALID_ARGUMENT),
    "declared more values than carried": (predict_request(inputs={"images": declared_only([1, 64, 64, 3])}),
                                          CODE.INVALID_ARGUMENT),
    "declared string batch, no data": (predict_request(signature="stylize_bytes", inputs={
        "image_bytes": declared_only([10 ** 8], tf.string)}), CODE.INVALID_ARGUMENT),
    "message over the receive limit": (predict_request(signature="stylize_bytes", inputs={
        "image_bytes": string_tensor(b"\0" * (3 << 20))}), CODE.RESOURCE_EXHAUSTED),
}


def raw_http(server, request, read_all=True):
    """Sends raw bytes to the REST port; returns (status or None, body, connection closed afterwards)."""
    host, port = server.rest_url.split("//")[1].rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=TIMEOUT) as connection:
        connection.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = connection.recv(65536)
            if not chunk:
                return None, data, True
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        status = int(head.split()[1])
        length = int(next((line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(
            b"content-length:")), b"0"))
        while len(body) < length:
            body += connection.recv(65536)
        rest = body[length:]
        connection.settimeout(5 if read_all else 0.5)
        try:  # Anything after the answer is a second answer; a closed connection reads b"".
            more = connection.recv(65536)
            closed = more == b""
            rest += more
        except (socket.timeout, ConnectionResetError):
            closed = False
        return status, body[:length] + rest, closed


def http_request(path, body=b"", headers=(), method="POST"):
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", *headers]
    if body is not None and not any(h.lower().startswith(("content-length", "transfer-encoding")) for h in headers):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b"")


DEEP_JSON = b'{"instances": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
HOSTILE_HTTP = {
    "version beyond int64": (http_request(f"/v1/models/{CONTRACT_MODEL}/versions/99999999999999999999:predict",
                                          b'{"instances": []}'), {400, 404}),
    "JSON nested 100000 deep": (http_request(PREDICT, DEEP_JSON), {400}),
    "Content-Length abc": (http_request(PREDICT, None, ["Content-Length: abc"]), {400}),
    "Content-Length 10^15": (http_request(PREDICT, None, ["Content-Length: 1000000000000000"]), {413}),
    "chunked body": (http_request(PREDICT, b"5\r\n{\"in\"\r\n0\r\n\r\n", ["Transfer-Encoding: chunked"]),
                     {400, 411}),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_GRPC))
def test_grpc_hostile_requests_are_refused_before_being_read(server, case):
    request, code = HOSTILE_GRPC[case]
    if case.startswith("declared") and server.process is None:
        pytest.skip("TF Serving fills a tensor's missing values with the last one; the development server refuses")
    with pytest.raises(grpc.RpcError) as raised:
        server.predictions.Predict(request, timeout=TIMEOUT)
    assert raised.value.code() == code, raised.value.details()
    good_predict(server)


@pytest.mark.parametrize("case", sorted(HOSTILE_HTTP))
def test_rest_hostile_requests_get_one_answer(server, case):
    request, statuses = HOSTILE_HTTP[case]
    status, body, _ = raw_http(server, request)
    assert status in statuses, body[:300]
    assert body.count(b"HTTP/1.") == 0, body[:300]  # One answer, not a second one for the leftover bytes.
    good_predict(server)


def test_rest_body_that_never_arrives_does_not_hold_a_thread(server):
    if server.process is None:
        pytest.skip("depends on the server's socket timeout: development server only")
    # The suite's server waits 2 s (--rest_timeout_seconds) for each read.
    status, body, closed = raw_http(server, http_request(PREDICT, None, ["Content-Length: 100"]))
    assert (status == 408 or status is None) and closed, body[:300]
    good_predict(server)


def test_server_memory_stays_bounded_across_the_hostile_requests(server):
    if server.process is None:
        pytest.skip("reads the server's resident memory: development server only")
    before = server.process.memory_bytes()
    for request, _ in HOSTILE_GRPC.values():
        with pytest.raises(grpc.RpcError):
            server.predictions.Predict(request, timeout=TIMEOUT)
    for request, _ in HOSTILE_HTTP.values():
        raw_http(server, request, read_all=False)
    good_predict(server)
    growth = server.process.memory_bytes() - before
    assert growth < 300 * 2 ** 20, f"server RSS grew by {growth / 2 ** 20:.0f} MiB"


def test_codec_refuses_declared_shapes_before_allocating_and_the_savedmodel_refuses_large_images(server):
    """In-process: the development server's codec, and the exported SavedModel that TF Serving runs."""
    from serving.dev_server import RequestLimits, Servable, ServingError, tensor_proto_to_array
    from tensorflow.core.framework import types_pb2

    limits = RequestLimits(MAX)
    for proto in (declared_only([1, 20000, 20000, 3]), declared_only([1, 8, 8, 3])):
        with pytest.raises(ServingError, match="declares shape"):
            tensor_proto_to_array(proto, "images", types_pb2.DT_UINT8, limits=limits)
    with pytest.raises(ServingError, match="larger than 64 pixels"):
        tensor_proto_to_array(tf.make_tensor_proto(pixels((1, 8, MAX + 1, 3))), "images", types_pb2.DT_UINT8,
                              limits=limits)
    assert limits.grpc_bytes < 2 << 20 and RequestLimits(2048).grpc_bytes < 300 << 20
    servable = Servable(CONTRACT_MODEL, 1, server.models_dir / CONTRACT_MODEL / "1")
    with pytest.raises(ServingError, match="sides of 4 to 64 pixels"):
        servable.predict("", {"images": pixels((1, 4 * MAX, 8, 3))})
    webp = io.BytesIO()
    Image.fromarray(pixels((8, MAX + 40, 3))).save(webp, format="WEBP", lossless=True)
    with pytest.raises(ServingError, match="according to its header"):
        servable.predict("stylize_bytes", {"image_bytes": np.array([webp.getvalue()], object)})


# --- Version folders ------------------------------------------------------------------------------


def _manager(base, prefix=None, name="m"):
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    from serving.dev_server import ModelManager

    config = text_format.Parse(f'model_config_list {{ config {{ name: "{name}" base_path: "{base}" '
                               'model_platform: "tensorflow" model_version_policy { all {} } } }',
                               model_server_config_pb2.ModelServerConfig())
    return ModelManager(config, prefix, warmup=False)


def _states(manager, name="m"):
    from tensorflow_serving.apis import model_pb2

    from serving.dev_server import ServingError
    from serving.status import state_name

    try:
        return {v: state_name(s) for v, s, _, _ in manager.status(model_pb2.ModelSpec(name=name))}
    except ServingError:
        return {}


def test_a_version_copied_in_pieces_loads_once_complete_and_retries_after_a_failure(server, tmp_path):
    source = server.models_dir / CONTRACT_MODEL / "1"
    base = tmp_path / "m"
    manager = _manager(base)
    version = base / "1"
    (version / "variables").mkdir(parents=True)
    shutil.copy(source / "saved_model.pb", version)  # The copy has only begun.
    for _ in range(3):
        manager.poll()
    assert _states(manager) == {}  # Not loaded half-written.
    data = sorted((source / "variables").glob("variables.data*"))
    shutil.copy(source / "variables" / "variables.index", version / "variables")
    for path in data:
        (version / "variables" / path.name).write_bytes(path.read_bytes()[:20])  # Still being written.
    for _ in range(3):
        manager.poll()
    assert _states(manager) == {1: "END"}
    for path in data:  # The data file is finished in place.
        shutil.copy(path, version / "variables" / path.name)
    for _ in range(3):
        manager.poll()
    assert _states(manager) == {1: "AVAILABLE"}


def test_version_folders_are_ascii_digits_only(server, tmp_path):
    base = tmp_path / "m"
    shutil.copytree(server.models_dir / CONTRACT_MODEL / "1", base / "1")
    for name in ("\u00b2", "\u0663", "99999999999999999999"):
        (base / name).mkdir()
    manager = _manager(base)
    manager.poll()
    manager.poll()
    assert _states(manager) == {1: "AVAILABLE"}


def test_base_path_cannot_leave_the_prefix(tmp_path):
    prefix = tmp_path / "models"
    (prefix / "ok").mkdir(parents=True)
    assert _manager("/models/ok", prefix).base_paths["m"] == (prefix / "ok").resolve()
    for base in ("/models/..", "/models/../.."):
        with pytest.raises(ValueError, match="outside --model_base_path_prefix"):
            _manager(base, prefix)


def test_cli_never_writes_over_its_inputs(server, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(BATCH[0]).save(folder / name)
    before = {p: p.read_bytes() for p in folder.iterdir()}
    for args in ([str(folder / "a.png"), str(folder / "a.png")],  # The output is the input.
                 [str(folder / "a.png"), str(folder / "b.png"), str(folder)]):  # The folder output holds them.
        code, _, err = run_cli(["--server", server.grpc_address, "--model", CONTRACT_MODEL, *args], capsys)
        assert code == 2 and "overwrite an input" in err and err.count("\n") == 1, err
    assert {p: p.read_bytes() for p in folder.iterdir()} == before


# ---------------------------------------------------------------- a multi-style network: styles by name, blends


def styled(networks, batch, style):
    return to_uint8(networks[STYLES_MODEL](np.asarray(batch, np.float32), style=style))


def test_grpc_selects_styles_by_name_and_blends(server, networks):
    request = predict_request(STYLES_MODEL, inputs={"images": BATCH, "style": tf.make_tensor_proto([b"b", b"a"])})
    response = server.predictions.Predict(request, timeout=TIMEOUT)
    outputs = tf.make_ndarray(response.outputs["stylized_images"])
    assert close(outputs, styled(networks, BATCH, np.array([1, 0])))
    weights = np.array([[0.25, 0.75, 0.0]], np.float32)
    response = server.predictions.Predict(predict_request(STYLES_MODEL, "stylize_blend", {"images": BATCH, "style_weights": weights}),
                              timeout=TIMEOUT)
    assert close(tf.make_ndarray(response.outputs["stylized_images"]), styled(networks, BATCH, weights))
    with pytest.raises(grpc.RpcError) as error:
        server.predictions.Predict(predict_request(STYLES_MODEL, inputs={"images": BATCH, "style": tf.make_tensor_proto([b"x"])}),
                       timeout=TIMEOUT)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "Unknown style name" in error.value.details()


def test_rest_selects_styles_by_name_and_blends(server, networks):
    answer = server.rest("POST", f"/v1/models/{STYLES_MODEL}:predict", json={
        "inputs": {"images": BATCH.tolist(), "style": ["b"]}})
    assert answer.status_code == 200, answer.text
    assert close(np.asarray(answer.json()["outputs"], np.uint8), styled(networks, BATCH, np.array([1, 1])))
    answer = server.rest("POST", f"/v1/models/{STYLES_MODEL}:predict", json={
        "signature_name": "stylize_blend", "inputs": {"images": BATCH.tolist(), "style_weights": [[0.5, 0.5, 0.0]]}})
    assert answer.status_code == 200, answer.text
    assert close(np.asarray(answer.json()["outputs"], np.uint8),
                 styled(networks, BATCH, np.array([[0.5, 0.5, 0.0]], np.float32)))
    answer = server.rest("POST", f"/v1/models/{STYLES_MODEL}:predict", json={
        "inputs": {"images": BATCH.tolist(), "style": ["zebra"]}})
    assert answer.status_code == 400 and "Unknown style name" in answer.text


@pytest.mark.parametrize("rest", [False, True], ids=["grpc", "rest"])
def test_clients_discover_styles_and_blend(server, networks, rest):
    address = server.rest_url if rest else server.grpc_address
    with serving_client.make_client(address, STYLES_MODEL, rest, timeout=TIMEOUT) as client:
        assert client.style_names() == list(CONTRACT_STYLES)  # From the model's metadata, no list in the client.
        assert close(client.stylize(BATCH, "a"), styled(networks, BATCH, np.array([0, 0])))
        weights = networks[STYLES_MODEL].style_weights({"a": 1, "b": 3}, strength=0.5)
        assert close(client.stylize(BATCH, {"a": 1, "b": 3}, strength=0.5), styled(networks, BATCH, weights))
        (output,) = client.stylize_bytes([encode(BATCH[0])], "b")
        assert close(decode(output), styled(networks, BATCH[:1], np.array([1]))[0])
        for style, message in (("zebra", "Unknown style name 'zebra'"), (None, "choose one (a, b, photo)")):
            with pytest.raises(serving_client.ServingClientError, match=re.escape(message)):
                client.stylize(BATCH, style)
    with serving_client.make_client(address, CONTRACT_MODEL, rest, timeout=TIMEOUT) as single:
        assert single.style_names() is None
        with pytest.raises(serving_client.ServingClientError, match="single style"):
            single.stylize(BATCH, "a")


def test_client_command_line_blends(server, networks, tmp_path, capsys):
    source = tmp_path / "in.png"
    Image.fromarray(BATCH[0]).save(source)
    out = tmp_path / "out.png"
    code = serving_client.main(["--server", server.grpc_address, "--model", STYLES_MODEL, "--style-name",
                                "a:1,b:1", str(source), str(out)])
    assert code == 0, capsys.readouterr().err
    weights = networks[STYLES_MODEL].style_weights({"a": 1, "b": 1})
    assert close(decode(out.read_bytes()), styled(networks, BATCH[:1], weights)[0])
    code = serving_client.main(["--server", server.grpc_address, "--model", STYLES_MODEL, str(source),
                                str(tmp_path / "o2.png")])
    err = capsys.readouterr().err
    assert code == 2 and "choose one (a, b, photo)" in err and not (tmp_path / "o2.png").exists()


def test_the_development_server_names_its_models_for_an_unknown_one(tmp_path):
    from tensorflow_serving.apis import model_pb2

    from serving.dev_server import ServingError

    manager = _manager(tmp_path / "m")
    for call in (manager.status, manager.servable):
        with pytest.raises(ServingError, match="this server serves: m$"):
            call(model_pb2.ModelSpec(name="styels"))
    with pytest.raises(ServingError) as known:  # A known model without versions: TF Serving's message alone.
        manager.status(model_pb2.ModelSpec(name="m"))
    assert "serves" not in str(known.value)


def test_the_status_messages_match_tensorflow_serving_api_field_for_field():
    from tensorflow_serving.apis import get_model_status_pb2, model_pb2

    from serving import status, status_messages

    def fields(descriptor):
        return {f.name: (f.number, f.is_repeated, f.containing_oneof and f.containing_oneof.name,
                         f.message_type.name if f.message_type else None) for f in descriptor.fields}

    def shape(ours, theirs):  # Same names, numbers, labels, oneofs and message types; enums travel as int32.
        assert fields(ours) == fields(theirs), ours.name

    for ours, theirs in [(status_messages.ModelSpec, model_pb2.ModelSpec),
                         (status_messages.GetModelStatusRequest, get_model_status_pb2.GetModelStatusRequest),
                         (status_messages.GetModelStatusResponse, get_model_status_pb2.GetModelStatusResponse)]:
        shape(ours.DESCRIPTOR, theirs.DESCRIPTOR)
    version = status_messages.GetModelStatusResponse.DESCRIPTOR.fields_by_name["model_version_status"].message_type
    shape(version, get_model_status_pb2.ModelVersionStatus.DESCRIPTOR)
    shape(version.fields_by_name["status"].message_type,
          get_model_status_pb2.ModelVersionStatus.DESCRIPTOR.fields_by_name["status"].message_type)
    assert status.STATE_NAMES == dict(map(reversed, get_model_status_pb2.ModelVersionStatus.State.items()))
    # And the bytes agree both ways.
    response = get_model_status_pb2.GetModelStatusResponse()
    response.model_version_status.add(version=3, state=30).status.error_message = "ok"
    assert status_messages.GetModelStatusResponse.FromString(response.SerializeToString()).model_version_status[
        0].state == 30
    request = status_messages.GetModelStatusRequest()
    request.model_spec.name, request.model_spec.version.value = "m", 7
    assert get_model_status_pb2.GetModelStatusRequest.FromString(request.SerializeToString()).model_spec == \
        model_pb2.ModelSpec(name="m", version={"value": 7})


def test_a_grpc_status_check_imports_no_tensorflow(server):
    script = ("import sys; from serving import client; "
              f"code = client.main(['--server', {server.grpc_address!r}, '--model', {CONTRACT_MODEL!r}, '--status']); "
              "assert code == 0, code; "
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tensorflow_serving', 'keras')))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "version 1: AVAILABLE" in result.stdout and result.stdout.strip().endswith("[]"), result.stdout
