"""Dilated ResNet backbones (channels-last), output stride 8 or 16.

Bottleneck variants (resnet50, resnet101) use keras.applications' layer names and ordering
(conv1_conv, conv2_block1_1_conv, ...), so ImageNet weights saved from keras.applications map onto
them by name. Strides are replaced by dilation in the last stage (OS16) or last two stages (OS8),
as DeepLab does. `tiny` and `resnet18` use basic blocks; `tiny` is for tests and the shapes demo.
"""
from __future__ import annotations

import dataclasses

import keras
from keras import layers

from kdseg.models.layers import AtrousConv2D
from kdseg.models.recompute import BatchNormalization

BN_EPSILON = 1.001e-5
# PyTorch BatchNorm momentum 0.1 (the references) is Keras momentum 0.9; Keras defaults to 0.99.
BN_MOMENTUM = 0.9


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
  block: str                      # "basic" or "bottleneck"
  blocks: tuple[int, int, int, int]
  widths: tuple[int, int, int, int]
  stem_width: int
  stem_kernel: int


SPECS = {
    "tiny": ResNetSpec("basic", (1, 1, 1, 1), (16, 32, 64, 96), 16, 3),
    "resnet18": ResNetSpec("basic", (2, 2, 2, 2), (64, 128, 256, 512), 64, 7),
    "resnet50": ResNetSpec("bottleneck", (3, 4, 6, 3), (64, 128, 256, 512), 64, 7),
    "resnet101": ResNetSpec("bottleneck", (3, 4, 23, 3), (64, 128, 256, 512), 64, 7),
}


def _conv_bn(x, filters, kernel, stride, dilation, name, relu=True):
  x = AtrousConv2D(filters, kernel, strides=stride, dilation_rate=dilation, padding="same",
                   name=f"{name}_conv")(x)
  x = BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
  return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def _bottleneck(x, filters, stride, dilation, name, shortcut_conv):
  shortcut = x
  if shortcut_conv:
    shortcut = _conv_bn(x, 4 * filters, 1, stride, 1, f"{name}_0", relu=False)
  x = _conv_bn(x, filters, 1, stride, 1, f"{name}_1")
  x = _conv_bn(x, filters, 3, 1, dilation, f"{name}_2")
  x = _conv_bn(x, 4 * filters, 1, 1, 1, f"{name}_3", relu=False)
  x = layers.Add(name=f"{name}_add")([shortcut, x])
  return layers.Activation("relu", name=f"{name}_out")(x)


def _basic(x, filters, stride, dilation, name, shortcut_conv):
  shortcut = x
  if shortcut_conv:
    shortcut = _conv_bn(x, filters, 1, stride, 1, f"{name}_0", relu=False)
  x = _conv_bn(x, filters, 3, stride, dilation, f"{name}_1")
  x = _conv_bn(x, filters, 3, 1, dilation, f"{name}_2", relu=False)
  x = layers.Add(name=f"{name}_add")([shortcut, x])
  return layers.Activation("relu", name=f"{name}_out")(x)


def stage_strides(output_stride: int) -> tuple[list[int], list[int]]:
  """(strides, dilations) of stages conv2..conv5 for the given output stride."""
  if output_stride == 16:
    return [1, 2, 2, 1], [1, 1, 1, 2]
  if output_stride == 8:
    return [1, 2, 1, 1], [1, 1, 2, 4]
  if output_stride == 32:
    return [1, 2, 2, 2], [1, 1, 1, 1]
  raise ValueError(f"--output_stride={output_stride}: choose 8, 16 or 32.")


def segment_ends(backbone: keras.Model) -> list[str]:
  """Names of the layers ending the stem and each residual block, in order (recompute segments)."""
  return ["pool1_pool"] + [layer.name for layer in backbone.layers
                           if layer.name.startswith("conv") and layer.name.endswith("_out")]


def build_resnet(depth: str, output_stride: int = 16, name: str = "backbone") -> keras.Model:
  """Functional backbone: [B, H, W, 3] float32 -> [B, H/os, W/os, C] features."""
  if depth not in SPECS:
    raise ValueError(f"--backbone={depth!r} is unknown; choose one of {', '.join(SPECS)}.")
  spec = SPECS[depth]
  block = _bottleneck if spec.block == "bottleneck" else _basic
  expansion = 4 if spec.block == "bottleneck" else 1
  strides, dilations = stage_strides(output_stride)
  inputs = keras.Input((None, None, 3), name="images")
  if spec.stem_kernel == 7:
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = layers.Conv2D(spec.stem_width, 7, strides=2, name="conv1_conv")(x)
  else:
    x = layers.Conv2D(spec.stem_width, spec.stem_kernel, strides=2, padding="same",
                      name="conv1_conv")(inputs)
  x = BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="conv1_bn")(x)
  x = layers.Activation("relu", name="conv1_relu")(x)
  x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
  x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
  in_channels = spec.stem_width
  for stage, (count, width, stride, dilation) in enumerate(
      zip(spec.blocks, spec.widths, strides, dilations), start=2):
    for index in range(count):
      first = index == 0
      x = block(x, width, stride if first else 1, dilation, f"conv{stage}_block{index + 1}",
                shortcut_conv=first and (stride != 1 or in_channels != width * expansion))
      in_channels = width * expansion
  return keras.Model(inputs, x, name=name)
