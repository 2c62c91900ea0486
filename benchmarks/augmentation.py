"""Benchmarks of :class:`nst_tf.augmentation.StyleAugmentation`: its cost, and how far it moves a CNN's view.

Each suite returns a :class:`benchmarks.core.SuiteResult`; ``scripts/benchmark.py`` runs it
under the subcommand name given here:

* ``augment-throughput``: images per second at 224 px of the layer (``rate=1``, every image
  stylized) next to the multi-style network's own inference on the same batches, with
  the same style weights, through its compiled graph
  (:func:`nst_tf.inference.inference_graph`); each directly and inside ``tf.data``
  (``dataset.map``), and the layer with the Keras call of the network instead of the
  graph, the alternative it was measured against.  Timed round-robin
  (:func:`benchmarks.core.time_side_by_side`).  Goal: the layer within
  :data:`GOAL_RATIO` of the network.
* ``augment-retrieval``: the experiment at the end of Luo's report ("Neural Style
  Transfer: Implementation, Result and its Applications").  For each style of a
  multi-style network and each strength, the BSDS500 test photos are stylized, and
  SqueezeNet v1.1's deepest features (``fire9``, global average pooled; ImageNet
  weights) of each stylized photo are compared by cosine similarity with those of all
  originals: top-1 / top-5 retrieval of its own original, and the mean cosine
  similarity to it.  With ``classifier="vgg19"`` the top-1 ImageNet label agreement
  of original and stylized photos (what Luo measured) is added; it needs VGG19's
  ImageNet weights *with* the classifier top, which an offline machine lacks: the
  suite then says so and reports no figure.  Geirhos et al. (ICLR 2019) measure the
  same texture reliance on Stylized-ImageNet.
"""

import os
import pathlib

import keras
import numpy as np
import tensorflow as tf

from benchmarks.core import (
    LoadMonitor,
    SuiteResult,
    Table,
    assets_dir,
    machine_info,
    resolve_weights,
    stopwatch,
    time_side_by_side,
)
from nst_tf import images as nst_images
from nst_tf.augmentation import StyleAugmentation
from nst_tf.backbones import get_spec
from nst_tf.config import PHOTO_STYLE
from nst_tf.errors import ImageError, NstError
from nst_tf.features import FeatureExtractor
from nst_tf.inference import inference_graph
from nst_tf.stylizer import load_transformer
from nst_tf.transformer import TransformerNet

GOAL_RATIO = 1.3
"""Largest accepted ratio of the layer's cost per image to the network's own inference."""
DEFAULT_STRENGTHS = (0.25, 0.5, 1.0)
PHOTO_EXTENSIONS = (".jpg", ".jpeg", ".png")
VGG19_TOP_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels.h5"
VGG19_TOP_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/vgg19/" + VGG19_TOP_FILE)


def load_multistyle(model="auto", styles=13):
    """The multi-style network of a suite, and a label for the tables.

    Args:
        model: a TransformerNet, a ``.keras`` path, or ``None`` / ``"auto"`` (random
            weights, seed 0: Johnson's architecture with `styles` styles, the last one
            ``"photo"``; the compute does not depend on the values).
        styles: int >= 2. Style count of the random network.

    Returns:
        ``(TransformerNet, label)``.
    """
    if isinstance(model, TransformerNet):
        return model, "given network"
    if model in (None, "auto", "none"):
        keras.utils.set_random_seed(0)
        network = TransformerNet(style_names=[f"style{i}" for i in range(styles - 1)] + [PHOTO_STYLE])
        network.build((None, None, None, 3))
        return network, f"random weights, {styles} styles"
    return load_transformer(model), str(model)


class _KerasCallAugmentation(StyleAugmentation):
    """The layer with the network's Keras call (graph mode inside tf.data) instead of the inference graph."""

    def _stylize(self, images, weights):
        return self.network(images, style=weights, training=False)


_THROUGHPUT_COLUMNS = [
    ("path", "path", "{}"),
    ("images_per_s", "images/s", "{:.2f}"),
    ("ms_per_image", "ms / image", "{:.1f}"),
    ("ratio", "cost vs network (same setting)", "{:.2f}x"),
    ("background_cores", "bg cores", "{:.2f}"),
]


def run_throughput_suite(model="auto", size=224, batch_size=8, batches=2, warmup=1, repeats=3, seed=0):
    """Images per second of the layer and of the network's own inference, round-robin.

    Args:
        model: see :func:`load_multistyle`.
        size: int. Square image side, pixels. Defaults to 224.
        batch_size: int. Images per batch.
        batches: int. Batches per timed repetition.
        warmup, repeats: ints. Untimed and timed repetitions per path.
        seed: int. The layer's seed (the draws do not change the cost at ``rate=1``).

    Returns:
        SuiteResult ``augment-throughput`` with table ``throughput``: one row per path,
        ``ratio`` = its seconds per image / the network's in the same setting (direct or
        ``tf.data``).
    """
    from benchmarks.fast import _photo_like

    network, label = load_multistyle(model)
    layer = StyleAugmentation(network, rate=1.0, strength=(0.5, 1.0), seed=seed)
    keras_layer = _KerasCallAugmentation(network, rate=1.0, strength=(0.5, 1.0), seed=seed,
                                         name="keras_call_augmentation")
    x = tf.constant(_photo_like((batch_size, size, size, 3), seed=1))
    weights = layer.draw(batch_size, seed)["weights"]
    graph = inference_graph(network)
    # The network's own compiled forward pass, in the library's Keras-call form too, for the ratio.
    keras_direct = tf.function(lambda images: keras_layer(images, training=True))

    options = tf.data.Options()
    # No background prefetching: each next() computes one batch while the clock runs, not between repetitions.
    options.autotune.enabled = False
    options.experimental_optimization.inject_prefetch = False
    options.experimental_optimization.map_parallelization = False

    def pipeline(fn):
        iterator = iter(tf.data.Dataset.from_tensors(x).repeat().map(fn).with_options(options))
        return lambda: [next(iterator).numpy() for _ in range(batches)]

    def direct(fn):
        return lambda: [np.asarray(fn()) for _ in range(batches)]

    network_call = tf.function(lambda images, style: network(images, style=style, training=False))
    paths = {
        "network (inference graph)": direct(lambda: graph(x, style=weights)),
        "network (Keras call, tf.function)": direct(lambda: network_call(x, weights)),
        "StyleAugmentation (inference graph)": direct(lambda: layer(x, training=True)),
        "StyleAugmentation (Keras call, tf.function)": direct(lambda: keras_direct(x)),
        "tf.data: network (inference graph)": pipeline(lambda b: graph(b, style=weights)),
        "tf.data: network (Keras call)": pipeline(lambda b: network(b, style=weights, training=False)),
        "tf.data: StyleAugmentation (inference graph)": pipeline(lambda b: layer(b, training=True)),
        "tf.data: StyleAugmentation (Keras call)": pipeline(lambda b: keras_layer(b, training=True)),
    }
    with LoadMonitor(0.5) as load:
        load.mark()
        timings = time_side_by_side({name: stopwatch(fn) for name, fn in paths.items()}, warmup, repeats)
        background, top = load.mark()
    images_per_rep = batches * batch_size
    rows = []
    for name, timing in timings.items():
        base = timings["tf.data: network (inference graph)" if name.startswith("tf.data") else
                       "network (inference graph)"].median
        rows.append({"path": name, "images_per_s": images_per_rep / timing.median,
                     "ms_per_image": 1000 * timing.median / images_per_rep, "ratio": timing.median / base,
                     "median_s": timing.median, "all_s": list(timing.seconds), "background_cores": background,
                     "background_top": top})
    layer_ratio = next(r["ratio"] for r in rows if r["path"] == "tf.data: StyleAugmentation (inference graph)")
    notes = [
        (f"{images_per_rep} images ({batches} batches of {batch_size}, {size} x {size}) per repetition; median of "
        f"{repeats}; every image stylized (rate=1), strength in [0.5, 1]."),
        (f"Goal: StyleAugmentation in tf.data within {GOAL_RATIO}x of the network's own inference: "
        f"{layer_ratio:.2f}x ({'met' if layer_ratio <= GOAL_RATIO else 'NOT met'})."),
    ]
    if background > 0.25:
        notes.append(f"DISTURBED: other processes used {background:.2f} cores meanwhile ({'; '.join(top)}); "
                     "ratios are side by side, absolute figures are not reliable.")
    settings = {"model": label, "size": size, "batch_size": batch_size, "batches": batches, "warmup": warmup,
                "repeats": repeats}
    table = Table(f"StyleAugmentation vs the network's inference, {size} px, batch {batch_size} ({label})",
                  _THROUGHPUT_COLUMNS, rows)
    return SuiteResult("augment-throughput", machine_info(), settings, {"throughput": table}, notes)


# ----------------------------------------------------------------------------- retrieval


def bsds500_test_dir():
    """The BSDS500 test photos of the shared assets (200 JPEGs)."""
    return assets_dir() / "train" / "BSDS500" / "test"


def photo_files(folder, max_photos=None):
    """Sorted image files of `folder` (the first `max_photos` when given).

    Raises:
        FileNotFoundError: the folder is missing or holds no image.
    """
    folder = pathlib.Path(folder)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in PHOTO_EXTENSIONS) if folder.is_dir() else []
    if not files:
        raise FileNotFoundError(f"No photos (*.jpg, *.png) in {folder}; pass --photos or --assets")
    return files[:max_photos] if max_photos else files


def pooled_features(extractor):
    """``image [1, H, W, 3] -> float32 [D]``: the global average pool of the extractor's single layer."""
    layer = extractor.layer_names[0]

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)], reduce_retracing=True)
    def features(image):
        return tf.reduce_mean(extractor(image)[layer], axis=[0, 1, 2])

    return lambda image: features(tf.convert_to_tensor(image, tf.float32)).numpy()


def retrieval_scores(original, stylized):
    """Retrieval of each original from its stylized copy by cosine similarity.

    Args:
        original: float ``[G, D]`` features of all original photos (the gallery).
        stylized: float ``[P, D]`` features of stylized copies of the first ``P <= G``
            originals, same order.

    Returns:
        dict: ``top1`` / ``top5`` (fraction of stylized photos whose own original is the
        most similar / among the 5 most similar of all G originals) and ``mean_cosine``
        (mean cosine similarity of each stylized photo to its own original).
    """
    a = original / np.maximum(np.linalg.norm(original, axis=1, keepdims=True), 1e-12)
    b = stylized / np.maximum(np.linalg.norm(stylized, axis=1, keepdims=True), 1e-12)
    similarity = b @ a.T  # [P stylized, G originals]
    own = similarity[np.arange(len(b)), np.arange(len(b))]
    rank = (similarity > own[:, None]).sum(axis=1)  # Originals strictly more similar than the right one.
    return {"top1": float(np.mean(rank < 1)), "top5": float(np.mean(rank < 5)), "mean_cosine": float(own.mean())}


def vgg19_classifier(weights="imagenet"):
    """``image [1, H, W, 3] in [0, 255] -> ImageNet class index`` with VGG19 and its top.

    Args:
        weights: ``"imagenet"`` (the Keras cache, else a download) or a path to
            ``vgg19_weights_tf_dim_ordering_tf_kernels.h5``.

    Raises:
        NstError: the weights cannot be found or downloaded.
    """
    try:
        if weights == "imagenet":
            weights = keras.utils.get_file(VGG19_TOP_FILE, VGG19_TOP_URL, cache_subdir="models")
        if not os.path.isfile(weights):
            raise FileNotFoundError(weights)
        model = keras.applications.VGG19(weights=weights, include_top=True)
    except Exception as error:  # noqa: BLE001 - get_file raises bare Exception offline.
        raise NstError(f"VGG19 ImageNet weights with the top are unavailable ({type(error).__name__}: "
                       f"{' '.join(str(error).split())[:120]}); put {VGG19_TOP_FILE} in the Keras cache or pass "
                       f"its path. Received: weights={weights!r}") from None

    @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.float32)], reduce_retracing=True)
    def classify(image):
        resized = tf.image.resize(image, (224, 224), method="area")
        return tf.argmax(model(keras.applications.vgg19.preprocess_input(resized), training=False), axis=-1)[0]

    return lambda image: int(classify(tf.convert_to_tensor(image, tf.float32)))


_RETRIEVAL_COLUMNS = [
    ("style", "style", "{}"),
    ("strength", "strength", "{:g}"),
    ("top1", "retrieval top-1", "{:.1%}"),
    ("top5", "retrieval top-5", "{:.1%}"),
    ("mean_cosine", "mean cosine", "{:.3f}"),
    ("label_agreement", "VGG19 top-1 label agreement", "{:.1%}"),
]


def run_retrieval_suite(model, photos=None, max_photos=None, strengths=DEFAULT_STRENGTHS, styles=None,
                        image_size=None, squeezenet_weights="auto", classifier=None, classifier_weights="imagenet"):
    """Luo's experiment: does a CNN still recognize a photo once stylized? (see the module docstring).

    Args:
        model: a multi-style TransformerNet or the path of its ``.keras`` file.
        photos: folder of photos; None: the BSDS500 test set of the shared assets.
        max_photos: int or None. Only the first N photos (sorted by name).
        strengths: floats, the style strengths (``TransformerNet.style_weights``).
        styles: style names, or None: every style besides ``"photo"``.
        image_size: int or None. Longest side the photos are resized to; None: as they are.
        squeezenet_weights: ``"auto"`` (the shared ImageNet file, else random), a path, or
            None (random: only for tests; the figures then mean nothing).
        classifier: None or ``"vgg19"`` (adds the label agreement when its weights load).
        classifier_weights: ``"imagenet"`` or a path, for ``classifier="vgg19"``.

    Returns:
        SuiteResult ``augment-retrieval`` with table ``retrieval``: one row per style and
        strength, then the mean over styles per strength, then the ``"photo"`` style
        itself (the network's identity) as the reference when the network has one.

    Raises:
        FileNotFoundError: no photos. ConfigError: an unknown style or bad strength.
        ImageError: a photo too small for SqueezeNet's deepest layer.
    """
    network = model if isinstance(model, TransformerNet) else load_transformer(model)
    label = "given network" if isinstance(model, TransformerNet) else str(model)
    folder = pathlib.Path(photos) if photos else bsds500_test_dir()
    gallery = photo_files(folder)  # Retrieval is always among all originals, however few are stylized.
    files = gallery[:max_photos] if max_photos else gallery
    styles = list(styles) if styles else [s for s in network.style_names if s != PHOTO_STYLE]
    for style in styles:
        network.style_weights(style)  # Unknown names fail here, before any work.
    strengths = [float(s) for s in strengths]
    for strength in strengths:
        network.style_weights(styles[0], strength)
    weights, weights_label = resolve_weights("squeezenet1_1", squeezenet_weights)
    # The deepest layer: the most content- and least texture-like features of the network.
    extractor = FeatureExtractor([get_spec("squeezenet1_1").feature_layers[-1]], backbone="squeezenet1_1",
                                 weights=weights)
    features = pooled_features(extractor)
    notes = []
    classify = None
    if classifier == "vgg19":
        try:
            classify = vgg19_classifier(classifier_weights)
        except NstError as error:
            notes.append(f"VGG19 top-1 label agreement NOT MEASURED: {error}")
    else:
        notes.append("VGG19 top-1 label agreement not measured (run with --classifier vgg19 on a machine that has "
                     "VGG19's ImageNet weights with the top). SqueezeNet's classifier top is not available here "
                     "(only its notop weights), so only the retrieval part runs.")
    graph = inference_graph(network)
    photos_pixels = [nst_images.load_image(path, max_size=image_size) for path in files]
    smallest = min(min(p.shape[1:3]) for p in photos_pixels)
    if smallest < extractor.min_input_size:
        raise ImageError(f"Photos must be at least {extractor.min_input_size} px on each side for SqueezeNet's "
                         f"{extractor.layer_names[0]}; pass a larger --image-size. Received: a side of {smallest} px")
    original = np.stack([features(p) for p in photos_pixels] + [
        features(nst_images.load_image(path, max_size=image_size)) for path in gallery[len(files):]])
    original_labels = [classify(p) for p in photos_pixels] if classify else None

    cases = [(style, strength) for style in styles for strength in strengths]
    if PHOTO_STYLE in network.style_names:
        cases.append((PHOTO_STYLE, 1.0))
    rows = []
    with LoadMonitor(1.0) as load:
        for style, strength in cases:
            style_weights = network.style_weights(style, strength)[None]
            stylized, agree = [], []
            for index, pixels in enumerate(photos_pixels):
                out = graph(pixels, style=style_weights)
                stylized.append(features(out))
                if classify:
                    agree.append(classify(out) == original_labels[index])
            row = {"style": style, "strength": strength, **retrieval_scores(original, np.stack(stylized)),
                   "label_agreement": float(np.mean(agree)) if classify else None}
            rows.append(row)
        background, _top = load.mark()
    styled_rows = [r for r in rows if r["style"] != PHOTO_STYLE]
    means = []
    for strength in strengths:
        group = [r for r in styled_rows if r["strength"] == strength]
        means.append({"style": f"mean of {len(group)} styles", "strength": strength,
                      **{key: (float(np.mean([r[key] for r in group])) if group[0][key] is not None else None)
                         for key in ("top1", "top5", "mean_cosine", "label_agreement")}})
    rows = styled_rows + means + [r for r in rows if r["style"] == PHOTO_STYLE]
    notes[:0] = [
        (f"{len(files)} photos stylized, from {folder}{'' if image_size is None else f', longest side {image_size} px'}; "
        f"features: SqueezeNet v1.1 {extractor.layer_names[0]}, global average pool ({weights_label} weights"
        f"{'' if weights_label != 'random' else ': RANDOM, the figures mean nothing'}); retrieval among all "
        f"{len(gallery)} originals by cosine similarity."),
        ("Strength s: style weights s * style + (1 - s) * photo (TransformerNet.style_weights). The 'photo' row is "
        "the network's identity style: how far the network alone moves the features."),
    ]
    if background > 0.25:
        notes.append(f"Other processes used {background:.2f} cores meanwhile (no effect on these figures).")
    settings = {"model": label, "photos": len(files), "gallery": len(gallery), "strengths": strengths,
                "image_size": image_size, "classifier": classifier}
    table = Table(f"Retrieval of the original photo from its stylized copy ({label})", _RETRIEVAL_COLUMNS, rows)
    return SuiteResult("augment-retrieval", machine_info(), settings, {"retrieval": table}, notes)
