"""StyleAugmentation: random stylization of training images, as a Keras preprocessing layer.

An ImageNet classifier leans on texture, so stylized copies of training images push a
model toward shape and content (Geirhos et al., "ImageNet-trained CNNs are biased
towards texture; increasing shape bias improves accuracy and robustness", ICLR 2019).
Jackson et al. ("Style Augmentation: Data Augmentation via Style Randomization", CVPR
Workshops 2019) do this on the fly with one feed-forward network whose style is a
random point of a style embedding, at a random strength.  Here the embedding is the
conditional instance normalization table of a multi-style
:class:`~nst_tf.transformer.TransformerNet` (Dumoulin, Shlens, Kudlur, "A Learned
Representation for Artistic Style", ICLR 2017): a random Dirichlet blend of its styles,
weakened toward its ``"photo"`` (identity) style by a random strength.
"""

import math
import os

import keras
import numpy as np
import tensorflow as tf

from nst_tf.config import MAX_STRENGTH, PHOTO_STYLE
from nst_tf.errors import ConfigError, ImageError
from nst_tf.inference import inference_graph
from nst_tf.stylizer import load_transformer
from nst_tf.transformer import TransformerNet

def _number(value):
    return not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(
        value)


@keras.saving.register_keras_serializable(package="nst_tf")
class StyleAugmentation(keras.layers.Layer):
    """Stylizes each image of a batch with a random blend of a multi-style network's styles.

    For each image, independently: with probability `rate` it is replaced by the
    network's output for style weights ``s * b + (1 - s) * photo``, where ``b`` is a
    Dirichlet(`concentration`) draw over the network's styles other than ``"photo"``
    (a random blend of their normalization parameters, Dumoulin et al. 2017 sec. 3),
    ``s`` a uniform draw from `strength` and ``photo`` the one-hot weights of the
    ``"photo"`` style (the network's identity; Jackson et al. 2019 interpolate toward
    the content image's own style embedding in the same way).  A network without a
    ``"photo"`` style has no identity to blend toward in weight space; there the output
    is blended in pixel space instead, ``s * network(x, b) + (1 - s) * x`` (then
    `strength` must lie in [0, 1]).  Other images pass unchanged; the network runs only
    on the images drawn, through its compiled inference graph
    (:func:`nst_tf.inference.inference_graph`, measured faster than the Keras call in a
    ``tf.function`` inside ``tf.data``: BENCHMARKS.md, ``augment-throughput``).

    Like Keras' own augmentation layers, the layer augments when called with
    ``training=True`` (``fit`` passes it; a direct call defaults to it) and returns its
    input unchanged with ``training=False`` (``predict``, ``evaluate``).  No gradient
    flows through it, and the network is frozen.

    Randomness: a ``keras.random.SeedGenerator(seed)`` gives every call a new seed, so
    two layers with the same `seed` produce the same sequence of outputs.  The draws of
    one call are a pure function of that seed (stateless random ops):
    :meth:`draw` returns them and :meth:`augment` applies them.  In ``tf.data`` with
    ``num_parallel_calls``, calls may take the generator's seeds in any order; for runs
    that repeat there, derive the seed from the element index:
    ``dataset.enumerate().map(lambda i, x: layer.augment(x, seed=tf.stack([7, i])))``.

    Serialization: the network is embedded.  ``get_config`` holds its configuration and
    a ``.keras`` file of a model containing the layer holds its weights (loads with
    ``safe_mode`` on once nst_tf is imported); a `network` given as a path is loaded
    once, at construction.

    Args:
        network: a multi-style :class:`~nst_tf.transformer.TransformerNet`, or the path
            of its ``.keras`` file.
        rate: float in [0, 1]. Probability that an image is stylized. Defaults to 0.5.
        strength: float, or ``(low, high)`` with ``0 <= low <= high``: the range of the
            uniform strength draw; 1 is the style as trained, 0 the photo. ``high`` is
            at most 2 (``nst_tf.config.MAX_STRENGTH``, extrapolating away from the
            photo), or 1 for a network without a ``"photo"`` style. Defaults to (0.5, 1.0).
        concentration: float > 0, or one float > 0 per style other than ``"photo"`` (in
            ``network.style_names`` order): the Dirichlet parameters. 1 draws blends
            uniformly over the simplex; small values give nearly single styles, large
            ones even mixes. Defaults to 1.0.
        value_range: ``(low, high)`` floats, ``low < high``: the range of the input and
            output pixels, as in Keras' augmentation layers. Defaults to (0, 255), the
            nst_tf pixel contract.
        seed: int or None (a random initial seed). Defaults to None.
        **kwargs: ``keras.layers.Layer`` arguments (``name``).

    Call arguments:
        images: float tensor ``[B, H, W, 3]`` or ``[H, W, 3]``, RGB in `value_range`,
            H and W >= 4.
        training: bool. Augment (True) or pass through (False). Defaults to True.

    Returns:
        tensor of the input's shape and dtype, in `value_range`.

    Raises:
        ConfigError: a bad argument (`rate` outside [0, 1], a reversed or out-of-range
            `strength`, a bad `concentration`, `value_range` or `seed`), or a network
            that is not multi-style or has no style besides ``"photo"``.
        WeightsError: `network` is a path that is not a loadable TransformerNet.
        ImageError: images that are not ``[B, H, W, 3]`` or ``[H, W, 3]``.
    """

    def __init__(self, network, rate=0.5, strength=(0.5, 1.0), concentration=1.0, value_range=(0.0, 255.0),
                 seed=None, **kwargs):
        super().__init__(**kwargs)
        # Pixels stay float32 whatever the global dtype policy: rounding them to bfloat16
        # would cost about one grey level before the network even runs.
        self._convert_input_args = False
        self._allow_non_tensor_positional_args = True
        if isinstance(network, (str, os.PathLike)):
            network = load_transformer(network)
        if not isinstance(network, TransformerNet):
            raise ConfigError(f"`network` must be a multi-style nst_tf TransformerNet or the path of its .keras file. "
                              f"Received: network of type {type(network).__name__}")
        if network.style_names is None:
            raise ConfigError("`network` must be a multi-style TransformerNet (trained with several styles); this one "
                              "has a single style, so there is nothing to blend. Received: a single-style network")
        names = list(network.style_names)
        self.styles = [name for name in names if name != PHOTO_STYLE]
        if not self.styles:
            raise ConfigError(f"`network` needs at least one style besides {PHOTO_STYLE!r}. "
                              f"Received: style_names={names}")
        self.has_photo = PHOTO_STYLE in names
        if not _number(rate) or not 0 <= rate <= 1:
            raise ConfigError(f"`rate` must be a probability in [0, 1]. Received: rate={rate!r}")
        self.rate = float(rate)
        self.strength = self._check_strength(strength)
        self.concentration = self._check_concentration(concentration)
        self.value_range = self._check_value_range(value_range)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ConfigError(f"`seed` must be an int or None. Received: seed={seed!r}")
        self.seed = None if seed is None else int(seed)
        self.network = network
        self._freeze()
        self.seed_generator = keras.random.SeedGenerator(self.seed, name=f"{self.name}_seed")
        style_index = [names.index(name) for name in self.styles]
        # [K, N]: scatters a blend over the K drawable styles into the network's N weights.
        self._to_weights = np.eye(len(names), dtype=np.float32)[style_index]
        self._photo = np.zeros(len(names), np.float32)
        if self.has_photo:
            self._photo[names.index(PHOTO_STYLE)] = 1.0

    # ------------------------------------------------------------------ arguments

    def _check_strength(self, strength):
        try:
            low, high = (strength, strength) if _number(strength) else strength
            valid = _number(low) and _number(high)
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise ConfigError(f"`strength` must be a number or a (low, high) pair of numbers. "
                              f"Received: strength={strength!r}")
        limit = MAX_STRENGTH if self.has_photo else 1.0
        if low > high:
            raise ConfigError(f"`strength` range is reversed: low must not exceed high. Received: strength={strength!r}")
        if low < 0 or high > limit:
            why = "" if self.has_photo else f" (the network has no {PHOTO_STYLE!r} style, so strength blends pixels)"
            raise ConfigError(f"`strength` must lie in [0, {limit:g}]{why}. Received: strength={strength!r}")
        return (float(low), float(high))

    def _check_concentration(self, concentration):
        count = len(self.styles)
        values = [concentration] if _number(concentration) else concentration
        try:
            values = [v for v in values]
            valid = all(_number(v) and v > 0 for v in values) and len(values) in (1, count)
        except TypeError:
            valid = False
        if not valid:
            raise ConfigError(f"`concentration` must be a number > 0 or {count} numbers > 0 (one per style besides "
                              f"{PHOTO_STYLE!r}: {', '.join(self.styles)}). Received: concentration={concentration!r}")
        return float(values[0]) if _number(concentration) else [float(v) for v in values]

    @staticmethod
    def _check_value_range(value_range):
        try:
            low, high = value_range
            valid = _number(low) and _number(high) and low < high
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise ConfigError(f"`value_range` must be (low, high) numbers with low < high, e.g. (0, 255) or (0, 1). "
                              f"Received: value_range={value_range!r}")
        return (float(low), float(high))

    # ------------------------------------------------------------------ Keras

    def build(self, input_shape):
        self.network.build((None, None, None, 3))
        self._freeze()  # Again: a deserialized network creates its variables only now.
        self.built = True

    def _freeze(self):
        # Each variable too: setting a Keras model's flag to the value it already holds (a
        # deserialized frozen network) does not reach its sublayers.
        self.network.trainable = False
        for variable in self.network.variables:
            variable.trainable = False

    @property
    def trainable(self):
        return keras.layers.Layer.trainable.fget(self)

    @trainable.setter
    def trainable(self, value):
        # The layer's own trainable flag (Keras sets it on load) must not unfreeze the network.
        keras.layers.Layer.trainable.fset(self, value)
        if getattr(self, "network", None) is not None:
            self._freeze()

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(network=keras.saving.serialize_keras_object(self.network), rate=self.rate,
                      strength=list(self.strength), concentration=self.concentration,
                      value_range=list(self.value_range), seed=self.seed)
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("network"), dict):
            config["network"] = keras.saving.deserialize_keras_object(config["network"])
        return cls(**config)

    def call(self, images, training=True):
        if isinstance(training, tf.Tensor):
            static = tf.get_static_value(training)
            if static is None:  # Decided only when the graph runs.
                return tf.cond(training, lambda: self.augment(images, self.seed_generator.next()),
                               lambda: tf.identity(images))
            training = bool(static)
        if not training:
            return images
        return self.augment(images, self.seed_generator.next())

    # ------------------------------------------------------------------ draws

    @staticmethod
    def _seed(seed):
        seed = tf.convert_to_tensor(seed)
        if seed.shape.rank == 0:
            seed = tf.stack([tf.cast(seed, tf.int64), tf.constant(0, tf.int64)])
        return tf.cast(seed, tf.int64)

    def draw(self, batch_size, seed):
        """What the layer draws for `batch_size` images and one seed (pure: same seed, same draw).

        Args:
            batch_size: int or scalar int tensor, B.
            seed: int, or int tensor ``[2]`` (what ``keras.random.SeedGenerator.next``
                gives, or ``tf.stack([a, b])``).

        Returns:
            dict of tensors: ``"apply"`` bool ``[B]`` (stylized or passed through),
            ``"strength"`` float32 ``[B]`` in `strength`, ``"blend"`` float32 ``[B, K]``
            (the Dirichlet draw over the K styles besides ``"photo"``, summing to 1) and
            ``"weights"`` float32 ``[B, N]``: the style weights the network is called with.
        """
        apply_seed, strength_seed, blend_seed = tf.unstack(
            tf.random.experimental.stateless_split(self._seed(seed), 3))
        shape = tf.reshape(tf.cast(batch_size, tf.int32), [1])
        apply = tf.random.stateless_uniform(shape, apply_seed) < self.rate
        low, high = self.strength
        strength = tf.random.stateless_uniform(shape, strength_seed, minval=low, maxval=high)
        alpha = tf.broadcast_to(tf.constant(self.concentration, tf.float32), [len(self.styles)])
        gamma = tf.random.stateless_gamma(tf.concat([shape, [len(self.styles)]], 0), blend_seed, alpha=alpha)
        # Tiny concentrations can underflow every Gamma draw to 0; the floor then gives an even blend, not NaN.
        gamma = tf.maximum(gamma, np.finfo(np.float32).tiny)
        blend = gamma / tf.reduce_sum(gamma, axis=-1, keepdims=True)
        weights = tf.matmul(blend, tf.constant(self._to_weights))
        if self.has_photo:
            weights = strength[:, None] * weights + (1.0 - strength[:, None]) * tf.constant(self._photo)
        return {"apply": apply, "strength": strength, "blend": blend, "weights": weights}

    def augment(self, images, seed):
        """Stylizes `images` with the draw of :meth:`draw` for `seed` (what a training call does).

        Args:
            images: float ``[B, H, W, 3]`` or ``[H, W, 3]`` in `value_range`.
            seed: int or int tensor ``[2]``, as in :meth:`draw`.

        Returns:
            tensor of the input's shape and dtype: the stylized images where the draw's
            ``"apply"`` is True, the input elsewhere.

        Raises:
            ImageError: not ``[B, H, W, 3]`` or ``[H, W, 3]``.
        """
        images = tf.convert_to_tensor(images)
        rank = images.shape.rank
        if rank not in (3, 4) or images.shape[-1] != 3:
            raise ImageError(f"StyleAugmentation takes RGB images [B, H, W, 3] or [H, W, 3]. "
                             f"Received: shape={tuple(images.shape)}")
        batch = images if rank == 4 else images[None]
        x = tf.cast(batch, tf.float32)
        low, high = self.value_range
        pixels = x if (low, high) == (0.0, 255.0) else (x - low) * (255.0 / (high - low))
        draw = self.draw(tf.shape(x)[0], seed)
        chosen = tf.where(draw["apply"])
        selected = tf.gather(pixels, chosen[:, 0])
        weights, strength = tf.gather(draw["weights"], chosen[:, 0]), tf.gather(draw["strength"], chosen[:, 0])

        def stylize():
            out = self._stylize(selected, weights)
            if not self.has_photo:
                out = strength[:, None, None, None] * out + (1.0 - strength[:, None, None, None]) * selected
            return out

        # The network runs on the drawn images only; with none drawn it does not run at all.
        styled = tf.cond(tf.size(chosen) > 0, stylize, lambda: selected)
        styled = styled if (low, high) == (0.0, 255.0) else styled * ((high - low) / 255.0) + low
        out = tf.tensor_scatter_nd_update(x, chosen, tf.stop_gradient(styled))
        out = tf.cast(out, batch.dtype)
        return out if rank == 4 else out[0]

    def _stylize(self, images, weights):
        """The network on float32 ``[B, H, W, 3]`` in [0, 255] with style weights ``[B, N]``."""
        return inference_graph(self.network)(images, style=weights)
