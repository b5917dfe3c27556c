"""Test session set-up: run TensorFlow as kdseg.train does (oneDNN on), quiet logs."""
import os

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_collection_modifyitems(items):
  # tf.test.TestCase inherits the deprecated `test_session` context manager, which pytest
  # collects as a test and skips; it is not one of ours.
  items[:] = [item for item in items if item.name != "test_session"]
