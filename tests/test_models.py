"""Model pieces: dilated convolutions, shapes, incremental classifier and MiB init (Eq. 10-11)."""
import keras
import numpy as np
import tensorflow as tf

from kdseg.models.classifier import (AsppClassifier, IncrementalClassifier,
                                     init_new_head_from_background)
from kdseg.models import layers as model_layers
from kdseg.models.freezing import freeze_statistics
from kdseg.models.layers import AtrousConv2D
from kdseg.models.segmenter import ModelConfig, build_segmenter, copy_matching_weights


class AtrousConvTest(tf.test.TestCase):

  def test_matches_keras_conv2d(self):
    images = tf.random.stateless_normal([2, 9, 7, 5], seed=[0, 1])
    for rate, stride in ((1, 1), (1, 2), (2, 1), (6, 1), (18, 1)):
      reference = keras.layers.Conv2D(4, 3, strides=stride, padding="same", dilation_rate=rate)
      ours = AtrousConv2D(4, 3, strides=stride, padding="same", dilation_rate=rate)
      reference.build(images.shape)
      ours.build(images.shape)
      ours.set_weights(reference.get_weights())
      with tf.GradientTape(persistent=True) as tape:
        tape.watch(images)
        ours_out, reference_out = ours(images), reference(images)
        ours_loss = tf.reduce_sum(tf.square(ours_out))
        reference_loss = tf.reduce_sum(tf.square(reference_out))
      self.assertAllClose(ours_out, reference_out, atol=1e-5)
      self.assertAllClose(tape.gradient(ours_loss, [images, ours.kernel]),
                          tape.gradient(reference_loss, [images, reference.kernel]), atol=1e-4)


  def test_taps_reading_only_padding_are_skipped(self):
    # 21x21 map, rate 18, 3x3: each axis has the centre tap on 21 outputs and the two side taps
    # on 21 - 18 = 3 outputs each: (21 + 3 + 3)^2 of the 9 * 21^2 multiply-adds. The layer
    # (native dilated kernels: TensorFlow's forward, per-tap kernel gradient) and the per-tap
    # forward of dtypes without them (dense=False) both give Keras' sums.
    self.assertAlmostEqual(model_layers.tap_work_fraction(
        (2, 21, 21, 8), (3, 3, 8, 4), (1, 1), "same", (18, 18)), 27 ** 2 / (9 * 21 ** 2))
    self.assertEqual(model_layers.tap_work_fraction(   # rate >= size: the centre tap alone
        (2, 4, 4, 8), (3, 3, 8, 4), (1, 1), "same", (18, 18)), 1 / 9)
    self.assertEqual(model_layers.tap_work_fraction(   # unknown size: the dense kernel
        (None, None, None, 8), (3, 3, 8, 4), (1, 1), "same", (18, 18)), 1.0)
    images = tf.random.stateless_normal([2, 21, 21, 6], seed=[0, 3])
    for rate in (12, 18, 30):
      reference = keras.layers.Conv2D(5, 3, padding="same", dilation_rate=rate)
      ours = AtrousConv2D(5, 3, padding="same", dilation_rate=rate)
      reference.build(images.shape)
      ours.build(images.shape)
      ours.set_weights(reference.get_weights())
      with tf.GradientTape(persistent=True) as tape:
        tape.watch(images)
        ours_loss = tf.reduce_sum(tf.sin(ours(images)))
        taps_loss = tf.reduce_sum(tf.sin(model_layers.tap_convolution(
            images, ours.kernel, (rate, rate), dense=False) + ours.bias))
        reference_loss = tf.reduce_sum(tf.sin(reference(images)))
      for loss in (ours_loss, taps_loss):
        self.assertAllClose(loss, reference_loss, rtol=1e-5)
        self.assertAllClose(tape.gradient(loss, [images, ours.kernel]),
                            tape.gradient(reference_loss, [images, reference.kernel]),
                            rtol=1e-4, atol=1e-4)

  def test_kernel_gradient_by_taps_matches_keras_in_graphs_and_xla(self):
    # Stride-1 "same" kernels > 1x1 take their kernel gradient as per-tap products (dense
    # forward and input gradient for rate 1 and 2 here, per-tap throughout at 5): the same
    # forward and gradients as Keras' Conv2D, traced with an unknown batch and under XLA.
    images = tf.random.stateless_normal([3, 9, 7, 5], seed=[0, 4])
    for rate, kernel_size in ((1, 3), (2, 3), (5, 3), (1, (3, 5))):
      reference = keras.layers.Conv2D(4, kernel_size, padding="same", dilation_rate=rate)
      ours = AtrousConv2D(4, kernel_size, padding="same", dilation_rate=rate)
      reference.build(images.shape)
      ours.build(images.shape)
      ours.set_weights(reference.get_weights())

      def loss_and_gradients(layer, x):
        with tf.GradientTape() as tape:
          tape.watch(x)
          loss = tf.reduce_sum(tf.sin(layer(x)))
        return [loss] + tape.gradient(loss, [x, layer.kernel, layer.bias])

      expected = loss_and_gradients(reference, images)
      signature = [tf.TensorSpec([None, 9, 7, 5], tf.float32)]
      for jit in (False, True):
        traced = tf.function(lambda x: loss_and_gradients(ours, x), input_signature=signature,
                             jit_compile=jit)
        self.assertAllClose(traced(images), expected, rtol=1e-4, atol=1e-4,
                            msg=f"rate {rate}, kernel {kernel_size}, XLA {jit}")
      graph = tf.function(lambda x: loss_and_gradients(ours, x)).get_concrete_function(
          images).graph
      op_types = {op.type for op in graph.get_operations()}
      self.assertNotIn("Conv2DBackpropFilter", op_types)
      self.assertIn("MatMul", op_types)

  def test_lowering_follows_what_the_machine_supports(self):
    # float32 has oneDNN's dilated kernel and gradients whenever oneDNN is on (kdseg turns it
    # on); a dtype the probe finds unsupported falls back to Keras' lowering, which trains.
    self.assertEqual(model_layers.native_dilated_gradients("float32"),
                     model_layers.onednn_enabled())
    images = tf.random.stateless_normal([1, 8, 8, 3], seed=[0, 2])
    for dtype in ("bfloat16", "float16"):
      for rate in (1, 2, 6):   # per-tap kernel gradient; Keras' lowering; per-tap throughout
        layer = AtrousConv2D(2, 3, padding="same", dilation_rate=rate, dtype=dtype)
        with tf.GradientTape() as tape:
          loss = tf.reduce_sum(tf.cast(layer(tf.cast(images, dtype)), tf.float32))
        gradient = tape.gradient(loss, layer.kernel)
        self.assertEqual(gradient.dtype, layer.kernel.dtype)
        self.assertTrue(np.isfinite(gradient.numpy()).all(), msg=f"{dtype} rate {rate}")


class DeepLabV3HeadTest(tf.test.TestCase):

  def test_reference_rates_and_bn_epsilon(self):
    # fcdl94/MiB modules/deeplab.py: dilations [6, 12, 18] at OS16, [12, 24, 32] at OS8;
    # PyTorch's BN epsilon 1e-5.
    from kdseg.models.deeplab import DeepLabV3Head, aspp_rates  # pylint: disable=g-import-not-at-top
    self.assertEqual((aspp_rates(16), aspp_rates(8)), ((6, 12, 18), (12, 24, 32)))
    head = DeepLabV3Head(8, 8, output_stride=8)
    self.assertEqual([head.map_conv1.dilation_rate, head.map_conv3.dilation_rate],
                     [(12, 12), (32, 32)])
    self.assertEqual({head.map_bn.epsilon, head.pool_bn.epsilon, head.red_bn.epsilon}, {1e-5})


class FusedBatchNormTest(tf.test.TestCase):

  def test_fused_kernel_matches_keras_and_keeps_the_unbiased_moving_variance(self):
    from kdseg.models.recompute import BatchNormalization  # pylint: disable=g-import-not-at-top
    images = tf.random.stateless_normal([2, 5, 7, 4], seed=[1, 2]) * 3 + 1
    ours = BatchNormalization(momentum=0.9, epsilon=1e-5)
    reference = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    weights = [np.array([0.5, -1, 2, 1.5], np.float32), np.array([0.1, 0.2, -0.3, 0], np.float32),
               np.full(4, 0.2, np.float32), np.full(4, 1.3, np.float32)]
    for layer in (ours, reference):
      layer.build(images.shape)
      layer.set_weights(weights)
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(images)
      ours_loss = tf.reduce_sum(tf.sin(ours(images, training=True)))
      reference_loss = tf.reduce_sum(tf.sin(reference(images, training=True)))
    self.assertAllClose(ours_loss, reference_loss, rtol=1e-5)
    self.assertAllClose(tape.gradient(ours_loss, [images, ours.gamma, ours.beta]),
                        tape.gradient(reference_loss, [images, reference.gamma, reference.beta]),
                        rtol=1e-4, atol=1e-4)
    count = 2 * 5 * 7
    batch_variance = tf.math.reduce_variance(images, axis=[0, 1, 2])
    self.assertAllClose(ours.moving_mean, 0.9 * 0.2 + 0.1 * tf.reduce_mean(images, [0, 1, 2]))
    self.assertAllClose(ours.moving_variance,   # PyTorch's update: n / (n - 1)
                        0.9 * 1.3 + 0.1 * batch_variance * count / (count - 1))
    inference = ours(images, training=False)
    expected = ((images - ours.moving_mean) / tf.sqrt(ours.moving_variance + 1e-5) * ours.gamma
                + ours.beta)
    self.assertAllClose(inference, expected, atol=1e-5)


  def test_bfloat16_inputs_take_the_fused_kernel_and_follow_float32(self):
    # Under mixed_bfloat16 the layer sees bfloat16 inputs: FusedBatchNormV3 (T bfloat16, its
    # statistics in float32, as PyTorch's batch norm under CPU autocast) instead of Keras'
    # float32 moments and elementwise ops with a cast each way.
    from kdseg.models.recompute import BatchNormalization  # pylint: disable=g-import-not-at-top
    self.addCleanup(keras.config.set_dtype_policy, "float32")
    images = tf.random.stateless_normal([2, 5, 7, 4], seed=[1, 2]) * 3 + 1
    upstream = tf.random.stateless_normal([2, 5, 7, 4], seed=[3, 4])
    weights = [np.array([0.5, -1, 2, 1.5], np.float32), np.array([0.1, 0.2, -0.3, 0], np.float32),
               np.full(4, 0.2, np.float32), np.full(4, 1.3, np.float32)]
    results = {}
    for policy in ("float32", "mixed_bfloat16"):
      keras.config.set_dtype_policy(policy)
      layer = BatchNormalization(momentum=0.9, epsilon=1e-5)
      layer.build(images.shape)
      layer.set_weights(weights)
      inputs = tf.cast(images, layer.compute_dtype)
      with tf.GradientTape() as tape:
        tape.watch(inputs)
        outputs = layer(inputs, training=True)
        loss = tf.reduce_sum(tf.cast(outputs, tf.float32) * upstream)
      gradients = tape.gradient(loss, [inputs, layer.gamma, layer.beta])
      results[policy] = (outputs, gradients, layer.moving_mean, layer.moving_variance)
      graph = tf.function(lambda x, layer=layer: layer(x, training=True)).get_concrete_function(
          inputs).graph
      self.assertIn("FusedBatchNormV3", {op.type for op in graph.get_operations()}, policy)
    (outputs, gradients, mean, variance), expected = (results["mixed_bfloat16"],
                                                      results["float32"])
    self.assertEqual(outputs.dtype, tf.bfloat16)
    self.assertAllClose(tf.cast(outputs, tf.float32), expected[0], atol=0.05)
    for gradient, reference in zip(gradients, expected[1]):
      self.assertAllClose(tf.cast(gradient, tf.float32), reference,
                          atol=0.02 * float(tf.reduce_max(tf.abs(reference))))
    self.assertAllClose(mean, expected[2], atol=1e-2)
    self.assertAllClose(variance, expected[3], rtol=1e-2)


class SegmenterTest(tf.test.TestCase):

  def test_endpoints_and_output_stride(self):
    for output_stride in (8, 16):
      model = build_segmenter(ModelConfig("tiny", output_stride, 16), [3, 2])
      outputs = model(tf.zeros([2, 64, 48, 3]))
      self.assertEqual(outputs["logits"].shape, (2, 64, 48, 5))
      self.assertEqual(outputs["encoder"].shape[1:3], (64 // output_stride, 48 // output_stride))
      self.assertEqual(outputs["decoder"].shape[-1], 16)
      self.assertEqual(outputs["aspp"].shape[3:], (4, 16))   # the four ASPP convolutions

  def test_deeplab_v2_sums_four_dilated_branches(self):
    model = build_segmenter(ModelConfig("tiny", 8, 16, head="v2"), [3, 2])
    self.assertEqual(model.classifier.rates, (6, 12, 18, 24))
    images = tf.random.stateless_normal([2, 64, 48, 3], seed=[1, 1])
    outputs = model(images)
    self.assertEqual(outputs["logits"].shape, (2, 64, 48, 5))
    self.assertEqual(outputs["aspp"].shape, (2, 8, 6, 4, 5))  # class scores of each branch
    summed = tf.image.resize(tf.reduce_sum(outputs["aspp"], axis=-2), [64, 48])
    self.assertAllClose(outputs["logits"], summed, atol=1e-5)
    with self.assertRaisesRegex(ValueError, "--head"):
      build_segmenter(ModelConfig("tiny", 8, 16, head="v4"), [3])

  def test_classifier_head_is_a_1x1_classifier_on_the_backbone_upsampled(self):
    # The MiB paper's point-supervision network (§6.3.1): no ASPP, bilinear upsampling.
    model = build_segmenter(ModelConfig("tiny", 8, 16, head="classifier"), [3, 2])
    images = tf.random.stateless_normal([1, 32, 24, 3], seed=[2, 2])
    outputs = model(images)
    self.assertNotIn("aspp", outputs)
    self.assertAllEqual(outputs["decoder"], outputs["encoder"])
    kernels = [v for v in model.classifier.trainable_variables if "kernel" in v.path]
    self.assertEqual([tuple(k.shape[:2]) for k in kernels], [(1, 1), (1, 1)])
    coarse = model.classifier(outputs["encoder"])
    self.assertAllClose(outputs["logits"], tf.image.resize(coarse, [32, 24]), atol=1e-5)

  def test_copy_leaves_only_the_new_head_unmatched(self):
    old = build_segmenter(ModelConfig("tiny", 16, 16), [3])
    new = build_segmenter(ModelConfig("tiny", 16, 16), [3, 2])
    unmatched = copy_matching_weights(old, new)
    self.assertEqual(unmatched, ["segmenter/classifier/head_1/bias",
                                 "segmenter/classifier/head_1/kernel"])
    images = tf.random.stateless_normal([1, 32, 32, 3], seed=[3, 4])
    self.assertAllClose(new(images)["logits"][..., :3], old(images)["logits"])

  def test_copy_refuses_a_different_network(self):
    old = build_segmenter(ModelConfig("tiny", 16, 16), [3])
    new = build_segmenter(ModelConfig("tiny", 16, 32), [3, 2])
    with self.assertRaisesRegex(ValueError, "without a counterpart"):
      copy_matching_weights(old, new)


class PaperNetworksTest(tf.test.TestCase):

  def test_output_shapes_and_strides_of_both_depths_and_heads(self):
    images = tf.zeros([1, 64, 48, 3])
    for depth in ("resnet50", "resnet101"):
      for head in ("v2", "v3"):
        for output_stride in (8, 16):
          model = build_segmenter(ModelConfig(depth, output_stride, 32, head=head), [16, 1])
          outputs = model(images)
          h, w = 64 // output_stride, 48 // output_stride
          message = f"{depth} {head} OS{output_stride}"
          self.assertEqual(outputs["logits"].shape, (1, 64, 48, 17), message)
          self.assertEqual(outputs["encoder"].shape, (1, h, w, 2048), message)
          self.assertEqual(outputs["aspp"].shape, (1, h, w, 4, 17 if head == "v2" else 32),
                           message)
      # Bottleneck counts of the papers' ResNets: 3-4-6-3 and 3-4-23-3.
      blocks = sum(layer.name.endswith("_out") for layer in model.backbone.layers)
      self.assertEqual(blocks, 16 if depth == "resnet50" else 33)


class RecomputeTest(tf.test.TestCase):

  def _train_step(self, model, images):
    @tf.function
    def step():
      with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.square(model(images, training=True)["logits"]))
      return loss, tape.gradient(loss, model.trainable_variables)
    loss, gradients = step()
    return loss, gradients, [v.numpy() for v in model.non_trainable_variables]

  def test_same_loss_gradients_and_one_bn_update_per_step(self):
    images = tf.random.stateless_normal([2, 48, 48, 3], seed=[0, 1])
    plain = build_segmenter(ModelConfig("resnet18", 16, 16), [3])
    checkpointed = build_segmenter(ModelConfig("resnet18", 16, 16, recompute=True), [3])
    checkpointed.set_weights(plain.get_weights())
    self.assertEqual([v.path for v in checkpointed.variables], [v.path for v in plain.variables])
    loss, gradients, statistics = self._train_step(plain, images)
    loss_r, gradients_r, statistics_r = self._train_step(checkpointed, images)
    self.assertAllClose(loss, loss_r)
    # Tolerance from the largest gradient of all: the biases of convolutions followed by BN
    # have a gradient of zero in exact arithmetic, so theirs (~1e-7 here) is rounding alone.
    scale = max(float(tf.reduce_max(tf.abs(g))) for g in gradients)
    for g, g_r in zip(gradients, gradients_r):
      self.assertAllClose(g, g_r, rtol=1e-4, atol=1e-6 * scale)
    # Moving averages moved, and exactly as much as without recomputation (not twice).
    self.assertNotAllClose(statistics, [v.numpy() for v in build_segmenter(
        ModelConfig("resnet18", 16, 16), [3]).non_trainable_variables])
    for s, s_r in zip(statistics, statistics_r):
      self.assertAllClose(s, s_r, rtol=1e-5, atol=1e-6)


class FrozenStatisticsTest(tf.test.TestCase):
  """--batch_norm=frozen: BN normalises with its moving statistics in training and keeps them;
  gamma and beta train (the KD code's is_training=False with gamma/beta in the optimizer)."""

  def tearDown(self):
    keras.config.set_dtype_policy("float32")
    super().tearDown()

  def _step(self, config, policy="float32"):
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(3)
    model = build_segmenter(config, [3])
    # Statistics as a trained network has them, not the initial 0 / 1.
    for layer in model._flatten_layers():
      if isinstance(layer, keras.layers.BatchNormalization):
        layer.moving_mean.assign(tf.random.stateless_normal(layer.moving_mean.shape, [1, 2]))
        layer.moving_variance.assign(
            tf.random.stateless_uniform(layer.moving_variance.shape, [1, 3], 0.5, 2.0))
    self.assertEqual(freeze_statistics(model), 15)   # tiny: 12 in the backbone, 3 in the head
    images = tf.random.stateless_normal([2, 32, 32, 3], seed=[0, 1])
    before = {v.path: v.numpy() for v in model.variables}
    inference = model(images, training=False)["logits"]
    with tf.GradientTape() as tape:
      training = model(images, training=True)["logits"]
      loss = tf.reduce_mean(tf.square(training))
    gradients = tape.gradient(loss, model.trainable_variables)
    keras.optimizers.SGD(0.1).apply_gradients(zip(gradients, model.trainable_variables))
    return model, before, inference, training, gradients

  def test_training_normalises_like_inference_and_keeps_the_statistics(self):
    model, before, inference, training, _ = self._step(ModelConfig("tiny", 16, 16, "v3"))
    self.assertAllClose(training, inference, atol=1e-5)
    moved = {v.path for v in model.variables if not np.array_equal(v.numpy(), before[v.path])}
    statistics = {v.path for v in model.non_trainable_variables}
    self.assertTrue(statistics)
    self.assertEmpty(moved & statistics)
    self.assertTrue({p for p in moved if p.endswith(("gamma", "beta"))})   # gamma/beta train

  def test_with_recompute_and_mixed_precision(self):
    _, _, _, training, gradients = self._step(ModelConfig("tiny", 16, 16, "v3"))
    _, _, _, recomputed, recomputed_gradients = self._step(
        ModelConfig("tiny", 16, 16, "v3", recompute=True))
    self.assertAllClose(recomputed, training, atol=1e-5)
    scale = max(float(tf.reduce_max(tf.abs(g))) for g in gradients)
    for g, g_r in zip(gradients, recomputed_gradients):
      self.assertAllClose(g, g_r, rtol=1e-4, atol=1e-6 * scale)
    model, before, inference, mixed, _ = self._step(ModelConfig("tiny", 16, 16, "v3"),
                                                     "mixed_bfloat16")
    self.assertAllClose(mixed, inference, atol=0.05 * float(tf.reduce_max(tf.abs(inference))))
    for variable in model.non_trainable_variables:
      self.assertAllEqual(variable.numpy(), before[variable.path])


class FullClassifierTest(tf.test.TestCase):

  def test_every_head_from_step_0_with_full_width_glorot_kernels_and_biases(self):
    keras.utils.set_random_seed(0)
    model = build_segmenter(ModelConfig("tiny", 8, 96, head="v2", classifier="full"), [18, 3])
    kernels = np.concatenate([h.kernel.numpy() for h in model.classifier.branches[0].heads], -1)
    biases = np.concatenate([h.bias.numpy() for h in model.classifier.branches[0].heads])
    # TF1's glorot_uniform on [3, 3, 96, 21] and on a vector of 21: U(-l, l), variance l^2 / 3.
    kernel_limit = np.sqrt(6.0 / (9 * 96 + 9 * 21))
    self.assertLessEqual(np.abs(kernels).max(), kernel_limit)
    self.assertAllClose(kernels.std(), kernel_limit / np.sqrt(3), rtol=0.05)
    bias_limit = np.sqrt(6.0 / 42)
    self.assertLessEqual(np.abs(biases).max(), bias_limit)
    self.assertGreater(np.abs(biases).max(), 0.3 * bias_limit)   # not zero-initialised
    self.assertEqual(model(tf.zeros([1, 32, 32, 3]))["logits"].shape[-1], 21)


class MixedPrecisionTest(tf.test.TestCase):

  def tearDown(self):
    keras.config.set_dtype_policy("float32")
    super().tearDown()

  def test_endpoints_stay_float32_and_follow_the_float32_model(self):
    images = tf.random.stateless_normal([2, 32, 32, 3], seed=[4, 1])
    reference = build_segmenter(ModelConfig("tiny", 16, 16, head="v3"), [3, 1])
    expected = reference(images)["logits"]
    for policy in ("mixed_bfloat16", "mixed_float16"):
      keras.config.set_dtype_policy(policy)
      for head in ("v2", "v3"):
        model = build_segmenter(ModelConfig("tiny", 16, 16, head=head), [3, 1])
        self.assertEqual(model.trainable_variables[0].dtype, "float32")   # variables stay f32
        outputs = model(images)
        for name, value in outputs.items():
          for tensor in tf.nest.flatten(value):   # "pod" holds several maps
            self.assertEqual(tensor.dtype, tf.float32, f"{policy} {head} {name}")
      model = build_segmenter(ModelConfig("tiny", 16, 16, head="v3"), [3, 1])
      model.set_weights(reference.get_weights())
      tolerance = 0.05 if policy == "mixed_bfloat16" else 0.01
      self.assertAllClose(model(images)["logits"], expected, atol=tolerance * float(
          tf.reduce_max(tf.abs(expected))))


class BackgroundInitTest(tf.test.TestCase):

  def test_new_classes_share_the_old_background_probability(self):
    # Old model: 3 classes (bg + 2). New: 2 new classes. After init, for any features:
    # p_new(bg) = p_new(new_k) = p_old(bg) / 3 and p_new(c) = p_old(c) for old classes.
    features = tf.random.stateless_normal([2, 4, 4, 8], seed=[5, 6])
    old = IncrementalClassifier([3])
    old(features)
    old.heads[0].bias.assign([0.3, -0.2, 0.5])
    new = IncrementalClassifier([3, 2])
    new(features)
    new.heads[0].set_weights(old.heads[0].get_weights())
    init_new_head_from_background(new)
    p_old = tf.nn.softmax(old(features)).numpy()
    p_new = tf.nn.softmax(new(features)).numpy()
    self.assertAllClose(p_new[..., 1:3], p_old[..., 1:3], atol=1e-6)
    for channel in (0, 3, 4):
      self.assertAllClose(p_new[..., channel], p_old[..., 0] / 3, atol=1e-6)
    # The bias values themselves (spec §3): b_bg - log(|new| + 1) for background and new classes.
    self.assertAllClose(new.heads[1].bias, [0.3 - np.log(3)] * 2)
    self.assertAllClose(new.heads[0].bias, [0.3 - np.log(3), -0.2, 0.5])

  def test_summed_branches_shift_by_log_new_plus_one_in_total(self):
    # DeepLab-v2: four branches are summed, so the same probabilities must result.
    features = tf.random.stateless_normal([1, 6, 6, 8], seed=[7, 8])
    old, new = AsppClassifier([3], 8), AsppClassifier([3, 2], 8)
    old(features)
    new(features)
    for old_branch, new_branch in zip(old.branches, new.branches):
      old_branch.heads[0].bias.assign([0.3, -0.2, 0.5])
      new_branch.heads[0].set_weights(old_branch.heads[0].get_weights())
    init_new_head_from_background(new)
    p_old = tf.nn.softmax(old(features)[0]).numpy()
    p_new = tf.nn.softmax(new(features)[0]).numpy()
    self.assertAllClose(p_new[..., 1:3], p_old[..., 1:3], atol=1e-5)
    for channel in (0, 3, 4):
      self.assertAllClose(p_new[..., channel], p_old[..., 0] / 3, atol=1e-5)


if __name__ == "__main__":
  tf.test.main()
