"""nst_tf: neural style transfer on TensorFlow/Keras.

Optimization-based style transfer (Gatys et al. 2016, 2017), fast feed-forward style
networks (Johnson et al. 2016) and the Keras parts behind them. Importing the package
registers every nst_tf Keras object, so ``keras.models.load_model`` needs nothing else.
Pixel contract: float32 RGB ``[batch, height, width, 3]`` in [0, 255].
"""

from nst_tf.backbones import BACKBONES, build_backbone, preprocess_caffe
from nst_tf.color import transfer_luminance
from nst_tf.config import StyleConfig
from nst_tf.errors import ConfigError, ImageError, NstError, OptimizationError, WeightsError
from nst_tf.features import FeatureExtractor
from nst_tf.images import load_image, resize_longest_side, save_image
from nst_tf.inference import TransformerInference, inference_graph
from nst_tf.layers import ConvBlock, InstanceNormalization, ReflectionPadding2D, ResidualBlock, UpsampleConv2D
from nst_tf.losses import (
    GramStyleLoss,
    TotalVariationLoss,
    content_loss,
    gram_matrix,
    style_layer_loss,
    style_loss,
    total_variation_loss,
)
from nst_tf.optimize import StyleObjective, StylizeResult, stylize
from nst_tf.training import FastStyleTrainer, TrainConfig, train
from nst_tf.transformer import TransformerNet, load_stylizer, load_transformer, stylize_image, stylize_tiled

__version__ = "0.1.0"

__all__ = [
    "BACKBONES",
    "ConvBlock",
    "FastStyleTrainer",
    "InstanceNormalization",
    "ReflectionPadding2D",
    "ResidualBlock",
    "TrainConfig",
    "TransformerInference",
    "TransformerNet",
    "UpsampleConv2D",
    "load_stylizer",
    "load_transformer",
    "stylize_image",
    "stylize_tiled",
    "train",
    "ConfigError",
    "FeatureExtractor",
    "GramStyleLoss",
    "ImageError",
    "NstError",
    "OptimizationError",
    "StyleConfig",
    "StyleObjective",
    "StylizeResult",
    "TotalVariationLoss",
    "WeightsError",
    "build_backbone",
    "content_loss",
    "gram_matrix",
    "inference_graph",
    "load_image",
    "preprocess_caffe",
    "resize_longest_side",
    "save_image",
    "style_layer_loss",
    "style_loss",
    "stylize",
    "total_variation_loss",
    "transfer_luminance",
]
