"""Command-line behaviour: one line and status 2 for user and operating-system errors, 130 for
Ctrl-C, refused empty flagfiles and stray arguments, --help exits 0."""
import contextlib
import errno
import io
import os
import subprocess
import sys
from unittest import mock

import tensorflow as tf

from kdseg.config import FlagValueError
from kdseg.run import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(main, argv=("kdseg.train",), command_line=("kdseg.train",)):
  """(exit status, stderr) of `main` under cli.guarded, with sys.argv = command_line."""
  stderr = io.StringIO()
  with mock.patch.object(sys, "argv", list(command_line)), contextlib.redirect_stderr(stderr):
    try:
      cli.guarded("kdseg.train", main)(list(argv))
      code = 0
    except SystemExit as exit_:
      code = exit_.code
  return code, stderr.getvalue()


def _raise(error):
  def main(argv):
    raise error
  return main


class CleanErrorsTest(tf.test.TestCase):

  def test_operating_system_errors_are_one_line_naming_path_and_fix(self):
    cases = [(OSError(errno.ENOSPC, "No space left on device", "/runs/x/step_1/final/model"),
              r"/runs/x/step_1/final/model: No space left on device; free space on that disk"),
             (OSError(errno.EROFS, "Read-only file system", "/mnt/ro/run"),
              r"/mnt/ro/run: Read-only file system; that file system is read-only: choose a "
              r"writable --run_dir"),
             (PermissionError(errno.EACCES, "Permission denied", "/root/cache"),
              r"/root/cache: Permission denied; you may not write there"),
             (tf.errors.ResourceExhaustedError(None, None, "/runs/x/train/ckpt-3.data; No space "
                                               "left on device"), r"/runs/x/train/ckpt-3.data; No space left on device; free")]
    for error, expected in cases:
      code, stderr = _run(_raise(error))
      self.assertEqual(code, 2, msg=stderr)
      self.assertRegex(stderr, rf"^kdseg.train: error: {expected}")
      self.assertIn("rerun the same command", stderr)
      self.assertEqual(stderr.count("\n"), 1, msg=stderr)   # one line, no traceback

  def test_other_errors_keep_their_traceback(self):
    with self.assertRaises(ZeroDivisionError):
      _run(_raise(ZeroDivisionError("bug")))

  def test_ctrl_c(self):
    code, stderr = _run(_raise(KeyboardInterrupt()))
    self.assertEqual(code, 130)
    self.assertEqual(stderr, "kdseg.train: interrupted; rerun the same command to resume "
                             "(finished steps and the last checkpoint are kept).\n")

  def test_empty_flagfile_and_stray_arguments(self):
    ran = []
    code, stderr = _run(ran.append, command_line=("kdseg.train", "--flagfile="))
    self.assertEqual((code, ran), (2, []))
    self.assertIn("--flagfile is empty", stderr)
    code, stderr = _run(ran.append, argv=("kdseg.train", "flags/x.cfg"))
    self.assertEqual((code, ran), (2, []))
    self.assertIn("unexpected arguments ['flags/x.cfg']", stderr)
    code, _ = _run(_raise(FlagValueError("bad")))
    self.assertEqual(code, 2)

  def test_nonsense_values_are_refused_when_the_flags_are_parsed(self):
    # Before anything runs, so before anything is written: absl's parser applies the bounds.
    from absl import flags  # noqa: PLC0415
    from kdseg import config  # noqa: F401,PLC0415  (defines the flags)
    a_file = os.path.join(self.get_temp_dir(), "a_file")
    open(a_file, "w").close()
    for value in ("--batch_size=0", "--batch_size=-4", "--lr=-0.05", "--lr_incremental=0",
                  "--epochs=0", "--epochs_incremental=0", "--crop_size=0",
                  "--eval_batch_size=0", "--eval_crop=-1", "--shapes_num_train=0",
                  "--eval_crop=4097", f"--run_dir={a_file}", f"--cache_dir={a_file}",
                  f"--output_dir={a_file}", f"--manifest_dir={a_file}", "--step=-2",
                  "--step=newest"):
      flags.FLAGS.unparse_flags()
      with self.assertRaises(flags.IllegalFlagValueError, msg=value):
        flags.FLAGS(["kdseg.train", value])
    flags.FLAGS.unparse_flags()

  def test_sigterm_is_said_like_ctrl_c(self):
    code, stderr = _run(_raise(cli.Terminated()))
    self.assertEqual(code, 143)
    self.assertIn("kdseg.train: terminated (SIGTERM); rerun the same command", stderr)
    # A real signal to a real command: one line, status 143, no traceback.
    script = ("import os, signal, time\nfrom kdseg.run import cli\n"
              "def main(argv):\n  os.kill(os.getpid(), signal.SIGTERM)\n  time.sleep(30)\n"
              "cli.command_line('kdseg.x', main)()\n")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    self.assertEqual(result.returncode, 143, result.stderr[-2000:])
    self.assertEqual(result.stderr.strip().splitlines()[-1],
                     "kdseg.x: terminated (SIGTERM); rerun the same command to resume (finished "
                     "steps and the last checkpoint are kept).")
    self.assertNotIn("Traceback", result.stderr)

  def test_flag_errors_exit_2_and_name_the_flag(self):
    result = subprocess.run([sys.executable, "-m", "kdseg.evaluate", "--eval_crop=100000"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    self.assertEqual(result.returncode, 2, result.stderr[-2000:])
    self.assertIn("eval_crop", result.stderr)
    from absl import flags  # noqa: PLC0415
    from kdseg import config  # noqa: PLC0415
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["kdseg.evaluate", "--test_scales=1,abc"])
    try:
      with self.assertRaisesRegex(FlagValueError, r"--test_scales=1,abc: give numbers"):
        config.evaluation_config()
    finally:
      flags.FLAGS.unparse_flags()

  def test_step_names_have_one_meaning_each(self):
    from absl import flags  # noqa: PLC0415
    from kdseg import config  # noqa: PLC0415
    cases = [("kdseg.train", "all", -1), ("kdseg.train", "2", 2), ("kdseg.train", "-1", -1),
             ("kdseg.evaluate", "finished", -1), ("kdseg.evaluate", "0", 0),
             ("kdseg.predict", "last", -1), ("kdseg.export", "last", -1),
             ("kdseg.export", "default", -1)]
    try:
      for command, value, expected in cases:
        flags.FLAGS.unparse_flags()
        flags.FLAGS([command, f"--step={value}"])
        self.assertEqual(config.step_flag(command), expected, (command, value))
      for command, value, takes in [("kdseg.train", "last", "all"),
                                    ("kdseg.predict", "all", "last"),
                                    ("kdseg.evaluate", "last", "finished")]:
        flags.FLAGS.unparse_flags()
        flags.FLAGS([command, f"--step={value}"])
        with self.assertRaisesRegex(FlagValueError, rf"--step={value} is not a step set of "
                                    rf"{command}: it takes a step index or {takes}\."):
          config.step_flag(command)
    finally:
      flags.FLAGS.unparse_flags()

  def test_help_lists_kdseg_flags_and_exits_0(self):
    result = subprocess.run([sys.executable, "-m", "kdseg.evaluate", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    for flag in ("--run_dir", "--method", "--test_scales", "--void_label", "--augment"):
      self.assertIn(flag, result.stdout)


if __name__ == "__main__":
  tf.test.main()
