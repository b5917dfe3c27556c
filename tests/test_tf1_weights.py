"""kdseg's DeepLab-v2 (resnet101_deeplab) against the KD paper's network built in a TF1 graph
(tests/tf1_deeplab.py): the checkpoint reader's names, and logits equal at an odd and an even
input size, from the backbone-only start (deeplab_resnet_init.ckpt) and from a step checkpoint
with its full-width classifier split into kdseg's heads."""
import importlib.util
import os
import shutil
import sys
import tempfile

from absl import flags

import numpy as np
import tensorflow as tf

from kdseg.data.pipeline import normalize
from kdseg import config
from kdseg.engine import checkpoints
from kdseg.models import pretrained, tf1_weights
from kdseg.models.conversion import ConversionError
from kdseg.models.resnet import build_resnet
from kdseg.models.segmenter import (DEEPLAB_BGR_MEAN, ModelConfig, build_segmenter,
                                    convert_input)
from tests import tf1_deeplab

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "convert_tf1_weights.py")
CONFIG = ModelConfig("resnet101_deeplab", 8, head="v2", input_convention="deeplab-rgb",
                     upsampling="legacy")


def _rgb(height, width, seed):
  return np.random.default_rng(seed).uniform(0, 255, (1, height, width, 3)).astype(np.float32)


class NamesTest(tf.test.TestCase):

  def test_caffe_block_names(self):
    blocks = (3, 4, 23, 3)
    expected = {"conv1_conv": "conv1", "conv1_bn": "bn_conv1",
                "conv2_block1_0_conv": "res2a_branch1", "conv2_block3_2_bn": "bn2c_branch2b",
                "conv3_block2_1_conv": "res3b1_branch2a", "conv4_block23_3_bn": "bn4b22_branch2c",
                "conv4_block1_0_bn": "bn4a_branch1", "conv5_block2_3_conv": "res5b_branch2c"}
    for layer, scope in expected.items():
      self.assertEqual(tf1_weights.source_scope(layer, blocks), scope)


class ForwardParityTest(tf.test.TestCase):
  """The reference's graph and kdseg's model on the same TF1 checkpoint."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.folder = tempfile.mkdtemp(prefix="kdseg_tf1_")
    cls.inputs = [_rgb(65, 65, 1), _rgb(64, 48, 2)]   # odd and even sides
    cls.prefix = os.path.join(cls.folder, "model.ckpt-20000")
    cls.reference = tf1_deeplab.write_checkpoint(
        cls.prefix, 21, seed=3, inputs=[x - np.array(DEEPLAB_BGR_MEAN, np.float32)
                                        for x in cls.inputs], optimizer_slots=True)
    # One network for every test (building a ResNet-101 takes most of a test's time): the
    # classifier's two settings differ only in their initialisers, which the loads replace.
    cls.model = build_segmenter(CONFIG, [20, 1])

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.folder, ignore_errors=True)
    super().tearDownClass()

  def _logits(self, model):
    return [model(normalize(x), training=False)["logits"].numpy() for x in self.inputs]

  def assertMatches(self, ours, reference):
    scale = float(np.ptp(reference))
    self.assertGreater(scale, 1.0)   # a network whose logits vary, not a constant
    self.assertLess(float(np.max(np.abs(ours - reference))), 1e-4 * scale)

  def test_step_checkpoint(self):
    tf1_weights.load_segmenter(self.model, self.prefix, list(range(21)))
    for ours, (reference, _) in zip(self._logits(self.model), self.reference):
      self.assertEqual(ours.shape, reference.shape)
      self.assertMatches(ours, reference)

  def test_step_checkpoint_into_heads_in_another_class_order(self):
    # Head 0 = background and ids 20, 1..18; head 1 = id 19: each kdseg output is the
    # reference's output of the class at that position.
    columns = [0, 20] + list(range(1, 19)) + [19]
    tf1_weights.load_segmenter(self.model, self.prefix, columns)
    for ours, (reference, _) in zip(self._logits(self.model), self.reference):
      self.assertMatches(ours, reference[..., columns])

  def test_backbone_weights_as_the_kd_code_restores_them(self):
    # --backbone_weights reads the encoder only (the variables without 'fc', as LD1's loader).
    weights = pretrained.read_weights("resnet101_deeplab", self.prefix)
    for layer in self.model.backbone.layers:   # forget what another test loaded
      layer.set_weights([np.zeros_like(w) for w in layer.get_weights()])
    pretrained.assign_weights(self.model.backbone, weights, self.prefix)
    for x, (_, reference) in zip(self.inputs, self.reference):
      self.assertMatches(self.model(normalize(x), training=False)["encoder"].numpy(), reference)

  def test_step_checkpoint_imported_into_a_run_directory(self):
    # tools/convert_tf1_weights.py: the checkpoint becomes step 0 of a run (shapes has 21 class
    # ids, as VOC), and the finished model read back from the run gives the reference's logits.
    spec = importlib.util.spec_from_file_location("convert_tf1_weights", TOOL)
    tool = sys.modules.get("convert_tf1_weights") or importlib.util.module_from_spec(spec)
    if "convert_tf1_weights" not in sys.modules:
      spec.loader.exec_module(tool)
      sys.modules["convert_tf1_weights"] = tool
    run_dir = os.path.join(self.folder, "run")
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["convert_tf1_weights", f"--cache_dir={self.folder}/cache", "--dataset=shapes",
                 "--shapes_image_size=32", "--shapes_num_train=24", "--shapes_num_val=4",
                 "--task=19-1", "--setting=incremental-learning", "--backbone=resnet101_deeplab",
                 "--output_stride=8", "--head=v2", "--classifier=full", "--upsampling=legacy",
                 "--input_convention=deeplab-rgb", "--batch_size=4", "--method=kd-ft",
                 "--step=0", f"--run_dir={run_dir}", "--verbose=0"])
    self.addCleanup(flags.FLAGS.unparse_flags)
    run_config = config.from_flags()
    directory = tool.import_step(run_config, self.prefix)
    with self.assertRaisesRegex(tool.imports.StepImportError, "already holds a finished step 0"):
      tool.import_step(run_config, self.prefix)
    model = checkpoints.load_final(directory, run_config.model, [20, 1])
    for ours, (reference, _) in zip(self._logits(model), self.reference):
      self.assertMatches(ours, reference)

  def test_a_checkpoint_of_another_network_is_refused_with_the_tensor(self):
    backbone = build_resnet("resnet101_deeplab", 8)
    other = os.path.join(self.folder, "other.ckpt")
    with tf.Graph().as_default():
      tf.compat.v1.get_variable("conv1/weights", initializer=np.zeros([7, 7, 3, 64], np.float32))
      with tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver().save(session, other, write_meta_graph=False)
    with self.assertRaisesRegex(ConversionError, "no tensor bn_conv1/gamma"):
      tf1_weights.load_backbone(backbone, other)
    with self.assertRaisesRegex(pretrained.PretrainedWeightsError, "deeplab_resnet_init.ckpt"):
      pretrained.read_weights("resnet101_deeplab", os.path.join(self.folder, "missing.ckpt"))


class InputConventionTest(tf.test.TestCase):

  def test_deeplab_conventions_from_normalised_images(self):
    rgb = _rgb(4, 4, 0)
    mean = np.array(DEEPLAB_BGR_MEAN, np.float32)
    images = normalize(rgb)
    self.assertAllClose(convert_input(images, "deeplab-rgb"), rgb - mean, atol=1e-3)
    self.assertAllClose(convert_input(images, "deeplab"), rgb[..., ::-1] - mean, atol=1e-3)
    self.assertAllClose(convert_input(images, "imagenet"), images)
