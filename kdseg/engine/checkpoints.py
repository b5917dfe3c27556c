"""Where each step's weights live, and how step t is chained from step t-1.

  <run_dir>/step_0/                  step 0 shared by methods with shares_step0 (MiB's CE)
  <run_dir>/step_0_<key>/            ... with another step-0 recipe (e.g. ce-valid, KD paper)
  <run_dir>/<method>/step_<t>/
      train/        tf.train.CheckpointManager: model + optimizer + epoch (+ regulariser
                    statistics), for resuming a step
      final/        the finished step's model weights, regulariser.npz (EWC/PI/RW state handed
                    to the next step) and done.json, which marks completion
A step counts as trained only once done.json exists, which is written after the weights, so an
interrupted run never leaves a half-written step that the next step would chain from.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np
import tensorflow as tf

from kdseg.methods import Method
from kdseg.models.segmenter import ModelConfig, Segmenter, build_segmenter


class CheckpointError(FileNotFoundError):
  """A checkpoint the run needs does not exist or does not match the model."""


def write_json_atomic(path: str, payload) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  handle, tmp_path = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".json")
  with os.fdopen(handle, "w") as out:
    json.dump(payload, out, indent=1)
  os.replace(tmp_path, path)


def step_dir(run_dir: str, method: Method, step: int) -> str:
  if step == 0 and method.shares_step0:
    key = method.step0_key
    return os.path.join(run_dir, "step_0" if key == "ce" else f"step_0_{key}")
  return os.path.join(run_dir, method.name, f"step_{step}")


def is_complete(directory: str) -> bool:
  return os.path.isfile(os.path.join(directory, "final", "done.json"))


def save_final(model: Segmenter, directory: str, state: dict | None = None) -> None:
  """Writes the finished weights (and a regulariser's state), then done.json."""
  tf.train.Checkpoint(model=model).write(os.path.join(directory, "final", "model"))
  if state is not None:
    path = os.path.join(directory, "final", STATE_FILE)
    with open(path + ".tmp", "wb") as out:
      np.savez(out, **state)
    os.replace(path + ".tmp", path)
  write_json_atomic(os.path.join(directory, "final", "done.json"),
                    {"classes_per_step": model.classifier.classes_per_step})


STATE_FILE = "regularizer.npz"


def load_state(directory: str, how_to_make_it: str) -> dict[str, np.ndarray]:
  """The regulariser state saved with a finished step."""
  path = os.path.join(directory, "final", STATE_FILE)
  if not os.path.isfile(path):
    raise CheckpointError(f"{path} is missing: the step in {directory} was not trained with "
                          f"this regulariser. {how_to_make_it}")
  with np.load(path) as stored:
    return {key: stored[key] for key in stored.files}


def load_final(directory: str, config: ModelConfig, classes_per_step: list[int],
               how_to_make_it: str) -> Segmenter:
  """The finished model of a step, restored strictly (every variable must match)."""
  if not is_complete(directory):
    raise CheckpointError(f"no finished checkpoint in {directory} (missing final/done.json). "
                          f"{how_to_make_it}")
  model = build_segmenter(config, classes_per_step)
  path = os.path.join(directory, "final", "model")
  try:
    tf.train.Checkpoint(model=model).read(path).assert_consumed()
  except (AssertionError, ValueError, tf.errors.OpError) as error:
    raise CheckpointError(f"the checkpoint in {directory} does not match the model built from "
                          f"the flags (--backbone, --head_channels, task): {error}") from error
  # assert_consumed cannot see variables the checkpoint never held (e.g. layers Keras keeps in a
  # list are not tracked by tf.train.Checkpoint): require one stored value per model variable.
  stored = [name for name, _ in tf.train.list_variables(path) if name.startswith("model/")]
  if len(stored) != len(model.variables):
    raise CheckpointError(f"{path} holds {len(stored)} model variables but the model has "
                          f"{len(model.variables)}; it cannot be restored faithfully.")
  return model


def training_manager(directory: str, model, optimizer, epoch: tf.Variable, regularizer=None,
                     save_dir: str | None = None):
  """CheckpointManager of a step in progress (latest two kept), resuming from `directory`.

  `save_dir` (non-chief workers) receives the saves instead; restoring still reads `directory`.
  """
  extra = {} if regularizer is None else {"regularizer": regularizer}
  checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch, **extra)
  manager = tf.train.CheckpointManager(checkpoint, os.path.join(directory, "train"),
                                       max_to_keep=2)
  if save_dir is None or save_dir == directory:
    return checkpoint, manager
  latest = manager.latest_checkpoint
  writer = tf.train.CheckpointManager(checkpoint, os.path.join(save_dir, "train"), max_to_keep=1)
  return checkpoint, _ResumeFrom(writer, latest)


class _ResumeFrom:
  """A CheckpointManager that saves with `writer` but reports `latest` (the chief's) to resume."""

  def __init__(self, writer: tf.train.CheckpointManager, latest: str | None):
    self._writer, self.latest_checkpoint = writer, latest

  def save(self):
    return self._writer.save()


def worker_dir(directory: str, worker: int) -> str:
  """Scratch directory of a non-chief worker's saves of a step (removed when the step ends)."""
  return os.path.join(directory, f".worker_{worker}")


def remove_worker_dir(path: str) -> None:
  shutil.rmtree(path, ignore_errors=True)
