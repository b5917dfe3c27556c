"""SGD with momentum as both reference implementations update the weights.

PyTorch's torch.optim.SGD (the MiB reference, fcdl94/MiB run.py:172, and PLOP,
arthurdouillard/CVPR2021_PLOP run.py:276: momentum 0.9, nesterov=True) and TF1's
MomentumOptimizer (the KD paper's code, LTTM/IL-SemSegm LD1/model_with_distillation.py:
network_optimizer, plain momentum) keep raw gradients in their momentum buffer and apply the
learning rate of the current iteration:

    b <- mu * b + g
    theta <- theta - lr_t * b                 (plain momentum)
    theta <- theta - lr_t * (g + mu * b)      (Nesterov, with the b just updated)

Keras' SGD keeps the learning rate inside its velocity (v <- mu * v - lr_t * g; theta <- theta +
v). At a constant rate the two give the same weights; under a decaying rate they do not: in
Keras each past gradient keeps the rate of the iteration it came from, in the references every
buffered gradient moves the weights at today's rate. `ReferenceSGD` is keras.optimizers.SGD with
the references' update: its "momentum" slots hold b, as the references' buffers do.
"""
from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kdseg")
class ReferenceSGD(keras.optimizers.SGD):
  """keras.optimizers.SGD whose momentum slot holds the sum of raw gradients (see module)."""

  def update_step(self, gradient, variable, learning_rate):
    learning_rate = ops.cast(learning_rate, variable.dtype)
    gradient = ops.cast(gradient, variable.dtype)
    if self.momentum == 0:
      self.assign_sub(variable, ops.multiply(gradient, learning_rate))
      return
    buffer = self.momentums[self._get_variable_index(variable)]
    momentum = ops.cast(self.momentum, variable.dtype)
    self.assign(buffer, ops.add(ops.multiply(buffer, momentum), gradient))
    direction = (ops.add(gradient, ops.multiply(buffer, momentum)) if self.nesterov
                 else buffer)
    self.assign_sub(variable, ops.multiply(direction, learning_rate))


def stability_bound(momentum: float, nesterov: bool) -> float:
  """The largest lr * h at which this update stays bounded on a quadratic of curvature h.

  Plain momentum: the iteration matrix of (theta, b) has characteristic polynomial
  z^2 - (1 + mu - a) z + mu with a = lr * h, stable while a < 2 (1 + mu) (3.8 at mu 0.9).
  Nesterov: z^2 - (1 + mu)(1 - a) z + mu (1 - a), stable while a < 2 (1 + mu) / (1 + 2 mu)
  (1.36 at mu 0.9): a weight stable under one can oscillate with growing amplitude under the
  other (tools/curvature.py).
  """
  if nesterov:
    return 2.0 * (1.0 + momentum) / (1.0 + 2.0 * momentum)
  return 2.0 * (1.0 + momentum)
