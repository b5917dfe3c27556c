"""Test session set-up: run TensorFlow as kdseg.train does (oneDNN on), quiet logs, and one
temporary folder for everything the tests write (TEST_TMPDIR, read by tf.test's get_temp_dir and
the end-to-end tests), removed when the session ends."""
import os
import shutil
import tempfile

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_SESSION_TMPDIR = None
if "TEST_TMPDIR" not in os.environ:
  _SESSION_TMPDIR = tempfile.mkdtemp(prefix="kdseg_tests_")
  os.environ["TEST_TMPDIR"] = _SESSION_TMPDIR
  os.environ["TMPDIR"] = _SESSION_TMPDIR        # ... and the subprocesses' (kdseg.train runs)
  tempfile.tempdir = _SESSION_TMPDIR   # tempfile.mkdtemp() and tf.test's temp dirs go there too


# The longest tests (minutes each on 2 cores) start first, so that under pytest-xdist (-n 2, the
# README's command) none of them is left running alone at the end. The README's --dist worksteal
# matters: xdist's default hands each worker a consecutive block of this order at the start, so
# one worker got every long test (877 s) while the other was idle after 467 s.
FIRST = ("test_two_steps_of_15_1_", "test_replicas.py", "test_train.py",
         "test_tf1_weights.py",
         "test_filesystems.py", "test_records.py")


def _start_order(item) -> int:
  for rank, marker in enumerate(FIRST):
    if marker in item.nodeid:
      return rank
  return len(FIRST)


def pytest_collection_modifyitems(items):
  # tf.test.TestCase inherits the deprecated `test_session` context manager, which pytest
  # collects as a test and skips; it is not one of ours.
  items[:] = sorted((item for item in items if item.name != "test_session"), key=_start_order)


def pytest_sessionfinish(session, exitstatus):
  del session, exitstatus
  if _SESSION_TMPDIR:
    shutil.rmtree(_SESSION_TMPDIR, ignore_errors=True)
