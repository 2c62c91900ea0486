"""nst_tf: neural style transfer on TensorFlow/Keras.

Optimization-based style transfer (Gatys et al. 2016, 2017), fast feed-forward style
networks (Johnson et al. 2016) and the Keras parts behind them.
Pixel contract: float32 RGB ``[batch, height, width, 3]`` in [0, 255].

Importing the package is cheap: each public name below is imported on first use
(PEP 562), so ``import nst_tf.images`` needs only NumPy and Pillow. The nst_tf Keras
objects (layers, TransformerNet, FeatureExtractor, loss classes) are registered with
Keras as soon as both nst_tf and Keras are imported, whichever comes first, so
``keras.models.load_model("x.keras")`` needs nothing else.
"""

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS = {
    "StyleAugmentation": "nst_tf.augmentation",
    "BACKBONES": "nst_tf.backbones",
    "build_backbone": "nst_tf.backbones",
    "preprocess_caffe": "nst_tf.backbones",
    "transfer_luminance": "nst_tf.color",
    "StyleConfig": "nst_tf.config",
    "ConfigError": "nst_tf.errors",
    "ImageError": "nst_tf.errors",
    "NstError": "nst_tf.errors",
    "OptimizationError": "nst_tf.errors",
    "WeightsError": "nst_tf.errors",
    "export_model": "nst_tf.export",
    "export_tflite": "nst_tf.tflite",
    "FeatureExtractor": "nst_tf.features",
    "load_image": "nst_tf.images",
    "resize_longest_side": "nst_tf.images",
    "save_image": "nst_tf.images",
    "TransformerInference": "nst_tf.inference",
    "inference_graph": "nst_tf.inference",
    "ConditionalInstanceNormalization": "nst_tf.layers",
    "ConvBlock": "nst_tf.layers",
    "InstanceNormalization": "nst_tf.layers",
    "ReflectionPadding2D": "nst_tf.layers",
    "ResidualBlock": "nst_tf.layers",
    "UpsampleConv2D": "nst_tf.layers",
    "GramStyleLoss": "nst_tf.losses",
    "TotalVariationLoss": "nst_tf.losses",
    "content_loss": "nst_tf.losses",
    "gram_matrix": "nst_tf.losses",
    "style_layer_loss": "nst_tf.losses",
    "style_loss": "nst_tf.losses",
    "total_variation_loss": "nst_tf.losses",
    "StyleObjective": "nst_tf.optimize",
    "StylizeResult": "nst_tf.optimize",
    "stylize": "nst_tf.optimize",
    "load_stylizer": "nst_tf.stylizer",
    "load_transformer": "nst_tf.stylizer",
    "stylize_image": "nst_tf.stylizer",
    "stylize_tiled": "nst_tf.stylizer",
    "FastStyleTrainer": "nst_tf.training",
    "TrainConfig": "nst_tf.training",
    "train": "nst_tf.training",
    "TransformerNet": "nst_tf.transformer",
    "with_added_style": "nst_tf.transformer",
}

__all__ = sorted(_EXPORTS)

# Modules whose import registers nst_tf objects with keras.saving.
_KERAS_MODULES = ("nst_tf.layers", "nst_tf.transformer", "nst_tf.features", "nst_tf.losses", "nst_tf.augmentation")


# Submodules reachable as attributes (``nst_tf.data.photo_dataset``), imported on first use.
_SUBMODULES = frozenset({
    "augmentation", "backbones", "cli", "color", "config", "data", "errors", "export", "features", "files",
    "images", "inference", "layers", "lbfgs", "losses", "memory", "optimize", "signatures", "spatial", "stylizer",
    "tflite", "training", "transformer",
})


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"nst_tf.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nst_tf' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # Later lookups skip __getattr__.
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


def register_keras_objects():
    """Imports the modules that register nst_tf's Keras objects (imports TensorFlow).

    Called automatically once Keras is imported; call it yourself only to register
    before Keras is otherwise used.
    """
    for module in _KERAS_MODULES:
        importlib.import_module(module)


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Runs :func:`register_keras_objects` once Keras has been imported.

    Keras resolves a saved ``"nst_tf>TransformerNet"`` only through its registry; it
    does not import third-party modules named in a ``.keras`` file. Registering when
    Keras arrives keeps ``import nst_tf`` free of TensorFlow and ``load_model`` working.
    The finder only wraps the loaders of ``keras``, ``tensorflow`` and nst_tf's own
    modules, and registers after the outermost of those imports completes: TensorFlow
    imports Keras half-way through its own ``__init__``, and a half-imported module
    cannot be imported from.
    """

    _WATCHED = ("keras", "tensorflow")

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in self._WATCHED and not fullname.startswith("nst_tf."):
            return None
        for finder in sys.meta_path[sys.meta_path.index(self) + 1:]:
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find else None
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        exec_module = loader.exec_module

        def exec_then_register(module):
            exec_module(module)
            if "keras" in sys.modules and not _importing(exclude=fullname):
                _register_quietly()

        loader.exec_module = exec_then_register
        return spec


def _importing(exclude):
    """Whether Keras, TensorFlow or an nst_tf module other than `exclude` is still being imported."""
    for name in ("keras", "tensorflow", *(n for n in list(sys.modules) if n.startswith("nst_tf."))):
        spec = getattr(sys.modules.get(name), "__spec__", None)
        if name != exclude and getattr(spec, "_initializing", False):
            return True
    return False


_registered = False


def _register_quietly():
    global _registered
    if _registered:
        return
    _registered = True
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _RegisterAfterKeras)]
    try:
        register_keras_objects()
    except Exception as error:  # noqa: BLE001 - never break the user's own `import keras`.
        warnings.warn(f"nst_tf could not register its Keras objects ({type(error).__name__}: {error}); "
                      "call nst_tf.register_keras_objects() to see why.", stacklevel=2)


if "keras" in sys.modules and not _importing(exclude=None):
    _register_quietly()
else:
    sys.meta_path.insert(0, _RegisterAfterKeras())
