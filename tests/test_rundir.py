"""RunDir: the run directory's layout, config guard, atomic writes and recorded run."""
import contextlib
import dataclasses
import io
import json
import os
import re
import resource
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import tensorflow as tf

from kdseg import atomic, fs, report
from kdseg.data.datasets import DataConfig
from kdseg.data.shapes import ShapesConfig
from kdseg.data.tasks import make_plan
from kdseg.methods import customize, get_method
from kdseg.run import cli
from kdseg.models.segmenter import ModelConfig
from kdseg.rundir import (ConfigMismatchError, LockedError, RecordedRun, RunDir, RunDirError,
                          lock)


def _recorded():
  return RecordedRun(make_plan("2-1", [3, 1, 2]), ("background", "a", "b", "c"),
                     ((0, 0, 0), (1, 2, 3), (4, 5, 6), (7, 8, 9)),
                     ModelConfig("tiny", 8, 16, "v2", input_convention="caffe"),
                     DataConfig("shapes", None, "/cache", ShapesConfig(32, 10, 5, 1)),
                     "overlapped", "background", 0.2, 3, 50,
                     {"eval_batch_size": 4, "eval_crop": 0, "background_in_old": True})


class LayoutTest(tf.test.TestCase):

  def test_step_folders_share_step_0_by_recipe(self):
    run_dir = RunDir("/runs/x")
    self.assertEqual(run_dir.step_dir(get_method("mib"), 0), "/runs/x/step_0")
    self.assertEqual(run_dir.step_dir(get_method("ft"), 0), "/runs/x/step_0")
    self.assertEqual(run_dir.step_dir(get_method("kd-cls"), 0), "/runs/x/step_0_ce-valid")
    self.assertEqual(run_dir.step_dir(get_method("ewc"), 0), "/runs/x/ewc/step_0")
    self.assertEqual(run_dir.step_dir(get_method("joint"), 0), "/runs/x/joint/step_0")
    self.assertEqual(run_dir.step_dir(get_method("mib"), 2), "/runs/x/mib/step_2")
    self.assertEqual(run_dir.train_tensorboard("/runs/x/step_0"), "/runs/x/tensorboard/step_0")
    self.assertEqual(run_dir.step_results("mib", 3), "/runs/x/mib/results/step_3.json")
    self.assertEqual(run_dir.splits_dir(joint=True), "/runs/x/splits/joint")


class GuardTest(tf.test.TestCase):

  def test_records_once_then_refuses_another_configuration(self):
    run_dir = RunDir(self.get_temp_dir())
    path = run_dir.join("g", "experiment.json")
    run_dir.guard(path, {"task": "15-1", "seed": 0}, write=False)
    self.assertFalse(os.path.exists(path))   # non-chief workers leave it to the chief
    run_dir.guard(path, {"task": "15-1", "seed": 0})
    run_dir.guard(path, {"seed": 0, "task": "15-1"})   # the same record: accepted
    with open(path) as handle:
      before = handle.read()
    with self.assertRaisesRegex(ConfigMismatchError, r"seed: was 0, now 1.*new --run_dir"):
      run_dir.guard(path, {"task": "15-1", "seed": 1})
    with open(path) as handle:
      self.assertEqual(handle.read(), before)


class AtomicWriteTest(tf.test.TestCase):

  def test_whole_file_or_the_old_one_and_group_readable(self):
    run_dir = RunDir(self.get_temp_dir())
    path = run_dir.join("results", "step_1.json")
    run_dir.write_json(path, {"a": 1})
    old_umask = os.umask(0o022)
    try:
      run_dir.write_json(path, {"a": 2})
    finally:
      os.umask(old_umask)
    self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o644)

    def fail(out):
      out.write(b"half")
      raise OSError(28, "No space left on device")

    with self.assertRaisesRegex(OSError, "No space"):
      atomic.write_with(path, fail)
    with open(path) as handle:
      self.assertEqual(json.load(handle), {"a": 2})
    self.assertEqual(os.listdir(os.path.dirname(path)), ["step_1.json"])   # no temporary left

  def test_writes_stay_inside_the_run_directory(self):
    run_dir = RunDir(os.path.join(self.get_temp_dir(), "run"))
    with self.assertRaisesRegex(ValueError, "outside the run directory"):
      run_dir.write_text(os.path.join(self.get_temp_dir(), "elsewhere.txt"), "x")

  def test_npy(self):
    run_dir = RunDir(self.get_temp_dir())
    path = run_dir.write_npy(run_dir.join("c.npy"), np.eye(2))
    self.assertAllEqual(np.load(path), np.eye(2))


class RecordedRunTest(tf.test.TestCase):

  def test_cut_or_empty_records_are_named_errors(self):
    # run.json, experiment.json, method.json and a step's results cut short or emptied: one
    # CorruptFileError naming the file and the fix, which the commands print as one line.
    run_dir = RunDir(os.path.join(self.get_temp_dir(), "corrupt"))
    run_dir.record_run(_recorded())
    method = get_method("mib")
    run_dir.write_json(run_dir.method_json("mib"), {"method": dataclasses.asdict(method)})
    run_dir.write_json(run_dir.experiment_json, {"task": "2-1"})
    run_dir.write_json(run_dir.step_results("mib", 0), {"step": 0})
    reads = {run_dir.run_json: run_dir.require_run,
             run_dir.method_json("mib"): lambda: run_dir.load_method("mib"),
             run_dir.experiment_json: lambda: run_dir.guard(run_dir.experiment_json,
                                                            {"task": "2-1"}),
             run_dir.step_results("mib", 0): lambda: report.load_records(run_dir, "mib")}
    for path, read in reads.items():
      with open(path) as handle:
        text = handle.read()
      for broken in (text[:len(text) // 2], ""):
        with open(path, "w") as out:
          out.write(broken)
        with self.assertRaisesRegex(fs.CorruptFileError,
                                    re.escape(path) + r" is not valid JSON .*Delete it and rerun"):
          read()
      with open(path, "w") as out:
        out.write(text)
    self.assertIn(fs.CorruptFileError, cli.USER_ERRORS)

  def test_round_trip(self):
    run_dir = RunDir(self.get_temp_dir())
    run_dir.record_run(_recorded())
    self.assertEqual(run_dir.require_run(), _recorded())

  def test_a_directory_without_a_run_is_an_error_that_writes_nothing(self):
    missing = os.path.join(self.get_temp_dir(), "nowhere")
    with self.assertRaisesRegex(RunDirError, "does not exist"):
      RunDir(missing).require_run()
    self.assertFalse(os.path.exists(missing))
    empty = os.path.join(self.get_temp_dir(), "empty")
    os.makedirs(empty)
    with self.assertRaisesRegex(RunDirError, "holds no kdseg run"):
      RunDir(empty).require_run()
    self.assertEqual(os.listdir(empty), [])

  def test_methods_are_read_back_from_their_records(self):
    run_dir = RunDir(self.get_temp_dir())
    method = customize(get_method("mib"), freeze="encoder", distill=["enc:5"])
    run_dir.write_json(run_dir.method_json(method.name),
                       {"method": dataclasses.asdict(method), "lr_incremental": 0.001})
    self.assertEqual(run_dir.load_method(method.name), method)
    self.assertEqual(run_dir.method_names(), [method.name])
    with self.assertRaisesRegex(RunDirError, r"--method=ft: no .* Methods in this run: mib\+"):
      run_dir.load_method("ft")


class LockTest(tf.test.TestCase):

  def _holder(self, directory, seconds):
    """Another process that holds the lock of `directory` for `seconds`."""
    script = textwrap.dedent(f"""
        import time
        from kdseg.rundir import lock
        with lock({directory!r}, "test", wait=False):
          print("held", flush=True)
          time.sleep({seconds})
        """)
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                               cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    self.assertEqual(process.stdout.readline().strip(), b"held")
    return process

  def test_a_live_holder_is_named_and_waited_for(self):
    directory = self.get_temp_dir()
    holder = self._holder(directory, 3)
    with self.assertRaisesRegex(LockedError, rf"in use by pid {holder.pid} on "
                                rf"{socket.gethostname()} since .* delete .*\.lock"):
      with lock(directory, "the step", wait=False):
        pass
    start = time.time()
    with lock(directory, "the step", wait=True, poll_seconds=0.2):
      self.assertGreater(time.time() - start, 0.5)   # waited for the holder to finish
    holder.wait()
    self.assertEqual(os.listdir(directory), [])   # released

  def test_a_stale_lock_is_taken_over(self):
    directory = self.get_temp_dir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with open(os.path.join(directory, ".lock"), "w") as out:
      json.dump({"host": socket.gethostname(), "pid": dead.pid, "since": 0}, out)
    with lock(directory, "the step", wait=False):
      with open(os.path.join(directory, ".lock")) as handle:
        self.assertEqual(json.load(handle)["pid"], os.getpid())

  def test_an_empty_lock_is_waited_for_then_taken_over_and_the_wait_is_said(self):
    # A lock file left empty (its writer failed) is not waited on forever: after the bound it
    # is taken over; meanwhile the waiting run says what it waits for, since when, and the file.
    directory = self.get_temp_dir()
    path = os.path.join(directory, ".lock")
    open(path, "w").close()
    output = io.StringIO()
    start = time.time()
    with contextlib.redirect_stdout(output):
      with lock(directory, "step 0 (x)", wait=True, poll_seconds=0.05, unreadable_seconds=0.5):
        self.assertGreater(time.time() - start, 0.4)
    said = output.getvalue()
    self.assertRegex(said, r"waiting since \d\d:\d\d:\d\d for step 0 \(x\): its lock is empty "
                     r"or unreadable .*" + re.escape(path))
    self.assertIn(f"took over {path}, empty or unreadable", said)
    # An old empty lock is taken over at once, without waiting.
    open(path, "w").close()
    os.utime(path, (time.time() - 3600, time.time() - 3600))
    with contextlib.redirect_stdout(io.StringIO()):
      with lock(directory, "step 0", wait=False):
        with open(path) as handle:
          self.assertEqual(json.load(handle)["pid"], os.getpid())

  def test_a_lock_that_cannot_be_written_is_named_and_removed(self):
    # A full disk (here: a file-size limit, which fails the same write) while writing the lock:
    # the error names the lock file, the CLI turns it into one line, no empty lock stays.
    directory = self.get_temp_dir()
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, limits[1]))
    try:
      with self.assertRaises(OSError) as caught:
        with lock(directory, "step 0", wait=False):
          pass
    finally:
      resource.setrlimit(resource.RLIMIT_FSIZE, limits)
      signal.signal(signal.SIGXFSZ, previous)
    self.assertEqual(caught.exception.filename, os.path.join(directory, ".lock"))
    self.assertEqual(os.listdir(directory), [])
    message = cli.describe_os_error(caught.exception)
    self.assertRegex(message, r"\.lock: File too large .*ulimit -f.*rerun the same command")


if __name__ == "__main__":
  tf.test.main()
