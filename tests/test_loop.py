"""Step schedules: epochs or an iteration budget, poly decay to an end learning rate."""
import contextlib
import io
import time
from unittest import mock

import keras
import numpy as np
import tensorflow as tf

from kdseg.engine import progress
from kdseg.engine.progress import Eta

from kdseg.engine.loop import (Schedule, StepTrainer, TrainingDivergedError, decayed_variables,
                               learning_rate_schedule, make_optimizer)
from kdseg.losses.regularizers import ImportanceRegularizer
from kdseg.methods import build_objective, get_method
from kdseg.models.segmenter import ModelConfig, build_segmenter


class ScheduleTest(tf.test.TestCase):

  def test_epochs_or_iteration_budget(self):
    self.assertEqual(Schedule(0.1, epochs=3, iterations_per_epoch=5).total_iterations, 15)
    budget = Schedule(0.1, epochs=3, iterations_per_epoch=5, iterations=12)
    self.assertEqual((budget.total_iterations, budget.num_epochs), (12, 3))

  def test_poly_decay_reaches_the_end_learning_rate(self):
    schedule = learning_rate_schedule(Schedule(1e-4, 1, 10, end_learning_rate=1e-6))
    self.assertAllClose(schedule(0), 1e-4)
    self.assertAllClose(schedule(10), 1e-6)
    self.assertAllClose(schedule(5), (1e-4 - 1e-6) * 0.5 ** 0.9 + 1e-6)

  def test_total_is_the_weighted_sum_of_the_terms_plus_weight_decay(self):
    # LwF on a tiny model: total = CE + 100 * KD + 0.5 * wd * sum(theta^2), each term computed
    # here from the models' outputs before the iteration's update.
    old_model = build_segmenter(ModelConfig("tiny", 16, 8), [3])
    model = build_segmenter(ModelConfig("tiny", 16, 8), [3, 1])
    old_model.trainable = False
    images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[4, 1])
    labels = tf.random.stateless_uniform([2, 32, 32], seed=[4, 2], maxval=4, dtype=tf.int32)
    objective = build_objective(get_method("lwf"), old_classes=3)
    weight_decay = 1e-3
    old_logits = old_model(images, training=False)["logits"]
    logits = model(images, training=True)["logits"]
    ce = objective.classification(labels, logits)
    kd = objective.distillation[0].loss(old_logits, logits)
    decay = 0.5 * weight_decay * sum(float(tf.reduce_sum(v ** 2))
                                     for v in model.trainable_variables)
    schedule = Schedule(0.01, epochs=1, iterations_per_epoch=1)
    trainer = StepTrainer(tf.distribute.get_strategy(), model, old_model, objective,
                          make_optimizer(schedule), weight_decay)
    means = trainer.train(tf.data.Dataset.from_tensors((images, labels)), schedule,
                          tf.Variable(0, dtype=tf.int64), on_epoch_end=lambda: None,
                          writer=None, log_every=1, verbose=0)
    self.assertAllClose(means["ce"], ce, rtol=1e-4)
    self.assertAllClose(means["kd"], 100.0 * kd, rtol=1e-4)
    self.assertAllClose(means["weight_decay"], decay, rtol=1e-4)
    self.assertAllClose(means["total"], float(ce) + 100.0 * float(kd) + decay, rtol=1e-4)

  def test_weight_decay_on_convolution_kernels_only(self):
    # The KD code: 1e-4 * tf.nn.l2_loss on the variables named 'weights' (LD1/network.py:53-55):
    # the term is 0.5 * wd * sum over kernels, and biases and BN's gamma / beta get no decay.
    model = build_segmenter(ModelConfig("tiny", 16, 8, head="v2"), [3])
    kernels = [v for v in model.trainable_variables if v.name == "kernel"]
    others = [v for v in model.trainable_variables if v.name != "kernel"]
    self.assertTrue(kernels and {v.name for v in others} >= {"bias", "gamma", "beta"})
    self.assertEqual(decayed_variables(model.trainable_variables, "kernels"), kernels)
    images = tf.random.stateless_uniform([2, 32, 32, 3], seed=[4, 1])
    labels = tf.random.stateless_uniform([2, 32, 32], seed=[4, 2], maxval=3, dtype=tf.int32)
    weight_decay = 1e-2
    expected = 0.5 * weight_decay * sum(float(tf.reduce_sum(v ** 2)) for v in kernels)
    schedule = Schedule(0.0001, epochs=1, iterations_per_epoch=1)
    trainer = StepTrainer(tf.distribute.get_strategy(), model, None,
                          build_objective(get_method("kd-ft"), 0), make_optimizer(schedule),
                          weight_decay, weight_decay_on="kernels")
    means = trainer.train(tf.data.Dataset.from_tensors((images, labels)), schedule,
                          tf.Variable(0, dtype=tf.int64), on_epoch_end=lambda: None,
                          writer=None, log_every=1, verbose=0)
    self.assertAllClose(means["weight_decay"], expected, rtol=1e-5)

  def test_training_stops_at_the_iteration_budget_inside_a_pass(self):
    model = build_segmenter(ModelConfig("tiny", 16, 8), [3])
    images = tf.random.stateless_uniform([12, 32, 32, 3], seed=[0, 1])
    labels = tf.random.stateless_uniform([12, 32, 32], seed=[0, 2], maxval=3, dtype=tf.int32)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)   # 3 per pass
    schedule = Schedule(0.01, epochs=1, iterations_per_epoch=3, iterations=7)
    optimizer = make_optimizer(schedule)
    trainer = StepTrainer(tf.distribute.get_strategy(), model, None,
                          build_objective(get_method("ft"), 0), optimizer, 1e-4)
    epoch = tf.Variable(0, dtype=tf.int64)
    trainer.train(dataset, schedule, epoch, on_epoch_end=lambda: None, writer=None,
                  log_every=1, verbose=0)
    self.assertEqual(int(optimizer.iterations.numpy()), 7)
    self.assertEqual(int(epoch.numpy()), 3)


  def test_a_non_finite_loss_stops_training_with_a_clear_error(self):
    model = build_segmenter(ModelConfig("tiny", 16, 8), [3])
    images = tf.fill([4, 32, 32, 3], float("nan"))
    labels = tf.zeros([4, 32, 32], tf.int32)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(2)
    schedule = Schedule(0.01, epochs=2, iterations_per_epoch=2)
    trainer = StepTrainer(tf.distribute.get_strategy(), model, None,
                          build_objective(get_method("ft"), 0), make_optimizer(schedule), 1e-4)
    epochs_saved = []
    epoch = tf.Variable(0, dtype=tf.int64)
    # Iteration 1 or 2: TensorFlow's fused BN kernel (training) can turn NaN inputs into finite
    # outputs, so the NaN may first show in the gradient and then in the next iteration's loss.
    with self.assertRaisesRegex(TrainingDivergedError, "loss became nan at iteration [12].*--lr"):
      trainer.train(dataset, schedule, epoch, on_epoch_end=lambda: epochs_saved.append(1),
                    writer=None, log_every=1, verbose=0)
    self.assertEmpty(epochs_saved)   # no checkpoint of the diverged state


class MixedPrecisionLoopTest(tf.test.TestCase):

  def tearDown(self):
    keras.config.set_dtype_policy("float32")
    super().tearDown()

  def _train(self, policy):
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    model = build_segmenter(ModelConfig("tiny", 16, 8), [3])
    start = model.get_weights()
    images = tf.random.stateless_uniform([8, 32, 32, 3], seed=[0, 1])
    labels = tf.random.stateless_uniform([8, 32, 32], seed=[0, 2], maxval=3, dtype=tf.int32)
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(4)
    schedule = Schedule(0.01, epochs=2, iterations_per_epoch=2)
    optimizer = make_optimizer(schedule, loss_scaling=policy == "mixed_float16")
    regularizer = ImportanceRegularizer("rw", [(v.path, v) for v in model.trainable_variables])
    trainer = StepTrainer(tf.distribute.get_strategy(), model, None,
                          build_objective(get_method("rw"), 0), optimizer, 1e-4,
                          regularizer=regularizer)
    means = trainer.train(dataset, schedule, tf.Variable(0, dtype=tf.int64),
                          on_epoch_end=lambda: None, writer=None, log_every=1, verbose=0)
    update = np.concatenate([(w - w0).ravel() for w, w0 in zip(model.get_weights(), start)])
    return optimizer, means, update, regularizer.finish()

  def test_bfloat16_trains_dilated_convolutions(self):
    optimizer, means, update, _ = self._train("mixed_bfloat16")
    self.assertNotIsInstance(optimizer, keras.optimizers.LossScaleOptimizer)
    self.assertTrue(np.isfinite(means["total"]))
    self.assertGreater(np.linalg.norm(update), 0.0)

  def test_float16_with_loss_scaling_follows_float32(self):
    _, means, update, state = self._train("float32")
    optimizer, means16, update16, state16 = self._train("mixed_float16")
    self.assertIsInstance(optimizer, keras.optimizers.LossScaleOptimizer)
    self.assertEqual(int(optimizer.iterations.numpy()), 4)
    self.assertAllClose(means16["ce"], means["ce"], rtol=1e-2)
    # The 4 updates were unscaled (a scaled one would be 2^15 times larger): the whole-model
    # update agrees with float32's up to float16 rounding.
    self.assertLess(np.linalg.norm(update16 - update), 0.1 * np.linalg.norm(update))
    # The regulariser saw unscaled gradients: its squared-gradient statistics have float32's
    # magnitude (with the 2^15 scale left in they would be 2^30 times larger).
    fisher = sum(float(np.sum(v)) for k, v in state.items() if k.startswith("fisher"))
    fisher16 = sum(float(np.sum(v)) for k, v in state16.items() if k.startswith("fisher"))
    self.assertBetween(fisher16 / fisher, 0.5, 2.0)


class ResumeInsideAnEpochTest(tf.test.TestCase):

  def test_a_step_saved_inside_an_epoch_goes_on_with_the_next_batch(self):
    # 2 epochs of 4 batches; the run saves after every iteration and is killed after its 6th
    # (epoch 2, batch 2). The first run asks once for both epochs; the resumed run asks for
    # the data from epoch 2 on without its first 2 batches and runs exactly the 2 iterations left.
    images = tf.random.stateless_uniform([8, 32, 32, 3], seed=[5, 1])
    labels = tf.random.stateless_uniform([8, 32, 32], seed=[5, 2], maxval=3, dtype=tf.int32)
    batches = tf.data.Dataset.from_tensor_slices((images, labels)).batch(2)
    schedule = Schedule(0.01, epochs=2, iterations_per_epoch=4)
    directory = self.get_temp_dir()

    def start():
      model = build_segmenter(ModelConfig("tiny", 16, 8), [3])
      optimizer = make_optimizer(schedule)
      trainer = StepTrainer(tf.distribute.get_strategy(), model, None,
                            build_objective(get_method("ft"), 0), optimizer, 1e-4)
      epoch = tf.Variable(0, dtype=tf.int64)
      checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch)
      return trainer, optimizer, epoch, checkpoint

    requests = []

    def make(epoch_index, skip, input_context=None):
      requests.append((epoch_index, skip))
      return batches.repeat(schedule.epochs - epoch_index).skip(skip)

    trainer, optimizer, epoch, checkpoint = start()

    def save_then_die():
      checkpoint.write(f"{directory}/ckpt")
      if int(optimizer.iterations.numpy()) == 6:
        raise KeyboardInterrupt

    with self.assertRaises(KeyboardInterrupt):
      trainer.train(make, schedule, epoch, save_then_die, None, log_every=1, verbose=0,
                    on_checkpoint=save_then_die, checkpoint_seconds=1e-9)
    self.assertEqual(requests, [(0, 0)])
    trainer, optimizer, epoch, checkpoint = start()
    optimizer.build(trainer.variables)
    checkpoint.read(f"{directory}/ckpt").assert_consumed()
    self.assertEqual((int(epoch.numpy()), int(optimizer.iterations.numpy())), (1, 6))
    requests.clear()
    trainer.train(make, schedule, epoch, lambda: None, None, log_every=1, verbose=0)
    self.assertEqual(requests, [(1, 2)])
    self.assertEqual((int(epoch.numpy()), int(optimizer.iterations.numpy())), (2, 8))


class ProgressTest(tf.test.TestCase):

  def test_phases_count_wall_time_once(self):
    progress.phase_seconds(reset=True)
    with progress.phase("training"):
      time.sleep(0.02)
      with progress.phase("evaluation"):   # inside training: counted as evaluation only
        time.sleep(0.3)
    phases = progress.phase_seconds(reset=True)
    self.assertEqual(set(phases), {"training", "evaluation"})
    self.assertGreaterEqual(phases["evaluation"], 0.3)
    self.assertLess(phases["training"], 0.25)   # 0.32 or more if counted twice
    self.assertEqual(progress.phase_seconds(), {})

  def test_log_lines_with_iteration_and_eta_when_not_a_terminal(self):
    eta = Eta(10, 2, every=0.0)
    self.assertTrue(eta.due(5))
    self.assertRegex(eta.line(5), r"^iteration 5/10 \(\d+\.\d\d s/iteration, ETA \d+:\d\d\)$")
    self.assertFalse(eta.due(10))   # the last iteration has its epoch line
    self.assertFalse(Eta(10, 0, every=3600.0).due(5))
    model = build_segmenter(ModelConfig("tiny", 16, 8), [3])
    images = tf.zeros([8, 32, 32, 3])
    dataset = tf.data.Dataset.from_tensor_slices((images, tf.zeros([8, 32, 32], tf.int32)))
    schedule = Schedule(0.01, epochs=1, iterations_per_epoch=4)
    trainer = StepTrainer(tf.distribute.get_strategy(), model, None,
                          build_objective(get_method("ft"), 0), make_optimizer(schedule), 1e-4)
    output = io.StringIO()
    with mock.patch.object(progress, "PROGRESS_SECONDS", 0.0), \
        contextlib.redirect_stdout(output):   # not a terminal
      trainer.train(dataset.batch(2), schedule, tf.Variable(0, dtype=tf.int64), lambda: None,
                    None, log_every=1, verbose=1)
    lines = output.getvalue().splitlines()
    self.assertRegex(lines[0], r"^  iteration 1/4 \(.* ETA .*\), epoch 1/1, total=")
    self.assertLen([line for line in lines if "ETA" in line], 3)
    self.assertRegex(lines[-1], r"^  epoch 1/1: ce=")


if __name__ == "__main__":
  tf.test.main()
