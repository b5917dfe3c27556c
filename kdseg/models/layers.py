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

  Where the rate is large against the feature map (DeepLab's ASPP: rates 6-18 on the 21x21 map
  of a 321 crop at output stride 16; 6-24 on 41x41 at 8), most taps of a dilated kernel read
  the zero padding: at rate 18 on 21x21, 81 % of a 3x3 kernel's multiply-adds are with zeros,
  in the forward pass and both gradients. When the map's size is known while tracing, the layer
  then sums one 1x1 convolution per tap over only the rows and columns where that tap reads
  the map (`tap_convolution`): the same sum without the zeros, used when it saves at least
  `TAP_SAVING` of the work.
  """

  def convolution_op(self, inputs, kernel):
    if max(self.dilation_rate) == 1 or self.groups > 1:
      return super().convolution_op(inputs, kernel)
    if tap_work_fraction(inputs.shape, kernel.shape, self.strides, self.padding,
                         self.dilation_rate) <= 1 - TAP_SAVING:
      return tap_convolution(inputs, kernel, self.dilation_rate)
    if not native_dilated_gradients(inputs.dtype.name):
      return super().convolution_op(inputs, kernel)
    return tf.nn.conv2d(inputs, kernel, strides=list(self.strides),
                        padding=self.padding.upper(), dilations=list(self.dilation_rate))


TAP_SAVING = 0.4


def _tap_ranges(size: int, kernel: int, rate: int) -> list[tuple[int, int, int]]:
  """Per kernel tap along one axis: (offset, first output, last output + 1) of the outputs whose
  input (output + offset) lies inside the map ("same" padding, stride 1); empty taps dropped."""
  centre = (kernel - 1) // 2
  ranges = []
  for tap in range(kernel):
    offset = (tap - centre) * rate
    first, last = max(0, -offset), min(size, size - offset)
    if first < last:
      ranges.append((tap, offset, first, last))
  return ranges


def tap_work_fraction(input_shape, kernel_shape, strides, padding, dilation_rate) -> float:
  """Multiply-adds of `tap_convolution` over those of the dense dilated convolution; 1.0 where
  it does not apply (unknown map size, stride, "valid" padding, even kernels)."""
  height, width = input_shape[1], input_shape[2]
  kh, kw = kernel_shape[0], kernel_shape[1]
  if (height is None or width is None or tuple(strides) != (1, 1) or padding != "same"
      or kh % 2 == 0 or kw % 2 == 0):
    return 1.0
  rows = sum(last - first for _, _, first, last in _tap_ranges(height, kh, dilation_rate[0]))
  cols = sum(last - first for _, _, first, last in _tap_ranges(width, kw, dilation_rate[1]))
  return rows * cols / (kh * kw * height * width)


def tap_convolution(inputs, kernel, dilation_rate):
  """A stride-1 "same" dilated convolution as a sum of 1x1 convolutions, one per kernel tap,
  each over the output window where its input lies inside the map (static height and width)."""
  height, width = inputs.shape[1], inputs.shape[2]
  output = None
  for row_tap, dy, top, bottom in _tap_ranges(height, kernel.shape[0], dilation_rate[0]):
    for col_tap, dx, left, right in _tap_ranges(width, kernel.shape[1], dilation_rate[1]):
      window = inputs[:, top + dy:bottom + dy, left + dx:right + dx, :]
      part = tf.nn.conv2d(window, kernel[row_tap:row_tap + 1, col_tap:col_tap + 1], 1, "VALID")
      if (top, bottom, left, right) != (0, height, 0, width):
        part = tf.pad(part, [[0, 0], [top, height - bottom], [left, width - right], [0, 0]])
      output = part if output is None else output + part
  return output


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
