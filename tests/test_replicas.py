"""Replica-count invariance of the training step: 1 vs 2 logical CPU devices, same global batch.

Each configuration runs in a subprocess (logical devices must be set before TensorFlow starts).
"""
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

HERE = os.path.dirname(os.path.abspath(__file__))


def _run(replicas, method, directory):
  out = os.path.join(directory, f"{method}_{replicas}.npz")
  env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
  subprocess.run([sys.executable, os.path.join(HERE, "replica_step.py"), str(replicas), method,
                  out], check=True, env=env, capture_output=True)
  with np.load(out) as stored:
    return {key: stored[key] for key in stored.files}


class ReplicaInvarianceTest(tf.test.TestCase):

  def test_losses_gradients_and_regulariser_state_match(self):
    # Two steps on the same global batch: losses, updated weights and (RW) the regulariser's
    # statistics, which need the gradient summed over replicas, agree.
    for method in ("kd-cls-t", "rw"):
      one, two = _run(1, method, self.get_temp_dir()), _run(2, method, self.get_temp_dir())
      self.assertCountEqual(one, two)
      for key in one:
        self.assertAllClose(one[key], two[key], rtol=1e-4, atol=1e-5, msg=f"{method} {key}")


if __name__ == "__main__":
  tf.test.main()
