"""The shapes dataset: deterministic, VOC layout, all classes, borders, read by the VOC reader."""
import os
import time

import numpy as np
import tensorflow as tf

from kdseg.data import presence, shapes


class ShapesTest(tf.test.TestCase):

  def test_render_is_seeded_and_labels_are_valid(self):
    config = shapes.ShapesConfig(image_size=48)
    image_a, label_a = shapes.render(np.random.default_rng([1, 0, 5]), config)
    image_b, label_b = shapes.render(np.random.default_rng([1, 0, 5]), config)
    self.assertAllEqual(image_a, image_b)
    self.assertAllEqual(label_a, label_b)
    self.assertEqual(image_a.shape, (48, 48, 3))
    self.assertContainsSubset(set(np.unique(label_a)), set(range(21)) | {255})

  def test_every_class_appears_and_objects_have_ignore_borders(self):
    config = shapes.ShapesConfig(image_size=48)
    counts = np.zeros(256, int)
    for index in range(300):
      _, label = shapes.render(np.random.default_rng([0, 0, index]), config)
      counts += np.bincount(label.ravel(), minlength=256)
      objects = (label > 0) & (label < 255)
      if objects.any():  # every object pixel touching background is separated by 255
        touching = (objects[:, 1:] & (label[:, :-1] == 0)) | (objects[:, :-1] & (label[:, 1:] == 0))
        self.assertFalse(touching.any())
    self.assertTrue(np.all(counts[1:21] > 0), counts[:21])
    self.assertGreater(counts[255], 0)

  def test_written_in_voc_layout_and_read_back(self):
    cache = self.get_temp_dir()
    config = shapes.ShapesConfig(image_size=32, num_train=12, num_val=4, seed=3)
    source = shapes.load_shapes(cache, config)
    self.assertEqual(source.class_names, shapes.CLASS_NAMES)
    self.assertLen(source.split("train").ids, 12)
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
      self.assertTrue(os.path.isdir(os.path.join(source.root, folder)))
    present = presence.class_presence(source, "train", os.path.join(cache, "index"))
    self.assertEqual(present.shape, (12, 256))
    # Reused on the second call: same folder, nothing regenerated.
    marker = os.path.join(source.root, "shapes_config.json")
    before = os.path.getmtime(marker)
    self.assertEqual(shapes.load_shapes(cache, config).root, source.root)
    self.assertEqual(before, os.path.getmtime(marker))

  def test_staging_folders_of_killed_generations_are_removed(self):
    cache = os.path.join(self.get_temp_dir(), "staging")
    folder = os.path.join(cache, "shapes")
    old, recent = (os.path.join(folder, f".staging-{n}") for n in ("old", "recent"))
    for path in (old, recent):
      os.makedirs(os.path.join(path, "JPEGImages"))
    os.utime(old, (time.time() - 2 * shapes.STALE_STAGING_SECONDS,) * 2)
    shapes.load_shapes(cache, shapes.ShapesConfig(image_size=32, num_train=4, num_val=2))
    self.assertFalse(os.path.exists(old))
    self.assertTrue(os.path.exists(recent))   # (another process may be writing it)


if __name__ == "__main__":
  tf.test.main()
