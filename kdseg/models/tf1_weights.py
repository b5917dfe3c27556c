"""TF1 checkpoints of DeepLab-v2 ResNet-101 in the KD paper's names -> kdseg layers.

The KD paper's code (LTTM/IL-SemSegm codes/LD1/network.py) starts from deeplab_resnet_init.ckpt,
the Caffe DeepLab-v2 ResNet-101 pretrained on MS-COCO converted to a TF1 checkpoint by
DrSleep/tensorflow-deeplab-resnet, and saves its steps as TF1 checkpoints in the same names:

  conv1/weights, bn_conv1/{gamma,beta,moving_mean,moving_variance}
  res<S><B>_branch<K>/weights, bn<S><B>_branch<K>/...   S = 2..5; K = 1 (projection), 2a, 2b, 2c;
        B = a, b, c in stages 2 and 5 (three blocks), a, b1, b2, ... in stages 3 and 4
  fc1_voc12_c<k>/{weights,biases}   k = 0..3: DeepLab-v2's four dilated 3x3 classifiers (rates
        6, 12, 18, 24), one output per dataset class id (21 for VOC), summed

Kernels are HWIO in both frameworks; BN variables keep their meaning (kdseg's resnet101_deeplab
has TF1's epsilon 1e-3). A step checkpoint also holds the optimizer's slots and the global step,
which are not weights and are skipped. The classifier's outputs are dataset class ids; kdseg's
heads hold them in the task's class order, so each head takes the columns of its classes.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from kdseg import fs
from kdseg.models.conversion import ConversionError, assign, backbone_layers

BN_SLOTS = ("gamma", "beta", "moving_mean", "moving_variance")
BRANCHES = {0: "1", 1: "2a", 2: "2b", 3: "2c"}   # kdseg's block convolution index -> Caffe's
CLASSIFIER = "fc1_voc12_c{branch}"


class Tf1CheckpointError(ValueError):
  """A file that is not a readable TF1 checkpoint."""


def block_name(stage: int, block: int, blocks_in_stage: int) -> str:
  """Caffe's ResNet-101 block names: 2a, 2b, 2c; 3a, 3b1, 3b2, 3b3; 4a, 4b1..4b22; 5a, 5b, 5c."""
  if block == 1:
    return f"{stage}a"
  if blocks_in_stage > 3:
    return f"{stage}b{block - 1}"
  return f"{stage}{'abc'[block - 1]}"


def source_scope(layer_name: str, blocks: tuple[int, ...]) -> str:
  """The TF1 variable scope of a kdseg backbone layer (conv1_conv -> conv1, conv1_bn -> bn_conv1,
  conv4_block23_3_bn -> bn4b22_branch2c)."""
  if layer_name == "conv1_conv":
    return "conv1"
  if layer_name == "conv1_bn":
    return "bn_conv1"
  stage_part, block_part, index, kind = layer_name.split("_")
  stage, block = int(stage_part[len("conv"):]), int(block_part[len("block"):])
  name = f"{block_name(stage, block, blocks[stage - 2])}_branch{BRANCHES[int(index)]}"
  return f"res{name}" if kind == "conv" else f"bn{name}"


def open_checkpoint(path: str):
  """A reader of the TF1 checkpoint at `path` (a V2 prefix with its .index, or a V1 file)."""
  try:
    return tf.compat.v1.train.NewCheckpointReader(path)
  except (tf.errors.OpError, ValueError) as error:
    raise Tf1CheckpointError(f"{path} is not a readable TF1 checkpoint ({str(error)[:200]}). "
                             "Give its prefix (the path without .index / .data-*).") from None


def exists(path: str) -> bool:
  """Whether `path` names a checkpoint: a V1 file or a V2 prefix."""
  return fs.isfile(path) or fs.isfile(path + ".index")


def _tensor(reader, name: str, path: str) -> np.ndarray:
  if not reader.has_tensor(name):
    raise ConversionError(f"{path} has no tensor {name}: is it DeepLab-v2 ResNet-101 in the KD "
                          "code's / DrSleep's names (deeplab_resnet_init.ckpt or a step "
                          "checkpoint of LTTM/IL-SemSegm)?")
  return np.asarray(reader.get_tensor(name), np.float32)


def convert_backbone(reader, backbone, path: str) -> dict:
  """{'backbone/<layer>': {slot: (array, tensor name)}} for every weighted layer of `backbone`
  (kdseg's resnet101_deeplab), read from the checkpoint."""
  blocks = _blocks(backbone)
  converted = {}
  for key, layer in backbone_layers(backbone).items():
    scope = source_scope(layer.name, blocks)
    if layer.name.endswith("_bn"):
      names = {slot: f"{scope}/{slot}" for slot in BN_SLOTS}
    else:
      names = {"kernel": f"{scope}/weights"}
    converted[key] = {slot: (_tensor(reader, name, path), name) for slot, name in names.items()}
  return converted


def _blocks(backbone) -> tuple[int, ...]:
  """Blocks per stage (conv2..conv5) of a kdseg backbone, from its layer names."""
  counts = {}
  for layer in backbone.layers:
    parts = layer.name.split("_")
    if len(parts) >= 2 and parts[0][4:].isdigit() and parts[1].startswith("block"):
      stage = int(parts[0][4:])
      counts[stage] = max(counts.get(stage, 0), int(parts[1][len("block"):]))
  return tuple(counts[s] for s in sorted(counts))


def classifier_columns(reader, path: str) -> int:
  """The number of outputs of the checkpoint's DeepLab-v2 classifier (dataset class ids)."""
  return _tensor(reader, CLASSIFIER.format(branch=0) + "/weights", path).shape[-1]


def convert_classifier(reader, classifier, columns: list[int], path: str) -> dict:
  """{'classifier/branch_<k>/head_<t>': {...}}: the columns of each head's classes (dataset
  class ids `columns`, in the model's output order) of fc1_voc12_c<k>."""
  width = classifier_columns(reader, path)
  if max(columns) >= width:
    raise ConversionError(f"{path} classifies {width} class ids; the task needs id "
                          f"{max(columns)}. Is it a checkpoint of this dataset?")
  converted = {}
  for index, branch in enumerate(classifier.branches):
    scope = CLASSIFIER.format(branch=index)
    kernel = _tensor(reader, f"{scope}/weights", path)
    bias = _tensor(reader, f"{scope}/biases", path)
    start = 0
    for step, head in enumerate(branch.heads):
      ids = columns[start:start + head.filters]
      converted[f"classifier/branch_{index}/head_{step}"] = {
          "kernel": (kernel[..., ids], f"{scope}/weights[..., {ids}]"),
          "bias": (bias[ids], f"{scope}/biases[{ids}]")}
      start += head.filters
  return converted


def segmenter_layers(model) -> dict:
  """Every weighted layer of a DeepLab-v2 Segmenter by its conversion path."""
  if model.config.head != "v2":
    raise ConversionError(f"the KD paper's checkpoints are DeepLab-v2 networks; --head="
                          f"{model.config.head} cannot hold them (use --head=v2).")
  layers = backbone_layers(model.backbone)
  for index, branch in enumerate(model.classifier.branches):
    for step, head in enumerate(branch.heads):
      layers[f"classifier/branch_{index}/head_{step}"] = head
  return layers


def load_backbone(backbone, path: str) -> int:
  """The checkpoint's backbone weights into `backbone` (kdseg's resnet101_deeplab)."""
  converted = convert_backbone(open_checkpoint(path), backbone, path)
  return assign(backbone_layers(backbone), converted, path)


def load_segmenter(model, path: str, columns: list[int]) -> int:
  """A whole step checkpoint into a DeepLab-v2 `model`; `columns`: the dataset class id of each
  of the model's outputs, in order."""
  reader = open_checkpoint(path)
  converted = convert_backbone(reader, model.backbone, path)
  converted.update(convert_classifier(reader, model.classifier, columns, path))
  return assign(segmenter_layers(model), converted, path)
