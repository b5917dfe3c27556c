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
  """keras Conv2D whose convolutions run the fastest way this machine has, with the same sums.

  Dilation. Keras lowers dilated convolutions to space-to-batch + convolution, which pads small
  feature maps to multiples of the rate: at rate 18 on a 4x4 map a train step of this layer took
  32.6 ms against 1.8 ms for oneDNN's native dilated kernel. The native kernel is used for a
  dtype when `native_dilated_gradients` finds it (with its gradients) on this machine -- float32
  with oneDNN; bfloat16 / float16 where oneDNN has them -- and Keras' lowering otherwise.
  Grouped kernels keep Keras' lowering: TensorFlow's CPU conv2d has no grouped input gradient.

  Stride-1 "same" convolutions with an odd kernel larger than 1x1 and a map size known while
  tracing (every 3x3 of the ResNets but the strided ones, the ASPP, DeepLab-v2's classifier)
  run as `tap_convolution`: the kernel gradient is one matrix product per kernel tap over the
  rows and columns where that tap reads the map, faster than oneDNN's filter-gradient kernel on
  all but one shape of these networks (profile of the MiB network's train step on an AVX2 CPU:
  oneDNN's filter gradients of the 3x3 convolutions took 2.7x their forward, of the dilated
  ASPP branch at rate 6 4.8x); the forward and input gradient stay the native kernels. Each
  tap's product covers only the outputs where that tap reads the map: where a dilation rate is
  large against the map (DeepLab's ASPP: rates 6-18 on the 21x21 map of a 321 crop at output
  stride 16; 12-32 on 41x41 at 8) most taps read the zero padding -- at rate 18 on 21x21, 81 %
  of a 3x3 kernel's multiply-adds -- and those products shrink or vanish. For dtypes without
  native dilated kernels, when skipping the padding saves at least `TAP_SAVING` of the work, the
  forward and input gradient are such per-tap products too (Keras' lowering otherwise). With the
  native kernels that per-tap forward no longer pays once the kernel gradient is per-tap: timed
  alone (AVX2, 2048 input channels, batch 2) it was 30-40 % slower for DeepLab-v2's 21-channel
  classifiers and even (±5 %) for the 256-channel ASPP branches; train steps alternated in one
  process: DeepLab-v2 1.009x, MiB network 1.031x (321²) and 1.010x (512²) with the native
  forward. Same variables and the same sums either way (tests compare all three with Keras'
  Conv2D).
  """

  def convolution_op(self, inputs, kernel):
    if self.groups > 1:
      return super().convolution_op(inputs, kernel)
    dilated = max(self.dilation_rate) > 1
    native = not dilated or native_dilated_gradients(inputs.dtype.name)
    fraction = tap_work_fraction(inputs.shape, kernel.shape, self.strides, self.padding,
                                 self.dilation_rate)
    # Undilated forwards stay TensorFlow's kernel even on maps small enough for padding taps
    # to matter (only in toy sizes): ImageNet backbones then reproduce keras.applications
    # bit for bit. Where the native dilated kernel exists its forward and input gradient win
    # (they skip most padding work themselves), so the padding-tap forward is for the dtypes
    # without it, instead of Keras' space-to-batch lowering.
    skip_padding = dilated and not native and fraction <= 1 - TAP_SAVING
    if skip_padding or (native and fraction < 1.0):
      return tap_convolution(inputs, kernel, self.dilation_rate, dense=not skip_padding)
    if not dilated or not native:
      return super().convolution_op(inputs, kernel)
    return tf.nn.conv2d(inputs, kernel, strides=list(self.strides),
                        padding=self.padding.upper(), dilations=list(self.dilation_rate))


TAP_SAVING = 0.4


def _tap_ranges(size: int, kernel: int, rate: int) -> list[tuple[int, int, int, int]]:
  """Per kernel tap along one axis: (tap, offset, first output, last output + 1) of the outputs
  whose input (output + offset) lies inside the map ("same" padding, stride 1); empty taps
  dropped."""
  centre = (kernel - 1) // 2
  ranges = []
  for tap in range(kernel):
    offset = (tap - centre) * rate
    first, last = max(0, -offset), min(size, size - offset)
    if first < last:
      ranges.append((tap, offset, first, last))
  return ranges


def tap_work_fraction(input_shape, kernel_shape, strides, padding, dilation_rate) -> float:
  """Multiply-adds of `tap_convolution`'s per-tap products over those of the dense convolution;
  1.0 where it does not apply (unknown map size, stride, "valid" padding, even or 1x1 kernels)."""
  height, width = input_shape[1], input_shape[2]
  kh, kw = kernel_shape[0], kernel_shape[1]
  if (height is None or width is None or tuple(strides) != (1, 1) or padding != "same"
      or kh % 2 == 0 or kw % 2 == 0 or kh * kw == 1):
    return 1.0
  rows = sum(last - first for _, _, first, last in _tap_ranges(height, kh, dilation_rate[0]))
  cols = sum(last - first for _, _, first, last in _tap_ranges(width, kw, dilation_rate[1]))
  return rows * cols / (kh * kw * height * width)


def tap_convolution(inputs, kernel, dilation_rate, dense: bool):
  """A stride-1 "same" convolution (dilated or not; static height and width) whose kernel
  gradient is, per kernel tap, the product of the input window that tap reads with the output
  gradient's window it writes: [rows * cols, in]^T [rows * cols, out]. With `dense` the forward
  and input gradient are TensorFlow's convolution kernels; without, they are per-tap products
  too, each over its window only (the taps' reads of the zero padding skipped)."""
  kernel = tf.convert_to_tensor(kernel)   # a custom-gradient input, not a captured variable
  _, height, width, channels_in = inputs.shape
  kh, kw, _, channels_out = kernel.shape
  rate = tuple(dilation_rate)
  # Per tap: its kernel position and the boxes (top, bottom, left, right) of the input it reads
  # and of the output it writes.
  taps = [(row, col, (top + dy, bottom + dy, left + dx, right + dx), (top, bottom, left, right))
          for row, dy, top, bottom in _tap_ranges(height, kh, rate[0])
          for col, dx, left, right in _tap_ranges(width, kw, rate[1])]
  strides, dilations = [1, 1, 1, 1], [1, rate[0], rate[1], 1]

  def rows(tensor):
    return tf.reshape(tensor, [-1, tensor.shape[-1]])

  def read(tensor, box):
    top, bottom, left, right = box
    return tensor[:, top:bottom, left:right, :]

  def place(part, box):
    """`part`, the values of `box`, zero-padded to the whole map."""
    top, bottom, left, right = box
    if box == (0, height, 0, width):
      return part
    return tf.pad(part, [[0, 0], [top, height - bottom], [left, width - right], [0, 0]])

  def product(window, matrix):
    return tf.reshape(tf.matmul(rows(window), matrix),
                      [-1, window.shape[1], window.shape[2], matrix.shape[-1]])

  @tf.custom_gradient
  def convolution(inputs, kernel):
    if dense:
      outputs = tf.nn.conv2d(inputs, kernel, strides, "SAME", dilations=dilations)
    else:
      outputs = tf.add_n([place(product(read(inputs, reads), kernel[row, col]), writes)
                          for row, col, reads, writes in taps])

    def gradient(output_gradient):
      if dense:
        input_gradient = tf.raw_ops.Conv2DBackpropInput(
            input_sizes=tf.shape(inputs), filter=kernel, out_backprop=output_gradient,
            strides=strides, padding="SAME", dilations=dilations)
      else:
        input_gradient = tf.add_n([
            place(product(read(output_gradient, writes), tf.transpose(kernel[row, col])), reads)
            for row, col, reads, writes in taps])
      by_tap = {(row, col): tf.matmul(rows(read(inputs, reads)),
                                      rows(read(output_gradient, writes)), transpose_a=True)
                for row, col, reads, writes in taps}
      kernel_gradient = tf.stack([   # taps that read only padding: zero
          tf.stack([by_tap[row, col] if (row, col) in by_tap
                    else tf.zeros([channels_in, channels_out], kernel.dtype) for col in range(kw)])
          for row in range(kh)])
      return input_gradient, kernel_gradient

    return outputs, gradient

  return convolution(inputs, kernel)


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
