"""Replica-count invariance of the training step: one device vs two logical CPU devices
(MirroredStrategy) vs two localhost workers (MultiWorkerMirroredStrategy), same global batch;
and the XLA-compiled step (--jit_compile) against the plain one.

Each configuration runs in subprocesses (logical devices and TF_CONFIG must be set before
TensorFlow starts).
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf

from tests.helpers import free_port

HERE = os.path.dirname(os.path.abspath(__file__))


def _load(path):
  with np.load(path) as stored:
    return {key: stored[key] for key in stored.files}


def _run(mode, methods, directory, jit=False):
  """{method: results} of every worker (one for "one" and "mirrored", two for "multiworker"),
  all `methods` trained one after the other in each worker's process."""
  workers = 2 if mode == "multiworker" else 1
  addresses = [f"localhost:{free_port()}" for _ in range(workers)]
  processes, outs = [], []
  for index in range(workers):
    out = tempfile.mkdtemp(prefix=f"{mode}_{jit}_{index}_", dir=directory)
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    if mode == "multiworker":
      env["TF_CONFIG"] = json.dumps({"cluster": {"worker": addresses},
                                     "task": {"type": "worker", "index": index}})
    processes.append(subprocess.Popen(
        [sys.executable, os.path.join(HERE, "replica_step.py"), mode, ",".join(methods), out] +
        (["jit"] if jit else []), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outs.append(out)
  for process in processes:
    output, _ = process.communicate(timeout=600)
    if process.returncode:
      raise AssertionError(f"{mode} {methods} failed:\n{output.decode()[-3000:]}")
  return [{method: _load(os.path.join(out, method.replace(":", "_") + ".npz"))
           for method in methods} for out in outs]


class ReplicaInvarianceTest(tf.test.TestCase):

  def assertSameStep(self, one, other, message):
    self.assertCountEqual(one, other)
    for key in one:
      self.assertAllClose(one[key], other[key], rtol=1e-4, atol=1e-5, msg=f"{message} {key}")

  def test_mirrored_losses_gradients_and_regulariser_state_match(self):
    # Two steps on the same global batch: losses, updated weights and (RW) the regulariser's
    # statistics, which need the gradient summed over replicas, agree; with frozen BN
    # statistics (--batch_norm=frozen) also on a network whose BN would otherwise see each
    # replica's half batch.
    methods = ("kd-cls-t", "rw", "frozen-bn:kd-cls")
    (one,) = _run("one", methods, self.get_temp_dir())
    (mirrored,) = _run("mirrored", methods, self.get_temp_dir())
    for method in methods:
      self.assertSameStep(one[method], mirrored[method], f"mirrored {method}")

  def test_two_localhost_workers_match_one_device(self):
    (one,) = _run("one", ["rw"], self.get_temp_dir())
    first, second = _run("multiworker", ["rw"], self.get_temp_dir())
    self.assertSameStep(one["rw"], first["rw"], "multiworker worker 0")
    self.assertSameStep(first["rw"], second["rw"], "multiworker workers 0 vs 1")

  def test_xla_compiled_step_matches(self):
    (plain,) = _run("one", ["kd-cls-t"], self.get_temp_dir())
    (jit,) = _run("one", ["kd-cls-t"], self.get_temp_dir(), jit=True)
    (mirrored_jit,) = _run("mirrored", ["kd-cls-t"], self.get_temp_dir(), jit=True)
    self.assertSameStep(plain["kd-cls-t"], jit["kd-cls-t"], "jit")
    self.assertSameStep(plain["kd-cls-t"], mirrored_jit["kd-cls-t"], "mirrored jit")


if __name__ == "__main__":
  tf.test.main()
