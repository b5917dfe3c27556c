"""EWC, PI and RW state and penalties on hand-computed tiny cases (spec §4)."""
import numpy as np
import tensorflow as tf

from kdseg.losses.regularizers import ImportanceRegularizer, normalise


def _run(kind, steps, start, previous=None, old=None, **options):
  """Runs `update` with each (gradient, parameter value after the update) pair of `steps`."""
  theta = tf.Variable(np.array(start, np.float32))
  regulariser = ImportanceRegularizer(kind, [("w", theta)], previous, old, **options)
  for gradient, value in steps:
    regulariser.update([tf.constant(gradient, tf.float32)])
    theta.assign(value)
  return regulariser, theta


class NormaliseTest(tf.test.TestCase):

  def test_min_max_per_tensor(self):
    self.assertAllClose(normalise(np.array([1.0, 3.0, 2.0])), [0.0, 1.0, 0.5], atol=1e-6)


class EwcTest(tf.test.TestCase):

  def test_fisher_is_a_running_average_of_squared_gradients_from_ones(self):
    # F = 1; g = (2, 0): F = 0.9 g^2 + 0.1 F = (3.7, 0.1); g = (0, 1): (0.37, 0.91).
    regulariser, _ = _run("ewc", [([2.0, 0.0], [0.0, 0.0]), ([0.0, 1.0], [0.0, 0.0])], [0, 0])
    self.assertAllClose(regulariser.finish()["fisher/w"], [0.37, 0.91])
    self.assertAllClose(regulariser.penalty(), 0.0)  # step 0: nothing to penalise

  def test_penalty_uses_the_normalised_previous_fisher(self):
    previous = {"fisher/w": np.array([0.37, 0.91], np.float32)}  # normalised: (0, 1)
    regulariser, _ = _run("ewc", [], [3.0, 5.0], previous, {"w": np.array([1.0, 2.0])})
    self.assertAllClose(regulariser.penalty(), 0 * 4 + 1 * 9, rtol=1e-5)
    raw = ImportanceRegularizer("ewc", [("w", tf.Variable([3.0, 5.0]))], previous,
                                {"w": np.array([1.0, 2.0])}, normalize=False)
    self.assertAllClose(raw.penalty(), 0.37 * 4 + 0.91 * 9)

  def test_new_parameters_are_not_penalised(self):
    previous = {"fisher/w": np.array([0.0, 1.0], np.float32)}
    regulariser = ImportanceRegularizer(
        "ewc", [("w", tf.Variable([3.0, 5.0])), ("new_head", tf.Variable([9.0]))], previous,
        {"w": np.array([1.0, 2.0])})
    self.assertEqual(regulariser.penalised_paths, ["w"])
    self.assertAllClose(regulariser.penalty(), 9.0, rtol=1e-5)


class PathIntegralTest(tf.test.TestCase):

  def test_omega_from_the_path_integral(self):
    # theta: 0 -> 0 (g = 1: delta += 1 * 0) -> (-0.5, 0.25) ... then g = (2, -1):
    # delta += g * (theta_prev - theta) = (2 * 0.5, -1 * -0.25) = (1, 0.25); theta -> (-1, 0.25).
    # omega = max(0, delta / (theta - theta_start)^2) = (1 / 1, 0.25 / 0.0625) = (1, 4),
    # plus the previous step's omega (1, 1).
    steps = [([1.0, 1.0], [-0.5, 0.25]), ([2.0, -1.0], [-1.0, 0.25])]
    regulariser, _ = _run("pi", steps, [0.0, 0.0])
    self.assertAllClose(regulariser.finish()["omega/w"], [1.0, 4.0])
    previous = {"omega/w": np.array([1.0, 1.0], np.float32)}
    regulariser, _ = _run("pi", steps, [0.0, 0.0], previous, {"w": np.zeros(2)})
    self.assertAllClose(regulariser.finish()["omega/w"], [2.0, 5.0])

  def test_negative_contributions_are_clipped(self):
    steps = [([1.0], [1.0]), ([1.0], [2.0])]   # g * (theta_prev - theta) = 1 * (0 - 1) < 0
    regulariser, _ = _run("pi", steps, [0.0])
    self.assertAllClose(regulariser.finish()["omega/w"], [0.0])


class FisherCarryOverTest(tf.test.TestCase):
  """At step t >= 1 the running Fisher of the old parameters starts from the previous step's
  un-normalised Fisher; parameters new at the step start at ones; the penalty uses the normalised
  copy of the same previous Fisher (MiB utils/regularizer.py; spec §4, correction 2026-11-25)."""

  def _carried(self, kind):
    previous = {"fisher/w": np.array([0.37, 0.91], np.float32)}
    if kind == "rw":
      previous["score/w"] = np.zeros(2, np.float32)
    old = tf.Variable([3.0, 5.0])
    head = tf.Variable([9.0])
    regulariser = ImportanceRegularizer(kind, [("w", old), ("new_head", head)], previous,
                                        {"w": np.array([1.0, 2.0])})
    return regulariser

  def test_old_parameters_continue_the_previous_fisher(self):
    for kind in ("ewc", "rw"):
      regulariser = self._carried(kind)
      self.assertAllClose(regulariser.fisher[0], [0.37, 0.91], msg=kind)
      self.assertAllClose(regulariser.fisher[1], [1.0], msg=kind)
      # Penalty from the normalised previous Fisher (0, 1): 0 * (3-1)^2 + 1 * (5-2)^2.
      self.assertAllClose(regulariser.penalty(), 9.0, rtol=1e-5, msg=kind)
      # One iteration with g = (1, 0) on w and 2 on the head: F = 0.9 g^2 + 0.1 F.
      regulariser.update([tf.constant([1.0, 0.0]), tf.constant([2.0])])
      state = regulariser.finish()
      self.assertAllClose(state["fisher/w"], [0.9 + 0.037, 0.091], msg=kind)
      self.assertAllClose(state["fisher/new_head"], [3.7], msg=kind)
      # The penalty constants do not move with the running Fisher.
      self.assertAllClose(regulariser.penalty(), 9.0, rtol=1e-5, msg=kind)


class RiemannianWalkTest(tf.test.TestCase):

  def test_score_uses_the_fisher_from_before_the_update(self):
    # score_every=1: it. 0: g = 1, theta = theta_prev = 0, s += 0; F = 0.9 + 0.1 = 1; theta -> -1.
    # it. 1: g = 2, s += 2 * (0 - -1) / (0.5 * F * 1 + 1e-8) with F = 1 (before this iteration's
    # update) = 4; then F = 0.9 * 4 + 0.1 * 1 = 3.7.
    steps = [([1.0], [-1.0]), ([2.0], [-1.0])]
    regulariser, _ = _run("rw", steps, [0.0], score_every=1)
    state = regulariser.finish()
    self.assertAllClose(state["fisher/w"], [3.7])
    self.assertAllClose(state["score/w"], [4.0])
    # The finished score is averaged with the previous step's.
    previous = {"fisher/w": np.ones(1, np.float32), "score/w": np.array([0.5], np.float32)}
    regulariser, _ = _run("rw", steps, [0.0], previous, {"w": np.zeros(1)}, score_every=1)
    self.assertAllClose(regulariser.finish()["score/w"], [(4.0 + 0.5) / 2])

  def test_score_at_iterations_0_and_10(self):
    # The reference's default: a score every 10 iterations, counted from 0. theta moves by -0.1
    # per iteration (theta = -0.1 k after iteration k-1); g = 1 keeps F at 1 (0.9 + 0.1 * 1)
    # until iteration 10, whose g = 2. Iteration 0 snapshots theta_prev = 0 (s += 0);
    # iteration 10 sees theta = -1.0: s += 2 * (0 - -1) / (0.5 * 1 * 1 + 1e-8) = 4 with the
    # Fisher of before the update (3.7 after it would give 1.08).
    steps = [([1.0], [-0.1 * (k + 1)]) for k in range(10)] + [([2.0], [-1.1])]
    regulariser, _ = _run("rw", steps, [0.0])
    state = regulariser.finish()
    self.assertAllClose(state["score/w"], [4.0], rtol=1e-5)
    self.assertAllClose(state["fisher/w"], [3.7], rtol=1e-5)
    # Iterations 1-9 add nothing to the score.
    regulariser, _ = _run("rw", steps[:10], [0.0])
    self.assertAllClose(regulariser.finish()["score/w"], [0.0])

  def test_score_updates_only_every_n_iterations(self):
    steps = [([1.0], [-1.0]), ([2.0], [-2.0]), ([2.0], [-2.0])]
    # score_every=2: updates at iterations 0 and 2 (0-based); theta_prev is kept from iteration
    # 0; the score of iteration 2 uses the Fisher after iterations 0 and 1.
    regulariser, _ = _run("rw", steps, [0.0], score_every=2)
    fisher_before_2 = 0.9 * 4 + 0.1 * (0.9 + 0.1)
    expected = 2 * (0 - -2) / (0.5 * fisher_before_2 * 4 + 1e-8)
    self.assertAllClose(regulariser.finish()["score/w"], [expected], rtol=1e-5)

  def test_penalty_adds_normalised_fisher_and_score(self):
    previous = {"fisher/w": np.array([1.0, 3.0], np.float32),
                "score/w": np.array([2.0, 0.0], np.float32)}  # normalised (0, 1) + (1, 0)
    regulariser, _ = _run("rw", [], [1.0, 2.0], previous, {"w": np.zeros(2)})
    self.assertAllClose(regulariser.penalty(), 1 * 1 + 1 * 4, rtol=1e-5)


class ValidationTest(tf.test.TestCase):

  def test_unknown_kind_and_missing_previous_state(self):
    with self.assertRaisesRegex(ValueError, "unknown regulariser"):
      ImportanceRegularizer("si", [("w", tf.Variable([1.0]))])
    with self.assertRaisesRegex(ValueError, "fisher/w"):
      ImportanceRegularizer("ewc", [("w", tf.Variable([1.0]))], {}, {"w": np.zeros(1)})


if __name__ == "__main__":
  tf.test.main()
