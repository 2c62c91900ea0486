"""Tests of nst_tf.data: scanning photo folders, skipping bad files, batches of crops."""

import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from helpers import write_image
from nst_tf import data
from nst_tf.errors import ImageError


def _jpeg_bytes(size=(40, 30), seed=0):
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
        buffer, "JPEG")
    return buffer.getvalue()


@pytest.fixture
def photo_folder(tmp_path):
    """Four good photos in nested folders (PNG, JPEG, grayscale BMP, RGBA GIF) and five bad files."""
    root = tmp_path / "photos"
    (root / "a" / "b").mkdir(parents=True)
    write_image(root / "one.png", (40, 32), pattern="photo")
    (root / "a" / "two.JPG").write_bytes(_jpeg_bytes())
    Image.new("L", (50, 20), 128).save(root / "a" / "b" / "three.bmp")
    Image.new("RGBA", (24, 36), (10, 200, 30, 255)).save(root / "a" / "four.gif")
    (root / "broken.jpg").write_bytes(b"this is not a jpeg")
    (root / "empty.png").write_bytes(b"")
    (root / "a" / "b" / "cut.png").write_bytes((root / "one.png").read_bytes()[:60])
    Image.new("RGB", (8, 8)).save(root / "a" / "tiff_in_disguise.jpg", format="TIFF")
    jpeg = _jpeg_bytes((64, 64), seed=1)
    (root / "truncated.jpg").write_bytes(jpeg[:len(jpeg) // 2])  # Passes Pillow's check; TF cannot decode.
    (root / "notes.txt").write_text("ignored: not a photo extension")
    (root / ".hidden.png").write_bytes(b"ignored: hidden")
    return root


def test_scan_photos_skips_and_counts_unreadable_files(photo_folder, caplog):
    photos = data.scan_photos(photo_folder)
    names = sorted(p.split("/")[-1] for p in photos.files)
    assert names == ["four.gif", "one.png", "three.bmp", "truncated.jpg", "two.JPG"]
    skipped = {p.split("/")[-1]: reason for p, reason in photos.skipped}
    assert sorted(skipped) == ["broken.jpg", "cut.png", "empty.png", "tiff_in_disguise.jpg"]
    assert "TIFF" in skipped["tiff_in_disguise.jpg"]
    assert sum("Skipping unreadable" in r.message for r in caplog.records) == 4


def test_dataset_batches_crops_and_drops_undecodable_files(photo_folder):
    photos = data.scan_photos(photo_folder)
    dataset = data.photo_dataset(photos.files, image_size=16, batch_size=3, seed=0)
    assert dataset.element_spec.shape.as_list() == [3, 16, 16, 3]
    batches = list(dataset.take(4).as_numpy_iterator())
    assert all(b.dtype == np.float32 and b.min() >= 0 and b.max() <= 255 for b in batches)
    # One pass yields the 4 decodable photos: the truncated JPEG is dropped, not fatal.
    one_pass = data.photo_dataset(photos.files, image_size=16, batch_size=1, shuffle=False, repeat=False)
    assert len(list(one_pass.as_numpy_iterator())) == 4


def test_dataset_is_reproducible_with_a_seed(photo_folder):
    files = data.scan_photos(photo_folder).files
    first = next(iter(data.photo_dataset(files, 16, 2, seed=7)))
    second = next(iter(data.photo_dataset(files, 16, 2, seed=7)))
    np.testing.assert_array_equal(first, second)


def test_every_iterator_of_a_seeded_dataset_yields_the_same_batches(tmp_path):
    # Keras' fit under a tf.distribute strategy iterates once to build the model, then anew to train.
    for i in range(5):  # Flat colours: a crop's mean tells its photo.
        Image.new("RGB", (20, 16), (i * 50, 0, 0)).save(tmp_path / f"p{i}.png")
    dataset = data.photo_dataset(data.scan_photos(tmp_path).files, 8, 1, seed=3)
    first, second = (np.stack(list(dataset.take(20).as_numpy_iterator())) for _ in range(2))
    np.testing.assert_array_equal(first, second)
    photos = np.round(first[:, 0].mean(axis=(1, 2, 3)) * 3 / 50).astype(int).reshape(4, 5)  # [pass, position]
    assert all(sorted(row) == [0, 1, 2, 3, 4] for row in photos)  # Every pass shows each photo once...
    assert len({tuple(row) for row in photos}) > 1  # ...in an order of its own.


def test_every_iterator_of_a_seeded_pair_dataset_yields_the_same_batches(tmp_path):
    for i in range(5):
        Image.new("RGB", (20, 16), (i * 50, 0, 0)).save(tmp_path / f"p{i}.png")
        Image.new("RGB", (16, 16), (0, i * 50, 0)).save(tmp_path / f"t{i}.png")
    pairs = [(str(tmp_path / f"p{i}.png"), str(tmp_path / f"t{i}.png")) for i in range(5)]
    dataset = data.pair_dataset(pairs, 8, 1, seed=3)
    first, second = ([np.stack(part) for part in zip(*dataset.take(20).as_numpy_iterator())] for _ in range(2))
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    photos = np.round(first[0][:, 0].mean(axis=(1, 2, 3)) * 3 / 50).astype(int)
    targets = np.round(first[1][:, 0].mean(axis=(1, 2, 3)) * 3 / 50).astype(int)
    np.testing.assert_array_equal(photos, targets)  # Each photo with its own target.
    assert all(sorted(row) == [0, 1, 2, 3, 4] for row in photos.reshape(4, 5))


def test_crops_keep_the_shorter_side(tmp_path):
    # A 40x20 gradient resized to shorter side 10 is 20x10: a 10x10 crop keeps all rows.
    y, x = np.mgrid[0:20, 0:40]
    Image.fromarray(np.stack([x * 6, y * 13, x * 0], -1).astype(np.uint8)).save(tmp_path / "gradient.png")
    crops = data.center_crops([str(tmp_path / "gradient.png")], 10)
    assert crops.shape == (1, 10, 10, 3)
    column = crops[0, :, 5, 1]
    assert column[0] < 40 and column[-1] > 215  # The vertical gradient spans the whole height.


def test_empty_and_missing_folders(tmp_path):
    with pytest.raises(ImageError, match="no photos") as info:
        data.scan_photos(tmp_path)
    assert "\n" not in str(info.value) and "Received: data=" in str(info.value)
    with pytest.raises(ImageError, match="not found"):
        data.scan_photos(tmp_path / "missing")
    write_image(tmp_path / "file.png")
    with pytest.raises(ImageError, match="not a folder"):
        data.scan_photos(tmp_path / "file.png")


def test_folder_of_unreadable_files(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"junk")
    (tmp_path / "b.png").write_bytes(b"junk")
    with pytest.raises(ImageError, match="2 files with a photo extension, none readable"):
        data.scan_photos(tmp_path)


def test_dataset_uses_tf_data():
    dataset = data.photo_dataset(["x.png"], 8, 1)
    assert isinstance(dataset, tf.data.Dataset)


def _photo_and_target(tmp_path, stem, size=(48, 40), crop=32, seed=0):
    """A photo and a target made as optimization makes them: its centre crop, saved as PNG."""
    photo = write_image(tmp_path / "photos" / f"{stem}.png", size, seed=seed)
    target = tmp_path / "targets" / f"{stem}.png"
    target.parent.mkdir(exist_ok=True)
    Image.fromarray(np.round(data.center_crops([str(photo)], crop)[0]).astype(np.uint8)).save(target)
    return str(photo), target


def test_pair_dataset_crops_and_flips_photo_and_target_alike(tmp_path):
    (tmp_path / "photos").mkdir()
    pairs = [_photo_and_target(tmp_path, f"p{i}", seed=i) for i in range(3)]
    matched = data.target_pairs([p for p, _ in pairs], tmp_path / "targets", 16)
    assert matched == tuple((p, str(t)) for p, t in pairs)
    flipped = data.pair_dataset(matched, image_size=16, batch_size=2, shuffle=False, seed=1, flip=True)
    plain = data.pair_dataset(matched, image_size=16, batch_size=2, shuffle=False, seed=1)
    mirrored = 0
    for (photos, targets), (plain_photos, _) in zip(flipped.take(6), plain.take(6)):
        assert photos.shape == targets.shape == (2, 16, 16, 3)
        # The target is the photo's centre crop: the same window of both agrees up to PNG rounding.
        assert float(tf.reduce_max(tf.abs(photos - targets))) <= 0.5 + 1e-3
        for photo, unflipped in zip(photos.numpy(), plain_photos.numpy()):  # Same window, maybe mirrored.
            assert np.array_equal(photo, unflipped) or np.array_equal(photo, unflipped[:, ::-1])
            mirrored += not np.array_equal(photo, unflipped)
    assert 0 < mirrored < 12


def test_missing_targets_are_counted_and_named(tmp_path):
    (tmp_path / "photos").mkdir()
    photo, _ = _photo_and_target(tmp_path, "kept")
    others = [str(write_image(tmp_path / "photos" / f"lost{i}.png", (40, 40))) for i in range(7)]
    with pytest.raises(ImageError) as info:
        data.target_pairs([photo, *others], tmp_path / "targets", 16)
    message = str(info.value)
    assert "7 of 8 photos have no target" in message and "lost0, lost1, lost2, lost3, lost4)" in message
    assert "lost5" not in message and "\n" not in message
    with pytest.raises(ImageError, match="smaller than the training crops"):
        data.target_pairs([photo], tmp_path / "targets", 64)
    with pytest.raises(ImageError, match="Targets folder not found"):
        data.target_pairs([photo], tmp_path / "nowhere", 16)
