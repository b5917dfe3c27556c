"""PyTorch checkpoints without PyTorch: the reader, the name/layout mapping, the PyTorch-layout
backbones, and a MiB step-0 checkpoint imported into a run directory that kdseg continues."""
from __future__ import annotations

import collections
import importlib.util
import json
import os
import pickle
import re
import subprocess
import sys
import zipfile

from absl import flags
import numpy as np
import tensorflow as tf

from kdseg import config
from kdseg.engine import checkpoints
from kdseg.models import resnet, torch_io, torch_weights
from kdseg.models.layers import TorchMaxPool2D
from kdseg.models.segmenter import ModelConfig, build_segmenter
from tests import torch_files

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOL = os.path.join(ROOT, "tools", "convert_torch_weights.py")


def _checkpoint_object():
  rng = np.random.default_rng(0)
  state = collections.OrderedDict([
      ("module.body.mod1.conv1.weight", rng.normal(size=(4, 3, 7, 7)).astype(np.float32)),
      ("module.body.mod1.bn1.num_batches_tracked", np.array(12, dtype=np.int64)),
      ("module.head.red_bn.running_var", rng.uniform(0.5, 2, size=5).astype(np.float16)),
  ])
  return {"epoch": 29, "best_score": 0.61, "model_state": state, "name": "MiB",
          "steps": [1, 2], "opts": torch_files.Global("argparse", "Namespace", {"lr": 0.01, "task": "15-1"})}


class TorchReaderTest(tf.test.TestCase):

  def test_both_formats_read_back_every_tensor_and_keep_other_objects_inert(self):
    expected = _checkpoint_object()
    for save in (torch_files.save_zip, torch_files.save_legacy):
      path = os.path.join(self.get_temp_dir(), f"{save.__name__}.pth")
      save(expected, path)
      loaded = torch_io.load(path)
      self.assertEqual(loaded["epoch"], 29)
      self.assertAlmostEqual(loaded["best_score"], 0.61)
      self.assertEqual(loaded["steps"], [1, 2])
      self.assertIsInstance(loaded["model_state"], collections.OrderedDict)
      self.assertEqual(list(loaded["model_state"]), list(expected["model_state"]))
      for key, value in expected["model_state"].items():
        self.assertEqual(loaded["model_state"][key].dtype, value.dtype, msg=key)
        self.assertAllEqual(loaded["model_state"][key], value, msg=key)
      opts = loaded["opts"]   # never imported nor called: an inert record of what the file named
      self.assertIsInstance(opts, torch_io.Opaque)
      self.assertEqual((opts.name, opts.state), ("argparse.Namespace", {"lr": 0.01, "task": "15-1"}))

  def test_a_file_that_calls_code_is_refused_and_nothing_runs(self):
    # Each pickle a reader unpickles (the zip's data.pkl; the legacy format's headers, object
    # and key list) asks to create a folder: a plain pickle.Unpickler would create it.
    marker = os.path.join(self.get_temp_dir(), "ran")

    class Payload:
      def __reduce__(self):
        return (os.mkdir, (marker,))

    attack = torch_files.Call("os", "mkdir", (marker,))
    files = {"data.pth": lambda path: torch_files.save_zip({"model_state": attack}, path),
             "object.pth": lambda path: torch_files.save_legacy({"model_state": attack}, path)}

    def legacy_header(path):
      with open(path, "wb") as handle:
        pickle.dump(Payload(), handle, protocol=2)
    files["header.pth"] = legacy_header

    def legacy_keys(path):
      torch_files.save_legacy({"w": np.zeros(2, np.float32)}, path)
      with open(path, "rb") as handle:
        data = handle.read()
      keys = pickle.dumps(["0"], protocol=2)
      head = data[:data.rindex(keys)]
      with open(path, "wb") as handle:
        handle.write(head + pickle.dumps(Payload(), protocol=2) + data[len(head) + len(keys):])
    files["keys.pth"] = legacy_keys
    for name, write in files.items():
      path = os.path.join(self.get_temp_dir(), name)
      write(path)
      with self.assertRaisesRegex(torch_io.TorchFileError,
                                  f"{name}: .*call (os|posix).mkdir.*never runs code"):
        torch_io.load(path)
      self.assertFalse(os.path.exists(marker), msg=name)
    self.assertFalse(os.path.exists(marker))
    # The same pickle, unrestricted, does run (the test would catch a reader that ran it).
    with open(os.path.join(self.get_temp_dir(), "header.pth"), "rb") as handle:
      pickle.Unpickler(handle).load()
    self.assertTrue(os.path.exists(marker))

  def test_compressed_archive_members_are_refused(self):
    path = os.path.join(self.get_temp_dir(), "deflated.pth")
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
      archive.writestr("archive/data.pkl", pickle.dumps({}, protocol=2))
      archive.writestr("archive/data/0", bytes(1 << 20))   # 1 MiB of zeros in a few bytes
    with self.assertRaisesRegex(torch_io.TorchFileError, "deflated.pth: compressed"):
      torch_io.load(path)

  def test_files_that_are_not_checkpoints_are_named(self):
    text = os.path.join(self.get_temp_dir(), "notes.pth")
    with open(text, "w") as handle:
      handle.write("not a checkpoint")
    with self.assertRaisesRegex(torch_io.TorchFileError, "notes.pth"):
      torch_io.load(text)
    legacy = os.path.join(self.get_temp_dir(), "cut.pth")
    torch_files.save_legacy(_checkpoint_object(), legacy)
    with open(legacy, "rb") as handle:
      data = handle.read()
    with open(legacy, "wb") as handle:
      handle.write(data[:-100])
    with self.assertRaisesRegex(torch_io.TorchFileError, "cut.pth: truncated"):
      torch_io.load(legacy)
    with self.assertRaisesRegex(torch_io.TorchFileError, "does not exist"):
      torch_io.load(os.path.join(self.get_temp_dir(), "missing.pth"))

  def test_files_torch_itself_wrote(self):
    try:
      import torch  # pylint: disable=g-import-not-at-top
    except ImportError:
      self.skipTest('PyTorch is not installed (pip install -e ".[torch]")')
    state = collections.OrderedDict(
        w=torch.arange(24, dtype=torch.float32).reshape(2, 3, 4).transpose(0, 2),   # strided
        b=torch.tensor([1.5, -2.0], dtype=torch.bfloat16), n=torch.tensor(7))
    for legacy in (False, True):
      path = os.path.join(self.get_temp_dir(), f"torch_{legacy}.pth")
      torch.save({"state_dict": state}, path, _use_new_zipfile_serialization=not legacy)
      loaded = torch_io.load(path)["state_dict"]
      self.assertAllEqual(loaded["w"], state["w"].numpy())
      self.assertAllEqual(loaded["b"], [1.5, -2.0])
      self.assertEqual(int(loaded["n"]), 7)


class ImportOrderTest(tf.test.TestCase):

  def test_torch_comparison_tools_import_no_tensorflow_before_torch(self):
    # In one process torch (torchvision) must come before TensorFlow, or triton's import
    # crashes: the tools that run PyTorch must not import TensorFlow at module level.
    for tool in ("benchmark", "compare_torch_forward"):
      code = ("import sys; sys.path.insert(0, 'tools'); import " + tool +
              "; print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
      result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                              text=True, check=True)
      self.assertEqual(result.stdout.strip().splitlines()[-1], "[]", msg=tool)


class BenchmarkTablesTest(tf.test.TestCase):

  def test_efficiency_table_against_the_faster_matrix_product(self):
    # Hand-computed: peak = max(100, 200) = 200 GFLOP/s, forward 10 GFLOP per image. kdseg
    # 1.0 s/image of which forward 0.25: forward 10 / 0.25 / 200 = 20 %, backward + update
    # 2 * 10 / 0.75 / 200 = 13 %, step 30 / 1.0 / 200 = 15 %. PyTorch 1.5 s, forward 0.5:
    # 10 / 0.5 / 200 = 10 %, backward 20 / 1.0 / 200 = 10 %, step 30 / 1.5 / 200 = 10 %;
    # 1.2x PyTorch's speed: 30 / 1.25 / 200 = 12 %. A row without timings is left out.
    row = {"status": "ok", "head": "v2", "backbone": "resnet101_tv", "torch_norm": "torchvision",
           "precision": "float32", "gemm_gflops": {"tensorflow": 100.0, "torch": 200.0},
           "forward_gflop": 10.0, "kdseg_seconds_per_image": 1.0,
           "kdseg_forward_seconds_per_image": 0.25, "torch_seconds_per_image": 1.5,
           "torch_forward_seconds_per_image": 0.5}
    code = ("import json, sys; sys.path.insert(0, 'tools'); import benchmark; "
            "print(benchmark.format_efficiency_table(json.loads(sys.argv[1])))")
    result = subprocess.run([sys.executable, "-c", code, json.dumps([row, {"status": "timeout"}])],
                            cwd=ROOT, capture_output=True, text=True, check=True)
    lines = result.stdout.strip().splitlines()
    self.assertLen(lines, 3)   # header, rule, the one row with timings
    cells = [cell.strip() for cell in lines[2].strip("|").split("|")]
    self.assertEqual(cells[3:], ["100 / 200", "10.0", "20 %", "13 %", "10 %", "10 %", "15 %",
                                 "10 %", "12 %"])

  def test_compare_table_names_frozen_batch_norm_rows(self):
    row = {"status": "ok", "head": "v2", "backbone": "resnet101_tv", "torch_norm": "torchvision",
           "size": 321, "precision": "float32", "batch_size": 2, "kdseg_seconds_per_image": 2.0,
           "torch_seconds_per_image": 3.0, "speed_ratio": 1.5}
    code = ("import json, sys; sys.path.insert(0, 'tools'); import benchmark; "
            "print(benchmark.format_compare_table(json.loads(sys.argv[1])))")
    rows = [row, {**row, "batch_norm": "frozen"}, {**row, "batch_norm": "train"}]
    result = subprocess.run([sys.executable, "-c", code, json.dumps(rows)], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    networks = [line.strip("|").split("|")[0].strip()
                for line in result.stdout.strip().splitlines()[2:]]
    self.assertEqual(networks, ["DeepLab-v2 resnet101_tv OS8",
                                "DeepLab-v2 resnet101_tv OS8, frozen BN",
                                "DeepLab-v2 resnet101_tv OS8"])


class MappingTest(tf.test.TestCase):

  def test_names_of_each_source(self):
    cases = {
        ("torchvision", "resnet101_tv"): {
            "conv1.weight": ("backbone/conv1_conv", "kernel"),
            "bn1.running_var": ("backbone/conv1_bn", "moving_variance"),
            "layer1.0.downsample.0.weight": ("backbone/conv2_block1_0_conv", "kernel"),
            "layer3.22.bn2.weight": ("backbone/conv4_block23_2_bn", "gamma"),
        },
        ("iabn", "resnet101_iabn"): {
            "mod1.bn1.bias": ("backbone/conv1_bn", "beta"),
            "mod5.block3.convs.conv3.weight": ("backbone/conv5_block3_3_conv", "kernel"),
            "mod3.block1.proj_bn.running_mean": ("backbone/conv3_block1_0_bn", "moving_mean"),
        },
        ("iabn", "resnext101_iabn"): {
            "mod1.conv3.weight": ("backbone/conv1_3_conv", "kernel"),
            "mod1.bn2.weight": ("backbone/conv1_2_bn", "gamma"),
            "mod2.block1.bn1.weight": ("backbone/conv2_block1_preact_bn", "gamma"),
            "mod2.block1.convs.bn2.bias": ("backbone/conv2_block1_1_bn", "beta"),
            "mod4.block7.convs.bn3.bias": ("backbone/conv4_block7_2_bn", "beta"),
            "bn_out.running_var": ("backbone/post_bn", "moving_variance"),
        },
        ("mib", "resnet101_iabn"): {
            "body.mod2.block1.convs.conv1.weight": ("backbone/conv2_block1_1_conv", "kernel"),
            "head.map_convs.3.weight": ("head/map_conv3", "kernel"),
            "head.global_pooling_bn.weight": ("head/pool_bn", "gamma"),
            "head.pool_red_conv.weight": ("head/pool_red_conv", "kernel"),
            "cls.1.bias": ("classifier/head_1", "bias"),
        },
    }
    for (source, backbone), names in cases.items():
      for key, target in names.items():
        self.assertEqual(torch_weights.target_of(key, backbone, source), target, msg=key)

  def test_layouts_and_the_in_place_abn_scale(self):
    weight = np.arange(2 * 3 * 3 * 3, dtype=np.float32).reshape(2, 3, 3, 3)   # OIHW
    gamma = np.array([-0.5, 2.0], dtype=np.float32)
    tensors = {"conv1.weight": weight, "bn1.weight": gamma}
    for norm, expected in (("bn", gamma), ("iabn", np.abs(gamma) + 1e-5)):
      converted = torch_weights.convert(tensors, "resnet50_tv", "torchvision", norm, "f.pth")
      kernel, key = converted["backbone/conv1_conv"]["kernel"]
      self.assertEqual(key, "conv1.weight")
      self.assertEqual(kernel.shape, (3, 3, 3, 2))                             # HWIO
      self.assertEqual(kernel[1, 2, 0, 1], weight[1, 0, 1, 2])                 # [h, w, i, o]
      self.assertAllClose(converted["backbone/conv1_bn"]["gamma"][0], expected)

  def test_errors_name_the_tensor_or_layer(self):
    backbone = resnet.build_resnet("resnet50_tv")
    layers = torch_weights.backbone_layers(backbone)
    with self.assertRaisesRegex(torch_weights.ConversionError, "layer1.0.se.fc.weight"):
      torch_weights.convert({"layer1.0.se.fc.weight": np.zeros((1, 1, 1, 1))}, "resnet50_tv",
                            "torchvision", "bn", "f.pth")
    with self.assertRaisesRegex(torch_weights.ConversionError, r"\*_tv backbone"):
      torch_weights.convert({}, "resnet50_iabn", "torchvision", "bn", "f.pth")
    with self.assertRaisesRegex(torch_weights.ConversionError, "keras.applications' layout"):
      torch_weights.convert({}, "resnet50", "iabn", "bn", "f.pth")
    full = {key: np.ones(shape, np.float32) for key, shape in _torchvision_shapes(layers).items()}
    converted = torch_weights.convert(full, "resnet50_tv", "torchvision", "bn", "f.pth")
    missing = dict(converted)
    del missing["backbone/conv3_block2_2_bn"]
    with self.assertRaisesRegex(torch_weights.ConversionError, "conv3_block2_2_bn"):
      torch_weights.assign(layers, missing, "f.pth")
    extra = dict(full, **{"layer5.0.conv1.weight": np.ones((1, 1, 1, 1), np.float32)})
    converted = torch_weights.convert(extra, "resnet50_tv", "torchvision", "bn", "f.pth")
    with self.assertRaisesRegex(torch_weights.ConversionError, "layer5.0.conv1.weight"):
      torch_weights.assign(layers, converted, "f.pth")
    wrong = dict(full, **{"layer2.1.conv2.weight": np.ones((128, 64, 3, 3), np.float32)})
    converted = torch_weights.convert(wrong, "resnet50_tv", "torchvision", "bn", "f.pth")
    with self.assertRaisesRegex(torch_weights.ConversionError,
                                r"layer2.1.conv2.weight converts to shape \(3, 3, 64, 128\)"):
      torch_weights.assign(layers, converted, "f.pth")


class BackboneFileTest(tf.test.TestCase):

  def test_converted_imagenet_file_loads_as_backbone_weights(self):
    from kdseg.models import pretrained  # pylint: disable=g-import-not-at-top
    layers = torch_weights.backbone_layers(resnet.build_resnet("resnet50_tv"))
    rng = np.random.default_rng(3)
    state = {key: rng.normal(size=shape).astype(np.float32)
             for key, shape in _torchvision_shapes(layers).items()}
    state["fc.weight"] = np.zeros((1000, 2048), np.float32)   # dropped: kdseg has no ImageNet head
    source = os.path.join(self.get_temp_dir(), "resnet50-legacy.pth")
    torch_files.save_legacy(state, source)
    output = os.path.join(self.get_temp_dir(), "weights", "resnet50_tv.weights.h5")
    count = _load_tool().convert_backbone(source, "torchvision", "resnet50_tv", "bn", output)
    self.assertEqual(count, len(layers))
    weights = pretrained.read_weights("resnet50_tv", output)
    self.assertAllClose(weights["conv3_block2_2_conv"][0],
                        state["layer2.1.conv2.weight"].transpose(2, 3, 1, 0))
    self.assertAllClose(weights["conv4_block1_0_bn"][3], state["layer3.0.downsample.1.running_var"])
    with self.assertRaisesRegex(pretrained.PretrainedWeightsError, "convert_torch_weights"):
      pretrained.read_weights("resnet101_tv", output)   # another depth: how to make the right one


def _torchvision_shapes(layers: dict) -> dict[str, tuple]:
  """torchvision's state-dict names and shapes of a kdseg *_tv backbone (the test's own
  inverse of the naming, from torchvision's module names)."""
  shapes = {}
  for path, layer in layers.items():
    name = path.split("/", 1)[1]
    if name in ("conv1_conv", "conv1_bn"):
      torch_name = "conv1" if name == "conv1_conv" else "bn1"
    else:
      stage, block, k, kind = re.fullmatch(r"conv(\d)_block(\d+)_(\d)_(conv|bn)", name).groups()
      prefix = f"layer{int(stage) - 1}.{int(block) - 1}"
      torch_name = (f"{prefix}.downsample.{0 if kind == 'conv' else 1}" if k == "0"
                    else f"{prefix}.{kind}{k}")
    if isinstance(layer, tf.keras.layers.BatchNormalization) or "bn" in name:
      for slot in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{torch_name}.{slot}"] = tuple(layer.weights[0].shape)
    else:
      h, w, i, o = layer.kernel.shape
      shapes[f"{torch_name}.weight"] = (o, i, h, w)
  return shapes


class TorchLayoutBackboneTest(tf.test.TestCase):

  def test_reference_resnet_layout_strides_activations_and_strides(self):
    for output_stride, size in ((16, 4), (8, 8)):
      backbone = resnet.build_resnet("resnet50_iabn", output_stride)
      self.assertEqual(backbone(tf.zeros([1, 64, 64, 3])).shape, (1, size, size, 2048))
    activations = [layer for layer in backbone.layers
                   if isinstance(layer, tf.keras.layers.LeakyReLU)]
    # stem + 3 per bottleneck (two BN activations and the one after the sum)
    self.assertLen(activations, 1 + 3 * sum(resnet.SPECS["resnet50_iabn"].blocks))
    self.assertTrue(all(np.isclose(layer.negative_slope, 0.01) for layer in activations))
    self.assertFalse([layer.name for layer in backbone.layers
                      if isinstance(layer, tf.keras.layers.ReLU) or
                      getattr(layer, "activation", None) is tf.keras.activations.relu])
    self.assertEqual(backbone.get_layer("conv3_block1_2_conv").strides, (2, 2))   # on the 3x3
    self.assertEqual(backbone.get_layer("conv3_block1_1_conv").strides, (1, 1))
    self.assertEqual(backbone.get_layer("conv5_block1_2_conv").dilation_rate, (4, 4))   # OS8
    self.assertFalse(backbone.get_layer("conv2_block1_2_conv").use_bias)
    self.assertAllClose(backbone.get_layer("conv2_block1_1_bn").epsilon, 1e-5)
    torchvision = resnet.build_resnet("resnet50_tv")
    self.assertEqual(torchvision.get_layer("conv1_act").activation.__name__, "relu")

  def test_resnext101_shapes_groups_and_strides(self):
    backbone = resnet.build_resnet("resnext101_iabn", 16)
    self.assertEqual(backbone(tf.zeros([1, 64, 64, 3])).shape, (1, 4, 4, 2048))
    grouped = backbone.get_layer("conv2_block1_2_conv")
    self.assertEqual((grouped.groups, tuple(grouped.kernel.shape)), (64, (3, 3, 2, 128)))
    self.assertEqual(backbone.get_layer("conv3_block1_1_conv").strides, (2, 2))   # on the 1x1
    self.assertEqual(backbone.get_layer("conv5_block1_2_conv").dilation_rate, (2, 2))
    self.assertEqual(backbone.get_layer("conv5_block3_3_conv").kernel.shape[-1], 2048)
    self.assertEqual(resnet.segment_ends(backbone)[-1], "post_act")
    endpoints = {name: backbone.get_layer(name).output.shape[-1]
                 for name in ("conv1_3_conv", "conv2_block3_out", "conv3_block4_out",
                              "conv4_block23_out", "conv5_block3_out")}
    self.assertEqual(endpoints, {"conv1_3_conv": 64, "conv2_block3_out": 256,
                                 "conv3_block4_out": 512, "conv4_block23_out": 1024,
                                 "conv5_block3_out": 2048})
    os8 = resnet.build_resnet("resnext101_iabn", 8)
    self.assertEqual(os8(tf.zeros([1, 64, 64, 3])).shape, (1, 8, 8, 2048))
    torchvision = resnet.build_resnet("resnext101_tv")
    self.assertEqual(torchvision.get_layer("conv2_block1_2_conv").groups, 32)

  def test_max_pool_pads_with_minus_infinity_on_both_sides(self):
    x = -np.arange(1, 17, dtype=np.float32).reshape(1, 4, 4, 1)
    pooled = TorchMaxPool2D(3, 2, 1)(tf.constant(x)).numpy()[0, :, :, 0]
    # windows rows/cols {-1..1} and {1..3}: maxima of the negated values
    self.assertAllEqual(pooled, [[-1, -2], [-5, -6]])


def _mib_state(model) -> collections.OrderedDict:
  """A MiB checkpoint's model_state for `model` (resnet*_iabn + DeepLab-v3), random values:
  MiB's module names, written from its modules (body = models/resnet.py, head =
  modules/deeplab.py, cls = one Conv2d per step)."""
  rng = np.random.default_rng(1)
  head_names = {"map_bn": "map_bn", "pool_conv": "global_pooling_conv",
                "pool_bn": "global_pooling_bn", "red_conv": "red_conv",
                "pool_red_conv": "pool_red_conv", "red_bn": "red_bn"}
  state = collections.OrderedDict()

  def add(torch_name, layer):
    if isinstance(layer, tf.keras.layers.BatchNormalization):
      channels = layer.weights[0].shape[0]
      state[f"{torch_name}.weight"] = rng.uniform(-1.5, 1.5, channels).astype(np.float32)
      state[f"{torch_name}.bias"] = rng.normal(size=channels).astype(np.float32)
      state[f"{torch_name}.running_mean"] = rng.normal(size=channels).astype(np.float32)
      state[f"{torch_name}.running_var"] = rng.uniform(0.5, 2, channels).astype(np.float32)
      state[f"{torch_name}.num_batches_tracked"] = np.array(100, np.int64)
      return
    h, w, i, o = layer.kernel.shape   # fan-in scaled: activations stay finite through 50 layers
    state[f"{torch_name}.weight"] = (rng.normal(size=(o, i, h, w)) / np.sqrt(h * w * i)).astype(
        np.float32)
    if layer.use_bias:
      state[f"{torch_name}.bias"] = rng.normal(size=o).astype(np.float32)

  for layer in model.backbone.layers:
    if not layer.weights:
      continue
    if layer.name.startswith("conv1_"):
      add("module.body.mod1." + ("conv1" if layer.name == "conv1_conv" else "bn1"), layer)
      continue
    stage, block, k, kind = re.fullmatch(r"conv(\d)_block(\d+)_(\d)_(conv|bn)",
                                         layer.name).groups()
    prefix = f"module.body.mod{stage}.block{block}"
    add(f"{prefix}.proj_{kind}" if k == "0" else f"{prefix}.convs.{kind}{k}", layer)
  for index in range(4):
    add(f"module.head.map_convs.{index}", getattr(model.head, f"map_conv{index}"))
  for attr, torch_name in head_names.items():
    add(f"module.head.{torch_name}", getattr(model.head, attr))
  for step, head in enumerate(model.classifier.heads):
    add(f"module.cls.{step}", head)
  return state


def _load_tool():
  """tools/convert_torch_weights.py as a module (it defines its flags once per process)."""
  if "convert_torch_weights" not in sys.modules:
    spec = importlib.util.spec_from_file_location("convert_torch_weights", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["convert_torch_weights"] = module
  return sys.modules["convert_torch_weights"]


class ImportedStepTest(tf.test.TestCase):
  """A MiB step-0 checkpoint becomes step 0 of a run directory; kdseg trains step 1 from it."""

  def test_mib_step_checkpoint_into_a_run_directory_then_step_1_trains(self):
    from kdseg import train  # pylint: disable=g-import-not-at-top
    base = self.get_temp_dir()
    run_dir = os.path.join(base, "run")
    common = [f"--cache_dir={base}/cache", "--dataset=shapes", "--shapes_image_size=32",
              "--shapes_num_train=48", "--shapes_num_val=8", "--task=19-1",
              "--backbone=resnet50_iabn", "--output_stride=16", "--head=v3",
              "--head_channels=16", "--batch_size=4", "--crop_size=32", "--eval_batch_size=8",
              "--verbose=0", f"--run_dir={run_dir}", "--method=mib", "--epochs=1",
              "--epochs_incremental=1", "--lr_incremental=0.001"]
    model = build_segmenter(ModelConfig("resnet50_iabn", 16, 16, "v3"), [20])
    state = _mib_state(model)
    checkpoint = os.path.join(base, "19-1-voc_MiB_0.pth")
    torch_files.save_zip({"epoch": 29, "model_state": state, "best_score": 0.5}, checkpoint)

    wrong_heads = os.path.join(base, "15-5.pth")
    torch_files.save_zip({"model_state": collections.OrderedDict(
        (k, v[:16] if k.startswith("module.cls.0") else v) for k, v in state.items())},
        wrong_heads)
    result = subprocess.run(   # the command line: a clear error, exit status 2, nothing written
        [sys.executable, TOOL, "--source=mib", f"--torch_file={wrong_heads}", *common,
         "--step=0"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    self.assertEqual(result.returncode, 2, msg=result.stderr[-2000:])
    self.assertIn("classifier heads for [16] classes per step; step 0 of task 19-1 (mib) has "
                  "[20]", result.stderr)
    self.assertFalse(checkpoints.is_complete(f"{run_dir}/step_0"))
    self.assertFalse(os.path.exists(f"{run_dir}/experiment.json"))   # checked before any write

    tool = _load_tool()
    flags.FLAGS.unparse_flags()
    flags.FLAGS(["convert_torch_weights", *common, "--step=0"])
    run_config = config.from_flags()
    tool.import_step(run_config, checkpoint, "mib", "iabn")
    self.assertTrue(checkpoints.is_complete(f"{run_dir}/step_0"))
    with self.assertRaisesRegex(tool.ConvertError, "already holds a finished step 0"):
      tool.import_step(run_config, checkpoint, "mib", "iabn")

    imported = checkpoints.load_final(f"{run_dir}/step_0",
                                      ModelConfig("resnet50_iabn", 16, 16, "v3"), [20])
    self.assertAllClose(imported.backbone.get_layer("conv4_block2_2_conv").kernel,
                        state["module.body.mod4.block2.convs.conv2.weight"].transpose(2, 3, 1, 0))
    self.assertAllClose(imported.head.pool_bn.gamma,
                        np.abs(state["module.head.global_pooling_bn.weight"]) + 1e-5)
    self.assertAllClose(imported.classifier.heads[0].bias, state["module.cls.0.bias"])

    flags.FLAGS.unparse_flags()
    flags.FLAGS(["kdseg.train", *common])
    train.main([])
    self.assertTrue(checkpoints.is_complete(f"{run_dir}/mib/step_1"))
    self.assertTrue(os.path.isfile(f"{run_dir}/mib/results/step_0.json"))   # the import, scored
    self.assertTrue(os.path.isfile(f"{run_dir}/mib/results/step_1.json"))
