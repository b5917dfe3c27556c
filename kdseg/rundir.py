"""RunDir: the one owner of a run directory's layout, its records and its writes.

  <run_dir>/experiment.json          the flags that shape every step (the config guard)
  <run_dir>/run.json                 the resolved run: task plan, class names, palette, model and
                                     data configuration, evaluation defaults -- what kdseg.evaluate,
                                     predict and export need to use a finished run alone
  <run_dir>/splits/                  step_<t>_{train,val,holdout}.txt, written once (joint/: the
                                     offline upper bound's)
  <run_dir>/step_0/, step_0_<key>/   a step 0 shared by methods with the same step-0 recipe
  <run_dir>/<method>/method.json     the method record and its schedule (guarded)
  <run_dir>/<method>/flags.txt       the resolved flags of the last run
  <run_dir>/<method>/step_<t>/       train/ (resume checkpoints), final/ (weights, done.json)
  <run_dir>/<method>/results/        step_<t>.json, summary.{md,csv,json}, eval/<name>.json
  <run_dir>/tensorboard/<...>/       event files (training per step dir, eval per method)
  <run_dir>/comparison.txt, miou_per_step.png, timing.json (the last run's wall time by phase)
Every write goes through kdseg.atomic (whole file or none).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import sys
import time

import tensorflow as tf

from kdseg import atomic, fs
from kdseg.data.datasets import DataConfig
from kdseg.data.shapes import ShapesConfig
from kdseg.data.tasks import TaskPlan
from kdseg.methods import Method, method_from_record
from kdseg.models.segmenter import ModelConfig, config_record


# The evaluation convention of a run's results (run.json "evaluation"), with the value a record
# without the key means; eval_batch_size changes no result and is not compared.
EVALUATION_DEFAULTS = {"eval_crop": 0, "background_in_old": True, "eval_images": "seen",
                       "test_time": "single"}


class ConfigMismatchError(ValueError):
  """The run directory holds results of an experiment with other settings."""


class RunDirError(FileNotFoundError):
  """A --run_dir that holds no (finished) run, or no such method in it."""


class LockedError(RuntimeError):
  """Another live process holds the lock of what this process was about to write."""


LOCK_FILE = ".lock"


def _holder_alive(holder: dict) -> bool:
  """Whether the process recorded in a lock file may still run (unknown hosts: assume so)."""
  if holder.get("host") != socket.gethostname():
    return True
  try:
    os.kill(int(holder.get("pid", -1)), 0)
  except ProcessLookupError:
    return False
  except (PermissionError, ValueError, OSError):
    return True
  return True


def _describe(holder: dict) -> str:
  since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("since", 0)))
  return (f"pid {holder.get('pid')} on {holder.get('host')} since {since} "
          f"({holder.get('command', '?')})")


def _create_exclusive(path: str, text: str) -> bool:
  """Creates `path` holding `text` unless it exists; False if it does. Exclusive (O_EXCL) on
  local paths; on other filesystems (gs://, ram://) gfile has no exclusive create, so this checks
  and then writes: two processes starting within one write of each other could both win. A
  failed write (disk full) removes the file it created and names it."""
  if fs.is_url(path):
    if fs.exists(path):
      return False
    atomic.write_text(path, text)
    return True
  try:
    handle = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
  except FileExistsError:
    return False
  try:
    with os.fdopen(handle, "w") as out:
      out.write(text)
  except OSError as error:
    os.remove(path)
    raise OSError(error.errno, f"{error.strerror} (writing the lock file)", path) from None
  return True


# A lock file that stays empty or unreadable this long was left by a writer that failed (a full
# disk); a live holder writes its few bytes at once.
UNREADABLE_LOCK_SECONDS = 60.0
WAIT_REMINDER_SECONDS = 600.0


def _lock_age(path: str) -> float:
  try:   # (gfile's times are whole seconds: os.stat where the path is local)
    modified = fs.stat(path)[0] / 1e9 if fs.is_url(path) else os.stat(path).st_mtime
    return time.time() - modified
  except (OSError, tf.errors.OpError):
    return 0.0   # removed meanwhile: look again


def _locked_error(what: str, holder: dict, path: str) -> LockedError:
  return LockedError(
      f"{what} is in use by {_describe(holder)}: {path}. Wait for that run to finish, or use "
      f"another --run_dir. If that process is gone (a crashed machine), delete {path}.")


def check_unlocked(directory: str, what: str) -> None:
  """LockedError if a live process holds `directory`'s lock (looks only: takes nothing,
  writes nothing), so a run that would be refused is refused before it writes anything."""
  path = fs.join(directory, LOCK_FILE)
  if not fs.isfile(path):
    return
  try:
    holder = fs.read_json(path)
  except (OSError, ValueError, tf.errors.OpError):
    return   # being written or left empty: lock() decides
  if _holder_alive(holder) and holder.get("pid") != os.getpid():
    raise _locked_error(what, holder, path)


@contextlib.contextmanager
def lock(directory: str, what: str, wait: bool, poll_seconds: float = 2.0,
         unreadable_seconds: float = UNREADABLE_LOCK_SECONDS):
  """Holds `directory`/.lock (created exclusively, see _create_exclusive) while the block runs.

  The file names its holder (host, pid, since, command). A lock left by a process that no longer
  runs on this host, or empty / unreadable for `unreadable_seconds`, is stale and taken over.
  Held by a live process: with `wait`, poll until it is released (saying what it waits for and
  since when, again every WAIT_REMINDER_SECONDS); else raise LockedError naming the holder.
  """
  fs.makedirs(directory)
  path = fs.join(directory, LOCK_FILE)
  me = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time(),
        "command": " ".join([fs.basename(sys.argv[0])] + sys.argv[1:])[:300]}
  waiting_since, told_at = time.time(), None
  while not _create_exclusive(path, json.dumps(me)):
    try:
      holder = fs.read_json(path)
    except (OSError, ValueError, tf.errors.OpError):
      holder = None   # being written, removed meanwhile, or left empty by a failed writer
    if holder is None and _lock_age(path) >= unreadable_seconds:
      fs.remove(path)
      print(f"kdseg: took over {path}, empty or unreadable for over {unreadable_seconds:.0f} s "
            "(left by a run that could not write it)", flush=True)
      continue
    if holder is not None and not _holder_alive(holder):
      fs.remove(path)
      print(f"kdseg: took over the stale lock of {what} from {_describe(holder)}", flush=True)
      continue
    if holder is not None and not wait:
      raise _locked_error(what, holder, path)
    if told_at is None or time.time() - told_at >= WAIT_REMINDER_SECONDS:
      since = time.strftime("%H:%M:%S", time.localtime(waiting_since))
      held = (f"in use by {_describe(holder)}" if holder is not None else
              f"its lock is empty or unreadable (taken over after {unreadable_seconds:.0f} s)")
      print(f"kdseg: waiting since {since} for {what}: {held}; lock file {path}", flush=True)
      told_at = time.time()
    time.sleep(poll_seconds)
  try:
    yield
  finally:
    fs.remove(path)


@dataclasses.dataclass(frozen=True)
class RecordedRun:
  """What run.json holds: enough to rebuild any finished step's model and label mapping."""
  plan: TaskPlan
  class_names: tuple[str, ...]
  palette: tuple[tuple[int, int, int], ...]
  model: ModelConfig
  data: DataConfig
  setting: str
  void_label: str
  holdout_fraction: float
  seed: int
  min_images_per_class: int
  evaluation: dict   # eval_batch_size and the convention of its results (EVALUATION_DEFAULTS)

  def to_json(self) -> dict:
    return {"task": self.plan.name, "steps": [list(s) for s in self.plan.steps],
            "class_names": list(self.class_names), "palette": [list(c) for c in self.palette],
            "model": config_record(self.model), "data": dataclasses.asdict(self.data),
            "setting": self.setting, "void_label": self.void_label,
            "holdout_fraction": self.holdout_fraction, "seed": self.seed,
            "min_images_per_class": self.min_images_per_class, "evaluation": self.evaluation}

  @classmethod
  def from_json(cls, record: dict) -> "RecordedRun":
    data = dict(record["data"])
    data["shapes"] = ShapesConfig(**data["shapes"])
    return cls(TaskPlan(record["task"], tuple(tuple(s) for s in record["steps"])),
               tuple(record["class_names"]), tuple(tuple(c) for c in record["palette"]),
               ModelConfig(**record["model"]), DataConfig(**data), record["setting"],
               record["void_label"], record["holdout_fraction"], record["seed"],
               record["min_images_per_class"], record["evaluation"])


class RunDir:
  """Paths, records and atomic writes of one run directory."""

  def __init__(self, path: str):
    self.path = fs.absolute(path)

  def __repr__(self) -> str:
    return f"RunDir({self.path!r})"

  def join(self, *parts: str) -> str:
    return fs.join(self.path, *parts)

  # -- records of the run
  @property
  def experiment_json(self) -> str:
    return self.join("experiment.json")

  @property
  def run_json(self) -> str:
    return self.join("run.json")

  @property
  def comparison(self) -> str:
    return self.join("comparison.txt")

  @property
  def miou_plot(self) -> str:
    return self.join("miou_per_step.png")

  @property
  def timing_json(self) -> str:
    """The last kdseg.train run's wall time by phase (data, training, evaluation, reporting)."""
    return self.join("timing.json")

  def splits_dir(self, joint: bool = False) -> str:
    return self.join("splits", "joint") if joint else self.join("splits")

  # -- per method
  def method_dir(self, method_name: str) -> str:
    return self.join(method_name)

  def method_json(self, method_name: str) -> str:
    return self.join(method_name, "method.json")

  def flags_txt(self, method_name: str) -> str:
    return self.join(method_name, "flags.txt")

  def results_dir(self, method_name: str) -> str:
    return self.join(method_name, "results")

  def step_results(self, method_name: str, step: int) -> str:
    return self.join(method_name, "results", f"step_{step}.json")

  def eval_results(self, method_name: str, name: str) -> str:
    return self.join(method_name, "results", "eval", name)

  def summary(self, method_name: str, name: str) -> str:
    """results/summary.{md,csv,json} of a method (`name`: the file's name)."""
    return self.join(method_name, "results", name)

  def step_result_files(self, method_name: str) -> list[str]:
    """The results/step_<t>.json files of a method (any order)."""
    return fs.glob(self.join(method_name, "results", "step_*.json"))

  def evaluated_methods(self) -> list[str]:
    """Folders of this run directory with a results/ folder (methods with evaluated steps, or
    about to have them), by name."""
    if not fs.isdir(self.path):
      return []
    return sorted(name for name in fs.listdir(self.path) if fs.isdir(self.results_dir(name)))

  # -- several seeds (--seeds): one run directory per seed inside this one
  def seed_dir(self, seed: int | str) -> str:
    return self.join(f"seed_{seed}")

  @property
  def seeds_table(self) -> str:
    return self.join("seeds.md")

  @property
  def seeds_json(self) -> str:
    return self.join("seeds.json")

  def step_dir(self, method: Method, step: int) -> str:
    """A step's checkpoint folder; methods with the same step-0 recipe share step 0."""
    if step == 0 and method.shares_step0:
      key = method.step0_key
      return self.join("step_0" if key == "ce" else f"step_0_{key}")
    return self.join(method.name, f"step_{step}")

  def tensorboard(self, *parts: str) -> str:
    return self.join("tensorboard", *parts)

  def train_tensorboard(self, step_dir: str) -> str:
    """The training events of a step folder (shared step 0s have one folder of their own)."""
    return self.tensorboard(fs.relpath(step_dir, self.path))

  # -- writes
  def write_json(self, path: str, payload) -> str:
    return atomic.write_json(self._inside(path), payload)

  def write_text(self, path: str, text: str) -> str:
    return atomic.write_text(self._inside(path), text)

  def write_npy(self, path: str, array) -> str:
    return atomic.write_npy(self._inside(path), array)

  def _inside(self, path: str) -> str:
    path = fs.absolute(path)
    if not fs.is_inside(path, self.path):
      raise ValueError(f"{path} is outside the run directory {self.path}")
    return path

  def guard(self, path: str, payload: dict, write: bool = True, normalize=None) -> None:
    """Records `payload` at `path`, or checks it equals what an earlier run recorded there
    (both passed through `normalize` first, if given: records of other kdseg versions).

    With write=False (non-chief workers) an absent record is left for the chief to write.
    """
    payload = json.loads(json.dumps(payload))
    if fs.isfile(path):
      recorded = fs.read_json(path)
      if normalize is not None:
        recorded, payload = normalize(recorded), normalize(payload)
      changed = sorted(k for k in set(recorded) | set(payload)
                       if recorded.get(k) != payload.get(k))
      if changed:
        details = "; ".join(f"{k}: was {recorded.get(k)!r}, now {payload.get(k)!r}"
                            for k in changed)
        raise ConfigMismatchError(
            f"{path} records another configuration ({details}). Its checkpoints and results "
            "would not match these flags: choose a new --run_dir (nothing was changed in this "
            "one).")
      return
    if write:
      self.write_json(path, payload)

  # -- reading a finished run
  def require_run(self) -> RecordedRun:
    """The recorded run; RunDirError (nothing written) if this directory holds none."""
    if not fs.isdir(self.path):
      raise RunDirError(f"--run_dir={self.path} does not exist: give the directory of a run "
                        "trained with python -m kdseg.train.")
    if not fs.isfile(self.run_json):
      raise RunDirError(f"--run_dir={self.path} holds no kdseg run (no run.json; runs trained "
                        "before run.json existed: train any step again with the same flags, "
                        "which records it without retraining finished steps).")
    return RecordedRun.from_json(fs.read_json(self.run_json))

  def record_run(self, recorded: RecordedRun) -> None:
    """Writes run.json; ConfigMismatchError (nothing written) if it records another evaluation
    convention: the results of one run directory are all scored under one."""
    if fs.isfile(self.run_json):
      before = self.require_run().evaluation
      changed = sorted(key for key in set(before) | set(recorded.evaluation)
                       if key in EVALUATION_DEFAULTS and
                       before.get(key, EVALUATION_DEFAULTS[key]) !=
                       recorded.evaluation.get(key, EVALUATION_DEFAULTS[key]))
      if changed:
        details = "; ".join(f"{key}: was {before.get(key, EVALUATION_DEFAULTS[key])!r}, now "
                            f"{recorded.evaluation.get(key, EVALUATION_DEFAULTS[key])!r}"
                            for key in changed)
        raise ConfigMismatchError(
            f"{self.run_json} records how this run's results are scored ({details}): results "
            "under two conventions would mix in summary.md, the comparison and TensorBoard. "
            "Drop those flags to train with the recorded ones, score finished steps under other "
            f"options with python -m kdseg.evaluate --run_dir={self.path} (each convention in "
            "its own files), or train in a new --run_dir. Nothing was changed.")
    self.write_json(self.run_json, recorded.to_json())

  def method_names(self) -> list[str]:
    """Methods with a record in this run directory."""
    if not fs.isdir(self.path):
      return []
    return sorted(name for name in fs.listdir(self.path)
                  if fs.isfile(self.method_json(name)))

  def load_method(self, method_name: str) -> Method:
    """The record of a method trained in this run (its folder's method.json)."""
    path = self.method_json(method_name)
    if not fs.isfile(path):
      known = ", ".join(self.method_names()) or "none"
      raise RunDirError(f"--method={method_name}: no {path}. Methods in this run: {known}.")
    return method_from_record(fs.read_json(path)["method"])
