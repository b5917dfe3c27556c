"""Saving and restoring a step's model: every variable must come back."""
import json
import os

import numpy as np
import tensorflow as tf

from kdseg.engine import checkpoints
from kdseg.models.segmenter import ModelConfig, build_segmenter

CONFIG = ModelConfig("tiny", 8, 16)


class FinalCheckpointTest(tf.test.TestCase):

  def test_round_trip_restores_every_variable(self):
    model = build_segmenter(CONFIG, [4, 2])
    rng = np.random.default_rng(0)
    for variable in model.variables:
      variable.assign(rng.uniform(0.5, 1.5, variable.shape).astype(np.float32))
    directory = os.path.join(self.get_temp_dir(), "step_1")
    self.assertFalse(checkpoints.is_complete(directory))
    checkpoints.save_final(model, directory)
    self.assertTrue(checkpoints.is_complete(directory))
    with open(checkpoints.final_file(directory, "done.json")) as handle:
      self.assertEqual(json.load(handle), {"classes_per_step": [4, 2], "precision": "float32"})
    restored = checkpoints.load_final(directory, CONFIG, [4, 2])
    by_path = {v.path: v for v in restored.variables}
    self.assertLen(by_path, len(model.variables))
    for variable in model.variables:
      self.assertAllEqual(by_path[variable.path], variable, msg=variable.path)

  def test_other_model_or_missing_checkpoint_is_a_clear_error(self):
    directory = os.path.join(self.get_temp_dir(), "step_0")
    with self.assertRaisesRegex(checkpoints.CheckpointError, "missing final/done.json"):
      checkpoints.load_final(directory, CONFIG, [4])
    checkpoints.save_final(build_segmenter(CONFIG, [4]), directory)
    with self.assertRaisesRegex(checkpoints.CheckpointError, "does not match"):
      checkpoints.load_final(directory, ModelConfig("tiny", 8, 32), [4])
    data = checkpoints.final_file(directory, "model.data-00000-of-00001")
    with open(data, "rb") as handle:
      whole = handle.read()
    for broken in (whole[:len(whole) // 3], b""):   # cut short, emptied: not "does not match"
      with open(data, "wb") as handle:
        handle.write(broken)
      with self.assertRaisesRegex(checkpoints.CheckpointError,
                                  r"final cannot be read .*cut short or damaged. Delete .*step_0"):
        checkpoints.load_final(directory, CONFIG, [4])

  def test_regulariser_state_round_trip_and_missing_state(self):
    directory = os.path.join(self.get_temp_dir(), "ewc_step_0")
    state = {"fisher/segmenter/backbone/conv1_conv/kernel": np.arange(6, dtype=np.float32)}
    checkpoints.save_final(build_segmenter(CONFIG, [4]), directory, state)
    loaded = checkpoints.load_state(directory)
    self.assertEqual(list(loaded), list(state))
    self.assertAllEqual(loaded["fisher/segmenter/backbone/conv1_conv/kernel"], np.arange(6))
    plain = os.path.join(self.get_temp_dir(), "ft_step_0")
    checkpoints.save_final(build_segmenter(CONFIG, [4]), plain)
    with self.assertRaisesRegex(checkpoints.CheckpointError,
                                "regularizer.npz is missing.*not trained with this regulariser"):
      checkpoints.load_state(plain)


class TrainingCheckpointTest(tf.test.TestCase):

  def test_a_cut_checkpoint_falls_back_to_the_one_before(self):
    directory = os.path.join(self.get_temp_dir(), "step")
    weights, epoch = tf.Variable(np.zeros(64, np.float32)), tf.Variable(0, dtype=tf.int64)
    checkpoint = tf.train.Checkpoint(weights=weights, epoch=epoch)
    manager = tf.train.CheckpointManager(checkpoint, os.path.join(directory, "train"), 2)
    for value in (1, 2):
      weights.assign(np.full(64, value, np.float32))
      epoch.assign(value)
      manager.save()
    self.assertEqual(checkpoints.restore_training(checkpoint, manager), manager.checkpoints[-1])
    newest_data = manager.checkpoints[-1] + ".data-00000-of-00001"
    with open(newest_data, "rb") as handle:
      data = handle.read()
    with open(newest_data, "wb") as handle:
      handle.write(data[:len(data) // 2])   # cut short
    weights.assign(np.zeros(64, np.float32))
    restored = checkpoints.restore_training(checkpoint, manager)
    self.assertEqual(restored, manager.checkpoints[0])
    self.assertAllEqual(weights, np.full(64, 1.0))
    self.assertEqual(int(epoch.numpy()), 1)
    oldest_index = manager.checkpoints[0] + ".index"
    with open(oldest_index, "wb") as handle:
      handle.write(b"")
    with self.assertRaisesRegex(checkpoints.CheckpointError,
                                r"no training checkpoint in .*train can be restored.*delete"):
      checkpoints.restore_training(checkpoint, manager)
    fresh = tf.train.CheckpointManager(checkpoint, os.path.join(directory, "none"), 2)
    self.assertIsNone(checkpoints.restore_training(checkpoint, fresh))


if __name__ == "__main__":
  tf.test.main()
