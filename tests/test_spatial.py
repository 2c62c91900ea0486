"""nst_tf.spatial: region masks read from files, and their downsampling to feature layers."""

import numpy as np
import pytest

from helpers import write_mask
from nst_tf import spatial
from nst_tf.errors import ConfigError, ImageError


def test_region_mask_loading_orders_regions_darkest_first(tmp_path):
    regions = spatial.load_region_mask(write_mask(tmp_path / "m.png"), 24, 32, 2)
    assert regions.shape == (1, 24, 32, 2)
    assert regions[0, :, :16, 0].all() and regions[0, :, 16:, 1].all()
    np.testing.assert_array_equal(regions.sum(-1), 1.0)


def test_mask_errors(tmp_path):
    with pytest.raises(ConfigError, match="mask has 2 regions.*3 style"):
        spatial.load_region_mask(write_mask(tmp_path / "m.png"), 24, 32, 3)
    with pytest.raises(ImageError, match="aspect ratio"):
        spatial.load_region_mask(write_mask(tmp_path / "w.png", size=(64, 16)), 24, 32, 2)



def test_antialiased_edges_snap_to_the_nearest_region(tmp_path):
    path = write_mask(tmp_path / "m.png")
    from PIL import Image

    image = np.asarray(Image.open(path)).copy()
    image[0, 15] = 120  # One grey pixel (0.13%): fewer than a region needs (MIN_REGION_FRACTION).
    Image.fromarray(image).save(path)
    regions = spatial.load_region_mask(path, 24, 32, 2)
    np.testing.assert_array_equal(regions.sum(-1), 1.0)
    assert regions[0, 0, 15, 0] == 1.0  # 120 is nearer black (0) than white (255).


def test_resize_mask_averages_areas_and_check_regions_counts():
    mask = np.zeros((1, 4, 4, 2), np.float32)
    mask[..., :2, 0] = 1.0
    mask[..., 2:, 1] = 1.0
    small = spatial.resize_mask(mask, (2, 1)).numpy()
    np.testing.assert_allclose(small[0, :, 0], [[0.5, 0.5], [0.5, 0.5]])
    spatial.check_regions(mask, 2)
    with pytest.raises(ConfigError, match="2 regions and 3 styles"):
        spatial.check_regions(mask, 3)
