import numpy as np
import pytest

from helpers import CTRL_CONTENT, CTRL_STYLE
from nst_tf import color


def test_yiq_is_the_ntsc_transform():
    # Y is the Rec. 601 luma; pure red and blue have I and Q of these signs and sizes (FCC 1953).
    yiq = color.rgb_to_yiq(np.array([[255.0, 0, 0], [0, 0, 255.0], [128.0, 128.0, 128.0]]))
    np.testing.assert_allclose(yiq[:, 0], [0.299 * 255, 0.114 * 255, 128.0], rtol=1e-6)
    np.testing.assert_allclose(yiq[0, 1:], [0.59590059 * 255, 0.21153661 * 255], rtol=1e-6)
    np.testing.assert_allclose(yiq[2, 1:], [0.0, 0.0], atol=1e-4)  # Grey has no chroma.


def test_yiq_round_trip_is_exact():
    rgb = np.random.default_rng(0).uniform(0, 255, (1, 5, 7, 3)).astype("float32")
    np.testing.assert_allclose(color.yiq_to_rgb(color.rgb_to_yiq(rgb)), rgb, atol=1e-3)


def test_transfer_luminance_takes_luma_from_stylized_and_chroma_from_content():
    rng = np.random.default_rng(1)
    content = rng.uniform(80, 170, (1, 6, 6, 3)).astype("float32")
    stylized = rng.uniform(80, 170, (1, 6, 6, 3)).astype("float32")
    out = color.transfer_luminance(stylized, content)
    np.testing.assert_allclose(color.rgb_to_yiq(out)[..., 0], color.rgb_to_yiq(stylized)[..., 0], atol=1e-3)
    np.testing.assert_allclose(color.rgb_to_yiq(out)[..., 1:], color.rgb_to_yiq(content)[..., 1:], atol=1e-3)


def test_transfer_luminance_needs_same_shape():
    with pytest.raises(ValueError, match="same shape"):
        color.transfer_luminance(np.zeros((1, 2, 2, 3)), np.zeros((1, 3, 2, 3)))


@pytest.mark.parametrize("method", ["covariance", "histogram"])
def test_color_matching_gives_style_the_content_colours(method):
    matched = color.match_color(CTRL_STYLE, CTRL_CONTENT, method)
    assert matched.shape == CTRL_STYLE.shape
    if method == "histogram":  # Per-channel quantiles follow the content's (up to sampling of 784 pixels).
        for q in (10, 50, 90):
            np.testing.assert_allclose(np.percentile(matched.reshape(-1, 3), q, axis=0),
                                       np.percentile(CTRL_CONTENT.reshape(-1, 3), q, axis=0), atol=6)
    else:
        np.testing.assert_allclose(matched.reshape(-1, 3).mean(0), CTRL_CONTENT.reshape(-1, 3).mean(0), atol=0.5)
        np.testing.assert_allclose(np.cov(matched.reshape(-1, 3).T), np.cov(CTRL_CONTENT.reshape(-1, 3).T),
                                   rtol=0.05, atol=2.0)
