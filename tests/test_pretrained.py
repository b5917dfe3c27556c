"""ImageNet weights from a local keras.applications file, and the Caffe input convention."""
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from kdseg.data.pipeline import normalize
from kdseg.models import pretrained
from kdseg.models.resnet import build_resnet
from kdseg.models.segmenter import ModelConfig, build_segmenter


class PretrainedWeightsTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    keras.utils.set_random_seed(3)
    cls.reference = keras.applications.ResNet50(include_top=False, weights=None)
    # BN statistics away from their 0/1 initial values, so a BN mismatch would show.
    for layer in cls.reference.layers:
      if isinstance(layer, keras.layers.BatchNormalization):
        mean, variance = layer.moving_mean, layer.moving_variance
        mean.assign(np.random.default_rng(0).normal(0, 0.1, mean.shape))
        variance.assign(np.random.default_rng(1).uniform(0.5, 1.5, variance.shape))
    directory = tempfile.mkdtemp()
    cls.weights_file = os.path.join(directory, "resnet50.weights.h5")
    cls.reference.save_weights(cls.weights_file)
    cls.legacy_file = os.path.join(directory, "resnet50_legacy.h5")   # Keras 2 HDF5 layout
    cls.reference.save(cls.legacy_file)
    cls.images = tf.random.stateless_uniform([2, 64, 64, 3], seed=[0, 1], minval=-2, maxval=2)

  def test_undilated_backbone_reproduces_keras_applications_features(self):
    expected = self.reference(self.images, training=False)
    for path in (self.weights_file, self.legacy_file):
      backbone = build_resnet("resnet50", output_stride=32)
      self.assertEqual(pretrained.load_backbone_weights(backbone, "resnet50", path), 106)
      self.assertAllEqual(backbone(self.images, training=False), expected)

  def test_dilated_backbone_keeps_the_weights_and_the_resolution(self):
    backbone = build_resnet("resnet50", output_stride=8)
    pretrained.load_backbone_weights(backbone, "resnet50", self.weights_file)
    self.assertEqual(backbone(self.images).shape, (2, 8, 8, 2048))
    for layer in backbone.layers:
      if layer.weights:
        for ours, theirs in zip(layer.get_weights(),
                                self.reference.get_layer(layer.name).get_weights()):
          self.assertAllEqual(ours, theirs)

  def test_caffe_convention_matches_keras_applications_preprocessing(self):
    raw = tf.random.stateless_uniform([2, 64, 64, 3], seed=[2, 1], maxval=255)
    model = build_segmenter(ModelConfig("resnet50", 32, 16, input_convention="caffe"), [3])
    pretrained.load_backbone_weights(model.backbone, "resnet50", self.weights_file)
    expected = self.reference(keras.applications.resnet.preprocess_input(raw), training=False)
    self.assertAllClose(model(normalize(raw))["encoder"], expected, rtol=1e-4, atol=1e-4)

  def test_wrong_or_missing_files_say_what_to_download(self):
    with self.assertRaisesRegex(pretrained.PretrainedWeightsError,
                                "resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5"):
      pretrained.read_weights("resnet101", os.path.join(self.get_temp_dir(), "absent.h5"))
    with self.assertRaisesRegex(pretrained.PretrainedWeightsError, "ResNet101 weights"):
      pretrained.read_weights("resnet101", self.weights_file)   # a ResNet50 file
    with self.assertRaisesRegex(pretrained.PretrainedWeightsError, "--backbone=tiny has no released weights"):
      pretrained.check_weights_file("tiny", self.weights_file)
    corrupt = os.path.join(self.get_temp_dir(), "corrupt.weights.h5")
    with open(corrupt, "wb") as out:
      out.write(b"not hdf5")
    with self.assertRaisesRegex(pretrained.PretrainedWeightsError, "could not be read"):
      pretrained.read_weights("resnet50", corrupt)


if __name__ == "__main__":
  tf.test.main()
