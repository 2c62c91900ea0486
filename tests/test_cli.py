"""scripts/stylize.py end to end: bad input, Ctrl-C, and a real stylization with SqueezeNet."""

import json
import os
import re
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from helpers import ROOT, START_UP_NOISE, mask_and_scales_args, write_image  # noqa: I001
from nst_tf.config import StyleConfig
from nst_tf import cli
from nst_tf.features import FeatureExtractor
from nst_tf import images, losses, optimize

SCRIPT = str(ROOT / "scripts" / "stylize.py")
FAST = ["--backbone", "vgg16", "--weights", "none", "--content-layers", "block2_conv1",
        "--style-layers", "block1_conv1,block2_conv1", "--image-size", "32", "--iterations", "3", "--no-progress"]


def run_cli(args, capsys):
    code = cli.stylize_main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.slow
def test_stylize_writes_output_and_intermediates(photo, painting, tmp_path, capsys):
    out = tmp_path / "out" / "result.png"
    code, stdout, _ = run_cli(["--content", str(photo), "--style", str(painting), "--output", str(out),
                               "--save-every", "2", "--print-every", "1"] + FAST, capsys)
    assert code == 0 and "Saved" in stdout and "iteration 3:" in stdout
    assert Image.open(out).size == (32, 26)  # Longest side --image-size, aspect kept.
    assert (tmp_path / "out" / "result_00002.png").is_file()


def test_nst_tf_stylize_subcommand(photo, painting, tmp_path, capsys):
    out = tmp_path / "o.jpg"
    assert cli.main(["stylize", "--content", str(photo), "--style", str(painting), "--output", str(out)] + FAST) == 0
    assert out.is_file()


def bad_inputs(tmp):
    write_image(tmp / "ok.png", (40, 32))
    (tmp / "empty.jpg").write_bytes(b"")
    (tmp / "text.jpg").write_text("not an image")
    (tmp / "folder").mkdir()
    write_image(tmp / "full.jpg", (64, 64))
    (tmp / "truncated.jpg").write_bytes((tmp / "full.jpg").read_bytes()[:300])
    Image.new("1", (11000, 10000)).save(tmp / "huge.png")  # 110 megapixels, over the 100 MP limit.
    write_image(tmp / "strip.png", (400, 4))
    ok = str(tmp / "ok.png")
    base = ["--content", ok, "--style", ok, "--output", str(tmp / "out.png")] + FAST

    def with_(*pairs):
        args = list(base)
        for flag, value in zip(pairs[::2], pairs[1::2]):
            if flag in args:
                args[args.index(flag) + 1] = value
            else:
                args += [flag, value]
        return args
    return [
        ("missing", with_("--content", str(tmp / "nope.jpg")), "not found"),
        ("folder", with_("--content", str(tmp / "folder")), "director"),
        ("zero bytes", with_("--style", str(tmp / "empty.jpg")), "empty"),
        ("not an image", with_("--style", str(tmp / "text.jpg")), "not an image"),
        ("truncated", with_("--content", str(tmp / "truncated.jpg")), "truncated|corrupt"),
        ("pixel limit", with_("--content", str(tmp / "huge.png")), "pixels"),
        ("too small", with_("--content", str(tmp / "strip.png"), "--image-size", "64",
                            "--style-layers", "block5_conv1"), "too small"),
        ("unsupported output", with_("--output", str(tmp / "out.gifx")), "extension"),
        ("output is a folder", with_("--output", str(tmp / "folder")), "director"),
        ("unknown layer", with_("--style-layers", "conv9_9"), "Unknown vgg16 layer"),
        ("missing weights", with_("--weights", str(tmp / "w.h5")), "Weights file not found"),
        ("inputs checked before the weights", with_("--style", str(tmp / "nope.jpg"), "--weights", str(tmp / "w.h5")),
         "Image file not found"),
        ("negative weight", with_("--style-weight", "-1"), "style-weight must be"),
        ("non-finite weight", with_("--content-weight", "nan"), "content-weight must be"),
        ("zero iterations", with_("--iterations", "0"), "iterations must be at least 1"),
        ("blend count", with_("--style-blend-weights", "1,2"), "one weight per style image"),
    ]


def test_program_name_is_the_console_script_or_python_m(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/nst-tf-client", "--help"])
    assert cli.program_name("nst_tf_serving.client") == "nst-tf-client"
    monkeypatch.setattr(sys, "argv", ["/repo/serving/client.py", "--help"])
    assert cli.program_name("serving.client") == "python -m serving.client"
    monkeypatch.setattr(sys, "argv", [""])
    assert cli.program_name("nst_tf_serving.dev_server") == "python -m nst_tf_serving.dev_server"


def test_every_bad_input_gives_one_line_error_exit_2_and_no_file(tmp_path, capsys):
    for name, args, message in bad_inputs(tmp_path):
        code, _, err = run_cli(args, capsys)
        assert code == 2, name
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, err)
        assert re.search(message, lines[0], re.IGNORECASE), (name, lines[0])
        assert "Traceback" not in err
        assert not (tmp_path / "out.png").exists(), name


def test_wrong_architecture_weights(tmp_path, capsys, squeezenet_weights, photo):
    args = ["--content", str(photo), "--style", str(photo), "--output", str(tmp_path / "o.png"), "--backbone", "vgg19"]
    code, _, err = run_cli(args + ["--weights", str(squeezenet_weights)], capsys)
    assert code == 2 and "add --backbone squeezenet1_1" in err  # Known by its name, before any network.
    renamed = tmp_path / "weights.h5"
    renamed.symlink_to(squeezenet_weights)
    code, _, err = run_cli(args + ["--weights", str(renamed)], capsys)
    assert code == 2 and "does not fit VGG19" in err and not (tmp_path / "o.png").exists()


def test_unknown_backbone_is_a_usage_error(photo, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.stylize_main(["--content", str(photo), "--style", str(photo), "--output", "o.png", "--backbone", "x"])
    assert exit_.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_diverged_run_keeps_last_finite_image(photo, painting, tmp_path, capsys):
    out = tmp_path / "o.png"
    code, _, err = run_cli(["--content", str(photo), "--style", str(painting), "--output", str(out),
                            "--content-weight", "1e38", "--style-weight", "1e38"] + FAST, capsys)
    assert code == 2 and "non-finite" in err
    np.testing.assert_allclose(images.load_image(out), images.load_image(photo, max_size=32), atol=1)


@pytest.mark.slow
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_interrupt_saves_latest_image(photo, painting, tmp_path, signum, status):
    """Ctrl-C, and SIGTERM (what timeout, schedulers and docker stop send), save the latest image."""
    out = tmp_path / "o.png"
    args = [sys.executable, SCRIPT, "--content", str(photo), "--style", str(painting), "--output", str(out),
            "--print-every", "1"] + FAST[:-3] + ["--iterations", "100000", "--no-progress"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # A suite started in the background inherits an ignored SIGINT, which Python then keeps ignoring.
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in process.stdout:
        if line.startswith("iteration 5:"):
            break
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == status, err
    assert "Interrupted after" in err and "Traceback" not in err
    assert images.load_image(out).shape == (1, 26, 32, 3)


@pytest.mark.slow
@pytest.mark.pretrained
def test_real_stylization_moves_gram_statistics_toward_the_style(asset, squeezenet_weights, tmp_path):
    content_path = asset("images/content/tubingen.jpg")
    style_path = asset("images/style/starry_night.jpg")
    out = tmp_path / "tubingen_starry.png"
    run = subprocess.run([sys.executable, SCRIPT, "--content", str(content_path), "--style", str(style_path),
                          "--output", str(out), "--backbone", "squeezenet1_1", "--weights", str(squeezenet_weights),
                          "--image-size", "128", "--iterations", "150", "--style-weight", "2e-2", "--no-progress"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    from nst_tf.backbones import BACKBONES

    spec = BACKBONES["squeezenet1_1"]
    extractor = FeatureExtractor(list(spec.content_layers + spec.style_layers), "squeezenet1_1",
                                 str(squeezenet_weights))
    content = images.load_image(content_path, max_size=128)
    style = images.load_image(style_path, max_size=128)
    output = images.load_image(out)
    feats = {name: extractor(x) for name, x in (("content", content), ("style", style), ("output", output))}
    grams = {n: losses.gram_matrix(feats["style"][n]) for n in spec.style_layers}
    style_distance = {k: float(losses.style_loss(feats[k], grams)) for k in ("content", "output")}
    # Most of the way from the content's Gram statistics to the style's:
    assert style_distance["output"] < 0.5 * style_distance["content"], style_distance
    # ... while the content loss stays bounded: well below that of the painting itself.
    layer = spec.content_layers[0]
    style_as_content = optimize.initial_image(content, [style], "style")  # Painting at the photo's size.
    far = float(losses.content_loss(extractor(style_as_content)[layer], feats["content"][layer]))
    near = float(losses.content_loss(feats["output"][layer], feats["content"][layer]))
    assert near < 0.6 * far, (near, far)


# ---------------------------------------------------------------- stylize --model (fast networks)


@pytest.fixture(scope="module")
def tiny_network(tmp_path_factory):
    from nst_tf.transformer import TransformerNet

    net = TransformerNet(filters=(4, 8, 8), num_residual_blocks=1)
    net(np.zeros((1, 16, 16, 3), np.float32))
    path = tmp_path_factory.mktemp("net") / "tiny.keras"
    net.save(path)
    return net, path


@pytest.mark.slow
def test_model_on_one_photo_matches_the_network(tiny_network, photo, tmp_path, capsys):
    net, path = tiny_network
    out = tmp_path / "fast.png"
    assert cli.stylize_main(["--model", str(path), "--content", str(photo), "--output", str(out)]) == 0
    expected = np.asarray(net(images.load_image(photo)))
    np.testing.assert_allclose(images.load_image(out), np.round(np.clip(expected, 0, 255)), atol=1)


@pytest.mark.slow
def test_model_on_a_folder_batches_by_size_into_an_output_folder(tiny_network, tmp_path, capsys):
    _, path = tiny_network
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, size in (("a.png", (20, 12)), ("b.jpg", (20, 12)), ("c.png", (9, 13))):
        write_image(folder / name, size)
    out = tmp_path / "styled"
    assert cli.stylize_main(["--model", str(path), "--content", str(folder), "--output", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.jpg", "c.png"]
    assert Image.open(out / "c.png").size == (9, 13)  # Odd sizes come back exactly.


@pytest.mark.slow
def test_model_tiled_with_original_colors(tiny_network, tmp_path, capsys):
    _, path = tiny_network
    big = write_image(tmp_path / "big.png", (70, 50), pattern="photo")
    out = tmp_path / "tiled.png"
    assert cli.stylize_main(["--model", str(path), "--content", str(big), "--output", str(out), "--tile", "32",
                             "--overlap", "8", "--original-colors"]) == 0
    assert Image.open(out).size == (70, 50)


@pytest.mark.slow
def test_model_from_a_savedmodel_folder(tiny_network, photo, tmp_path, capsys):
    from nst_tf import export

    net, path = tiny_network
    version = export.export_model(path, tmp_path / "saved" / "tiny", warmup_size=0).path
    out = tmp_path / "served.png"
    assert cli.stylize_main(["--model", str(version), "--content", str(photo), "--output", str(out)]) == 0
    expected = np.asarray(net(images.load_image(photo)))
    np.testing.assert_allclose(images.load_image(out), expected, atol=1.5)
    code, _, err = run_cli(["--model", str(version), "--content", str(photo), "--output", str(tmp_path / "o.png"),
                            "--precision", "bfloat16"], capsys)
    assert code == 2 and "--precision needs the .keras file" in err and not (tmp_path / "o.png").exists()


@pytest.mark.slow
def test_model_in_bfloat16(tiny_network, photo, tmp_path, capsys):
    from nst_tf.inference import inference_graph

    net, path = tiny_network
    out = tmp_path / "bf16.png"
    assert cli.stylize_main(["--model", str(path), "--content", str(photo), "--output", str(out),
                             "--precision", "bfloat16"]) == 0
    content = images.load_image(photo)
    reference = np.asarray(net(content))
    # The bfloat16 graph of the same weights, rounded to uint8 on saving.
    expected = np.round(np.clip(np.asarray(inference_graph(net, "bfloat16")(content)), 0, 255))
    np.testing.assert_allclose(images.load_image(out), expected, atol=1)
    assert np.abs(images.load_image(out) - reference).mean() < 4  # Close to float32, not equal.


@pytest.mark.parametrize("extra,message", [
    (["--tile", "16", "--overlap", "10"], "at least twice --overlap"),
    (["--batch-size", "0"], "--batch-size must be an integer >= 1. Received: batch_size=0"),
    (["--precision", "float16"], "--precision with --model must be one of float32, bfloat16"),
])
def test_model_bad_flags(tiny_network, photo, tmp_path, capsys, extra, message):
    _, path = tiny_network
    code, _, err = run_cli(["--model", str(path), "--content", str(photo), "--output", str(tmp_path / "o.png")]
                           + extra, capsys)
    assert code == 2 and message in err and not (tmp_path / "o.png").exists()


def test_model_bad_files(photo, tmp_path, capsys):
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    for model, message in ((tmp_path / "missing.keras", "not found"), (tmp_path / "broken.keras", "corrupt")):
        code, _, err = run_cli(["--model", str(model), "--content", str(photo), "--output",
                                str(tmp_path / "o.png")], capsys)
        assert code == 2 and message in err and not (tmp_path / "o.png").exists()
    code, _, err = run_cli(["--content", str(photo), "--output", str(tmp_path / "o.png")], capsys)
    assert code == 2 and "--style is required" in err


# ---------------------------------------------------------------- stylize --model with a multi-style network


@pytest.fixture(scope="module")
def multi_network(tmp_path_factory):
    from helpers import random_transformer

    model = random_transformer(2, filters=(4, 8, 8), num_residual_blocks=1, style_names=["candy", "udnie", "photo"])
    path = tmp_path_factory.mktemp("multi") / "multi.keras"
    model.save(path)
    return path, model


def test_model_style_name_blend_and_strength(multi_network, photo, tmp_path, capsys):
    path, model = multi_network
    outputs = {}
    for name, extra in {"candy": ["--style-name", "candy"], "udnie": ["--style-name", "udnie"],
                        "blend": ["--style-name", "candy:0.7,udnie:0.3"],
                        "weak": ["--style-name", "candy", "--style-strength", "0.0"]}.items():
        out = tmp_path / f"{name}.png"
        assert cli.stylize_main(["--model", str(path), "--content", str(photo), "--output", str(out)] + extra) == 0
        outputs[name] = np.asarray(Image.open(out), np.float32)
    photo_pixels = images.load_image(photo)
    expected = np.asarray(model(photo_pixels, style=model.style_weights({"candy": 0.7, "udnie": 0.3})))[0]
    assert np.abs(outputs["blend"] - expected).max() <= 1.0
    assert np.abs(outputs["candy"] - outputs["udnie"]).mean() > 1.0
    np.testing.assert_allclose(outputs["weak"], np.asarray(Image.open(_photo_style(model, photo, tmp_path))), atol=1)


def _photo_style(model, photo, tmp_path):
    out = tmp_path / "photo_style.png"
    images.save_image(np.asarray(model(images.load_image(photo), style=[2])), out)
    return out


@pytest.mark.parametrize("extra, message", [
    (["--style-name", "zebra"], "Unknown style name 'zebra'; this network has: candy, udnie, photo"),
    (["--style-name", "candy:-1"], "finite, >= 0 and not all zero"),
    (["--style-name", "candy:nan"], "finite, >= 0 and not all zero"),
    (["--style-name", "candy:0,udnie:0"], "finite, >= 0 and not all zero"),
    (["--style-name", "candy:x"], "--style-name takes NAME or NAME:WEIGHT"),
    (["--style-name", "candy", "--style-strength", "2.5"], "strength must be a number in [0, 2.0]"),
    ([], "choose one with --style-name (candy, udnie, photo)"),
])
def test_model_bad_style_selection(multi_network, photo, tmp_path, capsys, extra, message):
    out = tmp_path / "o.png"
    code, _, err = run_cli(["--model", str(multi_network[0]), "--content", str(photo), "--output", str(out)] + extra,
                           capsys)
    assert code == 2 and err.count("\n") == 1 and message in err and not out.exists()


@pytest.mark.slow
def test_an_unknown_style_name_of_a_keras_file_answers_before_tensorflow(multi_network, photo, tmp_path):
    script = ("import sys; from nst_tf import cli; "
              f"code = cli.stylize_main(['--model', {str(multi_network[0])!r}, '--content', {str(photo)!r}, "
              f"'--output', {str(tmp_path / 'o.png')!r}, '--style-name', 'candy:0.5,zebra:0.5']); "
              "print(code, 'tensorflow' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert run.stdout.split() == ["2", "False"], run.stderr
    assert run.stderr.startswith("error: Unknown style name 'zebra'; this network has: candy, udnie, photo")
    assert run.stderr.count("\n") == 1 and not (tmp_path / "o.png").exists()


def test_blend_on_a_single_style_network_is_refused(tiny_network, photo, tmp_path, capsys):
    out = tmp_path / "o.png"
    code, _, err = run_cli(["--model", str(tiny_network[1]), "--content", str(photo), "--output", str(out),
                            "--style-name", "candy:0.5,udnie:0.5"], capsys)
    assert code == 2 and "single style" in err and not out.exists()


# --- answers at once: checks before TensorFlow, one-line errors, quiet start-up ---

NO_TF_CASES = """
import sys
import zipfile
from nst_tf import cli
content, style, out, net, weights = sys.argv[1:6]
cases = [
    ["--content", content + "x", "--style", style, "--output", out],
    ["--content", content, "--style", style, "--output", out, "--image-size", "20000"],
    ["--content", str(__import__("pathlib").Path(content).parent), "--style", style, "--output", out],
    ["--content", content, "--style", style, "--output", out, "--weights", weights],
    ["--content", content, "--style", style, "--model", net, "--output", out],
    ["--content", content, "--style", style, "--output", out, "--backbone", "vgg9"],
    ["--content", content, "--style", style, "--output", out, "--itrations", "3"],
    ["--help"],
]
for argv in cases:
    try:
        code = cli.stylize_main(argv)
    except SystemExit as exit_:
        code = exit_.code
    print(code, file=sys.stderr)
data, keras_out = str(__import__("pathlib").Path(out).parent), out + ".keras"
for extra in (["--batch-size", "0"], ["--steps", "0"], ["--learning-rate", "-1"]):
    try:
        code = cli.train_main(["--style", style, "--data", data, "--output", keras_out, *extra])
    except SystemExit as exit_:
        code = exit_.code
    print(code, file=sys.stderr)
for parser in (cli.build_parser(), cli.build_parser("train"), cli.build_parser("export")):
    try:
        parser.parse_args(["--help"])
    except SystemExit:
        pass
print("tensorflow imported:", "tensorflow" in sys.modules, file=sys.stderr)
"""


def test_bad_input_and_help_answer_without_tensorflow(photo, painting, tmp_path):
    weights = tmp_path / "squeezenet_weights.h5"
    weights.write_bytes(b"x")
    net = tmp_path / "net.keras"
    net.write_bytes(b"x")
    run = subprocess.run([sys.executable, "-c", NO_TF_CASES, str(photo), str(painting), str(tmp_path / "o.png"),
                          str(net), str(weights)], capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    lines = [line for line in run.stderr.splitlines() if line]
    assert lines[-1] == "tensorflow imported: False", run.stderr
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 10 and "Traceback" not in run.stderr, run.stderr
    expected = ["Image file not found", "needs about", "--model", "--backbone squeezenet1_1",
                "--style and --model exclude each other", "invalid choice: 'vgg9'", "did you mean --iterations?",
                "--batch-size must be an integer >= 1", "--steps must be an integer >= 1", "--learning-rate must be > 0"]
    for line, text in zip(errors, expected):
        assert text in line, (text, line)
    codes = [line for line in lines if line in ("0", "2")]
    assert codes == ["2"] * 7 + ["0"] + ["2"] * 3, run.stderr
    assert not (tmp_path / "o.png").exists() and not (tmp_path / "o.png.keras").exists()


def test_mistyped_flag_gets_one_did_you_mean_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["stylize", "--contnet", "a.jpg"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert "unrecognized arguments: --contnet (did you mean --content?)" in err and "usage:" not in err


def test_every_argparse_error_is_one_line(capsys):
    for argv in (["--content", "a", "--output", "o", "--iterations", "many"], ["--output", "o"]):
        with pytest.raises(SystemExit) as exit_:
            cli.stylize_main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and err.count("\n") == 1 and err.startswith("stylize.py: error: "), err


def test_export_has_one_parser_for_both_entry_points(capsys):
    for run in (lambda: cli.main(["export", "--help"]), lambda: cli.export_main(["--help"])):
        with pytest.raises(SystemExit):
            run()
        help_text = capsys.readouterr().out
        assert "versioned SavedModel" in help_text and "Exit status: 0 done, 2 bad input." in help_text


def test_restated_defaults_match_the_library():
    from nst_tf import export, stylizer

    assert cli._EXPORT_DEFAULTS == {"max_image_size": export.DEFAULT_MAX_IMAGE_SIZE,
                                    "output_formats": export.OUTPUT_FORMATS,
                                    "warmup_size": export.DEFAULT_WARMUP_SIZE}
    assert cli._INFERENCE_PRECISIONS == stylizer.INFERENCE_PRECISIONS


def test_train_flags_left_out_take_trainconfig_defaults(tmp_path):
    from nst_tf import training

    args = cli.build_parser("train").parse_args(["--style", "s.png", "--data", "d", "--output", "o.keras",
                                                 "--batch-size", "2"])
    config = cli._config_from_args(training.TrainConfig, args)
    assert config == training.TrainConfig(style="s.png", data="d", output="o.keras", batch_size=2)


def test_train_checks_files_before_tensorflow(tmp_path, painting, capsys):
    code = cli.train_main(["--style", str(painting), "--data", str(tmp_path / "nope"), "--output",
                           str(tmp_path / "o.keras")])
    assert code == 2 and "data folder not found" in capsys.readouterr().err


def test_folder_as_content_needs_a_folder_output_or_model(tmp_path, painting, capsys):
    code, _, err = run_cli(["--content", str(tmp_path), "--style", str(painting), "--output",
                            str(tmp_path / "o.png")], capsys)
    assert code == 2 and "--model" in err and "directory" in err and "folder as --output" in err


def _photo_folder(tmp_path, count=3):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(count):
        write_image(folder / f"p{i}.png", (40, 32), seed=i)
    return folder


def test_folder_optimization_writes_each_photo_and_resumes(tmp_path, painting, capsys):
    folder, out = _photo_folder(tmp_path), tmp_path / "targets"
    argv = ["--content", str(folder), "--style", str(painting), "--output", str(out), "--center-crop"] + FAST
    code, stdout, _ = run_cli(argv, capsys)
    outputs = [out / f"p{i}.png" for i in range(3)]
    assert code == 0 and stdout.count("done ") == 3 and "skipped 0" in stdout
    assert all(Image.open(path).size == (32, 32) for path in outputs)  # --center-crop: squares of --image-size.
    made = {path: path.stat().st_mtime_ns for path in outputs}
    code, stdout, _ = run_cli(argv, capsys)  # A rerun of the same command recomputes nothing.
    assert code == 0 and stdout.count("skipped ") == 4 and "done " not in stdout
    assert {path: path.stat().st_mtime_ns for path in outputs} == made
    outputs[1].unlink()
    code, stdout, _ = run_cli(argv, capsys)
    assert code == 0 and stdout.count("done ") == 1 and "p1.png" in stdout.split("done ")[1]
    assert outputs[1].is_file() and all(path.stat().st_mtime_ns == made[path] for path in (outputs[0], outputs[2]))
    assert not list(out.glob(".*"))  # No temporary files left.


def test_folder_optimization_is_the_single_photo_optimization(tmp_path, painting, capsys):
    folder = _photo_folder(tmp_path, count=1)
    assert run_cli(["--content", str(folder), "--style", str(painting), "--output", str(tmp_path / "t")] + FAST,
                   capsys)[0] == 0
    assert run_cli(["--content", str(folder / "p0.png"), "--style", str(painting), "--output",
                    str(tmp_path / "one.png")] + FAST, capsys)[0] == 0
    folder_result, single_result = (np.asarray(Image.open(p)) for p in (tmp_path / "t" / "p0.png", tmp_path / "one.png"))
    assert np.array_equal(folder_result, single_result)


@pytest.mark.parametrize("case, message", [
    ("into itself", "would overwrite an input"),
    ("mask", "--mask applies to one content image"),
    ("save every", "--save-every applies to one content image"),
    ("same stem", "share the name 'p0'"),
    ("crop with model", "--center-crop applies to optimization"),
    ("print every", "--print-every applies to one content image"),
    ("crop of a tiff", "--center-crop reads the formats training reads"),
])
def test_folder_optimization_bad_input(tmp_path, painting, capsys, case, message):
    folder = _photo_folder(tmp_path)
    argv = ["--content", str(folder), "--style", str(painting), "--output", str(tmp_path / "out")] + FAST
    if case == "into itself":
        argv[argv.index("--output") + 1] = str(folder)
    elif case == "mask":
        argv += ["--mask", str(write_image(tmp_path / "mask.png", (40, 32)))]
    elif case == "save every":
        argv += ["--save-every", "1"]
    elif case == "same stem":
        (folder / "sub").mkdir()
        write_image(folder / "sub" / "p0.png", (40, 32))
    elif case == "print every":
        argv += ["--print-every", "1"]
    elif case == "crop of a tiff":
        for path in folder.iterdir():
            path.unlink()
        Image.new("RGB", (40, 32)).save(folder / "t.tif")
        argv += ["--center-crop"]
    elif case == "crop with model":
        argv = ["--content", str(folder), "--model", str(tmp_path / "m.keras"), "--output", str(tmp_path / "o"),
                "--center-crop"]
        (tmp_path / "m.keras").write_bytes(b"")
    code, stdout, err = run_cli(argv, capsys)
    assert code == 2 and message in err and err.count("\n") == 1 and not stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_tensorflow_start_up_lines_stay_off_the_terminal(tiny_network, photo, tmp_path):
    _, path = tiny_network
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    base = [sys.executable, SCRIPT, "--model", str(path), "--content", str(photo)]
    quiet = subprocess.run(base + ["--output", str(tmp_path / "q.png")], capture_output=True, text=True, env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and quiet.stdout.startswith("Saved 1 image(s)"), quiet.stderr
    # What TensorFlow prints on this machine when nobody hides it; --verbose shows it again.
    plain = subprocess.run([sys.executable, "-c", "import tensorflow as tf; tf.config.list_physical_devices()"],
                           capture_output=True, text=True, env=env).stderr
    shown = [word for word in START_UP_NOISE if word in plain]
    verbose = subprocess.run(base + ["--output", str(tmp_path / "v.png"), "--verbose"], capture_output=True,
                             text=True, env=env)
    assert verbose.returncode == 0 and all(word in verbose.stderr for word in shown), (shown, verbose.stderr)


# ---------------------------------------------------------------- outputs never replace inputs; SIGTERM


def _assert_refused_and_unchanged(code, err, files_before):
    assert code == 2 and err.startswith("error: ") and "\n" not in err.strip(), err
    assert "overwrite an input" in err
    for path, data in files_before.items():
        assert path.read_bytes() == data, path


@pytest.mark.parametrize("target", ["content", "style", "content link", "mask"])
def test_stylize_output_onto_an_input_is_refused(photo, painting, tmp_path, capsys, target):
    mask = write_image(tmp_path / "mask.png", (40, 32))
    (tmp_path / "link.png").symlink_to(photo)
    output = {"content": photo, "style": painting, "content link": tmp_path / "link.png", "mask": mask}[target]
    before = {p: p.read_bytes() for p in (photo, painting, mask)}
    args = ["--content", str(photo), "--style", str(painting), "--output", str(output)] + FAST
    code, _, err = run_cli(args + (["--mask", str(mask)] if target == "mask" else []), capsys)
    _assert_refused_and_unchanged(code, err, before)


def test_model_output_onto_its_input_is_refused(tiny_network, photo, tmp_path, capsys):
    _, path = tiny_network
    before = {photo: photo.read_bytes()}
    code, _, err = run_cli(["--model", str(path), "--content", str(photo), "--output", str(photo)], capsys)
    _assert_refused_and_unchanged(code, err, before)


def test_model_folder_output_onto_its_input_folder_is_refused(tiny_network, tmp_path, capsys):
    _, path = tiny_network
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("a.png", "b.jpg"):
        write_image(folder / name, (20, 12))
    before = {p: p.read_bytes() for p in folder.iterdir()}
    code, _, err = run_cli(["--model", str(path), "--content", str(folder), "--output", str(folder)], capsys)
    _assert_refused_and_unchanged(code, err, before)
    assert sorted(folder.iterdir()) == sorted(before)


def test_stylize_intermediate_saves_onto_an_input_are_refused(photo, tmp_path, capsys):
    style = write_image(tmp_path / "out_00002.png", (36, 36), seed=1)  # What --save-every 2 would write.
    before = {p: p.read_bytes() for p in (photo, style)}
    args = ["--content", str(photo), "--style", str(style), "--output", str(tmp_path / "out.png"),
            "--save-every", "2"] + FAST
    code, _, err = run_cli(args, capsys)
    _assert_refused_and_unchanged(code, err, before)


# --- presets, spatial control and coarse-to-fine through the command line ---


def test_explicit_flags_override_preset():
    parser = cli.build_parser("stylize")
    args = parser.parse_args(["--content", "c", "--style", "s", "--output", "o.png", "--preset", "neural-style",
                              "--iterations", "7", "--backbone", "vgg16"])
    config = cli._config_from_args(StyleConfig, args, args.preset)
    assert (config.iterations, config.backbone, config.optimizer, config.content_weight) == (7, "vgg16", "lbfgs", 5.0)


@pytest.mark.slow
def test_cli_mask_and_scales_end_to_end(tmp_path, capsys):
    args, out, style_b = mask_and_scales_args(tmp_path)
    args += ["--save-every", "1"]
    assert cli.stylize_main(args) == 0, capsys.readouterr().err
    assert Image.open(out).size == (32, 24)
    assert Image.open(tmp_path / "o_00001.png").size == (32, 24)
    bad = args[:]
    bad[bad.index("16,32")] = "32,16"
    assert cli.stylize_main(bad) == 2 and "strictly increasing" in capsys.readouterr().err
    bad = [a for a in args if a != str(style_b)]  # One style for a two-region mask.
    assert cli.stylize_main(bad) == 2 and "mask has 2 regions" in capsys.readouterr().err


FAKE_TENSORFLOW = """
import os, types
os.write(2, b"native start-up line\\n")  # As TensorFlow's C++ libraries print, below Python's sys.stderr.
if os.environ.get("FAKE_TF_FAILS"):
    raise ImportError("broken install")
config = types.SimpleNamespace(list_physical_devices=lambda: os.write(2, b"failed call to cuInit\\n") and [])
"""


@pytest.mark.parametrize("case", ["quiet", "verbose", "user level", "failed import"])
def test_import_tensorflow_hides_native_lines_unless_asked(tmp_path, case):
    (tmp_path / "tensorflow.py").write_text(FAKE_TENSORFLOW)
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), str(ROOT)])
    if case == "user level":
        env["TF_CPP_MIN_LOG_LEVEL"] = "0"
    if case == "failed import":
        env["FAKE_TF_FAILS"] = "1"
    code = f"from nst_tf import cli; cli.import_tensorflow(verbose={case == 'verbose'}); print('imported')"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if case == "quiet":
        assert run.returncode == 0 and run.stdout == "imported\n" and run.stderr == "", run.stderr
    elif case == "failed import":  # What the import printed is shown, then the error.
        assert run.returncode == 1 and "native start-up line" in run.stderr and "broken install" in run.stderr
    else:
        assert run.returncode == 0 and run.stderr.startswith("native start-up line"), run.stderr


def test_native_logs_are_hidden_unless_the_block_fails_or_verbose(capfd, monkeypatch):
    monkeypatch.setattr(cli, "_USER_TF_LOG_LEVEL", None)
    with cli.native_logs_hidden():
        os.write(2, b"E0000 converter notice\n")
    assert capfd.readouterr().err == ""
    with pytest.raises(RuntimeError), cli.native_logs_hidden():
        os.write(2, b"E0000 why it failed\n")
        raise RuntimeError("conversion failed")
    assert capfd.readouterr().err == "E0000 why it failed\n"
    with cli.native_logs_hidden(verbose=True):
        os.write(2, b"I0000 shown\n")
    assert capfd.readouterr().err == "I0000 shown\n"


# ---------------------------------------------------------------- configure_stylize_process

STYLIZE_PROCESS_PROBE = """
import json, os
from nst_tf import cli
{call}
import tensorflow as tf
print(json.dumps({{"frozen": os.environ.get("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS"),
                  "inter_op": tf.config.threading.get_inter_op_parallelism_threads()}}))
"""


def _stylize_process(call, **env):
    environ = {k: v for k, v in os.environ.items() if k not in ("TF_ONEDNN_ASSUME_FROZEN_WEIGHTS",
                                                               "TF_NUM_INTEROP_THREADS")}
    result = subprocess.run([sys.executable, "-c", STYLIZE_PROCESS_PROBE.format(call=call)], capture_output=True,
                            text=True, env=dict(environ, **env), timeout=120, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # A fresh Python process that imports TensorFlow.
def test_stylize_process_freezes_weights_and_runs_one_op_at_a_time():
    assert _stylize_process("cli.configure_stylize_process()") == {"frozen": "1", "inter_op": 1}


@pytest.mark.slow  # A fresh Python process that imports TensorFlow.
def test_squeezenet_keeps_concurrent_ops():
    assert _stylize_process("cli.configure_stylize_process(one_op_at_a_time=False)") == {"frozen": "1", "inter_op": 0}


@pytest.mark.slow  # A fresh Python process that imports TensorFlow.
def test_library_processes_keep_tensorflow_defaults():
    assert _stylize_process("") == {"frozen": None, "inter_op": 0}


@pytest.mark.slow  # A fresh Python process that imports TensorFlow.
def test_a_users_own_settings_are_kept():
    assert _stylize_process("cli.configure_stylize_process()", TF_ONEDNN_ASSUME_FROZEN_WEIGHTS="0",
                  TF_NUM_INTEROP_THREADS="2") == {"frozen": "0", "inter_op": 0}


MEMORY_CASES = """
import sys
import zipfile
from nst_tf import cli, memory
memory.available_bytes = lambda: 16 * 2**30  # The same answer on any machine.
def start(*args):
    raise SystemExit(7)  # Past every check: TensorFlow would be imported now.
cli._start_tensorflow = cli.import_tensorflow = start
photo, out, data, model = sys.argv[1:5]
fast = ["--content", photo, "--model", model, "--output", out, "--image-size"]
train = ["--style", photo, "--data", data, "--output", out + ".keras", "--image-size"]
for main, argv in ((cli.stylize_main, fast + ["20000"]), (cli.stylize_main, fast + ["1024"]),
                   (cli.train_main, train + ["20000"]), (cli.train_main, train + ["256"])):
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    print(code, file=sys.stderr)
print("tensorflow imported:", "tensorflow" in sys.modules, file=sys.stderr)
"""


@pytest.mark.slow
def test_sizes_that_cannot_fit_fail_before_tensorflow(photo, tmp_path):
    model = tmp_path / "net.keras"
    with zipfile.ZipFile(model, "w") as archive:  # What the estimate reads of a .keras file.
        archive.writestr("config.json", json.dumps({"config": {"width_multiplier": 0.5}}))
    out = tmp_path / "out.png"
    run = subprocess.run([sys.executable, "-c", MEMORY_CASES, str(photo), str(out), str(tmp_path), str(model)],
                         capture_output=True, text=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "NST_TF_SKIP_MEMORY_CHECK": ""})
    lines = [line for line in run.stderr.splitlines() if line]
    assert lines[-1] == "tensorflow imported: False" and "Traceback" not in run.stderr, run.stderr
    assert [line for line in lines if line in ("2", "7")] == ["2", "7", "2", "7"], run.stderr
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 2, run.stderr
    assert "Stylizing a 20000x16000 image needs about" in errors[0] and "--image-size" in errors[0]
    assert "4 crops of 20000x20000 needs about" in errors[1] and "--batch-size" in errors[1]
    assert not out.exists() and not (tmp_path / "out.png.keras").exists()
