"""Training of feed-forward style networks with Keras ``fit`` (Johnson et al. 2016).

:class:`FastStyleTrainer` wraps a :class:`~nst_tf.transformer.TransformerNet` and a
frozen loss network (:class:`~nst_tf.features.FeatureExtractor`).  Its
``compute_loss`` is the perceptual loss of Johnson, Alahi, Fei-Fei, ECCV 2016
(sec. 3, eq. 2, 5, 6): feature reconstruction against the input photo, Gram-matrix
style reconstruction against one style image (its Gram matrices computed once),
and total variation.  Everything else is stock Keras: ``fit``, the optimizer,
``tf.distribute`` strategies, callbacks.

:func:`train` runs a whole :class:`TrainConfig` (one field per ``scripts/train.py``
flag).  Training is cut into Keras "epochs" of ``save_every`` steps so that
``keras.callbacks.BackupAndRestore``, which resumes at epoch granularity, loses at
most ``save_every`` steps when a run is killed; rerunning the same command resumes.
:class:`StopAtStep` cuts the last epoch short: a run makes exactly the steps asked for.
"""

import dataclasses
import importlib.util
import logging
import math
import os
import pathlib
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from nst_tf import backbones, data, files, images, losses
from nst_tf.config import TRAIN_LAYERS, TRAIN_LOSS_WEIGHTS, TrainConfig  # noqa: F401 (TrainConfig: public here too)
from nst_tf.errors import ConfigError, ImageError, NstError
from nst_tf.features import FeatureExtractor
from nst_tf.stylizer import load_transformer
from nst_tf.transformer import ENCODER_BLOCKS, TransformerNet, with_added_style, with_dtype_policy

DEFAULT_LAYERS = TRAIN_LAYERS
"""``{loss_network: (content_layers, style_layers)}``."""

# Johnson normalizes each Gram matrix by C*H*W; nst_tf.losses divides by H*W only, so
# Johnson's balance is equal to per-layer weights proportional to 1 / C_l^2 (VGG: 64, 128,
# 256, 512 channels).  Style weight 4e-2 restates pytorch/examples' 1e5 : 1e10 (torchvision
# [0, 1] normalized input) in these units (Caffe-preprocessed [0, 255] input, 58x larger).
_VGG_LAYER_WEIGHTS = dict(zip(TRAIN_LAYERS["vgg16"][1], np.array([64.0, 128, 256, 512]) ** -2 / (
    np.array([64.0, 128, 256, 512]) ** -2).sum()))
DEFAULT_STYLE_LAYER_WEIGHTS = {"vgg16": _VGG_LAYER_WEIGHTS, "vgg19": _VGG_LAYER_WEIGHTS, "squeezenet1_1": None}
"""``{loss_network: {layer: w_l} or None}``; None is equal weights."""

DEFAULT_LOSS_WEIGHTS = TRAIN_LOSS_WEIGHTS
"""``{loss_network: (content_weight, style_weight, tv_weight)}``."""

logger = logging.getLogger(__name__)


def _reducible_logs(logs):
    """A train step's logs as every strategy can reduce them.

    Keras reduces the logs of a MultiWorkerMirroredStrategy step with
    ``strategy.reduce(MEAN, axis=0)``, which refuses scalars: each gets a batch axis of
    one (its mean is the value itself).
    """
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs


class FastStyleTrainer(keras.Model):
    """A TransformerNet trained with Johnson et al.'s perceptual loss, one style or many.

    ``loss = content_weight * L_content + mean_b(style_weight[s_b] * L_style(b, s_b)) + tv_weight * L_tv
    + saturation_weight * L_sat + droplet_weight * L_droplet``
    with :func:`nst_tf.losses.content_loss` (mean over content layers), the Gram
    style loss of each example against the Gram matrices of its style ``s_b``
    (:func:`nst_tf.losses.style_layer_loss`, layer-weighted as :func:`nst_tf.losses.style_loss`),
    :func:`nst_tf.losses.total_variation_loss`, :func:`nst_tf.losses.saturation_loss`
    of the transformer's pre-tanh output (where tanh saturates, its gradient vanishes
    and no other term can change those pixels, which then stay flat white or black
    blobs) and :func:`nst_tf.losses.droplet_loss` of the outputs of its residual and
    upsampling blocks (instance normalization's droplets, which paint smooth blobs;
    the encoder is left out: it carries the photo's own sharp edges).  A single-style transformer has
    ``s_b = 0``; a multi-style one (Dumoulin et al. 2017) takes ``{"images", "style"}``
    batches whose examples mix styles (:func:`nst_tf.data.with_random_styles`).
    Each weighted term is a metric (``content_loss``, ``style_loss``, ``tv_loss``,
    ``saturation_loss``, ``droplet_loss``; they add up to ``loss``).  Only the transformer's trainable weights train.

    Args:
        transformer: TransformerNet (or any Keras model from and to the pixel contract).
        style_image: array-like ``[1, H, W, 3]`` or ``[H, W, 3]``, RGB in [0, 255]; for a
            multi-style transformer a sequence of one per style, where None marks the
            ``"photo"`` style (content loss only).
        loss_network: str. ``"vgg16"`` (Johnson's), ``"vgg19"`` or ``"squeezenet1_1"``.
            Defaults to ``"vgg16"``.
        loss_weights: ``"imagenet"``, a weights file path, or None (seeded random) for
            the loss network. Defaults to ``"imagenet"``.
        content_layers, style_layers: sequence of layer names; None takes ``DEFAULT_LAYERS``.
        style_layer_weights: dict ``{layer: w_l}``; None takes
            ``DEFAULT_STYLE_LAYER_WEIGHTS`` (equal weights for custom layers).
        content_weight, tv_weight: float >= 0; None takes ``DEFAULT_LOSS_WEIGHTS``.
        saturation_weight: float >= 0. Weight of the saturation loss; needs a transformer
            whose call takes ``return_logits`` (:class:`~nst_tf.transformer.TransformerNet`)
            when > 0. Defaults to 0.
        droplet_weight: float >= 0. Weight of the droplet loss; needs a transformer whose
            call takes ``return_activations`` when > 0. Defaults to 0.
        style_weight: float >= 0, or a sequence of one per style; None takes
            ``DEFAULT_LOSS_WEIGHTS``. The ``"photo"`` style's weight is always 0.
        feature_extractor: optional prebuilt FeatureExtractor covering all the layers
            (shares one loss network between trainers); overrides the three above.
        **kwargs: ``keras.Model`` arguments.

    Raises:
        ConfigError: unknown network or layer, negative weight, style images that do not
            match the transformer's styles.
        WeightsError: loss network weights missing or wrong.
        ImageError: style image smaller than the loss network needs.
    """

    def __init__(self, transformer, style_image, loss_network="vgg16", loss_weights="imagenet",
                 content_layers=None, style_layers=None, style_layer_weights=None, content_weight=None,
                 style_weight=None, tv_weight=None, saturation_weight=0.0, droplet_weight=0.0, feature_extractor=None,
                 **kwargs):
        super().__init__(**kwargs)
        if feature_extractor is not None:
            loss_network = feature_extractor.backbone
        default_content, default_style = DEFAULT_LAYERS[backbones.get_spec(loss_network).name]
        custom_style = style_layers is not None
        self.content_layers = tuple(content_layers or default_content)
        self.style_layers = tuple(style_layers or default_style)
        if style_layer_weights is None and not custom_style:
            style_layer_weights = DEFAULT_STYLE_LAYER_WEIGHTS[loss_network]
        if style_layer_weights is None:
            style_layer_weights = {name: 1.0 / len(self.style_layers) for name in self.style_layers}
        self.style_layer_weights = {name: float(style_layer_weights[name]) for name in self.style_layers}
        self.transformer = transformer
        self.num_styles = getattr(transformer, "num_styles", None)
        style_images = list(style_image) if self.num_styles else [style_image]
        if len(style_images) != (self.num_styles or 1):
            raise ConfigError(f"Give one style image per style of the transformer ({self.num_styles}). "
                              f"Received: {len(style_images)} style images")
        defaults = DEFAULT_LOSS_WEIGHTS[loss_network]
        content_weight = defaults[0] if content_weight is None else content_weight
        tv_weight = defaults[2] if tv_weight is None else tv_weight
        style_weight = defaults[1] if style_weight is None else style_weight
        per_style = list(style_weight) if isinstance(style_weight, (list, tuple, np.ndarray)) else (
            [style_weight] * len(style_images))
        if len(per_style) != len(style_images):
            raise ConfigError(f"Give one style weight per style ({len(style_images)}). "
                              f"Received: style_weight={per_style!r}")
        for name, value in [("content_weight", content_weight), ("tv_weight", tv_weight),
                            ("saturation_weight", saturation_weight), ("droplet_weight", droplet_weight)] + [
                ("style_weight", w) for w in per_style]:
            if not (isinstance(value, (int, float, np.floating)) and math.isfinite(value) and value >= 0):
                raise ConfigError(f"`{name}` must be a finite number >= 0. Received: {name}={value}")
        per_style = [0.0 if image is None else float(w) for w, image in zip(per_style, style_images)]
        self.loss_weights = (float(content_weight), per_style[0] if len(per_style) == 1 else tuple(per_style),
                             float(tv_weight))
        self.style_weights = tf.constant(per_style, tf.float32)
        self.saturation_weight = float(saturation_weight)
        self.droplet_weight = float(droplet_weight)
        self.extractor = feature_extractor or FeatureExtractor(
            self.content_layers + self.style_layers, backbone=loss_network, weights=loss_weights)
        missing = [n for n in self.content_layers + self.style_layers if n not in self.extractor.layer_names]
        if missing:
            raise ConfigError(f"The feature extractor lacks layers {missing}. "
                              f"Received: feature_extractor layers={self.extractor.layer_names}")
        self.style_grams = self._target_grams(style_images, loss_network)
        self.content_tracker = keras.metrics.Mean(name="content_loss")
        self.style_tracker = keras.metrics.Mean(name="style_loss")
        self.tv_tracker = keras.metrics.Mean(name="tv_loss")
        self.saturation_tracker = keras.metrics.Mean(name="saturation_loss")
        self.droplet_tracker = keras.metrics.Mean(name="droplet_loss")

    def _target_grams(self, style_images, loss_network):
        """``{layer: float32 [N, C, C]}``, computed once (Johnson 2016 sec. 3.2); zeros for the photo style."""
        grams = {name: [] for name in self.style_layers}
        for image in style_images:
            if image is None:
                for name in self.style_layers:
                    grams[name].append(None)
                continue
            style = tf.convert_to_tensor(image, tf.float32)
            style = style[None] if style.shape.rank == 3 else style
            if min(style.shape[1], style.shape[2]) < self.extractor.min_input_size:
                raise ImageError(
                    f"Style image is too small for the {loss_network} loss network: its shorter side must be at "
                    f"least {self.extractor.min_input_size} pixels. Received: shape={tuple(style.shape)}")
            features = self.extractor(style)
            for name in self.style_layers:
                grams[name].append(losses.gram_matrix(features[name])[0])
        if any(image is None for image in style_images):  # The photo style's rows: zeros of the right shape.
            size = self.extractor.min_input_size
            probe = self.extractor(tf.zeros([1, size, size, 3]))
            zeros = {name: tf.zeros([probe[name].shape[-1]] * 2) for name in self.style_layers}
            grams = {name: [zeros[name] if row is None else row for row in rows] for name, rows in grams.items()}
        return {name: tf.constant(tf.stack(rows)) for name, rows in grams.items()}

    def call(self, inputs, training=False):
        """The transformer's output; while training with a saturation or droplet loss,
        ``(images, logits, activations)`` (the activations of the blocks after the encoder)."""
        images, style = (inputs["images"], inputs["style"]) if isinstance(inputs, dict) else (inputs, None)
        styled = {} if style is None else {"style": style}
        if training and (self.saturation_weight > 0 or self.droplet_weight > 0):
            images, logits, activations = self.transformer(images, training=training, return_logits=True,
                                                           return_activations=True, **styled)
            return images, logits, activations[ENCODER_BLOCKS:]
        return self.transformer(images, training=training, **styled)

    def perceptual_losses(self, photos, stylized, style=None, logits=None, activations=None):
        """Weighted loss terms of a batch.

        Args:
            photos: float32 ``[B, H, W, 3]`` content photos, RGB in [0, 255].
            stylized: float32 ``[B, H, W, 3]`` transformer output for `photos`.
            style: int ``[B]`` style index of each example; None is style 0.
            logits: float32 ``[B, H, W, 3]`` pre-tanh output of the transformer; None
                leaves out the saturation loss.
            activations: list of tensors ``[B, h, w, c]``, the transformer's block outputs
                after the encoder; None leaves out the droplet loss.

        Returns:
            dict of float32 scalars ``content``, ``style``, ``tv``, ``saturation``, ``droplet``
            (weighted) and ``total``.
        """
        batch = tf.shape(photos)[0]
        style = tf.zeros([batch], tf.int32) if style is None else tf.cast(style, tf.int32)
        # One loss-network pass over photos and outputs together.
        features = self.extractor(tf.concat([tf.cast(photos, tf.float32), stylized], axis=0))
        generated = {name: value[batch:] for name, value in features.items()}
        content = tf.add_n([
            losses.content_loss(generated[name], tf.stop_gradient(features[name][:batch]))
            for name in self.content_layers]) / len(self.content_layers)
        per_example = tf.zeros([batch])
        for name in self.style_layers:
            difference = losses.gram_matrix(generated[name]) - tf.gather(self.style_grams[name], style)
            per_example += self.style_layer_weights[name] * tf.reduce_mean(tf.square(difference), axis=[1, 2]) / 4.0
        style_term = tf.reduce_mean(tf.gather(self.style_weights, style) * per_example)
        tv = losses.total_variation_loss(stylized)
        content_weight, _, tv_weight = self.loss_weights
        saturation = 0.0 if logits is None else self.saturation_weight * losses.saturation_loss(logits)
        droplet = 0.0 if not activations or not self.droplet_weight else (
            self.droplet_weight * losses.droplet_loss(activations))
        terms = {"content": content_weight * content, "style": style_term, "tv": tv_weight * tv,
                 "saturation": tf.convert_to_tensor(saturation, tf.float32),
                 "droplet": tf.convert_to_tensor(droplet, tf.float32)}
        terms["total"] = terms["content"] + terms["style"] + terms["tv"] + terms["saturation"] + terms["droplet"]
        return terms

    def train_step(self, data):
        return _reducible_logs(super().train_step(data))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        photos, style = (x["images"], x["style"]) if isinstance(x, dict) else (x, None)
        stylized, logits, activations = y_pred if isinstance(y_pred, (tuple, list)) else (y_pred, None, None)
        terms = self.perceptual_losses(photos, tf.cast(stylized, tf.float32), style, logits, activations)
        self.content_tracker.update_state(terms["content"])
        self.style_tracker.update_state(terms["style"])
        self.tv_tracker.update_state(terms["tv"])
        self.saturation_tracker.update_state(terms["saturation"])
        self.droplet_tracker.update_state(terms["droplet"])
        # Keras sums gradients over replicas; each replica contributes its share.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return terms["total"] / replicas


class PixelTrainer(keras.Model):
    """A TransformerNet trained to reproduce stylized targets pixel by pixel.

    ``loss = mean((T(x) - y)^2) + tv_weight * L_tv(T(x))``: the mean squared error over
    pixels and channels, pixels in [0, 255], between the network's output for a photo
    ``x`` and the stylized target ``y`` of that photo (made beforehand by optimization,
    :func:`nst_tf.optimize.stylize_files`), plus :func:`nst_tf.losses.total_variation_loss`.
    No loss network is involved: the objective asks for the optimized image itself, not
    for its features.  Metrics ``pixel_loss`` and ``tv_loss`` (weighted) add up to ``loss``.

    Args:
        transformer: single-style TransformerNet (or any Keras model from and to the pixel contract).
        tv_weight: float >= 0. Defaults to 0.
        **kwargs: ``keras.Model`` arguments.

    Call arguments:
        inputs: float32 ``[B, H, W, 3]`` photos, RGB in [0, 255].

    Raises:
        ConfigError: a negative or non-finite `tv_weight`.
    """

    def __init__(self, transformer, tv_weight=0.0, **kwargs):
        super().__init__(**kwargs)
        if not (isinstance(tv_weight, (int, float, np.floating)) and math.isfinite(tv_weight) and tv_weight >= 0):
            raise ConfigError(f"`tv_weight` must be a finite number >= 0. Received: tv_weight={tv_weight}")
        self.transformer = transformer
        self.tv_weight = float(tv_weight)
        self.pixel_tracker = keras.metrics.Mean(name="pixel_loss")
        self.tv_tracker = keras.metrics.Mean(name="tv_loss")

    def call(self, inputs, training=False):
        return self.transformer(inputs, training=training)

    def pixel_losses(self, stylized, targets):
        """Weighted loss terms: dict of float32 scalars ``pixel``, ``tv`` and ``total``."""
        stylized = tf.cast(stylized, tf.float32)
        pixel = tf.reduce_mean(tf.square(stylized - tf.cast(targets, tf.float32)))
        tv = self.tv_weight * losses.total_variation_loss(stylized)
        return {"pixel": pixel, "tv": tv, "total": pixel + tv}

    def train_step(self, data):
        return _reducible_logs(super().train_step(data))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        terms = self.pixel_losses(y_pred, y)
        self.pixel_tracker.update_state(terms["pixel"])
        self.tv_tracker.update_state(terms["tv"])
        return terms["total"] / tf.distribute.get_strategy().num_replicas_in_sync


def style_loss_of_photos(trainer, photos):
    """Unweighted style loss of unstylized photos against each style: the scale of each style's Gram matrices.

    Styles differ by orders of magnitude here (a saturated, high-contrast painting has
    large Gram entries), so one shared style weight under-stylizes some styles and
    washes out others; :func:`balanced_style_weights` divides by this.

    Args:
        trainer: FastStyleTrainer.
        photos: float32 ``[B, H, W, 3]`` in [0, 255].

    Returns:
        np.ndarray float64 ``[N]``: the mean over photos of ``sum_l w_l E_l`` per style; 0 for
        styles whose weight is 0 (the photo style).
    """
    photos = tf.convert_to_tensor(photos, tf.float32)
    features = trainer.extractor(photos)
    count = int(trainer.style_weights.shape[0])
    result = np.zeros(count)
    for name in trainer.style_layers:
        gram = losses.gram_matrix(features[name])[:, None]  # [B, 1, C, C]
        error = tf.reduce_mean(tf.square(gram - trainer.style_grams[name][None]), axis=[0, 2, 3]) / 4.0
        result += trainer.style_layer_weights[name] * error.numpy()
    return np.where(trainer.style_weights.numpy() > 0, result, 0.0)  # The photo style has no target.


def balanced_style_weights(photo_losses, style_weight, reference=None):
    """Per-style weights that give every style the same weighted style loss on photos.

    ``w_s = style_weight * L_ref / L_s`` with ``L_s`` from :func:`style_loss_of_photos`
    and ``L_ref`` the median over styles (or `reference`): the median style keeps
    `style_weight`, a style with larger Gram matrices gets proportionally less.

    Args:
        photo_losses: sequence of float, one per style; 0 (the photo style) gets weight 0.
        style_weight: float >= 0.
        reference: float > 0 or None (the median of the non-zero losses).

    Returns:
        list of float, one per style.
    """
    values = np.asarray(photo_losses, np.float64)
    positive = values[values > 0]
    if reference is None:
        reference = float(np.median(positive)) if positive.size else 1.0
    return [float(style_weight * reference / value) if value > 0 else 0.0 for value in values]


def _check_output(path):
    """Fails in a second, not after hours, when the model file cannot be written."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise ConfigError(f"--output is a folder; give a .keras file path. Received: output='{path}'")
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir() or not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"--output folder cannot be created or written ('{ancestor}'). Received: output='{path}'")
    return path


def save_transformer(model, path):
    """Saves a TransformerNet as ``.keras`` atomically (temporary file, then ``os.replace``).

    A model trained under a mixed precision policy is saved with the float32 policy.

    Args:
        model: TransformerNet.
        path: str or path-like ending in ``.keras``; missing folders are created.

    Returns:
        pathlib.Path of the file.
    """
    path, model = pathlib.Path(path), with_dtype_policy(model, "float32")
    with files.atomic_path(path) as temp:
        model.save(temp)
    return path


class TransformerCheckpoint(keras.callbacks.Callback):
    """Saves the trainer's TransformerNet atomically at the end of every (Keras) epoch.

    ``keras.callbacks.ModelCheckpoint`` would save the whole trainer with its loss
    network; this saves only the network that is deployed.

    Args:
        path: str. ``.keras`` file, overwritten each time.
        describe: optional callable ``progress -> dict``, the metadata of the run so far
            (``progress`` holds ``steps``, ``seconds``, ``images_per_second`` and
            ``history`` as :func:`train` returns them). The checkpoint then carries it,
            marked ``"in_progress": True``, so a run stopped early leaves a network that
            says how it was trained.
        batch_size: int, global batch, for ``images_per_second``.
    """

    def __init__(self, path, describe=None, batch_size=1):
        super().__init__()
        self.path = path
        self.describe = describe
        self.batch_size = batch_size

    def on_train_begin(self, logs=None):
        self._start = time.perf_counter()
        self._first_step = int(self.model.optimizer.iterations.numpy())
        self._history = {}

    def on_epoch_end(self, epoch, logs=None):
        transformer = self.model.transformer
        if self.describe is None:
            save_transformer(transformer, self.path)
            return
        for key, value in (logs or {}).items():
            self._history.setdefault(key, []).append(float(value))
        steps, seconds = int(self.model.optimizer.iterations.numpy()), time.perf_counter() - self._start
        progress = {"steps": steps, "seconds": seconds, "history": self._history,
                    "images_per_second": (steps - self._first_step) * self.batch_size / seconds}
        original = transformer.metadata  # The final metadata is built from the initial one.
        transformer.metadata = {**self.describe(progress), "in_progress": True}
        try:
            save_transformer(transformer, self.path)
        finally:
            transformer.metadata = original


class StopAtStep(keras.callbacks.Callback):
    """Ends ``fit`` once the optimizer has made `steps` steps, also in the middle of a Keras epoch.

    :func:`train` runs epochs of ``save_every`` steps, the granularity at which
    ``BackupAndRestore`` resumes; this cuts the last one short, so that a run, resumed
    or not, ends at exactly `steps`.  Keras 3's ``fit`` reads ``model.stop_training``
    after every batch's callbacks (``keras/src/backend/tensorflow/trainer.py``); a
    callback with its own ``on_train_batch_end`` is run synchronously, so the flag is
    set before that check.

    Args:
        steps: int. The run's total optimizer steps (``optimizer.iterations``).

    Attributes:
        first_step: int or None. ``optimizer.iterations`` before this ``fit`` call's
            first batch (after a restore); None until then.
    """

    def __init__(self, steps):
        super().__init__()
        self.steps = steps
        self.first_step = None

    def on_train_batch_begin(self, batch, logs=None):
        if self.first_step is None:
            self.first_step = int(self.model.optimizer.iterations.numpy())

    def on_train_batch_end(self, batch, logs=None):
        if int(self.model.optimizer.iterations.numpy()) >= self.steps:
            self.model.stop_training = True


class SampleImages(keras.callbacks.Callback):
    """Writes stylized sample photos to TensorBoard (``tf.summary.image``) and as PNG files.

    Args:
        log_dir: str. TensorBoard folder; PNGs go to ``log_dir/samples/step_XXXXXX.png``.
        photos: float32 ``[N, H, W, 3]`` in [0, 255], shown side by side with their outputs.
        num_styles: int or None. For a multi-style network, one row of outputs per style
            (written as JPEG; no TensorBoard images).
    """

    def __init__(self, log_dir, photos, num_styles=None):
        super().__init__()
        self.log_dir = log_dir
        self.photos = np.asarray(photos, np.float32)
        self.num_styles = num_styles
        self.writer = None
        if importlib.util.find_spec("tensorboard") is not None:
            self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "samples"))

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
        if self.num_styles:  # One row per style.
            rows = [np.asarray(self.model.transformer(self.photos, style=tf.fill([len(self.photos)], k),
                                                      training=False)) for k in range(self.num_styles)]
            grid = np.concatenate([np.concatenate(list(self.photos), axis=1)] + [
                np.concatenate(list(row), axis=1) for row in rows])
            images.save_image(grid, os.path.join(self.log_dir, "samples", f"step_{step:06d}.jpg"))
            return
        stylized = np.asarray(self.model.transformer(self.photos, training=False))
        if self.writer is not None:
            with self.writer.as_default():
                tf.summary.image("stylized", stylized / 255.0, step=step, max_outputs=len(stylized))
            self.writer.flush()
        grid = np.concatenate([np.concatenate(list(self.photos), axis=1), np.concatenate(list(stylized), axis=1)])
        images.save_image(grid, os.path.join(self.log_dir, "samples", f"step_{step:06d}.png"))


def _strategy(name):
    if name == "mirrored":
        # All GPUs; without GPUs every logical CPU device (MirroredStrategy would take one CPU).
        devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
        return tf.distribute.MirroredStrategy([device.name for device in devices])
    if name == "multi-worker":
        return _multi_worker_strategy()
    return tf.distribute.get_strategy()


WORKER_TIMEOUT_ENV = "NST_TF_WORKER_TIMEOUT"
"""Environment variable: seconds a multi-worker run waits for every worker of ``TF_CONFIG`` (default 300)."""


def _multi_worker_strategy():
    """MultiWorkerMirroredStrategy from ``TF_CONFIG``, or ConfigError when a worker does not answer in time.

    Creating the strategy blocks, without a deadline and holding the interpreter, until
    every worker has registered with the chief. So the workers first meet on their own
    ``TF_CONFIG`` ports: each listens on its port and connects to every other one, and
    creates the strategy once all have answered (TensorFlow's server then takes the
    port over), or raises after ``NST_TF_WORKER_TIMEOUT`` seconds.
    """
    import json
    import socket

    timeout = float(os.environ.get(WORKER_TIMEOUT_ENV) or 300)
    text = os.environ.get("TF_CONFIG", "")
    try:
        tf_config = json.loads(text)
        task = tf_config["task"]
        addresses = [a for job in tf_config["cluster"].values() for a in job]
        own = tf_config["cluster"][task["type"]][int(task["index"])]
    except (ValueError, KeyError, TypeError, IndexError):
        raise ConfigError(f"--strategy multi-worker needs TF_CONFIG with a cluster and this worker's task, e.g. "
                          f'{{"cluster": {{"worker": ["host1:12345", "host2:12345"]}}, "task": {{"type": "worker", '
                          f'"index": 0}}}}. Received: TF_CONFIG={text!r}') from None
    host, port = own.rsplit(":", 1)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        try:
            listener.bind((host, int(port)))
        except OSError:  # A name of this machine that is not one of its interfaces' addresses.
            listener.bind(("", int(port)))
        listener.listen(16)
        missing = [a for a in addresses if a != own]
        deadline = time.monotonic() + timeout
        while missing and time.monotonic() < deadline:
            for address in list(missing):
                peer_host, peer_port = address.rsplit(":", 1)
                try:
                    socket.create_connection((peer_host, int(peer_port)), timeout=1.0).close()
                    missing.remove(address)
                except OSError:
                    pass
            if missing:
                time.sleep(0.2)
    except OSError as error:
        raise ConfigError(f"Cannot listen on this worker's TF_CONFIG address ({error.strerror or error}). "
                          f"Received: address='{own}'") from None
    finally:
        listener.close()
    if missing:
        raise ConfigError(f"Worker {', '.join(missing)} did not answer within {timeout:g} s: start every worker "
                          f"listed in TF_CONFIG (same cluster, its own task index) and check the addresses and "
                          f"firewalls; {WORKER_TIMEOUT_ENV} sets the wait. Received: TF_CONFIG={text!r}")
    return tf.distribute.MultiWorkerMirroredStrategy()


def train(config, callbacks=(), verbose="auto"):
    """Trains a TransformerNet as `config` says and saves it to ``config.output``.

    Rerunning with the same ``backup_dir`` after an interruption resumes from the
    last backup (at most ``save_every`` steps lost); the output is written only at
    the end, atomically.

    Args:
        config: TrainConfig.
        callbacks: extra ``keras.callbacks.Callback`` objects.
        verbose: Keras ``fit`` verbosity; ``"auto"`` is a progress bar on a terminal
            and one line per ``save_every`` steps otherwise (log files).

    Returns:
        dict with ``output`` (path), ``steps`` (the optimizer's, exactly
        :meth:`TrainConfig.total_steps`), ``seconds`` (wall time of ``fit``),
        ``images_per_second``, ``photos``, ``skipped`` (unreadable files) and
        ``history`` (Keras metrics per ``save_every`` steps; the last entry may cover fewer).

    Raises:
        ConfigError, ImageError, WeightsError: bad settings or files, before training.
        NstError: the loss became NaN or infinite.
    """
    output = _check_output(config.output)
    checkpoint = os.path.join(config.checkpoint_dir, "transformer.keras") if config.checkpoint_dir else None
    files.check_outputs_spare_inputs([output, *filter(None, [checkpoint])], [*config.styles, config.init_model])
    photos = data.scan_photos(config.data)
    pairs = data.target_pairs(photos.files, config.targets, config.image_size) if config.objective == "pixel" else None
    if config.backup_dir:  # Resume only the same run; the folder is deleted when the run completes.
        settings = files.run_settings(config, ignore=("output", "backup_dir", "log_dir", "checkpoint_dir", "strategy"),
                                      digest=("style", "init_model", "add_style"), paths=("data", "targets"))
        files.check_backup_folder(config.backup_dir, settings, keep=[config.data, *config.styles, config.init_model,
                                                                     output, config.log_dir, checkpoint,
                                                                     config.targets])
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    strategy = _strategy(config.strategy)
    policy = "mixed_bfloat16" if config.mixed_precision else None
    with strategy.scope():
        if config.objective == "pixel":
            transformer, trainer, added, photo_losses = _pixel_trainer(config, policy)
        else:
            transformer, trainer, added, photo_losses = _perceptual_trainer(config, photos, policy)
    if config.objective == "pixel":
        dataset = data.pair_dataset(pairs, config.image_size, config.batch_size, seed=config.seed, flip=config.flip)
    else:
        dataset = data.photo_dataset(photos.files, config.image_size, config.batch_size, seed=config.seed,
                                     flip=config.flip)
    if transformer.num_styles:
        dataset = data.with_random_styles(dataset, transformer.num_styles, seed=config.seed,
                                          choices=None if added is None else [added])
    steps = config.total_steps(len(photos.files))
    chunk = min(config.save_every, steps)
    stop = StopAtStep(steps)  # The last Keras epoch may be shorter than `chunk`.
    all_callbacks = [keras.callbacks.TerminateOnNaN(), stop]
    if config.backup_dir:
        all_callbacks.append(keras.callbacks.BackupAndRestore(config.backup_dir, double_checkpoint=True))
    if config.checkpoint_dir:
        def describe(progress):
            result = {**progress, "photos": len(photos.files)}
            if added is None:
                return training_metadata(config, trainer, result, photo_losses)
            return added_style_metadata(transformer, config, trainer, result, photo_losses)

        all_callbacks.append(TransformerCheckpoint(checkpoint, describe, config.batch_size))
    if config.log_dir:
        samples = data.center_crops(photos.files[::max(1, len(photos.files) // 3)][:3], config.image_size)
        if importlib.util.find_spec("tensorboard") is None:  # tf.summary needs the tensorboard package.
            logger.warning("TensorBoard is not installed (pip install tensorboard): writing PNG samples only.")
        else:
            all_callbacks.append(keras.callbacks.TensorBoard(config.log_dir, write_graph=False))
        all_callbacks.append(SampleImages(config.log_dir, samples, transformer.num_styles))
    all_callbacks.extend(callbacks)
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    start = time.perf_counter()
    try:
        history = trainer.fit(dataset, epochs=math.ceil(steps / chunk), steps_per_epoch=chunk,
                              callbacks=all_callbacks, verbose=verbose, shuffle=False)  # photo_dataset shuffles.
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError) as error:
        if config.strategy != "multi-worker":
            raise
        resume = "each resumes from its --backup-dir" if config.backup_dir else "without --backup-dir they start over"
        raise NstError(f"A worker of the cluster stopped answering ({type(error).__name__}); restart every worker "
                       f"with the same command ({resume}). Received: strategy='multi-worker'") from None
    seconds = time.perf_counter() - start
    done = int(trainer.optimizer.iterations.numpy())
    if not all(np.all(np.isfinite(w)) for w in transformer.get_weights()):
        raise NstError(f"Training diverged (NaN or infinite loss) after {done} steps; lower --learning-rate "
                       f"or the loss weights. Received: learning_rate={config.learning_rate}")
    run_steps = done - (done if stop.first_step is None else stop.first_step)  # This call's steps, after a resume.
    result = {"output": str(output), "steps": done, "seconds": seconds,
              "images_per_second": run_steps * config.batch_size / seconds if seconds else float("nan"),
              "photos": len(photos.files), "skipped": len(photos.skipped), "history": history.history}
    if added is None:
        transformer.metadata = training_metadata(config, trainer, result, photo_losses)
    else:
        transformer.metadata = added_style_metadata(transformer, config, trainer, result, photo_losses)
    save_transformer(transformer, output)
    return result


def _perceptual_trainer(config, photos, policy):
    """The FastStyleTrainer of a perceptual run, built and compiled (inside the strategy's scope).

    Returns:
        ``(transformer, trainer, added, photo_losses)``: ``added`` is the index of an added
        style (None otherwise), ``photo_losses`` the calibration losses of balanced or added styles.
    """
    extractor = FeatureExtractor(sum(DEFAULT_LAYERS[config.loss_network], ()), backbone=config.loss_network,
                                 weights=config.loss_weights_file, dtype=policy)
    styles = [_load_style(path, extractor, config.style_size) for path in config.styles]
    if config.image_size < extractor.min_input_size:
        raise ConfigError(f"--image-size must be at least {extractor.min_input_size} for {config.loss_network}. "
                          f"Received: image_size={config.image_size}")
    added = None
    if config.add_style:
        base = load_transformer(config.init_model, dtype=policy)
        name = config.style_names[0] if config.style_names else pathlib.Path(config.add_style).stem
        transformer = with_added_style(base, name)
        added = transformer.num_styles - 1
        for block, _ in transformer.norm_layers():  # Only the gamma/beta tables train.
            block.conv.trainable = False
        transformer.head.trainable = False
        styles = [None] * added + styles
    elif config.init_model:
        transformer = load_transformer(config.init_model, dtype=policy)
        styles = styles + [None] if config.photo_style else styles
        if transformer.num_styles and config.names() != list(transformer.style_names):
            # Each style image trains the row of its position: a different order would retrain the wrong rows.
            raise ConfigError(f"The style images must be the --init-model network's styles, in its order: "
                              f"{', '.join(transformer.style_names)}. Received: {', '.join(config.names())}")
    elif config.multi_style:
        transformer = TransformerNet(width_multiplier=config.width_multiplier,
                                     num_residual_blocks=config.num_residual_blocks, style_names=config.names(),
                                     dtype=policy)
        styles = styles + [None] if config.photo_style else styles
    else:
        transformer = TransformerNet(width_multiplier=config.width_multiplier,
                                     num_residual_blocks=config.num_residual_blocks, dtype=policy)
    style_weight = config.style_weight
    photo_losses = None
    if added is not None:
        style_weight, photo_losses = _added_style_weight(transformer, styles, extractor, photos, config)
    elif config.balance_style_weights:
        photo_losses = _calibration_losses(transformer, styles, extractor, photos, config.image_size)
        base = DEFAULT_LOSS_WEIGHTS[config.loss_network][1] if style_weight is None else style_weight
        style_weight = balanced_style_weights(photo_losses, base)
    trainer = FastStyleTrainer(transformer, styles if transformer.num_styles else styles[0],
                               content_weight=config.content_weight, style_weight=style_weight,
                               tv_weight=config.tv_weight, saturation_weight=config.saturation_weight,
                               droplet_weight=config.droplet_weight,
                               feature_extractor=extractor)
    trainer.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    probe_batch = tf.zeros((1, config.image_size, config.image_size, 3))
    if transformer.num_styles:  # BackupAndRestore needs it built.
        trainer({"images": probe_batch, "style": tf.zeros([1], tf.int32)})
    else:
        trainer(probe_batch)
    return transformer, trainer, added, photo_losses


def _pixel_trainer(config, policy):
    """The PixelTrainer of a ``pixel`` run, built and compiled (inside the strategy's scope)."""
    if config.init_model:
        transformer = load_transformer(config.init_model, dtype=policy)
        if transformer.num_styles:
            raise ConfigError(f"--objective pixel trains a single-style network; --init-model has "
                              f"{transformer.num_styles} styles. Received: init_model='{config.init_model}'")
    else:
        transformer = TransformerNet(width_multiplier=config.width_multiplier,
                                     num_residual_blocks=config.num_residual_blocks, dtype=policy)
    trainer = PixelTrainer(transformer, tv_weight=config.tv_weight or 0.0)
    trainer.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
    trainer(tf.zeros((1, config.image_size, config.image_size, 3)))  # BackupAndRestore needs it built.
    return transformer, trainer, None, None


def _calibration_losses(transformer, styles, extractor, photos, image_size, style_weight=None):
    """:func:`style_loss_of_photos` of each style on centre crops of 16 photos spread over the folder."""
    probe = FastStyleTrainer(transformer, styles if transformer.num_styles else styles[0], style_weight=style_weight,
                             feature_extractor=extractor)
    calibration = data.center_crops(photos.files[:: max(1, len(photos.files) // 16)][:16], image_size)
    return style_loss_of_photos(probe, calibration)


def _added_style_weight(transformer, styles, extractor, photos, config):
    """Style weights ``[0, ..., 0, w]`` for a style added to `transformer`, and the photo losses.

    The network's metadata holds each trained style's weight and photo style loss; a
    balanced network has ``w_s * L_s`` equal for all styles, so the new style gets
    ``w = median(w_s * L_s) / L_new``.  Without that metadata, ``--style-weight`` (or
    the loss network's default) is used as is.
    """
    count = transformer.num_styles
    base = DEFAULT_LOSS_WEIGHTS[config.loss_network][1] if config.style_weight is None else config.style_weight
    weights = [0.0] * (count - 1) + [base]
    losses_now = _calibration_losses(transformer, styles, extractor, photos, config.image_size, weights)
    products = [entry["style_weight"] * entry["photo_style_loss"]
                for entry in transformer.metadata.get("styles", {}).values()
                if entry.get("style_weight") and entry.get("photo_style_loss")]
    if products and config.style_weight is None and losses_now[-1] > 0:
        weights[-1] = float(np.median(products) / losses_now[-1])
    return weights, losses_now


def added_style_metadata(transformer, config, trainer, result, photo_losses):
    """The extended network's metadata: the base network's, plus the added style and its run."""
    metadata = transformer.metadata
    name = transformer.style_names[-1]
    entry = {"image": config.add_style, "style_weight": float(trainer.style_weights.numpy()[-1])}
    if photo_losses is not None:
        entry["photo_style_loss"] = float(photo_losses[-1])
    metadata.setdefault("styles", {})[name] = entry
    metadata.setdefault("added_styles", []).append({"name": name, "config": dataclasses.asdict(config),
                                                    **_run_record(result)})
    return metadata


def training_metadata(config, trainer, result, photo_losses=None):
    """What a trained network keeps about its training run (saved in ``TransformerNet.metadata``).

    Enough to repeat the exact run: every :class:`TrainConfig` field, the loss network's
    layers and weights, each style's image and weight, and the run's steps, wall time,
    throughput and final losses.

    Returns:
        JSON-serializable dict.
    """
    if isinstance(trainer, PixelTrainer):
        return _pixel_training_metadata(config, trainer, result)
    content_weight, _, tv_weight = trainer.loss_weights
    names = list(trainer.transformer.style_names or [pathlib.Path(config.styles[0]).stem])
    paths = list(config.styles) + [None] * (len(names) - len(config.styles))
    weights = [float(w) for w in trainer.style_weights.numpy()]
    styles = {}
    for index, name in enumerate(names):
        styles[name] = {"image": paths[index], "style_weight": weights[index]}
        if photo_losses is not None:
            styles[name]["photo_style_loss"] = float(photo_losses[index])
    return {
        "format": 1,
        "training": {
            "config": dataclasses.asdict(config),
            "loss_network": trainer.extractor.backbone,
            "content_layers": list(trainer.content_layers),
            "style_layers": list(trainer.style_layers),
            "style_layer_weights": dict(trainer.style_layer_weights),
            "content_weight": content_weight, "tv_weight": tv_weight, "saturation_weight": trainer.saturation_weight,
            "droplet_weight": trainer.droplet_weight,
            **_run_record(result), "photos": int(result["photos"]), **_previous_training(config, trainer),
        },
        "styles": styles,
    }


def _pixel_training_metadata(config, trainer, result):
    """:func:`training_metadata` of a ``pixel`` run: its settings (objective, targets), TV weight and run."""
    return {
        "format": 1,
        "training": {
            "config": dataclasses.asdict(config),
            "objective": config.objective, "targets": config.targets, "tv_weight": trainer.tv_weight,
            **_run_record(result), "photos": int(result["photos"]), **_previous_training(config, trainer),
        },
        "styles": {pathlib.Path(config.styles[0]).stem: {"image": config.styles[0]}},
    }


def _run_record(result):
    """What every training record keeps of one ``fit`` call: steps, wall time, throughput, final losses."""
    history = result.get("history", {})
    return {"steps": int(result["steps"]), "seconds_this_run": float(result["seconds"]),
            "images_per_second": float(result["images_per_second"]),
            "final_losses": {key: float(values[-1]) for key, values in history.items() if values}}


def _previous_training(config, trainer):
    """``{"init_model_training": ...}``, the training record of the network a run started from, or ``{}``."""
    previous = dict(trainer.transformer.metadata.get("training", {})) if config.init_model else {}
    return {"init_model_training": previous} if previous else {}


def _load_style(path, extractor, style_size):
    style = images.load_image(path, min_size=extractor.min_input_size)
    if style_size and max(style.shape[1:3]) > style_size:  # Only ever downscaled.
        style = images.resize_longest_side(style, style_size)
    return style
