"""Weak annotations: simulation from full labels, the released formats (on files the tests write
in those formats), the cached annotation set, and the training pipeline's U_x vector."""
import dataclasses
import json
import os

import numpy as np
import tensorflow as tf
from PIL import Image

from kdseg.constants import IGNORE_LABEL, UNLABELED
from kdseg.data import pipeline, weak
from kdseg.data.ade20k import read_ade20k
from kdseg.data.voc import VOC_CLASSES, read_voc_layout
from tests.helpers import write_ade20k_tree, write_voc_tree

U = UNLABELED


def _two_objects():
  """20x24: two separate class-3 squares, one class-7 bar, void ring around one square."""
  labels = np.zeros((20, 24), np.int64)
  labels[2:8, 2:8] = 3
  labels[12:18, 2:8] = 3
  labels[1, 1:9] = IGNORE_LABEL
  labels[2:18, 14:20] = 7
  return labels


class SimulationTest(tf.test.TestCase):

  def test_points_every_region_gets_its_points_inside_and_never_on_void(self):
    labels = _two_objects()
    sparse = weak.simulate_points(labels, 2, 0, False, np.random.default_rng(0))
    annotated = sparse != U
    self.assertEqual(np.count_nonzero(annotated), 6)          # 3 regions x 2 points
    self.assertTrue(np.all(sparse[annotated] == labels[annotated]))
    self.assertEqual(np.count_nonzero(sparse[2:8, 2:8] == 3), 2)
    self.assertEqual(np.count_nonzero(sparse[12:18, 2:8] == 3), 2)
    self.assertEqual(np.count_nonzero(sparse == 0), 0)        # no background points
    self.assertFalse(np.any(annotated[labels == IGNORE_LABEL]))
    # Inner pixels: never on a region's border.
    for y, x in zip(*np.nonzero(annotated)):
      self.assertTrue(np.all(labels[y - 1:y + 2, x - 1:x + 2] == labels[y, x]))

  def test_points_are_seeded(self):
    labels = _two_objects()
    one = weak.simulate_points(labels, 1, 0, True, np.random.default_rng([3, 9]))
    self.assertAllEqual(one, weak.simulate_points(labels, 1, 0, True,
                                                  np.random.default_rng([3, 9])))
    self.assertEqual(np.count_nonzero(one == 0), 1)           # background: one region, 1 point

  def test_point_discs_stay_inside_their_region(self):
    labels = _two_objects()
    sparse = weak.simulate_points(labels, 1, 2, False, np.random.default_rng(1))
    annotated = sparse != U
    self.assertTrue(np.all(sparse[annotated] == labels[annotated]))
    self.assertGreater(np.count_nonzero(sparse[2:18, 14:20] == 7), 1)

  def test_scribbles_follow_each_region_inside_it(self):
    labels = _two_objects()
    sparse = weak.simulate_scribbles(labels, 3, True)
    annotated = sparse != U
    self.assertTrue(np.all(sparse[annotated] == labels[annotated]))
    for cls, box in ((3, np.s_[2:8, 2:8]), (3, np.s_[12:18, 2:8]), (7, np.s_[2:18, 14:20])):
      self.assertGreater(np.count_nonzero(sparse[box] == cls), 0)
    self.assertGreater(np.count_nonzero(sparse == 0), 0)      # background scribbles
    self.assertFalse(np.any(annotated[labels == IGNORE_LABEL]))
    thin = weak.simulate_scribbles(labels, 1, True)
    self.assertLess(np.count_nonzero(thin != U), labels.size // 3)


class ReaderTest(tf.test.TestCase):

  def test_whats_the_point_json(self):
    path = os.path.join(self.get_temp_dir(), "pascal2012_trainval_main.json")
    with open(path, "w") as out:
      json.dump({"2008_000008": [{"x": 3, "y": 1, "cls": 13, "rank": 1},
                                 {"x": 0, "y": 4, "cls": 15, "rank": 1},
                                 {"x": 50, "y": 1, "cls": 15, "rank": 2}]}, out)
    clicks = weak.read_points_json(path)
    sparse = weak.rasterize_points(clicks["2008_000008"], (5, 6), 0, 21, "x")
    expected = np.full((5, 6), U)
    expected[1, 3], expected[4, 0] = 13, 15                   # the click outside is dropped
    self.assertAllEqual(sparse, expected)
    with self.assertRaisesRegex(weak.WeakAnnotationError, "cls=21"):
      weak.rasterize_points([(0, 0, 21)], (5, 6), 0, 21, "image x")
    # --point_radius: a disc, cut at the image's edge (a click in the corner keeps a quarter).
    disc = weak.rasterize_points([(0, 0, 4), (3, 2, 5)], (5, 6), 1, 21, "x")
    self.assertEqual(np.count_nonzero(disc == 4), 3)
    self.assertEqual(np.count_nonzero(disc == 5), 5)
    self.assertAllEqual(disc[1:4, 3], [5, 5, 5])

  def test_scribblesup_xml(self):
    path = os.path.join(self.get_temp_dir(), "2007_000032.xml")
    with open(path, "w") as out:
      out.write("<annotation><filename>2007_000032.jpg</filename><size><width>12</width>"
                "<height>8</height></size><segmented>1</segmented>"
                "<polygon><tag>background</tag><point><X>0</X><Y>0</Y></point>"
                "<point><X>11</X><Y>0</Y></point></polygon>"
                "<polygon><tag>plane</tag><point><X>2</X><Y>5</Y></point>"
                "<point><X>6</X><Y>5</Y></point><point><X>30</X><Y>5</Y></point></polygon>"
                "</annotation>")
    sparse = weak.read_scribblesup_xml(path, VOC_CLASSES, (8, 12), 1)
    self.assertAllEqual(sparse[0], np.zeros(12))
    self.assertAllEqual(sparse[5, 2:12], np.ones(10))         # clipped at the image's edge
    self.assertEqual(np.count_nonzero(sparse == U), 8 * 12 - 12 - 10)
    wide = weak.read_scribblesup_xml(path, VOC_CLASSES, (8, 12), 3)
    self.assertAllEqual(wide[4:7, 4], [1, 1, 1])
    with open(path, "w") as out:
      out.write("<annotation><polygon><tag>sky</tag><point><X>0</X><Y>0</Y></point>"
                "</polygon></annotation>")
    with self.assertRaisesRegex(weak.WeakAnnotationError, "'sky'"):
      weak.read_scribblesup_xml(path, VOC_CLASSES, (8, 12), 3)

  def test_sparse_png_for_ade20k_points(self):
    root = write_ade20k_tree(os.path.join(self.get_temp_dir(), "ade"), {
        "training": {"ADE_train_00000001": np.full((6, 8), 5)},
        "validation": {"ADE_val_00000001": np.full((6, 8), 5)}})
    source = read_ade20k(root)
    self.assertTrue(source.scene_parsing)   # no background in U_x (MiB paper §5.1)
    points = np.zeros((6, 8), np.uint8)
    points[2, 3], points[4, 6] = 5, 150
    path = os.path.join(self.get_temp_dir(), "p.png")
    Image.fromarray(points, mode="L").save(path)
    sparse = weak.read_sparse_png(path, source, unlabeled_value=0)
    self.assertEqual(sparse[2, 3], 5)
    self.assertEqual(sparse[4, 6], 150)
    self.assertEqual(np.count_nonzero(sparse == U), 46)
    points[0, 0] = 200
    Image.fromarray(points, mode="L").save(path)
    with self.assertRaisesRegex(weak.WeakAnnotationError, r"\[200\]"):
      weak.read_sparse_png(path, source, unlabeled_value=0)


class AnnotationSetTest(tf.test.TestCase):

  def _voc(self):
    labels = {"train": {"a": _two_objects(), "b": np.full((20, 24), 7)},
              "val": {"c": _two_objects()}}
    return read_voc_layout(write_voc_tree(os.path.join(self.get_temp_dir(), "voc"), labels))

  def test_built_once_with_a_manifest_and_read_back(self):
    source = self._voc()
    cache = os.path.join(self.get_temp_dir(), "cache")
    config = weak.WeakConfig("points", points_per_region=1)
    built = weak.annotation_set(source, "train", config, 0, cache)
    self.assertEqual(built.manifest["images"], 2)
    self.assertEqual(built.manifest["annotated_pixels_per_image"], 2.0)   # (3 + 1) / 2
    first = np.asarray(Image.open(built.files.label_paths[0]))
    self.assertEqual(np.count_nonzero(first != U), 3)
    mtime = os.stat(built.files.label_paths[0]).st_mtime_ns
    again = weak.annotation_set(source, "train", config, 0, cache)
    self.assertEqual(again.directory, built.directory)
    self.assertEqual(os.stat(again.files.label_paths[0]).st_mtime_ns, mtime)
    other = weak.annotation_set(source, "train", config, 1, cache)
    self.assertNotEqual(other.directory, built.directory)
    # The loss does not change the labels: the same set serves every --weak_loss.
    pce = weak.annotation_set(source, "train", dataclasses.replace(config, loss="pce"), 0, cache)
    self.assertEqual(pce.directory, built.directory)

  def test_cache_follows_the_label_files_and_rebuilds_a_deleted_entry(self):
    source = self._voc()
    cache = os.path.join(self.get_temp_dir(), "cache")
    config = weak.WeakConfig("points", points_per_region=1)
    built = weak.annotation_set(source, "train", config, 0, cache)
    # A deleted sparse map is rebuilt (identical: seeded), the others are kept.
    with open(built.files.label_paths[0], "rb") as handle:
      first = handle.read()
    kept = os.stat(built.files.label_paths[1]).st_mtime_ns
    os.remove(built.files.label_paths[0])
    again = weak.annotation_set(source, "train", config, 0, cache)
    with open(again.files.label_paths[0], "rb") as handle:
      self.assertEqual(handle.read(), first)
    self.assertEqual(os.stat(again.files.label_paths[1]).st_mtime_ns, kept)
    # A changed label file gives other simulated labels: not the stale cache.
    label_path = source.split("train").label_paths[1]
    Image.fromarray(np.full((20, 24), 5, np.uint8)).save(label_path)
    os.utime(label_path, (1, 1))   # whatever the clock: another time than the cached one
    changed = weak.annotation_set(source, "train", config, 0, cache)
    self.assertNotEqual(changed.directory, built.directory)
    self.assertAllEqual(np.unique(np.asarray(Image.open(changed.files.label_paths[1]))), [5, U])

  def test_click_file_that_annotates_nothing_is_refused(self):
    path = os.path.join(self.get_temp_dir(), "clicks.json")
    with open(path, "w") as out:
      json.dump({"2008_000008": [{"x": 3, "y": 1, "cls": 13}]}, out)
    config = weak.WeakConfig("points", format="points-json", annotations=path)
    with self.assertRaisesRegex(weak.WeakAnnotationError,
                                r"clicks.json annotates no pixel of the 2 train images.*"
                                r"1 id.*2008_000008.*none of the split"):
      weak.annotation_set(self._voc(), "train", config, 0,
                          os.path.join(self.get_temp_dir(), "cache"))

  def test_missing_released_annotations_name_the_flag(self):
    with self.assertRaisesRegex(weak.WeakAnnotationError, "--weak_annotations"):
      weak.check(weak.WeakConfig("points", format="points-json", annotations="/nowhere.json"))
    with self.assertRaisesRegex(weak.WeakAnnotationError, "--supervision=scribbles"):
      weak.check(weak.WeakConfig("points", format="scribblesup-xml",
                                 annotations=self.get_temp_dir()))

  def test_pipeline_labels_and_image_classes(self):
    # U_x comes from the whole image's annotation (before the crop), background added for
    # object segmentation; unlabeled pixels stay 254 through the step's label table.
    source = self._voc()
    built = weak.annotation_set(source, "train", weak.WeakConfig("points"), 0,
                                os.path.join(self.get_temp_dir(), "cache"))
    table = np.zeros(256, np.int32)
    table[255], table[3], table[7] = 255, 1, 2
    batch = next(iter(pipeline.train_dataset(
        source, built.files, table, 2, 8, 1.0, 1.0, 0, "resized_crop",
        weak=pipeline.WeakLabels(num_classes=3, background_is_class=True))))
    images, targets = batch
    self.assertEqual(images.shape, (2, 8, 8, 3))
    self.assertEqual(set(np.unique(targets["labels"]).tolist()) - {0, 1, 2, 255}, {U})
    classes = {tuple(row) for row in targets["classes"].numpy().tolist()}
    self.assertEqual(classes, {(1.0, 1.0, 1.0), (1.0, 0.0, 1.0)})


if __name__ == "__main__":
  tf.test.main()
