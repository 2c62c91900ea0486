"""Optimization-based style transfer (Gatys, Ecker, Bethge, CVPR 2016; Gatys et al. CVPR 2017).

The output image is a ``tf.Variable`` in pixel units; one ``tf.function``-compiled
step evaluates the perceptual objective under a ``GradientTape`` and applies Adam
(or SciPy's L-BFGS-B drives a compiled value-and-gradient function).  Content
features and style Gram matrices are computed once, before the loop.  The loop
itself stays in Python: progress bar, callbacks (intermediate saves), divergence
checks and Ctrl-C.  TensorFlow places the step on a GPU when one is visible.

Controls of Gatys et al. 2017 ("Controlling Perceptual Factors in Neural Style
Transfer"): coarse-to-fine (sec. 6), colour (sec. 5: luminance-only transfer and
colour matching) and spatial control with guided Gram matrices (sec. 4).
"""

import copy
import dataclasses
import math
import pathlib
import time
from typing import Callable, Dict, List, Sequence

import keras
import numpy as np
import tensorflow as tf

from nst_tf import color, data, images, losses
from nst_tf.config import PRECISIONS, StyleConfig
from nst_tf.errors import ImageError, OptimizationError
from nst_tf.features import FeatureExtractor

LOSS_NAMES = ("content", "style", "tv", "total")


class StopOptimization(Exception):
    """Raised by a callback to end a run early (e.g. a target loss reached); not an error."""


class StyleObjective:
    """The Gatys objective ``a * L_content + b * L_style + c * L_tv`` of an image.

    Args:
        extractor: FeatureExtractor covering the content and style layers.
        content_targets: dict ``{layer: [1, h, w, c]}`` of the content image.
        style_grams: dict ``{layer: [K, c, c]}`` target Gram matrices, one per region
            (``K = 1`` without spatial control; blended over style images).
        weights: ``(content_weight, style_weight, tv_weight)`` floats.
        style_layer_weights: dict ``{layer: float}`` (``w_l``, Gatys 2016 eq. 5).
        region_masks: optional dict ``{layer: [1, h, w, K]}`` of region masks at each style
            layer's resolution, for guided Gram matrices (Gatys 2017 sec. 4.1).

    Call arguments:
        image: float32 ``[1, H, W, 3]`` RGB in [0, 255].

    Returns:
        dict with float32 scalars ``content``, ``style``, ``tv`` (weighted) and ``total``.
    """

    def __init__(self, extractor, content_targets, style_grams, weights, style_layer_weights, region_masks=None):
        self.extractor = extractor
        self.content_targets = content_targets
        self.style_grams = style_grams
        self.weights = weights
        self.style_layer_weights = style_layer_weights
        self.region_masks = region_masks

    def __call__(self, image):
        features = self.extractor(image)
        content_weight, style_weight, tv_weight = self.weights
        content = tf.add_n([losses.content_loss(features[n], t) for n, t in self.content_targets.items()])
        content = content_weight * content / len(self.content_targets)
        regions = next(iter(self.style_grams.values())).shape[0]
        style = tf.add_n([
            losses.style_loss(
                features,
                {n: g[k:k + 1] for n, g in self.style_grams.items()},
                self.style_layer_weights,
                None if self.region_masks is None else {n: m[..., k:k + 1] for n, m in self.region_masks.items()},
            )
            for k in range(regions)
        ])
        style = style_weight * style
        tv = tv_weight * losses.total_variation_loss(image)
        return {"content": content, "style": style, "tv": tv, "total": content + style + tv}


@dataclasses.dataclass
class StylizeResult:
    """What :func:`stylize` returns.

    Attributes:
        image: float32 ndarray ``[1, H, W, 3]``, RGB in [0, 255] (colours already
            restored when ``original_colors``).
        history: one dict of float losses per completed iteration (``LOSS_NAMES``), over
            all scales; a ``scale`` entry gives the longest side it ran at.
        iterations: completed iterations, over all scales.
        seconds: wall time of the optimization loops, seconds.
        interrupted: True when Ctrl-C stopped the run early.
    """

    image: np.ndarray
    history: List[Dict[str, float]]
    iterations: int
    seconds: float
    interrupted: bool = False


def make_extractor(config):
    """The FeatureExtractor a config asks for (layers, backbone, weights, pooling, precision)."""
    content_layers, style_layers = config.resolved_layers()
    policy = PRECISIONS[config.precision]
    return FeatureExtractor(list(content_layers) + list(style_layers), config.backbone, config.weights,
                            config.pooling, **({"dtype": policy} if policy else {}))


def build_objective(content, styles, config, extractor=None, region_mask=None):
    """Builds the :class:`StyleObjective` of a content image and style images.

    Args:
        content: float32 ``[1, H, W, 3]`` RGB in [0, 255], already at the output size.
        styles: list of float32 ``[1, h, w, 3]`` style images, already at their size.
        config: StyleConfig.
        extractor: optional FeatureExtractor to reuse; built from ``config`` if None.
        region_mask: optional float32 ``[1, H, W, K]`` one-hot regions (see
            :func:`nst_tf.spatial.load_region_mask`); region ``k`` takes style ``k``.

    Returns:
        ``(objective, extractor)``.

    Raises:
        ConfigError: bad layers, backbone, blend weights, or region count. WeightsError.
        ImageError: an image is smaller than the extractor's ``min_input_size``.
    """
    from nst_tf import spatial

    content_layers, style_layers = config.resolved_layers()
    extractor = extractor or make_extractor(config)
    for role, image in [("content", content)] + [("style", style) for style in styles]:
        if min(image.shape[1:3]) < extractor.min_input_size:
            raise ImageError(
                f"The {role} image is too small for the {config.backbone} layers used: its shorter side must be at "
                f"least {extractor.min_input_size} px. Received: shape={tuple(image.shape)}. Use a larger "
                f"--image-size, --style-scale or first scale, or shallower layers."
            )
    content_features = extractor(tf.constant(content))
    content_targets = {name: content_features[name] for name in content_layers}
    style_features = [extractor(tf.constant(style)) for style in styles]
    if region_mask is None:
        blend = config.blend_weights(len(styles))
        style_grams = {name: tf.add_n([w * losses.gram_matrix(f[name]) for w, f in zip(blend, style_features)])
                       for name in style_layers}
        region_masks = None
    else:
        spatial.check_regions(region_mask, len(styles))
        style_grams = {name: tf.concat([losses.gram_matrix(f[name]) for f in style_features], 0)
                       for name in style_layers}
        region_masks = {name: spatial.resize_mask(region_mask, content_features[name].shape[1:3])
                        for name in style_layers}
    layer_weights = config.style_layer_weights or [1.0] * len(style_layers)
    layer_weights = {name: w / sum(layer_weights) for name, w in zip(style_layers, layer_weights)}
    objective = StyleObjective(extractor, content_targets, style_grams, config.resolved_loss_weights(),
                               layer_weights, region_masks)
    return objective, extractor


def initial_image(content, styles, init, seed=None):
    """The starting image of the optimization.

    Args:
        content: float32 ``[1, H, W, 3]``.
        styles: list of style images; ``init="style"`` resizes the first one to H x W.
        init: ``content``, ``noise`` (uniform white noise in [0, 255], Gatys 2016), ``style``,
            a path to an image, or an array (both resized to H x W).
        seed: int or None, for ``noise``.

    Returns:
        float32 ndarray ``[1, H, W, 3]`` in [0, 255].

    Raises:
        ImageError: the init image cannot be read.
    """
    height, width = content.shape[1:3]
    if isinstance(init, str) and init == "content":
        return np.array(content, np.float32)
    if isinstance(init, str) and init == "noise":
        return np.random.default_rng(seed).uniform(0, 255, content.shape).astype(np.float32)
    if isinstance(init, np.ndarray):
        source = init
    else:
        source = styles[0] if init == "style" else images.load_image(init)
    resized = tf.image.resize(source, (height, width), method="bicubic", antialias=True)
    return np.clip(resized.numpy(), 0, 255).astype(np.float32)


def make_step(objective, image, optimizer, jit_compile=False):
    """Compiles one Adam step: objective, gradient w.r.t. the image, update, clip.

    Divergence is checked on the device: the update is applied only when the loss and
    every gradient element are finite, so the loop needs no per-step copy of the image
    to keep the last finite one (a host copy of the image costs ~1% of a VGG19 step).

    Args:
        objective: callable ``image -> dict of scalar losses`` with a ``"total"`` entry.
        image: ``tf.Variable`` float32 ``[1, H, W, 3]`` in [0, 255], updated in place.
        optimizer: a Keras optimizer (Adam); built for ``image`` here.
        jit_compile: compile with XLA.

    Returns:
        A ``tf.function`` taking no arguments and returning the losses of the image as it
        was before the update, plus ``"updated"``: a bool scalar, False when a non-finite
        loss or gradient skipped the update.  Its attribute ``previous`` is a
        ``tf.Variable`` holding the image before the latest applied update (the last image
        whose loss was finite when the loss of ``image`` is not).
    """
    optimizer.build([image])
    previous = tf.Variable(image, trainable=False, name="previous_image")

    @tf.function(jit_compile=jit_compile)
    def step():
        with tf.GradientTape() as tape:
            values = objective(image)
        gradient = tape.gradient(values["total"], image)
        finite = tf.math.is_finite(values["total"]) & tf.reduce_all(tf.math.is_finite(gradient))

        def update():
            previous.assign(image)
            optimizer.apply_gradients([(gradient, image)])
            # Projected gradient: pixels stay in the range the backbone was trained on.
            image.assign(tf.clip_by_value(image, 0.0, 255.0))
            return tf.constant(True)

        return dict(values, updated=tf.cond(finite, update, lambda: tf.constant(False)))

    step.previous = previous
    return step


def make_value_and_gradient(objective, jit_compile=False):
    """Compiles ``image -> (losses, d total / d image)`` for L-BFGS.

    Returns:
        A ``tf.function`` taking float32 ``[1, H, W, 3]`` and returning
        ``(dict of scalar losses, float32 [1, H, W, 3] gradient)``.
    """

    @tf.function(jit_compile=jit_compile)
    def value_and_gradient(image):
        with tf.GradientTape() as tape:
            tape.watch(image)
            values = objective(image)
        return values, tape.gradient(values["total"], image)

    return value_and_gradient


class _Run:
    """Bookkeeping shared by the optimizers: history, callbacks, progress, last finite image."""

    def __init__(self, config, callbacks, bar, offset, start):
        self.config, self.callbacks, self.bar, self.offset = config, callbacks, bar, offset
        self.history = []
        self.last_finite = start

    def check(self, values, image_before):
        if not all(math.isfinite(v) for v in values.values()):
            self.diverged(values, self.last_finite)
        self.last_finite = image_before

    def diverged(self, values, last_finite):
        """Raises the OptimizationError of a non-finite loss (or, with finite losses, gradient)."""
        what = "loss" if not all(math.isfinite(v) for v in values.values()) else "gradient"
        raise OptimizationError(
            f"The {what} became non-finite at iteration {self.offset + len(self.history) + 1} ({values}); kept the "
            f"last finite image. Lower --learning-rate or the loss weights. "
            f"Received: optimizer={self.config.optimizer}, learning_rate={self.config.learning_rate}",
            image=last_finite,
        )

    def record(self, values, image, scale):
        self.history.append(dict(values, scale=scale))
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
        for callback in self.callbacks:
            callback(self.offset + len(self.history), image, values)


def _run_adam(objective, start, iterations, config, run, scale):
    image = tf.Variable(start, name="image")
    optimizer = keras.optimizers.Adam(config.learning_rate, config.adam_beta_1, config.adam_beta_2,
                                      config.adam_epsilon)
    step = make_step(objective, image, optimizer, config.jit_compile)
    try:
        for _ in range(iterations):
            values = {k: float(v) for k, v in step().items()}
            if not values.pop("updated"):
                # The update was skipped: with a finite loss `image` is still the last finite image.
                run.diverged(values, image.numpy() if math.isfinite(values["total"]) else step.previous.numpy())
            run.record(values, image, scale)
    except (KeyboardInterrupt, StopOptimization) as stop:
        return image.numpy(), stop
    return image.numpy(), None


def _run_lbfgs(objective, start, iterations, config, run, scale, solvers=None):
    if config.lbfgs_solver == "tf":
        return _run_lbfgs_tf(objective, start, iterations, config, run, scale, solvers)
    import scipy.optimize

    shape = start.shape
    value_and_gradient = make_value_and_gradient(objective, config.jit_compile)
    latest = {"x": start.astype(np.float64).ravel(), "values": None, "image": None}

    def fun(x):
        image = tf.constant(x.reshape(shape), tf.float32)  # One float64 -> float32 copy, reused below.
        values, gradient = value_and_gradient(image)
        values = {k: float(v) for k, v in values.items()}
        run.check(values, image.numpy())  # A view of the tensor's buffer on CPU, no copy.
        gradient = gradient.numpy().astype(np.float64).ravel()
        if not math.isfinite(gradient.sum()):  # A sum is non-finite when any element is.
            run.diverged(values, image.numpy())
        latest["values"], latest["image"] = values, image
        return values["total"], gradient

    def callback(intermediate_result):
        # L-BFGS-B's last evaluation before a new iterate is that iterate: its image is already a tensor.
        latest["x"] = intermediate_result.x
        run.record(latest["values"], latest["image"], scale)

    try:
        # Tolerances 0: run the requested iterations, as neural-style does (tolFun = tolX = -1).
        # Bounds as one Bounds object: a list of per-pixel tuples costs SciPy ~1 s more per call at 512 px.
        scipy.optimize.minimize(
            fun, latest["x"], jac=True, method="L-BFGS-B", bounds=scipy.optimize.Bounds(0.0, 255.0),
            callback=callback,
            options={"maxiter": iterations, "maxfun": 2 * iterations + 20, "maxcor": config.lbfgs_memory,
                     "ftol": 0.0, "gtol": 0.0},
        )
    except (KeyboardInterrupt, StopOptimization) as stop:
        return latest["x"].reshape(shape).astype(np.float32), stop
    return latest["x"].reshape(shape).astype(np.float32), None


def _run_lbfgs_tf(objective, start, iterations, config, run, scale, solvers=None):
    """L-BFGS of :mod:`nst_tf.lbfgs`: each iteration one graph, the image never leaves the device.

    ``solvers`` (a dict kept across the scales of one :func:`stylize` call) holds one solver
    per feature extractor, reset to each new scale, so its graph is traced only once.
    """
    from nst_tf import lbfgs

    key = id(objective.extractor)
    if solvers is not None and key in solvers:
        slots, solver = solvers[key]
        slots.load(objective)
        solver.reset(start)
    else:
        slots = _TargetSlots(objective)
        solver = lbfgs.ProjectedLBFGS(make_value_and_gradient(slots.objective), start,
                                      memory=config.lbfgs_memory, jit_compile=config.jit_compile)
        if solvers is not None:
            solvers[key] = (slots, solver)
    try:
        values, finite = solver.start()
        if not bool(finite):
            run.diverged({k: float(v) for k, v in values.items()}, start)
        for _ in range(iterations):
            values, finite = solver.step()
            values = {k: float(v) for k, v in values.items()}
            if not bool(finite):
                # The line search never moves to a non-finite point: x is the last finite image.
                run.diverged(values, solver.x.numpy())
            # A tensor of this scale's static shape (the variable's is size-free); no copy on CPU.
            run.record(values, solver.x.read_value(), scale)
    except (KeyboardInterrupt, StopOptimization) as stop:
        return solver.x.numpy(), stop
    return solver.x.numpy(), None


class _TargetSlots:
    """A copy of a StyleObjective whose targets live in size-free variables.

    A graph traced on ``objective`` (content features ``[1, h, w, c]``, Gram matrices
    ``[K, c, c]``, region masks ``[1, h, w, K]``) serves every scale of a coarse-to-fine
    run: :meth:`load` puts the next scale's targets in place instead of tracing anew.
    """

    def __init__(self, objective):
        def free(tensor):
            return tf.Variable(tensor, trainable=False, shape=tf.TensorShape([None] * tensor.shape.rank))

        self.objective = copy.copy(objective)
        self.objective.content_targets = {n: free(t) for n, t in objective.content_targets.items()}
        # Gram matrices keep their shape at every scale; a static shape keeps the region count static.
        self.objective.style_grams = {n: tf.Variable(g, trainable=False) for n, g in objective.style_grams.items()}
        if objective.region_masks is not None:
            self.objective.region_masks = {n: free(m) for n, m in objective.region_masks.items()}

    def load(self, objective):
        for name in ("content_targets", "style_grams", "region_masks"):
            for key, variable in (getattr(self.objective, name) or {}).items():
                variable.assign(getattr(objective, name)[key])


def stylize(content, styles, config=StyleConfig(), callbacks: Sequence[Callable] = (), progress=True,
            extractor=None, region_mask=None):
    """Renders ``content`` in the style of ``styles`` by optimization.

    With ``config.scales`` it runs coarse-to-fine: each scale starts from the previous
    result, upsampled (Gatys et al. 2017 sec. 6).

    Args:
        content: float32 ndarray ``[1, H, W, 3]`` RGB in [0, 255] at the output size
            (``config.output_size`` on its longest side; smaller scales are made from it).
        styles: list of float32 ndarrays ``[1, h, w, 3]`` in [0, 255], at
            ``output_size * style_scale`` (scaled along with each scale).
        config: StyleConfig.
        callbacks: callables ``fn(iteration, image, losses)`` run after each iteration with the
            1-based iteration (counted over all scales), the image tensor and a dict of floats;
            one may raise :class:`StopOptimization` to end the run there.
        progress: show a tqdm progress bar with the losses and iterations per second.
        extractor: optional prebuilt FeatureExtractor (reused across calls and scales) at
            ``config.precision``; scales of another precision (``config.scale_precisions``)
            build their own.
        region_mask: optional float32 ``[1, H, W, K]`` one-hot regions for spatial control;
            then ``len(styles) == K`` and region ``k`` takes style ``k``.

    Returns:
        StylizeResult. On Ctrl-C the result holds the latest image and ``interrupted=True``.

    Raises:
        ConfigError, WeightsError, ImageError: invalid settings or inputs.
        OptimizationError: the loss became NaN or Inf; ``error.image`` holds the last
            image whose loss was finite (colours restored as for a result).
    """
    if config.seed is not None:
        keras.utils.set_random_seed(config.seed)
    target_content, target_styles = _colour_inputs(content, styles, config)
    plan = config.scale_plan()
    # One feature network per precision of the schedule, built when first needed; the caller's
    # serves config.precision.
    extractors = {} if extractor is None else {config.precision: extractor}
    solvers = {}  # L-BFGS solvers kept across scales (lbfgs_solver="tf"), one per extractor.
    bar = _progress_bar(sum(n for _, n in plan), progress)
    history, seconds, image, interrupted = [], 0.0, config.init, False
    try:
        for (scale, iterations), precision in zip(plan, config.precision_plan()):
            if precision not in extractors:
                extractors[precision] = make_extractor(dataclasses.replace(config, precision=precision))
            ratio = scale / max(content.shape[1:3])
            scaled_content = _rescale(target_content, ratio)
            scaled_styles = [_rescale(style, ratio) for style in target_styles]
            scaled_mask = None if region_mask is None else _rescale_mask(region_mask, scaled_content.shape[1:3])
            objective, _ = build_objective(scaled_content, scaled_styles, config, extractors[precision],
                                           scaled_mask)
            start = initial_image(scaled_content, scaled_styles, image, config.seed)
            run = _Run(config, callbacks, bar, len(history), start)
            begin = time.perf_counter()
            try:
                if config.optimizer == "adam":
                    image, stop = _run_adam(objective, start, iterations, config, run, scale)
                else:
                    image, stop = _run_lbfgs(objective, start, iterations, config, run, scale, solvers)
            except OptimizationError as error:
                error.image = None if error.image is None else finish_image(error.image, content, config)
                raise
            seconds += time.perf_counter() - begin
            history += run.history
            if not np.all(np.isfinite(image)):
                image = run.last_finite
            interrupted = isinstance(stop, KeyboardInterrupt)
            if stop is not None:
                break
    finally:
        if bar is not None:
            bar.close()
    if image.shape != content.shape:  # Interrupted before the last scale: deliver the output size.
        image = initial_image(content, styles, image)
    return StylizeResult(finish_image(image, content, config), history, len(history), seconds, interrupted)


def _rescale(image, ratio):
    if abs(ratio - 1.0) < 1e-9:
        return image
    return images.resize_longest_side(image, max(1, round(max(image.shape[1:3]) * ratio)))


def _rescale_mask(mask, size):
    from nst_tf import spatial

    return mask if tuple(mask.shape[1:3]) == tuple(size) else spatial.resize_mask(mask, size).numpy()


def _colour_inputs(content, styles, config):
    """Content and styles as the optimization sees them (Gatys 2017 sec. 5)."""
    if config.color_match != "none":
        styles = [color.match_color(style, content, config.color_match) for style in styles]
    if config.original_colors:
        # Luminance-only transfer: optimize grey images, the style's luminance matched to the content's.
        content = color.luminance_image(content)
        styles = [color.match_luminance(color.luminance_image(style), content) for style in styles]
    return content, styles


def finish_image(image, content, config):
    """Final touches of an optimized image: colour restoration when ``config.original_colors``.

    Args:
        image: float ``[1, H, W, 3]`` in [0, 255]. content: the content image, same shape.
        config: StyleConfig.

    Returns:
        float32 ndarray ``[1, H, W, 3]`` in [0, 255].
    """
    image = np.asarray(image, np.float32)
    return color.transfer_luminance(image, content) if config.original_colors else image


def _progress_bar(total, enabled):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="it", dynamic_ncols=True, desc="stylize")


def load_inputs(content_path, style_paths, config, min_size=1, center_crop=False):
    """Loads the content image at ``config.output_size`` and the styles at their scale.

    Args:
        content_path: path of the content photo.
        style_paths: list of style image paths (may be empty).
        config: StyleConfig (``image_size`` or ``scales``, ``style_scale``).
        min_size: smallest side, pixels, the network accepts (checked at the smallest scale).
        center_crop: bool. Give the content as the training pipeline crops it
            (:func:`nst_tf.data.center_crops`: shorter side resized to ``output_size``,
            then the centre ``output_size`` x ``output_size`` square), so that an optimized
            image is pixel-aligned with the crop of its photo (pixel-loss training targets).

    Returns:
        ``(content, styles)`` float32 arrays as :func:`stylize` takes them.

    Raises:
        ImageError: unreadable, too large or too small image.
    """
    size = config.output_size
    # The smallest scale must still fit the network: scale min_size up to the output size.
    needed = math.ceil(min_size * size / config.scale_plan()[0][0])
    if center_crop:
        images.check_image_file(content_path)
        if size < needed:
            raise ImageError(f"The centre crop is smaller than the network needs ({needed} px). "
                             f"Received: image_size={size}")
        try:  # The training pipeline's decoder: what is cropped here is what training crops.
            content = data.center_crops([str(content_path)], size)
        except tf.errors.InvalidArgumentError:
            raise ImageError(f"--center-crop reads the formats training reads ({', '.join(data.PHOTO_EXTENSIONS)}). "
                             f"Received: content='{content_path}'") from None
    else:
        content = images.load_image(content_path, max_size=size, min_size=needed)
    style_size = max(1, round(size * config.style_scale))
    styles = [images.load_image(p, max_size=style_size, min_size=needed) for p in style_paths]
    return content, styles


def stylize_files(contents, outputs, style_paths, config, center_crop=False, extractor=None, progress=True,
                  report=print, quality=95):
    """Stylizes photos one after another, each into its own file; photos whose file exists are skipped.

    Each photo runs through :func:`stylize` with one feature network and one loading of
    the style images for all of them (the style's Gram matrices, one forward pass, are
    recomputed per photo: colour matching makes them depend on the photo), and its
    result is written atomically when its optimization has finished: an interrupted run
    leaves only complete outputs, so calling again with the same arguments resumes where
    it stopped.

    Args:
        contents: sequence of content photo paths.
        outputs: sequence of output image paths, one per content photo.
        style_paths: list of style image paths.
        config: StyleConfig.
        center_crop: bool. Square centre crops of ``config.output_size`` (see :func:`load_inputs`).
        extractor: optional FeatureExtractor to reuse; built from `config` if None.
        progress: show a progress bar per photo.
        report: callable taking one line of text per photo (``done ...`` or ``skipped ...``).
        quality: int. JPEG and WebP quality of the outputs.

    Returns:
        dict with ``done`` and ``skipped``: lists of the output paths (pathlib.Path).

    Raises:
        ImageError: an unreadable or too small photo. OptimizationError: a diverged run
        (nothing is written for that photo). KeyboardInterrupt: Ctrl-C; the photo being
        optimized is not written.
    """
    extractor = extractor or make_extractor(config)
    styles = None
    summary = {"done": [], "skipped": []}
    for content_path, output in zip(contents, outputs):
        output = pathlib.Path(output)
        if output.exists():
            report(f"skipped {content_path}: {output} exists")
            summary["skipped"].append(output)
            continue
        content, loaded = load_inputs(content_path, style_paths if styles is None else [], config,
                                      extractor.min_input_size, center_crop)
        styles = loaded if styles is None else styles
        result = stylize(content, styles, config, progress=progress, extractor=extractor)
        if result.interrupted:  # A partial image would be taken for a finished one on the rerun.
            raise KeyboardInterrupt
        images.save_image(result.image, output, quality=quality)
        last = result.history[-1] if result.history else {}
        report(f"done {content_path} -> {output} ({content.shape[2]}x{content.shape[1]} px, {result.iterations} "
               f"iterations in {result.seconds:.1f} s; total={last.get('total', float('nan')):.4g})")
        summary["done"].append(output)
    return summary
