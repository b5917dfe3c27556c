"""What every kdseg command does around its work: quiet start-up; user errors (flags, data, run
directory), flags absl cannot parse, and operating-system errors (disk full, read-only or
forbidden paths) as one line and exit status 2 instead of a traceback; Ctrl-C as one line and
status 130, SIGTERM likewise with status 143."""
from __future__ import annotations

import errno
import signal
import sys

from absl import app, logging

from kdseg import fs
from kdseg.config import FlagValueError
from kdseg.data import pipeline, presence
from kdseg.data.source import DatasetLayoutError
from kdseg.data.splits import SplitError
from kdseg.data.tasks import TaskError
from kdseg.data.weak import WeakAnnotationError
from kdseg.engine.checkpoints import CheckpointError
from kdseg.engine.distribute import StrategyError
from kdseg.engine.loop import TrainingDivergedError
from kdseg.methods import MethodError
from kdseg.models.pretrained import PretrainedWeightsError
from kdseg.rundir import ConfigMismatchError, LockedError, RunDirError

# Errors caused by flags, data or the run directory: one message (what and how to fix).
USER_ERRORS = (TaskError, MethodError, SplitError, DatasetLayoutError, presence.LabelValueError,
               pipeline.PipelineError, CheckpointError, ConfigMismatchError, RunDirError,
               FlagValueError, TrainingDivergedError, StrategyError, PretrainedWeightsError,
               LockedError, WeakAnnotationError, fs.CorruptFileError)


def start_process(precision: str = "float32", deterministic: bool = False) -> None:
  """The process-wide settings of a command, made once before any op runs: TensorFlow's and
  absl's start-up chatter off; the Keras dtype policy (`precision`: the one place --precision
  becomes global state); with `deterministic`, TensorFlow's op determinism (every kernel takes
  its deterministic path, and a random op without a seed becomes an error)."""
  import keras  # noqa: PLC0415
  import tensorflow as tf  # noqa: PLC0415
  tf.get_logger().setLevel("ERROR")
  logging.set_verbosity(logging.WARNING)
  keras.config.set_dtype_policy(precision)
  if deterministic:
    tf.config.experimental.enable_op_determinism()


# What to do about an operating-system error, by errno.
_OS_FIXES = {
    errno.ENOSPC: "free space on that disk (or point --run_dir / --cache_dir elsewhere)",
    errno.EDQUOT: "free space within your quota (or point --run_dir / --cache_dir elsewhere)",
    errno.EFBIG: "a file-size limit stopped the write (ulimit -f): raise it",
    errno.EROFS: "that file system is read-only: choose a writable --run_dir / --cache_dir",
    errno.EACCES: "you may not write there: fix its permissions or choose another --run_dir / "
                  "--cache_dir",
    errno.EPERM: "you may not write there: fix its permissions or choose another --run_dir / "
                 "--cache_dir",
}
# TensorFlow's file system errors carry the C library's text, not an errno.
_TF_MESSAGES = {"No space left on device": errno.ENOSPC, "Disk quota exceeded": errno.EDQUOT,
                "File too large": errno.EFBIG,
                "Read-only file system": errno.EROFS, "Permission denied": errno.EACCES}
RESUME = "then rerun the same command: finished steps are kept and an interrupted one resumes"


def describe_os_error(error: BaseException) -> str | None:
  """One line for a disk-full / read-only / permission error (OSError or a TensorFlow I/O
  error), naming the path and the fix; None for any other error."""
  import tensorflow as tf  # noqa: PLC0415
  if isinstance(error, OSError) and error.errno in _OS_FIXES:
    where = error.filename or "a file"
    return f"{where}: {error.strerror}; {_OS_FIXES[error.errno]}, {RESUME}."
  if isinstance(error, tf.errors.OpError):
    for text, number in _TF_MESSAGES.items():
      if text in error.message:
        first_line = error.message.strip().splitlines()[0][:300]
        return f"{first_line}; {_OS_FIXES[number]}, {RESUME}."
  return None


def check_command_line(argv: list[str]) -> None:
  """Refuses what absl lets through silently: an empty --flagfile, stray arguments."""
  for argument in sys.argv[1:]:
    if argument.split("=", 1)[0] == "--flagfile" and not argument.partition("=")[2].strip():
      raise FlagValueError("--flagfile is empty: name a flagfile (e.g. "
                           "--flagfile=flags/shapes_15_1.cfg) or drop it.")
  if len(argv) > 1:
    raise FlagValueError(f"unexpected arguments {argv[1:]}: every option is a --flag "
                         "(python -m kdseg.train --help lists them).")


class Terminated(KeyboardInterrupt):
  """SIGTERM (a scheduler's or `kill`'s stop), handled as Ctrl-C is."""


def _terminate(signum, frame):
  del signum, frame
  raise Terminated()


def guarded(name: str, main_function, *errors: type[Exception]):
  """`main_function` with a user error (USER_ERRORS, `errors`) or an operating-system error
  printed as one line naming the command (exit status 2) instead of a traceback, and Ctrl-C as
  one line (status 130)."""

  def main_with_clean_errors(argv):
    try:
      check_command_line(argv)
      main_function(argv)
    except (*USER_ERRORS, *errors) as error:
      print(f"{name}: error: {error}", file=sys.stderr)
      sys.exit(2)
    except KeyboardInterrupt as interrupt:
      terminated = isinstance(interrupt, Terminated)
      print(f"{name}: {'terminated (SIGTERM)' if terminated else 'interrupted'}; rerun the same "
            "command to resume (finished steps and the last checkpoint are kept).",
            file=sys.stderr)
      sys.exit(143 if terminated else 130)
    except Exception as error:  # noqa: BLE001  (only I/O errors are turned into a message)
      message = describe_os_error(error)
      if message is None:
        raise
      print(f"{name}: error: {message}", file=sys.stderr)
      sys.exit(2)

  return main_with_clean_errors


def command_line(name: str, main_function, *errors: type[Exception]):
  """The absl entry point of a kdseg command (see `guarded`); --help exits 0."""
  main_with_clean_errors = guarded(name, main_function, *errors)

  def run():
    signal.signal(signal.SIGTERM, _terminate)
    try:
      app.run(main_with_clean_errors)
    except SystemExit as exit_:
      # absl ends --help, and a flag it cannot parse, with status 1: asking for help is not a
      # failure, and a bad flag is a usage error like every other (status 2).
      if exit_.code == 1:
        sys.exit(0 if set(sys.argv[1:]) & HELP_FLAGS else 2)
      raise

  return run


HELP_FLAGS = {"--help", "-h", "-?", "--helpshort", "--helpfull", "--helpxml"}
