"""Files through tf.io.gfile (kdseg.fs): a whole run on TensorFlow's in-memory ram:// filesystem,
and the shapes demo trained from TFDS records against the same run from folders."""
import json
import os
import socket
import uuid

import numpy as np
import tensorflow as tf
from absl import flags

from kdseg import atomic, fs, train
from kdseg.config import FlagValueError
from kdseg.data.builders import prepare as build
from kdseg.data.shapes import ShapesConfig
from kdseg.rundir import LOCK_FILE, LockedError, lock

FLAGS = flags.FLAGS
TINY = ["--dataset=shapes", "--shapes_image_size=32", "--shapes_num_train=64",
        "--shapes_num_val=24", "--task=19-1", "--backbone=tiny", "--output_stride=16",
        "--head_channels=16", "--batch_size=8", "--crop_size=32", "--eval_batch_size=12",
        "--verbose=0", "--epochs=1", "--epochs_incremental=1"]


def run_train(*args):
  FLAGS.unparse_flags()
  FLAGS(["kdseg.train", *args])
  train.main([])


class PathsTest(tf.test.TestCase):

  def test_urls_are_kept_and_joined_like_absolute_paths(self):
    self.assertEqual(fs.absolute("gs://bucket/runs/"), "gs://bucket/runs")
    self.assertEqual(fs.absolute("~/x"), os.path.expanduser("~/x"))
    self.assertEqual(fs.join("ram://a", "b", "c.json"), "ram://a/b/c.json")
    self.assertEqual(fs.join("ram://a", "ram://z/b"), "ram://z/b")   # a URL restarts the path
    self.assertEqual(fs.relpath("ram://a/b/c", "ram://a"), "b/c")
    self.assertTrue(fs.is_inside("ram://a/b", "ram://a"))
    self.assertFalse(fs.is_inside("ram://ab", "ram://a"))

  def test_atomic_writes_and_reads_on_ram(self):
    base = f"ram://{uuid.uuid4().hex}"
    atomic.write_json(f"{base}/d/x.json", {"a": 1})
    atomic.write_npz(f"{base}/d/y.npz", counts=np.arange(4))
    atomic.write_npy(f"{base}/d/z.npy", np.eye(2))
    self.assertEqual(fs.read_json(f"{base}/d/x.json"), {"a": 1})
    self.assertAllEqual(fs.load_npz(f"{base}/d/y.npz")["counts"], np.arange(4))
    self.assertAllEqual(fs.load_npy(f"{base}/d/z.npy"), np.eye(2))
    self.assertEqual(sorted(fs.listdir(f"{base}/d")), ["x.json", "y.npz", "z.npy"])  # no temps
    with fs.local_copy(f"{base}/d/y.npz") as local:   # for readers of local files (h5py, zip)
      self.assertFalse(fs.is_url(local))
      with open(local, "rb") as handle:
        self.assertEqual(handle.read(), fs.read_bytes(f"{base}/d/y.npz"))
    self.assertFalse(os.path.exists(local))

  def test_the_lock_on_ram_names_its_holder_and_is_released(self):
    directory = f"ram://{uuid.uuid4().hex}/step"
    with lock(directory, "step 0", wait=False):
      self.assertTrue(fs.isfile(fs.join(directory, LOCK_FILE)))
    self.assertFalse(fs.exists(fs.join(directory, LOCK_FILE)))
    atomic.write_text(fs.join(directory, LOCK_FILE), json.dumps(
        {"host": "elsewhere", "pid": 1, "since": 0, "command": "kdseg-train"}))
    with self.assertRaisesRegex(LockedError, "pid 1 on elsewhere"):
      with lock(directory, "step 0", wait=False):
        pass
    self.assertNotEqual(socket.gethostname(), "elsewhere")


class RunAnywhereTest(tf.test.TestCase):

  def test_a_two_step_run_with_run_dir_and_cache_on_ram(self):
    base = f"ram://{uuid.uuid4().hex}"
    args = [*TINY, f"--cache_dir={base}/cache", f"--run_dir={base}/run", "--method=mib"]
    run_train(*args)
    record = fs.read_json(f"{base}/run/mib/results/step_1.json")
    self.assertBetween(record["miou_all"], 0.0, 1.0)
    self.assertTrue(fs.isfile(f"{base}/run/mib/step_1/final/done.json"))
    self.assertTrue(fs.isfile(f"{base}/run/step_0/final/model.index"))
    self.assertNotEmpty(fs.glob(f"{base}/run/tensorboard/mib/eval/events.out.tfevents.*"))
    self.assertIn("| step | mIoU old |", fs.read_text(f"{base}/run/mib/results/summary.md"))
    summary = fs.read_text(f"{base}/run/mib/results/summary.json")
    run_train(*args)   # a rerun scores the finished steps again, trains nothing
    self.assertEqual(fs.read_text(f"{base}/run/mib/results/summary.json"), summary)

  def test_the_shapes_demo_from_records_has_the_folders_splits_and_table(self):
    tmp = self.get_temp_dir()
    shapes = ShapesConfig(image_size=32, num_train=64, num_val=24)
    build("shapes", f"{tmp}/records", None, f"{tmp}/cache", shapes)
    common = [*TINY, f"--cache_dir={tmp}/cache", "--method=ft", "--seed=1"]
    run_train(*common, f"--run_dir={tmp}/folder")
    run_train(*common, f"--run_dir={tmp}/tfds", "--data_format=tfds",
              f"--tfds_data_dir={tmp}/records")
    for name in ("step_0_train.txt", "step_0_val.txt", "step_1_train.txt", "step_1_val.txt"):
      with open(f"{tmp}/folder/splits/{name}") as folder, open(f"{tmp}/tfds/splits/{name}") as tfds:
        self.assertEqual(tfds.read(), folder.read(), msg=name)
    with open(f"{tmp}/tfds/experiment.json") as handle:
      self.assertEqual(json.load(handle)["data_format"], "tfds")
    with self.assertRaisesRegex(FlagValueError, "--data_format=folder"):
      run_train(*common, f"--run_dir={tmp}/weak", "--data_format=tfds",
                f"--tfds_data_dir={tmp}/records", "--supervision=points")
    self.assertFalse(os.path.exists(f"{tmp}/weak/experiment.json"))   # refused before writing
    tables = []
    for run in ("folder", "tfds"):
      with open(f"{tmp}/{run}/ft/results/summary.md") as handle:
        tables.append([line.split("|")[1].strip() for line in handle if line.startswith("| ")])
    self.assertEqual(tables[1], tables[0])   # the same rows (steps) and columns
    self.assertIn("0", tables[1])


if __name__ == "__main__":
  tf.test.main()
