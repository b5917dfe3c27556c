"""tf.distribute strategies by name, and which process of a cluster writes the run directory.

  default       TensorFlow's default strategy (one device)
  mirrored      MirroredStrategy over the visible GPUs (or CPUs if there is no GPU)
  multiworker   MultiWorkerMirroredStrategy; the cluster and this process's role come from the
                TF_CONFIG environment variable, e.g. for worker 0 of two on one machine
                  {"cluster": {"worker": ["localhost:12345", "localhost:12346"]},
                   "task": {"type": "worker", "index": 0}}
                Every worker runs the same command; worker 0 (the chief) writes the run directory.
  auto          mirrored when several GPUs are visible, else default

--batch_size is global: each of the N replicas gets batch_size / N images, and every loss is
divided by N (Keras losses scale by the replica count), so gradients summed over replicas equal
those of one device on the whole batch.
"""
from __future__ import annotations

import json
import os

import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multiworker")


class StrategyError(ValueError):
  """A strategy that cannot be built from the flags and the environment."""


def make_strategy(name: str) -> tf.distribute.Strategy:
  if name not in STRATEGIES:
    raise StrategyError(f"--strategy={name!r} is unknown; choose one of {', '.join(STRATEGIES)}.")
  if name == "multiworker":
    config = os.environ.get("TF_CONFIG")
    if not config:
      raise StrategyError("--strategy=multiworker needs the TF_CONFIG environment variable "
                          "(cluster addresses and this worker's index); see "
                          "kdseg/engine/distribute.py for an example.")
    try:
      json.loads(config)
    except ValueError as error:
      raise StrategyError(f"TF_CONFIG is not valid JSON ({error}): {config[:200]}") from None
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = tf.config.list_logical_devices("GPU")
  if name == "mirrored" or (name == "auto" and len(gpus) > 1):
    devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
    return tf.distribute.MirroredStrategy(devices)
  return tf.distribute.get_strategy()


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True unless this process is a non-chief worker of a multi-worker cluster."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return True
  task_type, task_id = resolver.task_type, resolver.task_id
  return task_type in (None, "chief") or (task_type == "worker" and task_id == 0 and
                                          "chief" not in resolver.cluster_spec().as_dict())


def num_workers(strategy: tf.distribute.Strategy) -> int:
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None:
    return 1
  return max(1, len(resolver.cluster_spec().as_dict().get("worker", [])) +
             len(resolver.cluster_spec().as_dict().get("chief", [])))


def worker_id(strategy: tf.distribute.Strategy) -> int:
  resolver = getattr(strategy, "cluster_resolver", None)
  return int(resolver.task_id or 0) if resolver is not None and resolver.task_type else 0
