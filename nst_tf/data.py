"""tf.data pipeline of training photos for the feed-forward networks.

A folder of photos (searched recursively) becomes an endless stream of batches of
random ``image_size`` x ``image_size`` crops in the library's pixel contract
(float32 RGB ``[B, S, S, 3]`` in [0, 255]).  Johnson et al. 2016 trained on 256 x
256 crops of MS-COCO; any folder of natural photos works (BSDS500 here).

Files are checked once up front with Pillow (header and structure, no full decode),
so a wrong or broken file is skipped and counted instead of stopping a long run;
files that pass the check but still fail to decode (truncated data) are dropped by
``tf.data.Dataset.ignore_errors``.
"""

import dataclasses
import logging
import os
import pathlib
from typing import Tuple

import numpy as np
import tensorflow as tf
from PIL import Image

from nst_tf.errors import ImageError

PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
"""Extensions of the files collected (case-insensitive): the formats ``tf.io.decode_image`` reads."""

_TF_FORMATS = {"JPEG", "MPO", "PNG", "BMP", "GIF"}  # MPO: multi-picture JPEG from cameras.
logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class PhotoFolder:
    """The photos found in a folder.

    Attributes:
        root: the folder searched.
        files: readable photo paths, sorted.
        skipped: ``(path, reason)`` of each file with a photo extension that cannot be read.
    """

    root: str
    files: Tuple[str, ...]
    skipped: Tuple[Tuple[str, str], ...]


def _check(path):
    """Returns None when Pillow finds a readable JPEG/PNG/BMP/GIF, else a short reason."""
    try:
        with Image.open(path) as image:
            if image.format not in _TF_FORMATS:
                return f"format {image.format} is not JPEG, PNG, BMP or GIF"
            image.verify()
    except Exception as error:  # noqa: BLE001 - Pillow raises many types for broken files.
        return f"{type(error).__name__}: {' '.join(str(error).split())[:120]}"
    return None


def scan_photos(folder):
    """Finds the readable photos under `folder`, recursively.

    Args:
        folder: str or path-like. A folder of JPEG, PNG, BMP or GIF files (other
            files are ignored; hidden files too).

    Returns:
        PhotoFolder. Unreadable files are listed in ``skipped`` and logged, never fatal.

    Raises:
        ImageError: `folder` is missing or not a folder, or holds no readable photo.
    """
    root = pathlib.Path(folder)
    if not root.is_dir():
        raise ImageError(f"Training data folder not found or not a folder. Received: data='{folder}'")
    candidates = sorted(
        str(path) for path in root.rglob("*")
        if path.suffix.lower() in PHOTO_EXTENSIONS and not path.name.startswith(".") and path.is_file())
    files, skipped = [], []
    for path in candidates:
        reason = _check(path)
        if reason is None:
            files.append(path)
        else:
            skipped.append((path, reason))
            logger.warning("Skipping unreadable training image %s (%s)", path, reason)
    if not files:
        found = f"{len(candidates)} files with a photo extension, none readable" if candidates else "no photos"
        raise ImageError(f"Training data folder has {found}; it needs JPEG, PNG, BMP or GIF photos "
                         f"({', '.join(PHOTO_EXTENSIONS)}). Received: data='{folder}'")
    return PhotoFolder(os.fspath(root), tuple(files), tuple(skipped))


def _decode(path):
    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return tf.cast(image, tf.float32)


def _resize_shorter_side(image, size):
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = tf.cast(size, tf.float32) / tf.reduce_min(shape)
    new_shape = tf.maximum(tf.cast(tf.math.ceil(shape * scale), tf.int32), size)
    resized = tf.image.resize(image, new_shape, method="bilinear", antialias=True)
    return tf.clip_by_value(resized, 0.0, 255.0)


def photo_dataset(files, image_size=256, batch_size=4, shuffle=True, repeat=True, seed=None, flip=False):
    """Batches of random square crops of photos.

    Each photo is decoded, resized (antialiased bilinear) so that its shorter side is
    `image_size`, randomly cropped to `image_size` x `image_size` and, with `flip`,
    mirrored left-right with probability 1/2.

    Args:
        files: sequence of str. Photo paths, e.g. ``scan_photos(folder).files``.
        image_size: int. Side of the crops, pixels. Defaults to 256 (Johnson 2016).
        batch_size: int. Photos per batch; incomplete last batches are dropped.
            Defaults to 4 (Johnson 2016).
        shuffle: bool. Shuffle the files anew each pass. Defaults to True.
        repeat: bool. Repeat forever (the training length is set by steps). Defaults to True.
        seed: int or None. Seeds shuffling, cropping and flipping: the same seed gives the
            same batches, from every iterator of the dataset and in every process (the
            workers of a multi-worker run each build the same global batches).
        flip: bool. Random horizontal flips. Defaults to False.

    Returns:
        tf.data.Dataset of float32 ``[batch_size, image_size, image_size, 3]``, RGB in
        [0, 255]. Files that fail to decode are dropped (``ignore_errors``).
    """
    files = tf.constant(list(files), tf.string)

    def crop(index, crop_seed):
        image = _resize_shorter_side(_decode(tf.gather(files, index)), image_size)
        image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], seed=crop_seed)
        if flip:
            image = tf.image.stateless_random_flip_left_right(image, seed=crop_seed[::-1])
        return image

    return _seeded_batches(int(files.shape[0]), crop, batch_size, shuffle, repeat, seed)


def _seeded_batches(count, crop, batch_size, shuffle, repeat, seed):
    """Batches of ``crop(index, crop_seed)`` over the indices ``0 .. count - 1``, in seeded order.

    Shuffled, the order is one permutation per pass, drawn statelessly from ``(seed,
    pass)``: every iterator of the dataset yields the same stream.  tf.data's seeded
    shuffle would reshuffle for each new iterator, and Keras' ``fit`` under a
    ``tf.distribute`` strategy iterates once to build the model before it trains, so a
    run under a strategy would train on other batches than one without.  Each element
    gets its own stateless crop seed, so decoding in parallel stays reproducible.
    Elements that fail (undecodable files) are dropped; incomplete last batches too.
    """
    indices = tf.range(count)
    if shuffle:
        base = tf.constant(seed, tf.int64) if seed is not None else tf.random.uniform(
            [], maxval=2 ** 62, dtype=tf.int64)
        passes = tf.data.Dataset.counter() if repeat else tf.data.Dataset.range(1)
        order = passes.flat_map(lambda index: tf.data.Dataset.from_tensor_slices(
            tf.random.experimental.stateless_shuffle(indices, tf.stack([base, index]))))
    else:
        order = tf.data.Dataset.from_tensor_slices(indices)
        order = order.repeat() if repeat else order
    crop_seeds = tf.data.Dataset.random(seed=seed).batch(2)
    dataset = tf.data.Dataset.zip((order, crop_seeds))
    dataset = dataset.map(crop, num_parallel_calls=tf.data.AUTOTUNE, deterministic=seed is not None)
    dataset = dataset.ignore_errors(log_warning=True)
    return dataset.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

def with_random_styles(dataset, num_styles, seed=None, choices=None):
    """Pairs every photo of a batched photo dataset with a uniformly random style index.

    Batches therefore mix styles, as multi-style training wants (each example its own
    style; Dumoulin et al. 2017 train one network on all styles at once).

    Args:
        dataset: tf.data.Dataset of float32 ``[B, H, W, 3]`` batches (:func:`photo_dataset`).
        num_styles: int >= 1.
        seed: int or None. Seeds the style draw.
        choices: optional sequence of style indices to draw from (e.g. only a newly
            added style); None draws from all `num_styles`.

    Returns:
        tf.data.Dataset of dicts ``{"images": [B, H, W, 3] float32, "style": [B] int32}``.
    """
    draws = tf.data.Dataset.random(seed=None if seed is None else seed + 1)

    choices = tf.constant(list(range(num_styles)) if choices is None else list(choices), tf.int64)

    def pair(images, seed):
        # Stateless draws from one seed per batch: reproducible, and any batch size works.
        draw = tf.random.stateless_uniform(tf.shape(images)[:1], [seed, 0], maxval=tf.size(choices, out_type=tf.int64),
                                           dtype=tf.int64)
        return {"images": images, "style": tf.cast(tf.gather(choices, draw), tf.int32)}

    return tf.data.Dataset.zip((dataset, draws)).map(pair)


def center_crops(files, image_size):
    """Deterministic centre crops, e.g. the sample images shown during training.

    Args:
        files: sequence of str. Photo paths (readable ones, see :func:`scan_photos`).
        image_size: int. Side of the crops, pixels.

    Returns:
        np.ndarray float32 ``[len(files), image_size, image_size, 3]``, RGB in [0, 255].
    """
    crops = []
    for path in files:
        image = _resize_shorter_side(_decode(path), image_size)
        height, width = int(image.shape[0]), int(image.shape[1])
        top, left = (height - image_size) // 2, (width - image_size) // 2
        crops.append(image[top:top + image_size, left:left + image_size].numpy())
    return np.stack(crops).astype(np.float32)


def target_pairs(files, targets, image_size):
    """Matches each photo to its stylized target: the file of `targets` with the same stem.

    Args:
        files: sequence of str. Photo paths (:func:`scan_photos`).
        targets: str or path-like. Folder of targets (JPEG, PNG, BMP or GIF; searched
            recursively), e.g. made by ``stylize --content DATA --output TARGETS --center-crop``.
        image_size: int. Training crop side, pixels; each target's shorter side must reach it.

    Returns:
        tuple of ``(photo, target)`` str pairs, in the order of `files`.

    Raises:
        ImageError: `targets` is not a folder; a photo has no target (the message gives how
            many and the first stems); two targets share a stem; a target is smaller than
            `image_size` or unreadable.
    """
    root = pathlib.Path(targets)
    if not root.is_dir():
        raise ImageError(f"Targets folder not found or not a folder. Received: targets='{targets}'")
    by_stem = {}
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in PHOTO_EXTENSIONS and not path.name.startswith(".") and path.is_file():
            if path.stem in by_stem:
                raise ImageError(f"Two targets share the stem '{path.stem}'; keep one per photo. "
                                 f"Received: '{by_stem[path.stem]}', '{path}'")
            by_stem[path.stem] = path
    missing = [pathlib.Path(photo).stem for photo in files if pathlib.Path(photo).stem not in by_stem]
    if missing:
        raise ImageError(f"{len(missing)} of {len(files)} photos have no target of the same name in the targets "
                         f"folder (first: {', '.join(missing[:5])}); make them with stylize --content DATA "
                         f"--output TARGETS --center-crop, or remove those photos. Received: targets='{targets}'")
    pairs = []
    for photo in files:
        target = by_stem[pathlib.Path(photo).stem]
        reason = _check(target)
        if reason is not None:
            raise ImageError(f"Target cannot be read ({reason}). Received: target='{target}'")
        with Image.open(target) as image:
            width, height = image.size
        if min(width, height) < image_size:
            raise ImageError(f"Target is smaller than the training crops: its shorter side must be at least "
                             f"--image-size ({image_size} px). Received: target='{target}', size={width}x{height}")
        pairs.append((str(photo), str(target)))
    return tuple(pairs)


def pair_dataset(pairs, image_size=256, batch_size=4, shuffle=True, repeat=True, seed=None, flip=False):
    """Batches of ``(photo crop, target crop)``, the same window of both, for pixel-loss training.

    Each photo is made pixel-aligned with its target as :func:`center_crops` makes the
    photos that targets are optimized from: shorter side resized to the target's shorter
    side, then the centre cropped to the target's height and width.  Then one random
    `image_size` square window (and, with `flip`, one left-right mirror with probability
    1/2) is applied to both.

    Args:
        pairs: sequence of ``(photo, target)`` paths (:func:`target_pairs`).
        image_size, batch_size, shuffle, repeat, seed, flip: as :func:`photo_dataset`.

    Returns:
        tf.data.Dataset of ``(photos, targets)``, each float32 ``[batch_size, image_size,
        image_size, 3]``, RGB in [0, 255]. Pairs that fail to decode are dropped.
    """
    photos, targets = (tf.constant(list(column), tf.string) for column in zip(*pairs))

    def crop(index, crop_seed):
        target = _decode(tf.gather(targets, index))
        shape = tf.shape(target)[:2]
        photo = _resize_shorter_side(_decode(tf.gather(photos, index)), tf.reduce_min(shape))
        top, left = (tf.shape(photo)[0] - shape[0]) // 2, (tf.shape(photo)[1] - shape[1]) // 2
        photo = photo[top:top + shape[0], left:left + shape[1]]
        both = tf.image.stateless_random_crop(tf.concat([photo, target], -1), [image_size, image_size, 6],
                                              seed=crop_seed)
        if flip:
            both = tf.image.stateless_random_flip_left_right(both, seed=crop_seed[::-1])
        return both[..., :3], both[..., 3:]

    return _seeded_batches(len(pairs), crop, batch_size, shuffle, repeat, seed)
