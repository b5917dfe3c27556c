"""Gradient checkpointing: keep only segment inputs in the forward pass, recompute in backward.

`checkpointed(fn)` wraps a function of one tensor in a tf.custom_gradient that runs `fn` again
under a local tape when the gradient is needed, so the activations inside `fn` are not held
from the forward to the backward pass (tf.recompute_grad does the same, but it would also repeat
batch normalisation's moving-statistics update). During that second run `recomputing()` is set,
and kdseg's BatchNormalization normalises with the batch statistics without updating its moving
averages: the recomputed activations equal the forward ones and each step updates the moving
statistics once, as without checkpointing.
"""
from __future__ import annotations

import contextlib
import threading

from keras import layers, ops
import tensorflow as tf

_STATE = threading.local()


@contextlib.contextmanager
def recomputing():
  previous = getattr(_STATE, "active", False)
  _STATE.active = True
  try:
    yield
  finally:
    _STATE.active = previous


def is_recomputing() -> bool:
  return getattr(_STATE, "active", False)


class BatchNormalization(layers.BatchNormalization):
  """keras BatchNormalization on TensorFlow's fused kernel, whose moving averages stay put while
  a segment is recomputed.

  Keras 3 normalises with separate moment, subtraction, scaling and shift ops (and their
  gradients); in training, float32 channels-last inputs here take FusedBatchNormV3 instead, one
  kernel each way (oneDNN's on CPU; a ResNet-101 forward in training mode 0.61 s against 0.77 s).
  Its batch variance is Bessel-corrected for the moving average, as PyTorch's BatchNorm2d and
  in-place ABN do (the references); Keras' own update uses the biased variance. The
  normalisation itself uses the biased batch variance either way. Inference keeps Keras' ops:
  the fused kernel with given statistics (is_training=False) made that forward 11x slower on
  this CPU (6.5 s against 0.59 s).

  `moving_statistics_only` (set by kdseg.models.freezing.freeze_statistics, --batch_norm=frozen)
  makes the layer normalise with its moving statistics in training too, and leave them as they
  are, while gamma and beta still train: the KD paper's code runs every BN with
  is_training=False and trains gamma/beta (LTTM/IL-SemSegm codes/LD1/network.py: _batch_norm).
  It is not saved: each step sets it again.
  """

  moving_statistics_only = False

  def _fusable(self, inputs, mask) -> bool:
    return (mask is None and not self.renorm and not self.synchronized
            and inputs.dtype in (tf.float32, tf.bfloat16) and len(inputs.shape) == 4
            and tuple(self._reduction_axes) == (0, 1, 2) and self.scale and self.center)

  def call(self, inputs, training=None, mask=None):
    if self.moving_statistics_only:
      training = False
    if training and self.trainable and self._fusable(inputs, mask):
      outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
          inputs, self.gamma, self.beta, epsilon=self.epsilon, is_training=True)
      if not is_recomputing():
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
      return outputs
    if not (training and self.trainable and is_recomputing()) or self.renorm:
      return super().call(inputs, training=training, mask=mask)
    inputs = ops.cast(inputs, "float32")
    mean, variance = self._moments(inputs, mask)
    outputs = ops.batch_normalization(
        inputs, mean, variance, axis=self.axis,
        offset=None if self.beta is None else ops.cast(self.beta, "float32"),
        scale=None if self.gamma is None else ops.cast(self.gamma, "float32"),
        epsilon=self.epsilon)
    return ops.cast(outputs, self.compute_dtype)


def checkpointed(fn):
  """`fn(x) -> y` whose inner activations are recomputed in the backward pass."""

  @tf.custom_gradient
  def wrapped(x):
    y = fn(x)

    def grad(dy, variables=None):
      variables = list(variables or [])
      # The recomputation must wait for the incoming gradient: it depends only on x, so without
      # this edge the graph executor is free to run it during the forward pass, and every
      # segment's recomputed activations are alive at once (more memory than no checkpointing).
      with tf.control_dependencies([dy]):
        x_again = tf.identity(x)
      with tf.GradientTape() as tape:
        tape.watch(x_again)
        with recomputing():
          recomputed = fn(x_again)
      gradients = tape.gradient(recomputed, [x_again] + variables, output_gradients=dy)
      return gradients[0], gradients[1:]

    return y, grad

  return wrapped
