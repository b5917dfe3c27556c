"""The inside of one step folder (kdseg.rundir.RunDir.step_dir says where step folders are):

  <step folder>/
      train/        tf.train.CheckpointManager: model + optimizer + epoch (+ regulariser
                    statistics), for resuming a step
      final/        the finished step's model weights, regulariser.npz (EWC/PI/RW state handed
                    to the next step), cached confusion matrices, and done.json, which marks
                    completion
A step counts as trained only once done.json exists, which is written after the weights, so an
interrupted run never leaves a half-written step that the next step would chain from.
"""
from __future__ import annotations

import hashlib

import keras
import numpy as np
import tensorflow as tf

from kdseg import atomic, fs
from kdseg.models.segmenter import ModelConfig, Segmenter, build_segmenter


class CheckpointError(FileNotFoundError):
  """A checkpoint the run needs does not exist or does not match the model."""


def final_file(directory: str, name: str) -> str:
  """A file kept beside a finished step's weights (e.g. a cached confusion matrix)."""
  return fs.join(directory, "final", name)


def digest(directory: str) -> str:
  """12 hex digits identifying a finished step's weights: the SHA-1 of the checkpoint's index,
  which holds every tensor's CRC32C, so replaced weights give another digest."""
  return hashlib.sha1(fs.read_bytes(final_file(directory, "model.index"))).hexdigest()[:12]


def is_complete(directory: str) -> bool:
  return fs.isfile(final_file(directory, "done.json"))


def save_final(model: Segmenter, directory: str, state: dict | None = None,
               parent: str | None = None) -> None:
  """Writes the finished weights (and a regulariser's state), then done.json, which records the
  finished step this one was trained from (`parent`, its folder; digest and path) and the
  precision policy it was trained under."""
  tf.train.Checkpoint(model=model).write(final_file(directory, "model"))
  if state is not None:
    atomic.write_npz(final_file(directory, STATE_FILE), **state)
  atomic.write_json(final_file(directory, "done.json"), {
      "classes_per_step": model.classifier.classes_per_step,
      # --precision is free to change between steps and runs (variables are float32 in every
      # policy); what each step was trained with is kept here.
      "precision": keras.config.dtype_policy().name,
      **({"parent": {"digest": digest(parent), "folder": fs.basename(parent)}} if parent else {})})


def check_parent(directory: str, parent: str) -> None:
  """CheckpointError if the finished step in `directory` was trained from another version of
  the finished step in `parent` (retrained since): its weights and results no longer follow from
  it. Steps finished before parents were recorded are not checked."""
  if not (is_complete(directory) and is_complete(parent)):
    return
  recorded = fs.read_json(final_file(directory, "done.json")).get("parent")
  if recorded is None or recorded["digest"] == digest(parent):
    return
  raise CheckpointError(
      f"{directory} was trained from another {parent} (weights {recorded['digest']}, now "
      f"{digest(parent)}: that step was trained again since). Its weights and results no longer "
      f"follow from it: delete {directory} and the steps after it to train them again from the "
      "new one, or restore the old one.")


STATE_FILE = "regularizer.npz"


def load_state(directory: str) -> dict[str, np.ndarray]:
  """The regulariser state saved with a finished step."""
  path = final_file(directory, STATE_FILE)
  if not fs.isfile(path):
    raise CheckpointError(f"{path} is missing: the step in {directory} was not trained with "
                          "this regulariser.")
  return fs.load_npz(path)


def load_final(directory: str, config: ModelConfig, classes_per_step: list[int]) -> Segmenter:
  """The finished model of a step, restored strictly (every variable must match)."""
  if not is_complete(directory):
    raise CheckpointError(f"no finished checkpoint in {directory} (missing final/done.json).")
  model = build_segmenter(config, classes_per_step)
  path = final_file(directory, "model")
  try:
    tf.train.Checkpoint(model=model).read(path).assert_consumed()
  except (tf.errors.DataLossError, tf.errors.OutOfRangeError, tf.errors.NotFoundError,
          IndexError) as error:   # files cut short, damaged or gone
    raise CheckpointError(
        f"the finished weights in {directory}/final cannot be read ({type(error).__name__}: "
        f"{str(error).splitlines()[0][:200]}): cut short or damaged. Delete {directory} and "
        "rerun the same command to train that step again (and the steps after it).") from None
  except (AssertionError, ValueError, tf.errors.OpError) as error:
    raise CheckpointError(f"the checkpoint in {directory} does not match the model of the run "
                          f"(--backbone, --head_channels, task): {error}") from error
  # assert_consumed cannot see variables the checkpoint never held (e.g. layers Keras keeps in a
  # list are not tracked by tf.train.Checkpoint): require one stored value per model variable.
  # The reader, not tf.train.list_variables: on ram:// every prefix of a file name counts as a
  # folder, and list_variables would look for a 'checkpoint' file inside final/model.
  stored = [name for name in tf.compat.v1.train.NewCheckpointReader(path)
            .get_variable_to_shape_map() if name.startswith("model/")]
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
  manager = tf.train.CheckpointManager(checkpoint, fs.join(directory, "train"),
                                       max_to_keep=2)
  if save_dir is None or save_dir == directory:
    return checkpoint, manager
  latest = manager.latest_checkpoint
  writer = tf.train.CheckpointManager(checkpoint, fs.join(save_dir, "train"), max_to_keep=1)
  return checkpoint, _ResumeFrom(writer, latest)


class _ResumeFrom:
  """A CheckpointManager that saves with `writer` but reports `latest` (the chief's) to resume."""

  def __init__(self, writer: tf.train.CheckpointManager, latest: str | None):
    self._writer, self.latest_checkpoint = writer, latest
    self.checkpoints = [latest] if latest else []

  def save(self):
    return self._writer.save()


def restore_training(checkpoint: tf.train.Checkpoint, manager) -> str | None:
  """Restores the newest readable checkpoint `manager` keeps (every object must match); returns
  its path, None if there is none. One cut short (a kill or a full disk while it was written
  outside TensorFlow's own ordering, a damaged disk) is passed over for the one before it, which
  the next restore overwrites entirely."""
  candidates = list(reversed(manager.checkpoints))
  for path in candidates:
    try:
      checkpoint.restore(path).assert_consumed()
      return path
    except (tf.errors.OpError, ValueError, AssertionError, IndexError, KeyError) as error:
      print(f"  cannot restore {path} ({type(error).__name__}: {str(error).splitlines()[0][:120]})"
            + ("; trying the one before" if path != candidates[-1] else ""), flush=True)
  if candidates:
    raise CheckpointError(
        f"no training checkpoint in {fs.dirname(candidates[0])} can be restored (see above): "
        "delete that folder to train this step again from its start.")
  return None


def worker_dir(directory: str, worker: int) -> str:
  """Scratch directory of a non-chief worker's saves of a step (removed when the step ends)."""
  return fs.join(directory, f".worker_{worker}")


def remove_worker_dir(path: str) -> None:
  fs.rmtree(path)
