"""TFDS builders (kdseg.datasets) on fake manual directories, and --data_format=tfds: the same
ids, splits, labels and evaluation as the folders."""
import os
import tarfile

import numpy as np
import tensorflow as tf

from kdseg.data import pipeline, presence, records
from kdseg.data.datasets import DataConfig, load_source
from kdseg.data.shapes import ShapesConfig
from kdseg.data.source import DatasetLayoutError
from kdseg.data.splits import eval_label_table
from kdseg.data.tasks import make_plan
from kdseg.data import builders
from kdseg.data.builders import prepare as build
from kdseg.data.builders import KdsegVoc
from tests.helpers import (write_ade20k_tree, write_cityscapes_tree, write_msrc_tree,
                           write_voc_tree)
from tests.test_datasets import _colours

SHAPES = ShapesConfig(image_size=24, num_train=12, num_val=6)


def _config(dataset, data_root, cache_dir, data_format="folder", tfds_data_dir=None, **extra):
  return DataConfig(dataset, data_root, cache_dir, SHAPES, data_format, tfds_data_dir, **extra)


def _examples(data_dir, name, split, shapes=None):
  builder = builders.make_builder(name, data_dir, shapes)
  return {example["id"].decode(): example
          for example in builder.as_dataset(split=split).as_numpy_iterator()}


class BuildersTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.tmp = self.get_temp_dir()
    self.records = os.path.join(self.tmp, "records")
    self.cache = os.path.join(self.tmp, "cache")

  def _both(self, dataset, manual_dir, data_root):
    """(folder source, records source) of one dataset after building its records."""
    build(dataset, self.records, manual_dir, self.cache, SHAPES)
    folder = load_source(_config(dataset, data_root, self.cache))
    tfds = load_source(_config(dataset, None, self.cache, "tfds", self.records))
    return folder, tfds

  def _assert_same_index(self, folder, tfds):
    for split in ("train", "val"):
      self.assertEqual(tfds.split(split).ids, folder.split(split).ids, msg=split)
      self.assertAllEqual(presence.class_pixel_counts(tfds, split, self.cache),
                          presence.class_pixel_counts(folder, split, self.cache))

  def test_voc_from_the_extracted_tree_and_from_the_official_tar(self):
    label = np.array([[0, 0, 15, 15], [0, 255, 15, 7], [0, 0, 0, 0]], np.uint8)
    root = write_voc_tree(os.path.join(self.tmp, "manual", "VOCdevkit", "VOC2012"), {
        "train": {"b_2": label, "a_1": np.full((3, 4), 7, np.uint8), "c_3": label.T.copy()},
        "val": {"v_1": label}})
    folder, tfds = self._both("voc", os.path.join(self.tmp, "manual"), root)
    self._assert_same_index(folder, tfds)
    self.assertEqual(tfds.split("train").ids, ("b_2", "a_1", "c_3"))   # the list file's order
    stored = _examples(tfds.records.data_dir, "kdseg_voc", "train")
    self.assertLen(stored, 3)
    self.assertAllEqual(stored["b_2"]["label"][..., 0], label)           # raw values, by value
    self.assertEqual(stored["b_2"]["index"], 0)
    self.assertEqual(stored["b_2"]["counts"][[0, 7, 15, 255]].tolist(), [7, 1, 3, 1])
    with open(os.path.join(root, "JPEGImages", "b_2.jpg"), "rb") as image:
      self.assertEqual(tfds.records.builder().info.features["image"].encoding_format, None)
      raw = builders.make_builder("kdseg_voc", tfds.records.data_dir).as_dataset(
          split="train", decoders=records._skip_decoding(records.FeatureNames()))
      by_id = {e["id"].decode(): e["image"] for e in raw.as_numpy_iterator()}
      self.assertEqual(by_id["b_2"], image.read())                       # bytes as stored
    # The official archive instead of the folder: TFDS extracts it.
    archive_dir = os.path.join(self.tmp, "archive")
    os.makedirs(archive_dir)
    with tarfile.open(os.path.join(archive_dir, "VOCtrainval_11-May-2012.tar"), "w") as tar:
      tar.add(os.path.join(self.tmp, "manual", "VOCdevkit"), arcname="VOCdevkit")
    from_tar = KdsegVoc(data_dir=os.path.join(self.tmp, "records_tar"))
    import tensorflow_datasets as tfds_lib
    from_tar.download_and_prepare(
        download_config=tfds_lib.download.DownloadConfig(manual_dir=archive_dir),
        download_dir=os.path.join(self.tmp, "downloads"))
    self.assertEqual({k: v.num_examples for k, v in from_tar.info.splits.items()},
                     {"train": 3, "val": 1})

  def test_shapes_builder_for_the_registered_and_any_other_generation(self):
    # The demo's generation is the builder's registered config: used by name (TFDS refuses a
    # second config object under it); any other generation is a config of its own.
    for shapes in (ShapesConfig(), ShapesConfig(32, 8, 4)):
      builder = builders.make_builder(builders.tfds_name("shapes", shapes.key()),
                                     self.get_temp_dir(), shapes)
      self.assertEqual(builder.builder_config.shapes, shapes)

  def test_ade20k_cityscapes_msrc_and_shapes(self):
    ade = np.array([[0, 0, 1, 1], [0, 150, 150, 1]], np.uint8)
    ade_root = write_ade20k_tree(os.path.join(self.tmp, "ade", "ADEChallengeData2016"), {
        "training": {"ADE_train_00000001": ade, "ADE_train_00000002": ade[::-1].copy()},
        "validation": {"ADE_val_00000001": ade}})
    folder, tfds = self._both("ade20k", os.path.join(self.tmp, "ade"), ade_root)
    self._assert_same_index(folder, tfds)
    self.assertTrue(tfds.scene_parsing)
    self.assertAllEqual(_examples(tfds.records.data_dir, "kdseg_ade20k", "val")[
        "ADE_val_00000001"]["label"][..., 0], ade)

    city = np.array([[7, 7, 26, 0], [9, 33, 24, 24]], np.uint8)   # labelIds
    city_root = write_cityscapes_tree(os.path.join(self.tmp, "city"), {
        "train": {"aachen/aachen_000000_000019": city,
                  "bremen/bremen_000001_000019": np.full((2, 4), 7, np.uint8)},
        "val": {"lindau/lindau_000000_000019": city}})
    folder, tfds = self._both("cityscapes", city_root, city_root)
    self._assert_same_index(folder, tfds)
    self.assertAllEqual(_examples(tfds.records.data_dir, "kdseg_cityscapes", "train")[
        "aachen/aachen_000000_000019"]["label"][..., 0], city)     # labelIds, not class ids

    gt = [[0, 1, 1], [5, 25, 21], [8, 8, 1]]                        # MSRC colour indices
    msrc_root = write_msrc_tree(os.path.join(self.tmp, "msrc", "MSRC_ObjCategImageDatabase_v2"),
                                {"Train": {"1_1_s": _colours(gt)},
                                 "Validation": {"2_1_s": _colours([[7, 7], [0, 0]])},
                                 "Test": {"3_1_s": _colours(gt)}})
    folder, tfds = self._both("msrc", os.path.join(self.tmp, "msrc"), msrc_root)
    self._assert_same_index(folder, tfds)
    self.assertAllEqual(_examples(tfds.records.data_dir, "kdseg_msrc", "val")["3_1_s"][
        "label"][..., 0], gt)

    build("shapes", self.records, None, self.cache, SHAPES)
    shapes = load_source(_config("shapes", None, self.cache, "tfds", self.records))
    self.assertEqual((len(shapes.split("train").ids), len(shapes.split("val").ids)), (12, 6))
    self.assertAllEqual(presence.class_pixel_counts(shapes, "train", self.cache),
                        presence.class_pixel_counts(load_source(_config("shapes", None,
                                                                        self.cache)),
                                                    "train", self.cache))

  def test_tfds_own_cityscapes_records_read_as_the_cityscapes_folders(self):
    import zipfile
    import tensorflow_datasets as tfds_lib
    city = np.array([[7, 7, 26, 0], [9, 33, 24, 24]], np.uint8)   # labelIds
    root = write_cityscapes_tree(os.path.join(self.tmp, "city"), {
        "train": {"aachen/aachen_000000_000019": city,
                  "bremen/bremen_000001_000019": np.full((2, 4), 7, np.uint8)},
        "val": {"lindau/lindau_000000_000019": city},
        "test": {"berlin/berlin_000000_000019": city}})
    manual = os.path.join(self.tmp, "zips")
    os.makedirs(manual)
    for archive, folder in (("leftImg8bit_trainvaltest.zip", "leftImg8bit"),
                            ("gtFine_trainvaltest.zip", "gtFine")):
      with zipfile.ZipFile(os.path.join(manual, archive), "w") as out:
        for directory, _, names in os.walk(os.path.join(root, folder)):
          for name in names:
            path = os.path.join(directory, name)
            out.write(path, os.path.relpath(path, root))
    builder = tfds_lib.builder("cityscapes/semantic_segmentation", data_dir=self.records)
    builder.download_and_prepare(
        download_config=tfds_lib.download.DownloadConfig(manual_dir=manual),
        download_dir=os.path.join(self.tmp, "downloads"))
    folder = load_source(_config("cityscapes", root, self.cache))
    tfds = load_source(_config("cityscapes", None, self.cache, "tfds", self.records,
                               tfds_name="cityscapes/semantic_segmentation"))
    for split in ("train", "val"):
      self.assertEqual(tfds.split(split).ids,
                       tuple(i.split("/")[1] for i in folder.split(split).ids))
      self.assertAllEqual(presence.class_pixel_counts(tfds, split, self.cache),
                          presence.class_pixel_counts(folder, split, self.cache))
    table = eval_label_table(make_plan("11-2", list(range(1, 20))), 0)
    images, labels = next(iter(pipeline.eval_dataset(tfds, tfds.split("val"), table, 1)))
    folder_images, folder_labels = next(iter(pipeline.eval_dataset(folder, folder.split("val"),
                                                                   table, 1)))
    self.assertAllEqual(labels, folder_labels)
    self.assertAllClose(images, folder_images)

  def test_pipelines_give_the_folder_pipelines_images_and_labels(self):
    build("shapes", self.records, None, self.cache, SHAPES)
    folder = load_source(_config("shapes", None, self.cache))
    tfds = load_source(_config("shapes", None, self.cache, "tfds", self.records))
    plan = make_plan("15-5", list(range(1, 21)))
    table = eval_label_table(plan, 1)

    def elements(source):
      dataset = pipeline.eval_dataset(source, source.split("val"), table, batch_size=1)
      items = [(float(image.numpy().sum()), label.numpy().tobytes()) for image, label in dataset]
      return sorted(items)

    self.assertEqual(elements(tfds), elements(folder))
    files = tfds.split("train").select(tfds.split("train").ids[:8])
    batches = list(pipeline.train_dataset(tfds, files, table, batch_size=4, crop_size=16,
                                          min_scale=0.5, max_scale=1.5, seed=3))
    again = list(pipeline.train_dataset(tfds, files, table, batch_size=4, crop_size=16,
                                        min_scale=0.5, max_scale=1.5, seed=3, skip_batches=1))
    self.assertLen(batches, 2)
    self.assertEqual(batches[0][0].shape, (4, 16, 16, 3))
    self.assertAllEqual(again[0][1], batches[1][1])       # resumes where the epoch stopped

  def test_errors_name_what_to_build_and_the_bad_file(self):
    with self.assertRaisesRegex(DatasetLayoutError, "python -m kdseg.datasets --dataset=voc"):
      load_source(_config("voc", None, self.cache, "tfds", self.records))
    with self.assertRaisesRegex(DatasetLayoutError, "--tfds_name=no_such_records"):
      load_source(_config("voc", None, self.cache, "tfds", self.records,
                          tfds_name="no_such_records"))
    empty = os.path.join(self.tmp, "empty")
    os.makedirs(empty)
    with self.assertRaisesRegex(DatasetLayoutError, "VOCtrainval_11-May-2012.tar"):
      build("voc", self.records, empty, self.cache)
    root = write_voc_tree(os.path.join(self.tmp, "bad"), {
        "train": {"x": np.full((2, 2), 40, np.uint8)}, "val": {"y": np.zeros((2, 2), np.uint8)}})
    with self.assertRaisesRegex(presence.LabelValueError, "x.png"):
      build("voc", os.path.join(self.tmp, "records_bad"), root, self.cache)


if __name__ == "__main__":
  tf.test.main()
