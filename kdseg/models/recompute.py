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
  """keras BatchNormalization whose moving averages stay put while a segment is recomputed."""

  def call(self, inputs, training=None, mask=None):
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
