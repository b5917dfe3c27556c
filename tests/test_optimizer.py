"""kdseg.engine.optimizer: the references' SGD update, computed by hand over a decaying rate."""
import keras
import numpy as np
import tensorflow as tf

from kdseg.engine.loop import Schedule, learning_rate_schedule, make_optimizer
from kdseg.engine.optimizer import ReferenceSGD, stability_bound

GRADIENTS = [1.0, 2.0, -1.0, 0.5]


def _run(optimizer, gradients=GRADIENTS, start=1.0):
  variable = tf.Variable(start)
  thetas = []
  for gradient in gradients:
    optimizer.apply_gradients([(tf.constant(gradient), variable)])
    thetas.append(float(variable.numpy()))
  return thetas, optimizer


def _linear_decay():
  # lr_k = 0.1 (1 - k / 4): 0.1, 0.075, 0.05, 0.025 at iterations 0..3.
  return keras.optimizers.schedules.PolynomialDecay(0.1, 4, 0.0, power=1.0)


class ReferenceSGDTest(tf.test.TestCase):

  def test_nesterov_as_pytorch_sgd_by_hand(self):
    # b <- 0.9 b + g; theta <- theta - lr (g + 0.9 b):
    # k=0: b = 1,     d = 1 + 0.9        = 1.9,    theta = 1 - 0.1 * 1.9         = 0.81
    # k=1: b = 2.9,   d = 2 + 2.61       = 4.61,   theta = 0.81 - 0.075 * 4.61   = 0.46425
    # k=2: b = 1.61,  d = -1 + 1.449     = 0.449,  theta = 0.46425 - 0.05 * 0.449 = 0.4418
    # k=3: b = 1.949, d = 0.5 + 1.7541   = 2.2541, theta = 0.4418 - 0.025 * 2.2541 = 0.3854475
    thetas, optimizer = _run(ReferenceSGD(_linear_decay(), momentum=0.9, nesterov=True))
    self.assertAllClose(thetas, [0.81, 0.46425, 0.4418, 0.3854475], atol=1e-6)
    self.assertAllClose(optimizer.momentums[0], 1.949)   # the slot holds the raw buffer

  def test_plain_momentum_as_tf1_momentum_optimizer_by_hand(self):
    # accum <- 0.9 accum + g; theta <- theta - lr accum:
    # 1 - 0.1 = 0.9; - 0.075 * 2.9 = 0.6825; - 0.05 * 1.61 = 0.602; - 0.025 * 1.949 = 0.553275
    thetas, _ = _run(ReferenceSGD(_linear_decay(), momentum=0.9, nesterov=False))
    self.assertAllClose(thetas, [0.9, 0.6825, 0.602, 0.553275], atol=1e-6)

  def test_keras_sgd_differs_under_a_decaying_rate_but_not_a_constant_one(self):
    # Keras keeps the rate in the velocity: v1 = 0.9 * (-0.1) - 0.075 * 2 = -0.24, theta 0.66.
    keras_thetas, _ = _run(keras.optimizers.SGD(_linear_decay(), momentum=0.9))
    self.assertAllClose(keras_thetas[:2], [0.9, 0.66], atol=1e-6)
    ours, _ = _run(ReferenceSGD(0.05, momentum=0.9, nesterov=True))
    theirs, _ = _run(keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True))
    self.assertAllClose(ours, theirs, atol=1e-6)

  def test_first_update_of_the_mib_recipe_is_1_9_times_plain_momentum(self):
    # The parity check's 0.527 = 1 / 1.9 between kdseg's former update and the reference's.
    nesterov, _ = _run(ReferenceSGD(0.01, momentum=0.9, nesterov=True), [1.0], start=0.0)
    plain, _ = _run(ReferenceSGD(0.01, momentum=0.9, nesterov=False), [1.0], start=0.0)
    self.assertAllClose(nesterov[0] / plain[0], 1.9)

  def test_poly_schedule_of_a_step_over_several_iterations(self):
    # make_optimizer: lr_k = (lr0 - end) (1 - k / T)^0.9 + end, applied to the raw buffer.
    schedule = Schedule(0.01, epochs=1, iterations_per_epoch=5, end_learning_rate=1e-4)
    thetas, _ = _run(make_optimizer(schedule), [0.3, -0.2, 0.4, 0.1, -0.5])
    expected, theta, buffer = [], 1.0, 0.0
    for k, gradient in enumerate([0.3, -0.2, 0.4, 0.1, -0.5]):
      rate = (0.01 - 1e-4) * (1 - k / 5) ** 0.9 + 1e-4
      buffer = 0.9 * buffer + gradient
      theta -= rate * (gradient + 0.9 * buffer)
      expected.append(theta)
    self.assertAllClose(thetas, expected, atol=1e-7)

  def test_decay_horizon_longer_than_the_step(self):
    # The KD code's step 1 of FT / L_cls / EF: 5e-5 -> 1e-6 over 20000 iterations, 1000 run.
    rates = learning_rate_schedule(Schedule(5e-5, 1, 1000, end_learning_rate=1e-6,
                                            iterations=1000, decay_iterations=20000))
    self.assertAllClose(rates(999), (5e-5 - 1e-6) * (1 - 999 / 20000) ** 0.9 + 1e-6)
    self.assertAllClose(rates(1000), 4.78e-5, atol=5e-8)


class StabilityBoundTest(tf.test.TestCase):

  def test_bound_separates_bounded_from_growing_iterates(self):
    for nesterov in (False, True):
      bound = stability_bound(0.9, nesterov)
      for factor, grows in ((0.97, False), (1.03, True)):
        h, rate = 1.0, factor * bound
        theta = tf.Variable(1.0)
        optimizer = ReferenceSGD(rate, momentum=0.9, nesterov=nesterov)
        for _ in range(200):
          optimizer.apply_gradients([(h * theta, theta)])
        value = float(theta.numpy())
        self.assertEqual(not np.isfinite(value) or abs(value) > 1.0, grows,
                         msg=f"nesterov={nesterov}, lr h = {rate:.3f}")
    self.assertAllClose(stability_bound(0.9, True), 3.8 / 2.8)
    self.assertAllClose(stability_bound(0.9, False), 3.8)
