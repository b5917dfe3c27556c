"""DeepLab-v3 head as the MiB reference builds it (ASPP with image pooling and BN).

  branches = [1x1, 3x3 rate r1, 3x3 rate r2, 3x3 rate r3] (no bias) -> concat -> BN+act
  -> 1x1 reduction; image pooling -> 1x1 -> BN+act -> 1x1 reduction, broadcast and added;
  -> BN+act. Activation: leaky ReLU 0.01 (the reference's in-place ABN default).
Rates (6, 12, 18) at output stride 16 and (12, 24, 32) at output stride 8: the MiB reference's
modules/deeplab.py (32, not the 36 of the DeepLab-v3 paper). BN epsilon 1e-5, PyTorch's.
"""
from __future__ import annotations

import keras
from keras import layers
import tensorflow as tf

from kdseg.models.layers import AtrousConv2D
from kdseg.models.recompute import BatchNormalization
from kdseg.models.resnet import BN_MOMENTUM, TORCH_BN_EPSILON


def aspp_rates(output_stride: int) -> tuple[int, int, int]:
  return (6, 12, 18) if output_stride >= 16 else (12, 24, 32)


class DeepLabV3Head(keras.layers.Layer):
  """[B, h, w, C_in] encoder features -> [B, h, w, out_channels] decoder features."""

  def __init__(self, hidden_channels: int = 256, out_channels: int = 256, output_stride: int = 16,
               **kwargs):
    super().__init__(**kwargs)
    rates = aspp_rates(output_stride)
    # Named attributes, not a list: tf.train.Checkpoint does not see Keras 3 layers in lists.
    self.map_conv0 = layers.Conv2D(hidden_channels, 1, use_bias=False, name="map_conv0")
    for index, rate in enumerate(rates, start=1):
      setattr(self, f"map_conv{index}", AtrousConv2D(
          hidden_channels, 3, padding="same", dilation_rate=rate, use_bias=False,
          name=f"map_conv{index}"))
    self.map_bn = BatchNormalization(momentum=BN_MOMENTUM, epsilon=TORCH_BN_EPSILON,
                                        name="map_bn")
    self.red_conv = layers.Conv2D(out_channels, 1, use_bias=False, name="red_conv")
    self.pool_conv = layers.Conv2D(hidden_channels, 1, use_bias=False, name="pool_conv")
    self.pool_bn = BatchNormalization(momentum=BN_MOMENTUM, epsilon=TORCH_BN_EPSILON,
                                        name="pool_bn")
    self.pool_red_conv = layers.Conv2D(out_channels, 1, use_bias=False, name="pool_red_conv")
    self.red_bn = BatchNormalization(momentum=BN_MOMENTUM, epsilon=TORCH_BN_EPSILON,
                                        name="red_bn")
    self.out_channels = out_channels

  @staticmethod
  def _act(x):
    return tf.nn.leaky_relu(x, alpha=0.01)

  def call(self, features, training=None):
    """Returns (decoder features, the four ASPP branch outputs stacked on axis -2)."""
    branches = [branch(features) for branch in
                (self.map_conv0, self.map_conv1, self.map_conv2, self.map_conv3)]
    x = tf.concat(branches, axis=-1)
    x = self.red_conv(self._act(self.map_bn(x, training=training)))
    pooled = tf.reduce_mean(features, axis=[1, 2], keepdims=True)
    pooled = self._act(self.pool_bn(self.pool_conv(pooled), training=training))
    x = x + self.pool_red_conv(pooled)
    return self._act(self.red_bn(x, training=training)), tf.stack(branches, axis=-2)
