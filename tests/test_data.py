"""VOC-layout reader, in-graph label decoding, class-presence index and pipelines."""
import contextlib
import io
import os

import numpy as np
import tensorflow as tf

from kdseg.data import pipeline, presence, splits
from kdseg.data.source import DatasetLayoutError, identity_table
from kdseg.data.tasks import make_plan
from kdseg.data.voc import decode_voc_label, read_voc_layout, voc_palette
from tests.helpers import write_label, write_voc_tree

LABEL_A = np.array([[0, 0, 1, 1], [0, 255, 1, 1], [2, 2, 0, 0], [2, 2, 0, 20]], np.uint8)
LABEL_B = np.array([[0, 0, 0, 0], [0, 3, 3, 0], [0, 3, 3, 0], [0, 0, 0, 255]], np.uint8)


class PaletteTest(tf.test.TestCase):

  def test_voc_colour_map_known_entries(self):
    palette = voc_palette()
    self.assertAllEqual(palette[1], [128, 0, 0])      # aeroplane
    self.assertAllEqual(palette[15], [192, 128, 128])  # person
    self.assertAllEqual(palette[255], [224, 224, 192])  # ignore border
    self.assertLen({tuple(c) for c in palette}, 256)

  def test_palette_and_grayscale_pngs_decode_to_the_same_ids(self):
    every_value = np.arange(256, dtype=np.uint8).reshape(16, 16)
    directory = self.get_temp_dir()
    for name, palette in (("p.png", True), ("l.png", False)):
      write_label(os.path.join(directory, name), every_value, palette)
      decoded = decode_voc_label(tf.io.read_file(os.path.join(directory, name)))
      self.assertAllEqual(decoded, every_value)


class ReaderTest(tf.test.TestCase):

  def _tree(self):
    return write_voc_tree(os.path.join(self.get_temp_dir(), "VOC2012"),
                          {"train": {"a": LABEL_A, "b": LABEL_B}, "val": {"b": LABEL_B}})

  def test_reads_ids_and_paths(self):
    source = read_voc_layout(self._tree())
    files = source.split("train")
    self.assertEqual(files.ids, ("a", "b"))
    self.assertTrue(files.image_paths[0].endswith("JPEGImages/a.jpg"))
    self.assertTrue(files.label_paths[1].endswith("SegmentationClass/b.png"))
    self.assertEqual(source.num_object_classes, 20)

  def test_missing_folder_is_named(self):
    root = self._tree()
    os.rename(os.path.join(root, "JPEGImages"), os.path.join(root, "images"))
    with self.assertRaisesRegex(DatasetLayoutError, "JPEGImages.*Pascal VOC 2012 layout"):
      read_voc_layout(root)
    with self.assertRaisesRegex(DatasetLayoutError, "does not exist"):
      read_voc_layout(os.path.join(root, "nowhere"))

  def test_listed_image_without_file_is_named(self):
    root = self._tree()
    os.remove(os.path.join(root, "SegmentationClass", "b.png"))
    with self.assertRaisesRegex(DatasetLayoutError, r"train.txt lists 1 ids.*\['b'\]"):
      read_voc_layout(root)


class PresenceTest(tf.test.TestCase):

  def test_presence_matrix_and_cache_refresh(self):
    root = write_voc_tree(os.path.join(self.get_temp_dir(), "VOC2012"),
                          {"train": {"a": LABEL_A, "b": LABEL_B}})
    source = read_voc_layout(root, splits=("train",))
    files = source.split("train")
    cache = os.path.join(self.get_temp_dir(), "cache")
    present = presence.class_presence(source, "train", cache)
    self.assertAllEqual(np.flatnonzero(present[0]), [0, 1, 2, 20, 255])
    self.assertAllEqual(np.flatnonzero(present[1]), [0, 3, 255])
    # Rewriting a label invalidates its row only.
    write_label(files.label_paths[1], np.full((4, 4), 5, np.uint8))
    os.utime(files.label_paths[1], ns=(1, 1))
    self.assertAllEqual(np.flatnonzero(presence.class_presence(source, "train", cache)[1]), [5])
    # A cache file cut short or emptied is rebuilt, not a traceback.
    (cache_file,) = [os.path.join(cache, n) for n in os.listdir(cache) if n.startswith("presence")]
    with open(cache_file, "rb") as handle:
      whole = handle.read()
    for broken in (whole[:len(whole) // 2], b""):
      with open(cache_file, "wb") as out:
        out.write(broken)
      with contextlib.redirect_stdout(io.StringIO()) as said:
        again = presence.class_presence(source, "train", cache)
      self.assertAllEqual(np.flatnonzero(again[1]), [5])
      self.assertIn("cannot be read (cut short or damaged): scanning the labels again",
                    said.getvalue())

  def test_values_outside_the_class_set_name_the_file(self):
    bad = LABEL_B.copy()
    bad[0, 0] = 21
    root = write_voc_tree(os.path.join(self.get_temp_dir(), "VOC2012"), {"train": {"bad": bad}})
    source = read_voc_layout(root, splits=("train",))
    with self.assertRaisesRegex(presence.LabelValueError, r"bad.png \(values \[21\]\)"):
      presence.class_presence(source, "train", os.path.join(self.get_temp_dir(), "cache"))

  def test_corrupt_image_is_named(self):
    root = write_voc_tree(os.path.join(self.get_temp_dir(), "VOC2012"), {"train": {"a": LABEL_A}})
    with open(os.path.join(root, "JPEGImages", "a.jpg"), "wb") as out:
      out.write(b"not a jpeg")
    source = read_voc_layout(root, splits=("train",))
    with self.assertRaisesRegex(presence.LabelValueError, "a.jpg"):
      presence.class_presence(source, "train", os.path.join(self.get_temp_dir(), "cache"))


class PipelineTest(tf.test.TestCase):

  def test_eval_pipeline_remaps_labels_and_keeps_full_size(self):
    root = write_voc_tree(os.path.join(self.get_temp_dir(), "VOC2012"),
                          {"val": {"a": LABEL_A, "b": LABEL_B}})
    source = read_voc_layout(root, splits=("val",))
    plan = make_plan("2-18", list(range(1, 21)))  # step 0 knows 1, 2; 3 and 20 are unseen
    dataset = pipeline.eval_dataset(source, source.split("val"),
                                    splits.eval_label_table(plan, 0), batch_size=2)
    images, labels = next(iter(dataset))
    self.assertEqual(images.shape, (2, 4, 4, 3))
    expected_a = np.where(np.isin(LABEL_A, [0, 1, 2]), LABEL_A, 255)
    expected_b = np.where(LABEL_B == 0, 0, 255)
    self.assertAllEqual(labels, [expected_a, expected_b])

  def test_eval_batches_hold_one_image_size_and_no_padding(self):
    # Six images of three sizes, each label filled with its own value: a batch of 2 may only
    # join images of one size (4x4: 3 images -> 2 batches, 3x5: 2 -> 1, 5x3: 1 -> 1), and every
    # image comes exactly once, unpadded.
    shapes = {"a": (4, 4), "b": (3, 5), "c": (4, 4), "d": (5, 3), "e": (3, 5), "f": (4, 4)}
    labels = {image_id: np.full(shape, value, np.uint8)
              for value, (image_id, shape) in enumerate(shapes.items(), start=1)}
    root = write_voc_tree(os.path.join(self.get_temp_dir(), "VOC2012"), {"val": labels})
    source = read_voc_layout(root, splits=("val",))
    dataset = pipeline.eval_dataset(source, source.split("val"), identity_table(21),
                                    batch_size=2)
    seen, batch_sizes = [], []
    for images, batch_labels in dataset:
      self.assertEqual(images.dtype, tf.float32)
      self.assertEqual(images.shape[1:3], batch_labels.shape[1:3])
      batch_sizes.append(int(images.shape[0]))
      for label in batch_labels.numpy():
        self.assertLen(np.unique(label), 1)   # no padding (255) beside the image's value
        seen.append((int(label[0, 0]), label.shape))
    self.assertCountEqual(seen, [(value, shapes[image_id]) for value, image_id
                                 in enumerate(shapes, start=1)])
    self.assertCountEqual(batch_sizes, [2, 1, 2, 1])

  def test_eval_batches_hold_back_at_most_held_images(self):
    # a and c share a size but lie in different runs of 2 images: they are not waited for
    # (a batch of [a, c] would hold a while b is read), so every batch is of one image and the
    # first run's images come before the second's. The default run of 16 batches joins them.
    shapes = {"a": (4, 4), "b": (3, 5), "c": (4, 4), "d": (5, 3)}
    labels = {image_id: np.full(shape, value, np.uint8)
              for value, (image_id, shape) in enumerate(shapes.items(), start=1)}
    root = write_voc_tree(os.path.join(self.get_temp_dir(), "VOC2012"), {"val": labels})
    source = read_voc_layout(root, splits=("val",))

    def batches(**held):
      dataset = pipeline.eval_dataset(source, source.split("val"), identity_table(21),
                                      batch_size=2, **held)
      return [sorted(int(label[0, 0]) for label in batch_labels.numpy())
              for _, batch_labels in dataset]

    held = batches(held_images=2)
    self.assertLen(held, 4)
    self.assertCountEqual(held[:2], [[1], [2]])
    self.assertCountEqual(held[2:], [[3], [4]])
    self.assertCountEqual(batches(), [[1, 3], [2], [4]])

  def test_eval_batches_come_before_later_images_are_read(self):
    # The third image is corrupt: what comes before it is predicted before it is read -- at
    # batch 1 image by image (nothing held), at batch 2 run by run (runs of held_images).
    labels = {image_id: np.full((4, 4), value, np.uint8)
              for value, image_id in enumerate("abcde", start=1)}
    root = write_voc_tree(os.path.join(self.get_temp_dir(), "VOC2012"), {"val": labels})
    with open(os.path.join(root, "JPEGImages", "c.jpg"), "wb") as broken:
      broken.write(b"not a jpeg")
    source = read_voc_layout(root, splits=("val",))
    for batch_size, held, before in ((1, None, [[1], [2]]), (2, 2, [[1, 2]])):
      iterator = iter(pipeline.eval_dataset(source, source.split("val"), identity_table(21),
                                            batch_size=batch_size, held_images=held))
      for expected in before:
        _, batch_labels = next(iterator)
        self.assertEqual(sorted(int(label[0, 0]) for label in batch_labels.numpy()), expected)
      with self.assertRaises(tf.errors.OpError):
        next(iterator)

  def test_train_pipeline_crops_and_keeps_label_values_valid(self):
    root = write_voc_tree(os.path.join(self.get_temp_dir(), "VOC2012"),
                          {"train": {"a": LABEL_A, "b": LABEL_B}})
    source = read_voc_layout(root, splits=("train",))
    plan = make_plan("2-18", list(range(1, 21)))
    dataset = pipeline.train_dataset(source, source.split("train"),
                                     splits.train_label_table(plan, 0), batch_size=2,
                                     crop_size=6, min_scale=0.5, max_scale=2.0, seed=0)
    for images, labels in dataset.repeat(5):
      self.assertEqual(images.shape, (2, 6, 6, 3))
      self.assertContainsSubset(set(np.unique(labels.numpy())), {0, 1, 2, 255})

  def test_an_epoch_resumes_with_the_batch_after_the_skipped_ones(self):
    labels = {f"i{k}": np.full((8, 8), k % 3, np.uint8) for k in range(13)}
    root = write_voc_tree(os.path.join(self.get_temp_dir(), "VOC2012"), {"train": labels})
    source = read_voc_layout(root, splits=("train",))
    table = splits.train_label_table(make_plan("2-18", list(range(1, 21))), 0)

    def epoch(index, skip=0, seed=5, step=0):
      dataset = pipeline.train_dataset(source, source.split("train"), table, 3, 6, 0.5, 2.0,
                                       seed=seed, augmentation="resized_crop", epoch=index,
                                       skip_batches=skip, step=step)
      return [(images.numpy(), labels.numpy()) for images, labels in dataset]

    whole = epoch(1)
    self.assertLen(whole, 4)
    resumed = epoch(1, skip=2)   # an interrupted run saved after 2 batches of epoch 1
    self.assertLen(resumed, 2)
    for (images, labels), (images_again, labels_again) in zip(whole[2:], resumed):
      self.assertAllClose(images, images_again)   # same images, same augmentation draws
      self.assertAllEqual(labels, labels_again)
    self.assertAllClose(epoch(1)[0][0], whole[0][0])            # an epoch is reproducible
    self.assertNotAllClose(epoch(0)[0][0], whole[0][0])         # epochs differ
    # Keyed by (seed, step) together: seed 5 at step 1 is not seed 6 at step 0.
    self.assertNotAllClose(epoch(1, seed=5, step=1)[0][0], epoch(1, seed=6, step=0)[0][0])
    # Several epochs in one dataset (how a step trains): the single epochs one after the other,
    # the skip applied to the first only; no batch mixes two epochs (13 images, batches of 3:
    # one left out of each).
    together = pipeline.train_dataset(source, source.split("train"), table, 3, 6, 0.5, 2.0,
                                      seed=5, augmentation="resized_crop", epoch=1,
                                      skip_batches=2, epochs=2)
    together = [(images.numpy(), labels.numpy()) for images, labels in together]
    self.assertLen(together, 6)
    for (images, labels), (images_again, labels_again) in zip(together, resumed + epoch(2)):
      self.assertAllClose(images, images_again)
      self.assertAllEqual(labels, labels_again)

  def test_input_pipelines_of_a_cluster_share_the_epoch_by_image(self):
    labels = {f"i{k}": np.full((8, 8), k % 3, np.uint8) for k in range(13)}
    root = write_voc_tree(os.path.join(self.get_temp_dir(), "VOC2012"), {"train": labels})
    source = read_voc_layout(root, splits=("train",))
    table = splits.train_label_table(make_plan("2-18", list(range(1, 21))), 0)

    def batches(context=None, skip=0):
      dataset = pipeline.train_dataset(source, source.split("train"), table, 4, 6, 0.5, 2.0,
                                       seed=2, epoch=1, skip_batches=skip, input_context=context)
      return [images.numpy() for images, _ in dataset]

    whole = batches()                   # 3 global batches of 4 (13 images: one left out)
    self.assertLen(whole, 3)
    # Two workers with one replica each: per-replica batches of 2, the same count on both.
    contexts = [tf.distribute.InputContext(2, index, 2) for index in range(2)]
    shards = [batches(context) for context in contexts]
    self.assertEqual([len(shard) for shard in shards], [3, 3])
    for step, global_batch in enumerate(whole):
      # Worker i holds the global batch's images i and i + 2: the same crops, by position.
      self.assertAllClose(shards[0][step], global_batch[0::2])
      self.assertAllClose(shards[1][step], global_batch[1::2])
    resumed = batches(contexts[1], skip=2)
    self.assertLen(resumed, 1)
    self.assertAllClose(resumed[0], whole[2][1::2])

  def test_mib_recipe_training_labels_have_no_void_evaluation_labels_keep_it(self):
    root = write_voc_tree(os.path.join(self.get_temp_dir(), "VOC2012"),
                          {"train": {"a": LABEL_A, "b": LABEL_B}, "val": {"a": LABEL_A}})
    source = read_voc_layout(root)
    plan = make_plan("2-18", list(range(1, 21)))
    train = pipeline.train_dataset(source, source.split("train"),
                                   splits.train_label_table(plan, 0, void_label="background"),
                                   batch_size=2, crop_size=4, min_scale=1.0, max_scale=1.0,
                                   seed=0, augmentation="resized_crop")
    seen = set()
    for _, labels in train.repeat(10):
      seen |= set(np.unique(labels.numpy()))
    self.assertNotIn(255, seen)
    self.assertIn(0, seen)
    val = pipeline.eval_dataset(source, source.split("val"), splits.eval_label_table(plan, 0), 1)
    _, labels = next(iter(val))
    self.assertEqual(labels.numpy()[0, 1, 1], 255)   # LABEL_A's void pixel


if __name__ == "__main__":
  tf.test.main()
