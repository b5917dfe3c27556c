"""Small layers shared by the backbones and heads."""
from __future__ import annotations

import functools
import os

from keras import layers
import tensorflow as tf


@functools.lru_cache(maxsize=None)
def onednn_enabled() -> bool:
  """Whether TensorFlow runs with oneDNN (TF_ENABLE_ONEDNN_OPTS; default depends on the CPU)."""
  try:
    from tensorflow.python.util import _pywrap_util_port  # pylint: disable=g-import-not-at-top
    return bool(_pywrap_util_port.IsMklEnabled())
  except (ImportError, AttributeError):
    return os.environ.get("TF_ENABLE_ONEDNN_OPTS") == "1"


@functools.lru_cache(maxsize=None)
def native_dilated_gradients(dtype_name: str) -> bool:
  """Whether this machine's TensorFlow runs a dilated tf.nn.conv2d and both its gradients in
  `dtype_name`: probed once per dtype on a 6x6 input, outside any graph being traced. Without
  oneDNN TensorFlow's CPU kernels have no dilated gradient at all; with it, float32 has one, and
  whether bfloat16 / float16 have one depends on the CPU (AVX2 machines: no)."""
  if not onednn_enabled():
    return False
  dtype = tf.as_dtype(dtype_name)
  with tf.init_scope():   # eager, even when called while a tf.function is traced
    try:   # the three kernels a train step runs (no tape: none may be recording here)
      inputs, kernel = tf.ones([1, 6, 6, 2], dtype), tf.ones([3, 3, 2, 2], dtype)
      strides, dilations = [1, 1, 1, 1], [1, 2, 2, 1]
      outputs = tf.raw_ops.Conv2D(input=inputs, filter=kernel, strides=strides, padding="SAME",
                                  dilations=dilations)
      results = [outputs,
                 tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(inputs), filter=kernel,
                                                out_backprop=outputs, strides=strides,
                                                padding="SAME", dilations=dilations),
                 tf.raw_ops.Conv2DBackpropFilter(input=inputs, filter_sizes=tf.shape(kernel),
                                                 out_backprop=outputs, strides=strides,
                                                 padding="SAME", dilations=dilations)]
      return all(bool(tf.reduce_all(tf.math.is_finite(tf.cast(r, tf.float32)))) for r in results)
    except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
            tf.errors.NotFoundError, tf.errors.InternalError):
      return False


class AtrousConv2D(layers.Conv2D):
  """keras Conv2D whose dilation runs as tf.nn.conv2d(dilations=...) where the machine has it.

  Keras lowers dilated convolutions to space-to-batch + convolution, which pads small feature maps
  to multiples of the rate: at rate 18 on a 4x4 map a train step of this layer took 32.6 ms
  against 1.8 ms for oneDNN's native dilated kernel. The native kernel is used for a dtype when
  `native_dilated_gradients` finds it (with its gradients) on this machine -- float32 with
  oneDNN; bfloat16 / float16 where oneDNN has them -- and Keras' lowering otherwise. Grouped
  kernels keep Keras' lowering: TensorFlow's CPU conv2d has no grouped input gradient.
  Same variables, same results either way.
  """

  def convolution_op(self, inputs, kernel):
    if (max(self.dilation_rate) == 1 or self.groups > 1
        or not native_dilated_gradients(inputs.dtype.name)):
      return super().convolution_op(inputs, kernel)
    return tf.nn.conv2d(inputs, kernel, strides=list(self.strides),
                        padding=self.padding.upper(), dilations=list(self.dilation_rate))


class TorchMaxPool2D(layers.Layer):
  """PyTorch's MaxPool2d(kernel, stride, padding): `padding` rows and columns of -inf on every
  side, then a VALID max pool. Keras' "same" pads only after for even sizes, and zero padding
  differs from -inf once activations can be negative (leaky ReLU, a stem ending in a
  convolution)."""

  def __init__(self, pool_size: int = 3, strides: int = 2, padding: int = 1, **kwargs):
    super().__init__(**kwargs)
    self.pool_size, self.strides, self.padding = pool_size, strides, padding

  def call(self, inputs):
    p = self.padding
    x = tf.pad(inputs, [[0, 0], [p, p], [p, p], [0, 0]], constant_values=inputs.dtype.min)
    return tf.nn.max_pool2d(x, self.pool_size, self.strides, "VALID")

  def get_config(self):
    return {**super().get_config(), "pool_size": self.pool_size, "strides": self.strides,
            "padding": self.padding}
