"""Frozen configuration of style transfer runs: optimization (:class:`StyleConfig`) and training
(:class:`TrainConfig`), and a user's style selection of a multi-style network (:func:`style_selection_weights`).

Every field of :class:`StyleConfig` is one ``scripts/stylize.py`` flag of the same
name (``content_weight`` is ``--content-weight``), every field of :class:`TrainConfig`
one ``scripts/train.py`` flag.  ``None`` means "the chosen backbone's default",
resolved by :meth:`StyleConfig.resolved`.  Validation runs in ``__post_init__`` so a
bad value fails before any network is built; this module imports no TensorFlow, so
the command line checks its flags before TensorFlow loads.
"""

import dataclasses
import math
import numbers
import os
import pathlib
from typing import Optional, Tuple

import numpy as np

from nst_tf.backbones import BACKBONES, POOLING_MODES, get_spec
from nst_tf.errors import ConfigError

INIT_MODES = ("content", "noise", "style")
OPTIMIZERS = ("adam", "lbfgs")
LBFGS_SOLVERS = ("scipy", "tf")
PRECISIONS = {"float32": None, "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}
COLOR_MATCH_MODES = ("none", "covariance", "histogram")

# Default loss weights per backbone: (content, style, total variation), for the losses
# of nst_tf.losses (mean-normalized).  VGG: the TensorFlow tutorial's balance
# (content 1e4, style 1e-2 over 5 layers, TV 30 summed over a [0, 1] image at 512x384)
# restated in our mean-normalized units; SqueezeNet: tuned on tubingen + starry_night.
DEFAULT_LOSS_WEIGHTS = {
    "vgg19": (1.0, 4e-6, 7.0),
    "vgg16": (1.0, 4e-6, 7.0),
    "squeezenet1_1": (1.0, 5e-2, 1e-2),
}


# Fast style networks (nst_tf.training), plain data here so the command line can show and
# check them without importing TensorFlow.
# Johnson 2016 sec. 4.1: content relu2_2; style relu1_2, relu2_2, relu3_3, relu4_3 (Keras names).
_JOHNSON_VGG_LAYERS = (("block2_conv2",), ("block1_conv2", "block2_conv2", "block3_conv3", "block4_conv3"))
TRAIN_LAYERS = {
    "vgg16": _JOHNSON_VGG_LAYERS,
    "vgg19": _JOHNSON_VGG_LAYERS,
    # An early fire module keeps content detail; style from conv1 up to fire7 spans
    # fine to coarse texture (the CS231n SqueezeNet style transfer choice).
    "squeezenet1_1": (("fire3",), ("conv1", "fire2", "fire3", "fire5", "fire7")),
}
"""``{loss_network: (content_layers, style_layers)}`` of training."""

TRAIN_LOSS_WEIGHTS = {
    "vgg16": (1.0, 4e-2, 1e-2),
    "vgg19": (1.0, 4e-2, 1e-2),
    # Chosen on BSDS500 with the SqueezeNet v1.1 ImageNet weights and the style image at 256 px (the
    # training default): 5e-3 with TV 5 at 512 px gave a photo with a tint; 2e-2 with TV 1 gives clear strokes.
    "squeezenet1_1": (1.0, 2e-2, 1.0),
}
"""``{loss_network: (content_weight, style_weight, tv_weight)}`` of training."""

OBJECTIVES = ("perceptual", "pixel")
"""Training objectives: Johnson's perceptual loss, or the pixel distance to optimized targets."""

STRATEGIES = ("default", "mirrored", "multi-worker")
"""``tf.distribute`` strategies of training."""

PHOTO_STYLE = "photo"
"""Name of the content-only style of a multi-style network, which the style strength blends toward."""

SIZE_ALIGNMENT = 4
"""TransformerNet's two stride-2 convolutions: padded sizes that are multiples of 4 come back exactly."""
MIN_ALIGNED_SIZE = 8
"""Smallest padded side, pixels: the bottleneck (1/4 size) must be >= 2 pixels for its reflection padding."""


def aligned_size(size):
    """The side, pixels, that TransformerNet pads an input side of `size` to: a multiple of
    ``SIZE_ALIGNMENT``, at least ``MIN_ALIGNED_SIZE`` (int in, int out)."""
    return max(MIN_ALIGNED_SIZE, -(-size // SIZE_ALIGNMENT) * SIZE_ALIGNMENT)


def transformer_channels(filters, width_multiplier):
    """Channel counts of TransformerNet's three downsampling convolutions: `filters` (3 ints)
    scaled by `width_multiplier`, rounded, at least 1 each (tuple of 3 int)."""
    return tuple(max(1, round(f * width_multiplier)) for f in filters)


@dataclasses.dataclass(frozen=True)
class StyleConfig:
    """Settings of one Gatys-style optimization.

    Attributes:
        image_size: int. Longest side of the output, pixels. Defaults to 512.
        style_scale: float. Style image longest side as a multiple of ``image_size``.
        style_blend_weights: tuple of float, one per style image, or ``None`` (equal);
            normalized to sum to 1.
        backbone: str. ``vgg19`` (default), ``vgg16`` or ``squeezenet1_1``.
        weights: ``"imagenet"``, a weights file path, or ``None`` (seeded random).
        pooling: str. ``max`` or ``avg``.
        content_layers, style_layers: tuple of layer names; ``None`` is the backbone's default.
        style_layer_weights: tuple of float, one per style layer (``w_l``), or ``None`` (equal).
        content_weight, style_weight, tv_weight: float >= 0; ``None`` is the backbone's default.
        iterations: int >= 1. Optimizer steps.
        learning_rate: float > 0. Adam step size, in pixels (values are in [0, 255]).
        init: ``content``, ``noise``, ``style``, or a path to an image.
        seed: int or ``None``. Seeds noise init and TensorFlow; CPU runs repeat exactly.
        original_colors: bool. Keep the content's colours: luminance-only transfer
            (Gatys et al. 2017 sec. 5.1).
        color_match: ``none``, ``covariance`` (match the style's RGB mean and covariance to
            the content's, Gatys et al. 2017 sec. 5.2) or ``histogram`` (per channel).
        optimizer: ``adam`` or ``lbfgs`` (SciPy L-BFGS-B; box bounds keep pixels in [0, 255]).
        lbfgs_memory: int >= 1. Number of L-BFGS correction pairs kept.
        lbfgs_solver: ``scipy`` (SciPy's L-BFGS-B, Byrd et al. 1995: float64 on the host) or
            ``tf`` (:class:`nst_tf.lbfgs.ProjectedLBFGS`: projected L-BFGS with a weak Wolfe
            line search, float32, each iteration one compiled graph reused across ``scales``;
            faster where the network is cheap and SciPy's host-side work rivals it:
            BENCHMARKS.md, time-to-quality).
        adam_beta_1, adam_beta_2, adam_epsilon: Adam's moments and epsilon (pixel units).
        scales: increasing longest sides, pixels, for coarse-to-fine (Gatys et al. 2017
            sec. 6); the last one is the output size and overrides ``image_size``.
        scale_iterations: iterations at each scale; ``None`` runs ``iterations`` at each.
        precision: ``float32``, ``bfloat16`` or ``float16`` for the feature extractor
            (Keras mixed precision); Gram matrices and losses stay float32.
        scale_precisions: one ``precision`` per scale (needs ``scales``), e.g.
            ``("bfloat16", "bfloat16", "float32")``: the cheap precision where the image is
            still coarse, float32 where the final image is judged; ``None`` runs
            ``precision`` at each scale.
        jit_compile: compile the step with XLA.

    Raises:
        ConfigError: any value out of range, with the value received.
    """

    image_size: int = 512
    style_scale: float = 1.0
    style_blend_weights: Optional[Tuple[float, ...]] = None
    backbone: str = "vgg19"
    weights: Optional[str] = "imagenet"
    pooling: str = "max"
    content_layers: Optional[Tuple[str, ...]] = None
    style_layers: Optional[Tuple[str, ...]] = None
    style_layer_weights: Optional[Tuple[float, ...]] = None
    content_weight: Optional[float] = None
    style_weight: Optional[float] = None
    tv_weight: Optional[float] = None
    iterations: int = 500
    learning_rate: float = 5.0
    init: str = "content"
    seed: Optional[int] = 0
    original_colors: bool = False
    color_match: str = "none"
    optimizer: str = "adam"
    lbfgs_memory: int = 10
    lbfgs_solver: str = "scipy"
    adam_beta_1: float = 0.9
    adam_beta_2: float = 0.999
    adam_epsilon: float = 1e-7
    scales: Optional[Tuple[int, ...]] = None
    scale_iterations: Optional[Tuple[int, ...]] = None
    precision: str = "float32"
    scale_precisions: Optional[Tuple[str, ...]] = None
    jit_compile: bool = False

    @classmethod
    def from_preset(cls, name, **overrides):
        """A config reproducing a published recipe; ``overrides`` (explicit flags) win.

        Raises:
            ConfigError: unknown preset name.
        """
        if name not in PRESETS:
            raise ConfigError(f"Unknown preset. Choose one of {', '.join(PRESETS)}. Received: preset={name!r}")
        return cls(**{**PRESETS[name], **overrides})

    @property
    def output_size(self):
        """Longest side of the output, pixels: the last scale, or ``image_size``."""
        return self.scales[-1] if self.scales else self.image_size

    def scale_plan(self):
        """``[(longest_side, iterations), ...]``: one entry without ``scales``."""
        if not self.scales:
            return [(self.image_size, self.iterations)]
        return list(zip(self.scales, self.scale_iterations or [self.iterations] * len(self.scales)))

    def precision_plan(self):
        """The feature network's precision at each entry of :meth:`scale_plan`."""
        return list(self.scale_precisions or [self.precision] * len(self.scale_plan()))

    def __post_init__(self):
        get_spec(self.backbone)
        if self.pooling not in POOLING_MODES:
            raise ConfigError(f"--pooling must be 'max' or 'avg'. Received: pooling={self.pooling!r}")
        _require(self.image_size >= 1, "image_size", self.image_size, "a positive number of pixels")
        _require(self.iterations >= 1, "iterations", self.iterations, "at least 1")
        _require(self.lbfgs_memory >= 1, "lbfgs_memory", self.lbfgs_memory, "at least 1")
        for name, allowed in (("optimizer", OPTIMIZERS), ("lbfgs_solver", LBFGS_SOLVERS),
                              ("precision", tuple(PRECISIONS)),
                              ("color_match", COLOR_MATCH_MODES)):
            value = getattr(self, name)
            _require(value in allowed, name, value, "one of " + ", ".join(allowed))
        _require(0 <= self.adam_beta_1 < 1 and 0 <= self.adam_beta_2 < 1, "adam_beta_1", self.adam_beta_1,
                 "in [0, 1) (and so must adam_beta_2)")
        _require(_positive(self.adam_epsilon), "adam_epsilon", self.adam_epsilon, "a finite number > 0")
        if self.scales is not None:
            scales = list(self.scales)
            _require(len(scales) >= 1 and all(b > a for a, b in zip(scales, scales[1:])) and scales[0] >= 1,
                     "scales", scales, "strictly increasing positive sizes, e.g. 256,512,1024")
            if self.scale_iterations is not None:
                _require(len(self.scale_iterations) == len(scales) and min(self.scale_iterations) >= 1,
                         "scale_iterations", list(self.scale_iterations),
                         f"one iteration count >= 1 per scale ({len(scales)})")
            if self.scale_precisions is not None:
                _require(len(self.scale_precisions) == len(scales)
                         and all(p in PRECISIONS for p in self.scale_precisions),
                         "scale_precisions", list(self.scale_precisions),
                         f"one of {', '.join(PRECISIONS)} per scale ({len(scales)})")
        elif self.scale_iterations is not None:
            raise ConfigError(f"--scale-iterations needs --scales. Received: scale_iterations={self.scale_iterations}")
        elif self.scale_precisions is not None:
            raise ConfigError(f"--scale-precisions needs --scales. Received: scale_precisions={self.scale_precisions}")
        _require(_positive(self.style_scale), "style_scale", self.style_scale, "a finite number > 0")
        _require(_positive(self.learning_rate), "learning_rate", self.learning_rate, "a finite number > 0")
        for name in ("content_weight", "style_weight", "tv_weight"):
            value = getattr(self, name)
            _require(value is None or _non_negative(value), name, value, "a finite number >= 0")
        for name in ("style_blend_weights", "style_layer_weights"):
            values = getattr(self, name)
            if values is not None:
                _require(all(_non_negative(v) for v in values) and sum(values) > 0, name, values,
                         "finite numbers >= 0 with a positive sum")
        if self.style_layer_weights is not None:
            layers = self.resolved_layers()[1]
            if len(self.style_layer_weights) != len(layers):
                raise ConfigError(
                    f"--style-layer-weights needs one weight per style layer ({len(layers)}: {', '.join(layers)}). "
                    f"Received: style_layer_weights={list(self.style_layer_weights)}"
                )

    def resolved_layers(self):
        """Returns ``(content_layers, style_layers)`` with the backbone defaults filled in."""
        spec = BACKBONES[self.backbone]
        return tuple(self.content_layers or spec.content_layers), tuple(self.style_layers or spec.style_layers)

    def resolved_loss_weights(self):
        """Returns ``(content_weight, style_weight, tv_weight)`` with backbone defaults filled in."""
        defaults = DEFAULT_LOSS_WEIGHTS[self.backbone]
        given = (self.content_weight, self.style_weight, self.tv_weight)
        return tuple(float(d if g is None else g) for g, d in zip(given, defaults))

    def blend_weights(self, num_styles):
        """Normalized per-style weights, length ``num_styles``.

        Raises:
            ConfigError: the number of blend weights differs from ``num_styles``.
        """
        if self.style_blend_weights is None:
            return [1.0 / num_styles] * num_styles
        if len(self.style_blend_weights) != num_styles:
            raise ConfigError(
                f"--style-blend-weights needs one weight per style image ({num_styles}). "
                f"Received: style_blend_weights={list(self.style_blend_weights)}"
            )
        total = sum(self.style_blend_weights)
        return [w / total for w in self.style_blend_weights]


def _positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def _non_negative(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value >= 0


def _require(ok, name, value, what):
    if not ok:
        raise ConfigError(f"--{name.replace('_', '-')} must be {what}. Received: {name}={value!r}")


def check_int(name, value, minimum, maximum=None, allow_none=False):
    """Returns `value` when it is an integer (Python or NumPy, not a bool) in ``[minimum, maximum]``.

    Args:
        name: str. A flag (``"--batch-size"``) or a keyword argument (``"size"``), as the
            message names it; "Received:" gives the field name (``batch_size``).
        value: any. The value to check.
        minimum: int. Smallest value allowed.
        maximum: int or None. Largest value allowed; None: no upper bound.
        allow_none: bool. Accept None too (the message then says so).

    Returns:
        `value`, unchanged.

    Raises:
        ConfigError: anything else, in one line: ``--batch-size must be an integer >= 1.
            Received: batch_size=0``; for a keyword argument the name is in backquotes
            (``quality`` must be an integer from 1 to 100. Received: quality=0).
    """
    if value is None and allow_none:
        return value
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum
            or (maximum is not None and value > maximum)):
        label, field = (name, name[2:].replace("-", "_")) if name.startswith("--") else (f"`{name}`", name)
        bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise ConfigError(f"{label} must be an integer {bounds}{' or None' if allow_none else ''}. "
                          f"Received: {field}={value!r}")
    return value


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run; each field is the ``scripts/train.py`` flag of that name.

    Attributes:
        style: path of the style image, or a tuple of paths (kept as a tuple): several
            train one multi-style network (conditional instance normalization, Dumoulin
            et al. 2017).
        data: folder of training photos (recursive).
        output: path of the trained TransformerNet, ``.keras``; written atomically at the end.
        steps: int or None. Optimizer steps, exactly (also when resumed from a backup).
        epochs: float or None. Passes over the photos instead of ``steps``; neither given:
            2 epochs (Johnson 2016).
        batch_size: int. Global batch (split across replicas). Defaults to 4.
        image_size: int. Side of the square training crops, pixels. Defaults to 256.
        learning_rate: float. Adam step size. Defaults to 1e-3 (Johnson 2016).
        content_weight, style_weight, tv_weight: float or None (``DEFAULT_LOSS_WEIGHTS``).
        saturation_weight: float >= 0. Weight of the saturation loss, which keeps the
            output out of tanh's flat tails (:func:`nst_tf.losses.saturation_loss`).
            Defaults to 0.
        droplet_weight: float >= 0. Weight of the droplet loss, which keeps instance
            normalization from painting smooth blobs (:func:`nst_tf.losses.droplet_loss`).
            Defaults to 0.
        loss_network: ``vgg16`` (default), ``vgg19`` or ``squeezenet1_1``.
        loss_weights_file: ``"imagenet"`` or a weights file of the loss network.
        seed: int or None. Seeds Python, NumPy, TensorFlow and the data pipeline.
        strategy: ``default``, ``mirrored`` (all local devices) or ``multi-worker``
            (``TF_CONFIG`` cluster).
        backup_dir: folder for ``BackupAndRestore`` (resumes a killed run); None: none.
        log_dir: TensorBoard folder (losses, sample images; also PNG samples); None: none.
        style_size: int or None. Longest side of the style image, pixels; None keeps it. Defaults
            to 256 (Johnson's fast-neural-style default: strokes at the scale of 256 px crops).
        save_every: int. Steps between backups, checkpoints and logs. Defaults to 100.
        checkpoint_dir: folder for the latest TransformerNet checkpoint
            (``transformer.keras``, every ``save_every`` steps); None: none.
        init_model: optional ``.keras`` TransformerNet to start from (fine-tuning).
        mixed_precision: bool. Train under the ``mixed_bfloat16`` policy (the saved model
            is float32). Defaults to False.
        style_names: tuple of str or None. Names of the styles (default: the style
            files' stems); given or with several styles, the network is multi-style.
        photo_style: bool. Add the ``"photo"`` style (content loss only), which the
            style strength control blends toward. Defaults to False.
        width_multiplier: float > 0. Channel width of the new network (0.5: Johnson's
            half width). Defaults to 1.0.
        num_residual_blocks: int >= 0. Defaults to 5.
        balance_style_weights: bool. Scale the style weight per style so that every
            style has the same weighted style loss on the photos
            (:func:`balanced_style_weights`). Defaults to False.
        flip: bool. Random horizontal flips of the training crops. Defaults to False.
        add_style: str or None. A style image to add to the multi-style network
            `init_model` by training only its new ``gamma``/``beta`` rows, the
            convolutions and the other styles frozen (Dumoulin et al. 2017, sec. 4);
            `style` is then unused. Its weight follows the network's balance.
        objective: ``perceptual`` (Johnson et al. 2016: content, style and TV losses through
            the loss network) or ``pixel``: the mean squared error, pixels in [0, 255], between
            the network's output and a stylized target of the same photo (made beforehand
            by optimization, e.g. ``stylize --content FOLDER --center-crop``), plus
            ``tv_weight`` times the TV loss (default 0); no loss network. Single style only;
            `style` then only names the style. Defaults to ``perceptual``.
        targets: folder of the targets of the ``pixel`` objective, one per photo of `data`,
            matched by file stem (:func:`nst_tf.data.target_pairs`); None otherwise.

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
    saturation_weight: float = 0.0
    droplet_weight: float = 0.0
    loss_network: str = "vgg16"
    loss_weights_file: Optional[str] = "imagenet"
    seed: Optional[int] = 0
    strategy: str = "default"
    backup_dir: Optional[str] = None
    log_dir: Optional[str] = None
    style_size: Optional[int] = 256
    save_every: int = 100
    checkpoint_dir: Optional[str] = None
    init_model: Optional[str] = None
    mixed_precision: bool = False
    style_names: Optional[tuple] = None
    photo_style: bool = False
    width_multiplier: float = 1.0
    num_residual_blocks: int = 5
    balance_style_weights: bool = False
    flip: bool = False
    add_style: Optional[str] = None
    objective: str = "perceptual"
    targets: Optional[str] = None

    def __post_init__(self):
        if self.add_style is not None:
            if not self.init_model:
                raise ConfigError(f"--add-style needs --init-model, the multi-style network to extend. "
                                  f"Received: add_style={self.add_style!r}, init_model=None")
            object.__setattr__(self, "style", (self.add_style,))
        elif not self.style:
            raise ConfigError("Give the style image(s) with --style (or --add-style with --init-model). "
                              "Received: style=None")
        if isinstance(self.style, (str, os.PathLike)):
            object.__setattr__(self, "style", (os.fspath(self.style),))
        elif isinstance(self.style, (list, tuple)):
            object.__setattr__(self, "style", tuple(str(path) for path in self.style))
        if self.style_names is not None:
            object.__setattr__(self, "style_names", tuple(self.style_names))
            if len(self.style_names) != len(self.styles):
                raise ConfigError(f"--style-names needs one name per --style ({len(self.styles)}). "
                                  f"Received: style_names={list(self.style_names)}")
        _require(_number(self.width_multiplier) and self.width_multiplier > 0, "width_multiplier",
                 self.width_multiplier, "a number > 0")
        check_int("--num-residual-blocks", self.num_residual_blocks, 0)
        get_spec(self.loss_network)
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}. "
                              f"Received: strategy={self.strategy!r}")
        if self.steps is not None and self.epochs is not None:
            raise ConfigError(f"Give --steps or --epochs, not both. Received: steps={self.steps}, epochs={self.epochs}")
        if self.steps is not None:
            check_int("--steps", self.steps, 1)
        _require(self.epochs is None or (_number(self.epochs) and self.epochs > 0), "epochs", self.epochs, "> 0")
        check_int("--batch-size", self.batch_size, 1)
        check_int("--image-size", self.image_size, 16)
        if self.style_size is not None:
            check_int("--style-size", self.style_size, 16)
        check_int("--save-every", self.save_every, 1)
        _require(_number(self.learning_rate) and self.learning_rate > 0, "learning_rate", self.learning_rate, "> 0")
        for name in ("content_weight", "style_weight", "tv_weight", "saturation_weight", "droplet_weight"):
            value = getattr(self, name)
            _require(value is None or (_number(value) and value >= 0), name, value, "a finite number >= 0")
        if pathlib.Path(self.output).suffix != ".keras":
            raise ConfigError(f"--output must be a .keras file path. Received: output={self.output!r}")
        self._check_objective()

    def _check_objective(self):
        if self.objective not in OBJECTIVES:
            raise ConfigError(f"--objective must be one of {', '.join(OBJECTIVES)}. "
                              f"Received: objective={self.objective!r}")
        if (self.objective == "pixel") != (self.targets is not None):
            raise ConfigError(f"--objective pixel and --targets go together: the pixel objective trains toward the "
                              f"stylized targets of the photos. Received: objective={self.objective!r}, "
                              f"targets={self.targets!r}")
        if self.objective == "pixel" and (self.multi_style or self.add_style or self.balance_style_weights):
            raise ConfigError(f"--objective pixel trains a single-style network: give one --style (it names the "
                              f"style of the targets), without --photo-style, --style-names, --add-style or "
                              f"--balance-style-weights. Received: style={list(self.styles)}, "
                              f"photo_style={self.photo_style}, style_names={self.style_names}")

    @property
    def styles(self):
        """The style image paths, a tuple."""
        return self.style or ()

    @property
    def multi_style(self):
        """Whether the run trains a multi-style network."""
        return len(self.styles) > 1 or self.photo_style or self.style_names is not None

    def names(self):
        """Style names of a multi-style run, in order (``"photo"`` last with `photo_style`)."""
        names = list(self.style_names or (pathlib.Path(path).stem for path in self.styles))
        return names + [PHOTO_STYLE] if self.photo_style else names

    def total_steps(self, num_photos):
        """Optimizer steps of the run: ``steps``, or ``epochs`` passes over `num_photos` photos (rounded up)."""
        return self.steps or math.ceil((self.epochs or 2) * num_photos / self.batch_size)


# Published recipes, restated in nst_tf's units (mean-normalized content loss, Gram matrices
# divided by the number of locations, style E_l = mean((G - A)^2) / 4, mean-abs TV, pixels in
# [0, 255]).  Each comment says how a number was converted; tests/test_presets.py checks them.
_VGG_STYLE = ("block1_conv1", "block2_conv1", "block3_conv1", "block4_conv1", "block5_conv1")
PRESETS = {
    # Gatys, Ecker, Bethge, CVPR 2016: VGG19, average pooling, conv4_2 content, conv1_1..conv5_1
    # style with w_l = 1/5, alpha/beta = 1e-3, white-noise start, L-BFGS, 512 px, no TV term.
    # Their content loss is 1/2 sum (F - P)^2 = (N M / 2) x ours; at 512x512 conv4_2 has
    # N = 512 maps of M = 64 * 64 locations, so beta/alpha = 1e3 becomes 1e3 * 2 / (N M).
    "gatys2016": dict(
        backbone="vgg19", pooling="avg", content_layers=("block4_conv2",), style_layers=_VGG_STYLE,
        content_weight=1.0, style_weight=1e3 * 2 / (512 * 64 * 64), tv_weight=0.0, optimizer="lbfgs",
        lbfgs_memory=100, iterations=1000, image_size=512, init="noise",
    ),
    # TensorFlow tutorial "Neural style transfer": content block5_conv2, style block1..5_conv1,
    # content weight 1e4, style weight 1e-2 averaged over layers (x4 for our 1/4 factor), Gram by
    # locations, TV 30 x tf.image.total_variation on a [0, 1] image (a sum: 30 * 512 * 511 * 3 / 255
    # per unit of our per-pixel mean at 512x512), Adam lr 0.02, beta_1 0.99, epsilon 0.1 on a [0, 1]
    # image (in pixel units: lr x 255, epsilon / 255), 1000 steps, 512 px, content start.
    "tf-tutorial": dict(
        backbone="vgg19", pooling="max", content_layers=("block5_conv2",), style_layers=_VGG_STYLE,
        content_weight=1e4, style_weight=4e-2, tv_weight=30 * 512 * 511 * 3 / 255, optimizer="adam",
        learning_rate=0.02 * 255, adam_beta_1=0.99, adam_beta_2=0.999, adam_epsilon=0.1 / 255,
        iterations=1000, image_size=512, init="content",
    ),
    # jcjohnson/neural-style defaults: content relu4_2, style relu1_1..relu5_1, content weight 5,
    # style weight 100, TV 1e-3, L-BFGS (100 corrections) for 1000 iterations, 512 px, random start.
    # Its Gram is divided by C*H*W and compared by MSE: per layer 100 * mean((g - a)^2) / C^2 in our
    # Gram units, i.e. w_l proportional to 1 / C_l^2 and style weight 4 * 100 * sum_l 1 / C_l^2.
    "neural-style": dict(
        backbone="vgg19", pooling="max", content_layers=("block4_conv2",), style_layers=_VGG_STYLE,
        style_layer_weights=tuple(1.0 / c**2 for c in (64, 128, 256, 512, 512)),
        content_weight=5.0, style_weight=400.0 * sum(1.0 / c**2 for c in (64, 128, 256, 512, 512)),
        tv_weight=1e-3, optimizer="lbfgs", lbfgs_memory=100, iterations=1000, image_size=512, init="noise",
    ),
}


MAX_STRENGTH = 2.0
"""Largest style strength :meth:`TransformerNet.style_weights` accepts."""


def style_selection_weights(names, style=None, strength=1.0):
    """Blend weights over the styles `names` for a user's style selection.

    What :meth:`TransformerNet.style_weights` computes (see it for `style`, `strength`,
    the result and the errors), for any network with these style names: an exported
    SavedModel too (:class:`nst_tf.stylizer.SavedModelStylizer`).

    Args:
        names: list of str, the network's style names; None for a single-style network.

    Returns:
        np.ndarray float32 ``[N]``.
    """
    if names is None:
        raise ConfigError(f"This network has a single style: it takes no style selection or strength. "
                          f"Received: style={style!r}, strength={strength!r}")
    count = len(names)
    if isinstance(style, str):
        style = {style: 1.0}
    if isinstance(style, (int, np.integer)) and not isinstance(style, bool):
        if not 0 <= style < count:
            raise ConfigError(f"Style index must be in [0, {count}). Received: style={style}")
        style = {names[style]: 1.0}
    if isinstance(style, dict):
        unknown = [name for name in style if name not in names]
        if unknown:
            raise ConfigError(f"Unknown style name {unknown[0]!r}; this network has: {', '.join(names)}. "
                              f"Received: style={style!r}")
        style = [float(style.get(name, 0.0)) for name in names]
    weights = np.asarray(style, np.float64).reshape(-1) if style is not None else None
    if weights is None or weights.shape != (count,):
        raise ConfigError(f"Style selection must be a name, an index, a {{name: weight}} dict or {count} weights. "
                          f"Received: style={style!r}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0) or weights.sum() <= 0:
        raise ConfigError(f"Style weights must be finite, >= 0 and not all zero. Received: weights={weights.tolist()}")
    weights = weights / weights.sum()
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not (
            math.isfinite(strength) and 0 <= strength <= MAX_STRENGTH):
        raise ConfigError(f"Style strength must be a number in [0, {MAX_STRENGTH}]. Received: strength={strength!r}")
    if strength != 1:
        if PHOTO_STYLE not in names:
            raise ConfigError(f"This network has no {PHOTO_STYLE!r} style to blend toward, so its strength is fixed "
                              f"at 1. Received: strength={strength}")
        photo = np.zeros(count)
        photo[names.index(PHOTO_STYLE)] = 1.0
        weights = strength * weights + (1.0 - strength) * photo
    return weights.astype(np.float32)
