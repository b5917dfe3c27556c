"""The KD paper's DeepLab-v2 ResNet-101, built in a TF1 graph from the facts of its code
(LTTM/IL-SemSegm codes/LD1/network.py at d55ce52): variable scopes conv1, bn_conv1,
res<S><B>_branch<K>, bn<S><B>_branch<K>, fc1_voc12_c<k>; tf.nn.conv2d / atrous_conv2d with
"SAME" padding, convolutions without bias but the classifier's; BN in inference mode with
epsilon 1e-3 (tf.contrib.layers.batch_norm(is_training=False)); a 3x3 / 2 "SAME" max pool;
stride 2 on the first 1x1 convolution of block 3a; dilation 2 in stage 4, 4 in stage 5; four
3x3 classifiers at rates 6, 12, 18, 24 summed; tf.image.resize_bilinear to the input size
(TF1's grid). Seeded random weights, saved with a TF1 Saver, so kdseg's reader and network can
be checked against the reference's graph without the real checkpoint (no download here)."""
from __future__ import annotations

import numpy as np
import tensorflow as tf

STAGES = ((2, 3, 256, 1), (3, 4, 512, 1), (4, 23, 1024, 2), (5, 3, 2048, 4))  # stage, blocks,
RATES = (6, 12, 18, 24)                                                         # width, dilation


def _block_names(stage: int, blocks: int) -> list[str]:
  if blocks > 3:
    return [f"{stage}a"] + [f"{stage}b{i}" for i in range(1, blocks)]
  return [f"{stage}{letter}" for letter in "abc"[:blocks]]


class _Variables:
  """Seeded random weights that keep a deep random ResNet's activations finite."""

  def __init__(self, seed: int):
    self.seed = seed

  def get(self, name: str, shape, low: float | None = None, high: float | None = None):
    self.seed += 1
    if low is None:   # He-normal kernels
      fan_in = int(np.prod(shape[:-1]))
      initializer = tf.compat.v1.random_normal_initializer(0.0, np.sqrt(2.0 / fan_in), self.seed)
    else:
      initializer = tf.compat.v1.random_uniform_initializer(low, high, self.seed)
    return tf.compat.v1.get_variable(name, shape, initializer=initializer)

  def conv(self, x, kernel: int, outputs: int, stride: int, name: str, dilation: int = 1,
           biased: bool = False):
    with tf.compat.v1.variable_scope(name):
      weights = self.get("weights", [kernel, kernel, int(x.shape[-1]), outputs])
      if dilation > 1:
        y = tf.nn.atrous_conv2d(x, weights, dilation, padding="SAME")
      else:
        y = tf.nn.conv2d(x, weights, [1, stride, stride, 1], padding="SAME")
      if biased:
        y = tf.nn.bias_add(y, self.get("biases", [outputs], -0.3, 0.3))
      return y

  def batch_norm(self, x, name: str, relu: bool, residual_end: bool = False):
    channels = int(x.shape[-1])
    with tf.compat.v1.variable_scope(name):
      scale = (0.1, 0.2) if residual_end else (0.8, 1.2)
      gamma = self.get("gamma", [channels], *scale)
      beta = self.get("beta", [channels], -0.1, 0.1)
      mean = self.get("moving_mean", [channels], -0.1, 0.1)
      variance = self.get("moving_variance", [channels], 0.8, 1.2)
      y, _, _ = tf.compat.v1.nn.fused_batch_norm(x, gamma, beta, mean, variance, epsilon=1e-3,
                                                 is_training=False)
      return tf.nn.relu(y) if relu else y


def _residual(v: _Variables, x, outputs: int, name: str, stride: int, dilation: int,
              projection: bool):
  shortcut = x
  if projection:
    shortcut = v.batch_norm(v.conv(x, 1, outputs, stride, f"res{name}_branch1"),
                            f"bn{name}_branch1", relu=False)
  y = v.batch_norm(v.conv(x, 1, outputs // 4, stride, f"res{name}_branch2a"),
                   f"bn{name}_branch2a", relu=True)
  y = v.batch_norm(v.conv(y, 3, outputs // 4, 1, f"res{name}_branch2b", dilation),
                   f"bn{name}_branch2b", relu=True)
  y = v.batch_norm(v.conv(y, 1, outputs, 1, f"res{name}_branch2c"), f"bn{name}_branch2c",
                   relu=False, residual_end=True)
  return tf.nn.relu(shortcut + y)


def build(images, num_classes: int, seed: int):
  """(logits upsampled to the input, encoder output) of the reference's network."""
  v = _Variables(seed)
  x = v.batch_norm(v.conv(images, 7, 64, 2, "conv1"), "bn_conv1", relu=True)
  x = tf.nn.max_pool2d(x, 3, 2, padding="SAME")
  for stage, blocks, width, dilation in STAGES:
    for index, name in enumerate(_block_names(stage, blocks)):
      stride = 2 if stage == 3 and index == 0 else 1
      x = _residual(v, x, width, name, stride, dilation, projection=index == 0)
  scores = tf.add_n([v.conv(x, 3, num_classes, 1, f"fc1_voc12_c{k}", rate, biased=True)
                     for k, rate in enumerate(RATES)])
  logits = tf.compat.v1.image.resize_bilinear(scores, tf.shape(images)[1:3])
  return logits, x


def write_checkpoint(prefix: str, num_classes: int = 21, seed: int = 0,
                     inputs: list[np.ndarray] = (), optimizer_slots: bool = False,
                     version: int = 2) -> list[tuple[np.ndarray, np.ndarray]]:
  """Builds the network, saves it at `prefix` with a TF1 Saver, and returns its (logits,
  encoder output) on each of `inputs` ([1, H, W, 3] RGB minus the Caffe mean, as the KD code
  feeds it). With
  `optimizer_slots` the checkpoint also holds what a training step checkpoint holds besides the
  weights (a momentum slot per variable, the global step)."""
  with tf.Graph().as_default():
    images = tf.compat.v1.placeholder(tf.float32, [1, None, None, 3])
    outputs = build(images, num_classes, seed)
    if optimizer_slots:
      for variable in list(tf.compat.v1.global_variables()):
        tf.compat.v1.get_variable(f"{variable.op.name}/G_optimizer", variable.shape,
                                  initializer=tf.compat.v1.zeros_initializer())
      tf.compat.v1.get_variable("Variable", initializer=np.int64(20000))
    write_version = (tf.compat.v1.train.SaverDef.V1 if version == 1
                     else tf.compat.v1.train.SaverDef.V2)
    saver = tf.compat.v1.train.Saver(write_version=write_version)
    with tf.compat.v1.Session() as session:
      session.run(tf.compat.v1.global_variables_initializer())
      saver.save(session, prefix, write_meta_graph=False)
      return [session.run(outputs, {images: x}) for x in inputs]
