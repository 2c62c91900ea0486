"""Issue 3 controls: L-BFGS, coarse-to-fine, colour, spatial control, precision, presets, memory."""

import numpy as np
import pytest
from PIL import Image

from nst_tf import cli, color, optimize, spatial
from nst_tf.config import PRESETS, StyleConfig
from nst_tf.errors import ConfigError, ImageError, OptimizationError

_Y, _X = np.mgrid[0:24, 0:32]
CONTENT = np.stack([_X * 6.0 + 40, _Y * 7.0 + 30, np.full_like(_X, 110.0)], -1)[None].astype("float32")
STYLE = np.random.default_rng(5).uniform(0, 255, (1, 28, 28, 3)).astype("float32")
STYLE_B = np.full((1, 28, 28, 3), (30.0, 200.0, 60.0), np.float32)
TINY = dict(backbone="vgg16", weights=None, content_layers=("block2_conv1",),
            style_layers=("block1_conv1", "block2_conv1"), style_weight=1.0, tv_weight=1e-2, image_size=32)


def test_lbfgs_lowers_objective_faster_per_iteration_than_adam():
    adam = optimize.stylize(CONTENT, [STYLE], StyleConfig(iterations=15, **TINY), progress=False)
    lbfgs = optimize.stylize(CONTENT, [STYLE], StyleConfig(iterations=15, optimizer="lbfgs", **TINY),
                             progress=False)
    assert lbfgs.iterations == 15
    assert lbfgs.history[-1]["total"] < adam.history[-1]["total"]
    assert lbfgs.image.min() >= 0 and lbfgs.image.max() <= 255  # Box bounds.


def test_lbfgs_non_finite_values_stop_with_clear_error():
    config = StyleConfig(iterations=5, optimizer="lbfgs", **dict(TINY, content_weight=1e38, style_weight=1e38))
    with pytest.raises(OptimizationError, match="non-finite.*optimizer=lbfgs"):
        optimize.stylize(CONTENT, [STYLE], config, progress=False)


def test_coarse_to_fine_reaches_final_size_and_starts_each_scale_from_previous(monkeypatch):
    starts = []
    original = optimize.initial_image

    def spy(content, styles, init, seed=None):
        start = original(content, styles, init, seed)
        starts.append((init if isinstance(init, str) else np.array(init), start))
        return start

    monkeypatch.setattr(optimize, "initial_image", spy)
    config = StyleConfig(scales=(16, 32), scale_iterations=(4, 2), **TINY)
    result = optimize.stylize(CONTENT, [STYLE], config, progress=False)
    assert result.image.shape == CONTENT.shape  # 32 px longest side.
    assert [h["scale"] for h in result.history] == [16] * 4 + [32] * 2
    assert starts[0][0] == "content" and starts[0][1].shape == (1, 12, 16, 3)
    previous = starts[1][0]
    assert previous.shape == (1, 12, 16, 3)  # The second scale starts from the first's result...
    assert not np.allclose(previous, starts[0][1])  # ... which the optimization had changed,
    np.testing.assert_allclose(starts[1][1].mean(), previous.mean(), atol=3)  # upsampled to 24x32.
    assert starts[1][1].shape == CONTENT.shape


def test_coarse_to_fine_bad_scales():
    with pytest.raises(ConfigError, match="strictly increasing"):
        StyleConfig(scales=(512, 256))
    with pytest.raises(ConfigError, match="one iteration count >= 1 per scale"):
        StyleConfig(scales=(256, 512), scale_iterations=(10,))
    with pytest.raises(ConfigError, match="needs --scales"):
        StyleConfig(scale_iterations=(10,))


def test_luminance_only_transfer_keeps_content_chroma_exactly():
    config = StyleConfig(iterations=5, original_colors=True, **TINY)
    result = optimize.stylize(CONTENT, [STYLE], config, progress=False)
    in_gamut = (result.image > 0.5).all(-1) & (result.image < 254.5).all(-1)
    assert in_gamut.mean() > 0.9
    out_iq, content_iq = color.rgb_to_yiq(result.image)[..., 1:], color.rgb_to_yiq(CONTENT)[..., 1:]
    np.testing.assert_allclose(out_iq[in_gamut], content_iq[in_gamut], atol=1e-3)
    assert not np.allclose(color.rgb_to_yiq(result.image)[..., 0], color.rgb_to_yiq(CONTENT)[..., 0])


def test_luminance_only_optimizes_grey_images_with_matched_luminance():
    content, styles = optimize._colour_inputs(CONTENT, [STYLE], StyleConfig(original_colors=True, **TINY))
    assert np.allclose(content[..., 0], content[..., 1]) and np.allclose(styles[0][..., 0], styles[0][..., 2])
    assert styles[0].mean() == pytest.approx(content.mean(), abs=1.0)  # Gatys 2017 eq. 9.


@pytest.mark.parametrize("method", ["covariance", "histogram"])
def test_color_matching_gives_style_the_content_colours(method):
    matched = color.match_color(STYLE, CONTENT, method)
    assert matched.shape == STYLE.shape
    if method == "histogram":  # Per-channel quantiles follow the content's (up to sampling of 784 pixels).
        for q in (10, 50, 90):
            np.testing.assert_allclose(np.percentile(matched.reshape(-1, 3), q, axis=0),
                                       np.percentile(CONTENT.reshape(-1, 3), q, axis=0), atol=6)
    else:
        np.testing.assert_allclose(matched.reshape(-1, 3).mean(0), CONTENT.reshape(-1, 3).mean(0), atol=0.5)
        np.testing.assert_allclose(np.cov(matched.reshape(-1, 3).T), np.cov(CONTENT.reshape(-1, 3).T),
                                   rtol=0.05, atol=2.0)


def write_mask(path, left=0, right=255, size=(32, 24)):
    mask = np.full(size[::-1], left, np.uint8)
    mask[:, size[0] // 2:] = right
    Image.fromarray(mask).save(path)
    return path


def test_region_mask_loading_orders_regions_darkest_first(tmp_path):
    regions = spatial.load_region_mask(write_mask(tmp_path / "m.png"), 24, 32, 2)
    assert regions.shape == (1, 24, 32, 2)
    assert regions[0, :, :16, 0].all() and regions[0, :, 16:, 1].all()
    np.testing.assert_array_equal(regions.sum(-1), 1.0)


def test_guided_grams_use_only_each_region():
    config = StyleConfig(iterations=1, **TINY)
    mask = np.zeros((1, 24, 32, 2), np.float32)
    mask[:, :, :16, 0] = 1.0
    mask[:, :, 16:, 1] = 1.0
    objective, _ = optimize.build_objective(CONTENT, [STYLE, STYLE_B], config, region_mask=mask)
    image = CONTENT.copy()
    base = float(objective(image)["style"])
    changed = image.copy()
    changed[:, :, 16:] = STYLE_B[:, :24, :16]  # Right region painted with its own style: its loss drops.
    assert float(objective(changed)["style"]) < base
    wrong = image.copy()
    wrong[:, :, :16] = STYLE_B[:, :24, :16]  # Left region painted with the *other* style: no better.
    assert float(objective(wrong)["style"]) > float(objective(changed)["style"])


def test_mask_errors(tmp_path):
    with pytest.raises(ConfigError, match="mask has 2 regions.*3 style"):
        spatial.load_region_mask(write_mask(tmp_path / "m.png"), 24, 32, 3)
    with pytest.raises(ImageError, match="aspect ratio"):
        spatial.load_region_mask(write_mask(tmp_path / "w.png", size=(64, 16)), 24, 32, 2)


def test_bfloat16_follows_float32_loss_trajectory():
    runs = {p: optimize.stylize(CONTENT, [STYLE], StyleConfig(iterations=10, precision=p, **TINY), progress=False)
            for p in ("float32", "bfloat16")}
    f32 = np.array([h["total"] for h in runs["float32"].history])
    bf16 = np.array([h["total"] for h in runs["bfloat16"].history])
    # Stated tolerance: every step within 10% of float32 (bfloat16 keeps 8 bits of mantissa).
    np.testing.assert_allclose(bf16, f32, rtol=0.10)
    assert bf16[-1] < bf16[0]


def test_presets_match_their_sources():
    gatys = StyleConfig.from_preset("gatys2016")
    assert (gatys.pooling, gatys.optimizer, gatys.init, gatys.tv_weight) == ("avg", "lbfgs", "noise", 0.0)
    assert gatys.content_layers == ("block4_conv2",) and len(gatys.style_layers) == 5
    # alpha / beta = 1e-3 with Gatys' 1/2-sum content loss at 512x512 (N = 512, M = 64 * 64).
    assert gatys.style_weight == pytest.approx(1e3 / (0.5 * 512 * 64 * 64))
    tf_tut = StyleConfig.from_preset("tf-tutorial")
    assert tf_tut.content_layers == ("block5_conv2",) and tf_tut.iterations == 1000
    assert (tf_tut.content_weight, tf_tut.style_weight / 4) == (1e4, 1e-2)
    assert tf_tut.learning_rate / 255 == pytest.approx(0.02) and tf_tut.adam_beta_1 == 0.99
    assert tf_tut.adam_epsilon * 255 == pytest.approx(0.1) and tf_tut.init == "content"
    assert tf_tut.image_size == 512 and tf_tut.optimizer == "adam"
    ns = StyleConfig.from_preset("neural-style")
    assert (ns.content_weight, ns.tv_weight, ns.optimizer, ns.iterations, ns.lbfgs_memory) == (5.0, 1e-3, "lbfgs",
                                                                                           1000, 100)
    # Per-layer weight in our units equals neural-style's 100 / C_l^2 (Gram / (C H W), MSE).
    weights = np.array(ns.style_layer_weights) / sum(ns.style_layer_weights)
    np.testing.assert_allclose(ns.style_weight * weights / 4, 100.0 / np.array([64, 128, 256, 512, 512]) ** 2)
    assert set(PRESETS) == {"gatys2016", "tf-tutorial", "neural-style"}


def test_explicit_flags_override_preset():
    parser = cli.build_parser("stylize")
    args = parser.parse_args(["--content", "c", "--style", "s", "--output", "o.png", "--preset", "neural-style",
                              "--iterations", "7", "--backbone", "vgg16"])
    config = cli._config_from_args(StyleConfig, args, args.preset)
    assert (config.iterations, config.backbone, config.optimizer, config.content_weight) == (7, "vgg16", "lbfgs", 5.0)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="Unknown preset.*gatys2016"):
        StyleConfig.from_preset("picasso")


def mask_and_scales_args(tmp_path):
    """Flags of a tiny two-region, two-scale L-BFGS run on files written to `tmp_path`; returns
    ``(args, output path, second style path)``."""
    content = tmp_path / "c.png"
    Image.fromarray(CONTENT[0].astype(np.uint8)).save(content)
    style_a, style_b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(STYLE[0].astype(np.uint8)).save(style_a)
    Image.fromarray(STYLE_B[0].astype(np.uint8)).save(style_b)
    out = tmp_path / "o.png"
    args = ["--content", str(content), "--style", str(style_a), str(style_b), "--output", str(out),
            "--mask", str(write_mask(tmp_path / "m.png")), "--backbone", "vgg16", "--weights", "none",
            "--content-layers", "block2_conv1", "--style-layers", "block1_conv1", "--scales", "16,32",
            "--iterations", "2", "--optimizer", "lbfgs", "--no-progress"]
    return args, out, style_b


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
