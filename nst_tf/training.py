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
"""

import dataclasses
import importlib.util
import logging
import math
import os
import pathlib
import sys
import time
from typing import Optional

import keras
import numpy as np
import tensorflow as tf

from nst_tf import backbones, data, files, images, losses
from nst_tf.errors import ConfigError, ImageError, NstError
from nst_tf.features import FeatureExtractor
from nst_tf.transformer import TransformerNet, load_transformer

# Johnson 2016 sec. 4.1: content relu2_2; style relu1_2, relu2_2, relu3_3, relu4_3 (Keras names).
_VGG_LAYERS = (("block2_conv2",), ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3"))
DEFAULT_LAYERS = {
    "vgg16": _VGG_LAYERS,
    "vgg19": _VGG_LAYERS,
    # An early fire module keeps content detail; style from conv1 up to fire7 spans
    # fine to coarse texture (the CS231n SqueezeNet style transfer choice).
    "squeezenet1_1": (("fire3",), ("conv1", "fire2", "fire3", "fire5", "fire7")),
}
"""``{loss_network: (content_layers, style_layers)}``."""

# Johnson normalizes each Gram matrix by C*H*W; nst_tf.losses divides by H*W only, so
# Johnson's balance is equal to per-layer weights proportional to 1 / C_l^2 (VGG: 64, 128,
# 256, 512 channels).  Style weight 4e-2 restates pytorch/examples' 1e5 : 1e10 (torchvision
# [0, 1] normalized input) in these units (Caffe-preprocessed [0, 255] input, 58x larger).
_VGG_LAYER_WEIGHTS = dict(zip(_VGG_LAYERS[1], np.array([64.0, 128, 256, 512]) ** -2 / (
    np.array([64.0, 128, 256, 512]) ** -2).sum()))
DEFAULT_STYLE_LAYER_WEIGHTS = {"vgg16": _VGG_LAYER_WEIGHTS, "vgg19": _VGG_LAYER_WEIGHTS, "squeezenet1_1": None}
"""``{loss_network: {layer: w_l} or None}``; None is equal weights."""

DEFAULT_LOSS_WEIGHTS = {
    "vgg16": (1.0, 4e-2, 1e-2),
    "vgg19": (1.0, 4e-2, 1e-2),
    # Tuned on BSDS500 with the SqueezeNet v1.1 ImageNet weights (saved_models/starry_night/README.md).
    "squeezenet1_1": (1.0, 5e-3, 5.0),
}
"""``{loss_network: (content_weight, style_weight, tv_weight)}``."""

STRATEGIES = ("default", "mirrored", "multi-worker")
logger = logging.getLogger(__name__)


class FastStyleTrainer(keras.Model):
    """A TransformerNet trained with Johnson et al.'s perceptual loss.

    ``loss = content_weight * L_content + style_weight * L_style + tv_weight * L_tv``
    with :func:`nst_tf.losses.content_loss` (mean over content layers),
    :func:`nst_tf.losses.style_loss` against the style image's Gram matrices and
    :func:`nst_tf.losses.total_variation_loss`.  Each weighted term is a metric
    (``content_loss``, ``style_loss``, ``tv_loss``; they add up to ``loss``).
    Only the transformer is trainable.  Call it like the transformer.

    Args:
        transformer: TransformerNet (or any Keras model from and to the pixel contract).
        style_image: array-like ``[1, H, W, 3]`` or ``[H, W, 3]``, RGB in [0, 255].
        loss_network: str. ``"vgg16"`` (Johnson's), ``"vgg19"`` or ``"squeezenet1_1"``.
            Defaults to ``"vgg16"``.
        loss_weights: ``"imagenet"``, a weights file path, or None (seeded random) for
            the loss network. Defaults to ``"imagenet"``.
        content_layers, style_layers: sequence of layer names; None takes ``DEFAULT_LAYERS``.
        style_layer_weights: dict ``{layer: w_l}``; None takes
            ``DEFAULT_STYLE_LAYER_WEIGHTS`` (equal weights for custom layers).
        content_weight, style_weight, tv_weight: float >= 0; None takes ``DEFAULT_LOSS_WEIGHTS``.
        feature_extractor: optional prebuilt FeatureExtractor covering all the layers
            (shares one loss network between trainers); overrides the three above.
        **kwargs: ``keras.Model`` arguments.

    Raises:
        ConfigError: unknown network or layer, negative weight.
        WeightsError: loss network weights missing or wrong.
        ImageError: style image smaller than the loss network needs.
    """

    def __init__(self, transformer, style_image, loss_network="vgg16", loss_weights="imagenet",
                 content_layers=None, style_layers=None, style_layer_weights=None, content_weight=None,
                 style_weight=None, tv_weight=None, feature_extractor=None, **kwargs):
        super().__init__(**kwargs)
        if feature_extractor is not None:
            loss_network = feature_extractor.backbone
        default_content, default_style = DEFAULT_LAYERS[backbones.get_spec(loss_network).name]
        custom_style = style_layers is not None
        self.content_layers = tuple(content_layers or default_content)
        self.style_layers = tuple(style_layers or default_style)
        if style_layer_weights is None and not custom_style:
            style_layer_weights = DEFAULT_STYLE_LAYER_WEIGHTS[loss_network]
        self.style_layer_weights = None if style_layer_weights is None else {
            name: float(style_layer_weights[name]) for name in self.style_layers}
        defaults = DEFAULT_LOSS_WEIGHTS[loss_network]
        given = (content_weight, style_weight, tv_weight)
        self.loss_weights = tuple(float(d if g is None else g) for g, d in zip(given, defaults))
        for name, value in zip(("content_weight", "style_weight", "tv_weight"), self.loss_weights):
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"`{name}` must be a finite number >= 0. Received: {name}={value}")
        self.transformer = transformer
        self.extractor = feature_extractor or FeatureExtractor(
            self.content_layers + self.style_layers, backbone=loss_network, weights=loss_weights)
        missing = [n for n in self.content_layers + self.style_layers if n not in self.extractor.layer_names]
        if missing:
            raise ConfigError(f"The feature extractor lacks layers {missing}. "
                              f"Received: feature_extractor layers={self.extractor.layer_names}")
        style = tf.convert_to_tensor(style_image, tf.float32)
        style = style[None] if style.shape.rank == 3 else style
        if min(style.shape[1], style.shape[2]) < self.extractor.min_input_size:
            raise ImageError(
                f"Style image is too small for the {loss_network} loss network: its shorter side must be at "
                f"least {self.extractor.min_input_size} pixels. Received: shape={tuple(style.shape)}")
        features = self.extractor(style)
        # Computed once (Johnson 2016 sec. 3.2); constants, so they are neither trained nor saved.
        self.style_grams = {name: tf.constant(losses.gram_matrix(features[name])) for name in self.style_layers}
        self.content_tracker = keras.metrics.Mean(name="content_loss")
        self.style_tracker = keras.metrics.Mean(name="style_loss")
        self.tv_tracker = keras.metrics.Mean(name="tv_loss")

    def call(self, images, training=False):
        return self.transformer(images, training=training)

    def perceptual_losses(self, photos, stylized):
        """Weighted loss terms of a batch.

        Args:
            photos: float32 ``[B, H, W, 3]`` content photos, RGB in [0, 255].
            stylized: float32 ``[B, H, W, 3]`` transformer output for `photos`.

        Returns:
            dict of float32 scalars ``content``, ``style``, ``tv`` (weighted) and ``total``.
        """
        batch = tf.shape(photos)[0]
        # One loss-network pass over photos and outputs together.
        features = self.extractor(tf.concat([tf.cast(photos, tf.float32), stylized], axis=0))
        generated = {name: value[batch:] for name, value in features.items()}
        content = tf.add_n([
            losses.content_loss(generated[name], tf.stop_gradient(features[name][:batch]))
            for name in self.content_layers]) / len(self.content_layers)
        style = losses.style_loss(generated, self.style_grams, self.style_layer_weights)
        tv = losses.total_variation_loss(stylized)
        content_weight, style_weight, tv_weight = self.loss_weights
        terms = {"content": content_weight * content, "style": style_weight * style, "tv": tv_weight * tv}
        terms["total"] = terms["content"] + terms["style"] + terms["tv"]
        return terms

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        terms = self.perceptual_losses(x, tf.cast(y_pred, tf.float32))
        self.content_tracker.update_state(terms["content"])
        self.style_tracker.update_state(terms["style"])
        self.tv_tracker.update_state(terms["tv"])
        # Keras sums gradients over replicas; each replica contributes its share.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        return terms["total"] / replicas


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run; each field is the ``scripts/train.py`` flag of that name.

    Attributes:
        style: path of the style image.
        data: folder of training photos (recursive).
        output: path of the trained TransformerNet, ``.keras``; written atomically at the end.
        steps: int or None. Optimizer steps, rounded up to a multiple of ``save_every``.
        epochs: float or None. Passes over the photos instead of ``steps``; neither given:
            2 epochs (Johnson 2016).
        batch_size: int. Global batch (split across replicas). Defaults to 4.
        image_size: int. Side of the square training crops, pixels. Defaults to 256.
        learning_rate: float. Adam step size. Defaults to 1e-3 (Johnson 2016).
        content_weight, style_weight, tv_weight: float or None (``DEFAULT_LOSS_WEIGHTS``).
        loss_network: ``vgg16`` (default), ``vgg19`` or ``squeezenet1_1``.
        loss_weights_file: ``"imagenet"`` or a weights file of the loss network.
        seed: int or None. Seeds Python, NumPy, TensorFlow and the data pipeline.
        strategy: ``default``, ``mirrored`` (all local devices) or ``multi-worker``
            (``TF_CONFIG`` cluster).
        backup_dir: folder for ``BackupAndRestore`` (resumes a killed run); None: none.
        log_dir: TensorBoard folder (losses, sample images; also PNG samples); None: none.
        style_size: int or None. Longest side of the style image, pixels; None keeps it.
        save_every: int. Steps between backups, checkpoints and logs. Defaults to 100.
        checkpoint_dir: folder for the latest TransformerNet checkpoint
            (``transformer.keras``, every ``save_every`` steps); None: none.
        init_model: optional ``.keras`` TransformerNet to start from (fine-tuning).
        mixed_precision: bool. Train under the ``mixed_bfloat16`` policy (the saved model
            is float32). Defaults to False.

    Raises:
        ConfigError: a value out of range, both or a bad `steps`/`epochs`, unknown
            strategy, an output path that is not ``.keras``.
    """

    style: str
    data: str
    output: str
    steps: Optional[int] = None
    epochs: Optional[float] = None
    batch_size: int = 4
    image_size: int = 256
    learning_rate: float = 1e-3
    content_weight: Optional[float] = None
    style_weight: Optional[float] = None
    tv_weight: Optional[float] = None
    loss_network: str = "vgg16"
    loss_weights_file: Optional[str] = "imagenet"
    seed: Optional[int] = 0
    strategy: str = "default"
    backup_dir: Optional[str] = None
    log_dir: Optional[str] = None
    style_size: Optional[int] = 512
    save_every: int = 100
    checkpoint_dir: Optional[str] = None
    init_model: Optional[str] = None
    mixed_precision: bool = False

    def __post_init__(self):
        backbones.get_spec(self.loss_network)
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}. "
                              f"Received: strategy={self.strategy!r}")
        if self.steps is not None and self.epochs is not None:
            raise ConfigError(f"Give --steps or --epochs, not both. Received: steps={self.steps}, epochs={self.epochs}")
        _require(self.steps is None or _int(self.steps, 1), "steps", self.steps, "an integer >= 1")
        _require(self.epochs is None or (_number(self.epochs) and self.epochs > 0), "epochs", self.epochs, "> 0")
        _require(_int(self.batch_size, 1), "batch_size", self.batch_size, "an integer >= 1")
        _require(_int(self.image_size, 16), "image_size", self.image_size, "an integer >= 16 (pixels)")
        _require(self.style_size is None or _int(self.style_size, 16), "style_size", self.style_size,
                 "an integer >= 16 (pixels)")
        _require(_int(self.save_every, 1), "save_every", self.save_every, "an integer >= 1")
        _require(_number(self.learning_rate) and self.learning_rate > 0, "learning_rate", self.learning_rate, "> 0")
        for name in ("content_weight", "style_weight", "tv_weight"):
            value = getattr(self, name)
            _require(value is None or (_number(value) and value >= 0), name, value, "a finite number >= 0")
        if pathlib.Path(self.output).suffix != ".keras":
            raise ConfigError(f"--output must be a .keras file path. Received: output={self.output!r}")

    def total_steps(self, num_photos):
        """Optimizer steps of the run, a multiple of ``save_every``."""
        steps = self.steps or math.ceil((self.epochs or 2) * num_photos / self.batch_size)
        return math.ceil(steps / self.save_every) * self.save_every


def _int(value, minimum):
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value >= minimum


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _require(ok, name, value, what):
    if not ok:
        raise ConfigError(f"--{name.replace('_', '-')} must be {what}. Received: {name}={value!r}")


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
    path = pathlib.Path(path)
    if model.dtype_policy.name != "float32":
        plain = TransformerNet.from_config({**model.get_config(), "dtype": "float32"})
        plain.build((None, None, None, 3))
        plain.set_weights(model.get_weights())
        model = plain
    with files.atomic_path(path) as temp:
        model.save(temp)
    return path


class TransformerCheckpoint(keras.callbacks.Callback):
    """Saves the trainer's TransformerNet atomically at the end of every (Keras) epoch.

    ``keras.callbacks.ModelCheckpoint`` would save the whole trainer with its loss
    network; this saves only the network that is deployed.

    Args:
        path: str. ``.keras`` file, overwritten each time.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path

    def on_epoch_end(self, epoch, logs=None):
        save_transformer(self.model.transformer, self.path)


class SampleImages(keras.callbacks.Callback):
    """Writes stylized sample photos to TensorBoard (``tf.summary.image``) and as PNG files.

    Args:
        log_dir: str. TensorBoard folder; PNGs go to ``log_dir/samples/step_XXXXXX.png``.
        photos: float32 ``[N, H, W, 3]`` in [0, 255], shown side by side with their outputs.
    """

    def __init__(self, log_dir, photos):
        super().__init__()
        self.log_dir = log_dir
        self.photos = np.asarray(photos, np.float32)
        self.writer = None
        if importlib.util.find_spec("tensorboard") is not None:
            self.writer = tf.summary.create_file_writer(os.path.join(log_dir, "samples"))

    def on_epoch_end(self, epoch, logs=None):
        step = int(self.model.optimizer.iterations.numpy())
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
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


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
        dict with ``output`` (path), ``steps``, ``seconds`` (wall time of ``fit``),
        ``images_per_second``, ``photos``, ``skipped`` (unreadable files) and
        ``history`` (Keras metrics per ``save_every`` steps).

    Raises:
        ConfigError, ImageError, WeightsError: bad settings or files, before training.
        NstError: the loss became NaN or infinite.
    """
    output = _check_output(config.output)
    checkpoint = os.path.join(config.checkpoint_dir, "transformer.keras") if config.checkpoint_dir else None
    files.check_outputs_spare_inputs([output, *filter(None, [checkpoint])], [config.style, config.init_model])
    photos = data.scan_photos(config.data)
    if config.backup_dir:  # Resume only the same run; the folder is deleted when the run completes.
        settings = files.run_settings(config, ignore=("output", "backup_dir", "log_dir", "checkpoint_dir", "strategy"),
                                      digest=("style", "init_model"), paths=("data",))
        files.check_backup_folder(config.backup_dir, settings, keep=[config.data, config.style, config.init_model,
                                                                     output, config.log_dir, checkpoint])
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    strategy = _strategy(config.strategy)
    policy = "mixed_bfloat16" if config.mixed_precision else None
    with strategy.scope():
        extractor = FeatureExtractor(sum(DEFAULT_LAYERS[config.loss_network], ()), backbone=config.loss_network,
                                     weights=config.loss_weights_file, dtype=policy)
        style = images.load_image(config.style, min_size=extractor.min_input_size)
        if config.style_size and max(style.shape[1:3]) > config.style_size:  # Only ever downscaled.
            style = images.resize_longest_side(style, config.style_size)
        if config.image_size < extractor.min_input_size:
            raise ConfigError(f"--image-size must be at least {extractor.min_input_size} for {config.loss_network}. "
                              f"Received: image_size={config.image_size}")
        if config.init_model:
            transformer = load_transformer(config.init_model, dtype=policy)
        else:
            transformer = TransformerNet(dtype=policy)
        trainer = FastStyleTrainer(transformer, style, content_weight=config.content_weight,
                                   style_weight=config.style_weight, tv_weight=config.tv_weight,
                                   feature_extractor=extractor)
        trainer.compile(optimizer=keras.optimizers.Adam(config.learning_rate))
        trainer(tf.zeros((1, config.image_size, config.image_size, 3)))  # BackupAndRestore needs it built.
    dataset = data.photo_dataset(photos.files, config.image_size, config.batch_size, seed=config.seed)
    steps = config.total_steps(len(photos.files))
    chunk = config.save_every
    all_callbacks = [keras.callbacks.TerminateOnNaN()]
    if config.backup_dir:
        all_callbacks.append(keras.callbacks.BackupAndRestore(config.backup_dir, double_checkpoint=True))
    if config.checkpoint_dir:
        all_callbacks.append(TransformerCheckpoint(os.path.join(config.checkpoint_dir, "transformer.keras")))
    if config.log_dir:
        samples = data.center_crops(photos.files[::max(1, len(photos.files) // 3)][:3], config.image_size)
        if importlib.util.find_spec("tensorboard") is None:  # tf.summary needs the tensorboard package.
            logger.warning("TensorBoard is not installed (pip install tensorboard): writing PNG samples only.")
        else:
            all_callbacks.append(keras.callbacks.TensorBoard(config.log_dir, write_graph=False))
        all_callbacks.append(SampleImages(config.log_dir, samples))
    all_callbacks.extend(callbacks)
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    start = time.perf_counter()
    history = trainer.fit(dataset, epochs=steps // chunk, steps_per_epoch=chunk, callbacks=all_callbacks,
                          verbose=verbose, shuffle=False)  # photo_dataset shuffles.
    seconds = time.perf_counter() - start
    done = int(trainer.optimizer.iterations.numpy())
    if not all(np.all(np.isfinite(w)) for w in transformer.get_weights()):
        raise NstError(f"Training diverged (NaN or infinite loss) after {done} steps; lower --learning-rate "
                       f"or the loss weights. Received: learning_rate={config.learning_rate}")
    save_transformer(transformer, output)
    run_steps = len(history.history.get("loss", [])) * chunk
    return {"output": str(output), "steps": done, "seconds": seconds,
            "images_per_second": run_steps * config.batch_size / seconds if seconds else float("nan"),
            "photos": len(photos.files), "skipped": len(photos.skipped), "history": history.history}
