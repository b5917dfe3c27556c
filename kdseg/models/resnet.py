"""Dilated ResNet and ResNeXt backbones (channels-last), output stride 8 or 16.

Three layouts, each named so that weights map onto it by layer name:
  keras    resnet50, resnet101 (and the basic-block tiny, resnet18): keras.applications' layers
           and names (conv1_conv, conv2_block1_1_conv, ...; stride on the first 1x1 convolution,
           biased convolutions, ReLU), so its ImageNet files load by name.
  torch    PyTorch's bottleneck (torchvision's ResNet "v1.5" and the MiB reference's
           models/resnet.py + modules/residual.py ResidualBlock): stride on the 3x3
           convolution, symmetric zero padding, convolutions without bias, BN epsilon 1e-5, a
           max pool padded with -inf. resnet50_tv, resnet101_tv, resnext101_tv (torchvision's
           ResNeXt-101 32x8d: 32 groups, 3x3 widths 256..2048) use ReLU; resnet50_iabn and
           resnet101_iabn are the MiB reference's backbone: leaky ReLU (slope 0.01) after every
           BN that has an activation (norm_act = in-place ABN), and after each residual sum.
  preact   resnext101_iabn: the In-place ABN ImageNet release's ResNeXt-101 (models/resnext.py
           of mapillary/inplace_abn, which the MiB paper uses for Cityscapes): identity-mapping
           blocks (BN + leaky ReLU before each block, stride on the first 1x1 convolution, 64
           groups, 3x3 widths 128..1024, outputs 256..2048), a stem of three 3x3 convolutions,
           and a final BN + leaky ReLU.
  deeplab  resnet101_deeplab: DeepLab-v2's ResNet-101 as the KD paper's code builds it
           (LTTM/IL-SemSegm codes/LD1/network.py, on DrSleep/tensorflow-deeplab-resnet's
           checkpoint of the Caffe model pretrained on MS-COCO): stride on the first 1x1
           convolution, convolutions without bias, TensorFlow "SAME" padding everywhere (the 7x7
           stem and the max pool pad one pixel less on the top/left than on the bottom/right
           when a side is even), BN epsilon 1e-3 (TF1's batch_norm default), ReLU. Its weights
           load from that TF1 checkpoint (kdseg/models/tf1_weights.py).
Layer names are shared (conv1_*, conv<stage>_block<i>_<k>_conv/_bn, ..._out at the end of each
block), so freezing (conv1_/conv2_ prefixes), recompute segments and weight conversion
(kdseg/models/torch_weights.py) work on every layout. Strides are replaced by dilation in the
last stage (OS16) or last two stages (OS8), in every block of those stages, as the MiB
reference does (torchvision's replace_stride_with_dilation keeps the previous dilation in a
stage's first block; kdseg, like MiB, does not).
"""
from __future__ import annotations

import dataclasses

import keras
from keras import layers

from kdseg.models.layers import AtrousConv2D, TorchMaxPool2D
from kdseg.models.recompute import BatchNormalization

BN_EPSILON = 1.001e-5            # keras.applications
TORCH_BN_EPSILON = 1e-5          # PyTorch BatchNorm2d and in-place ABN
TF1_BN_EPSILON = 1e-3            # tf.contrib.layers.batch_norm / slim (the KD paper's code)
LEAKY_SLOPE = 0.01               # in-place ABN's activation_param in the references
# PyTorch BatchNorm momentum 0.1 (the references) is Keras momentum 0.9; Keras defaults to 0.99.
BN_MOMENTUM = 0.9


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
  block: str                      # "basic" or "bottleneck"
  blocks: tuple[int, int, int, int]
  widths: tuple[int, int, int, int]       # channels inside a block (its 3x3 convolution)
  stem_width: int
  stem_kernel: int                # 7, or 3 (one 3x3 convolution; three with layout "preact")
  layout: str = "keras"           # "keras", "torch", "preact" or "deeplab" (module docstring)
  activation: str = "relu"        # or "leaky" (slope 0.01)
  groups: int = 1                 # of the 3x3 convolutions (ResNeXt)
  outputs: tuple[int, int, int, int] | None = None   # block outputs (default: 4 x widths)

  def output_channels(self, stage: int) -> int:
    if self.outputs is not None:
      return self.outputs[stage]
    return self.widths[stage] * (4 if self.block == "bottleneck" else 1)


_R50, _R101 = (3, 4, 6, 3), (3, 4, 23, 3)
_WIDTHS = (64, 128, 256, 512)
SPECS = {
    "tiny": ResNetSpec("basic", (1, 1, 1, 1), (16, 32, 64, 96), 16, 3),
    "resnet18": ResNetSpec("basic", (2, 2, 2, 2), (64, 128, 256, 512), 64, 7),
    "resnet50": ResNetSpec("bottleneck", _R50, _WIDTHS, 64, 7),
    "resnet101": ResNetSpec("bottleneck", _R101, _WIDTHS, 64, 7),
    "resnet50_tv": ResNetSpec("bottleneck", _R50, _WIDTHS, 64, 7, layout="torch"),
    "resnet101_tv": ResNetSpec("bottleneck", _R101, _WIDTHS, 64, 7, layout="torch"),
    "resnext101_tv": ResNetSpec("bottleneck", _R101, (256, 512, 1024, 2048), 64, 7,
                                layout="torch", groups=32, outputs=(256, 512, 1024, 2048)),
    "resnet50_iabn": ResNetSpec("bottleneck", _R50, _WIDTHS, 64, 7, layout="torch",
                                activation="leaky"),
    "resnet101_iabn": ResNetSpec("bottleneck", _R101, _WIDTHS, 64, 7, layout="torch",
                                 activation="leaky"),
    "resnext101_iabn": ResNetSpec("bottleneck", _R101, (128, 256, 512, 1024), 64, 3,
                                  layout="preact", activation="leaky", groups=64,
                                  outputs=(256, 512, 1024, 2048)),
    "resnet101_deeplab": ResNetSpec("bottleneck", _R101, _WIDTHS, 64, 7, layout="deeplab"),
}
# Backbones whose ImageNet weights come from PyTorch files (tools/convert_torch_weights.py).
TORCH_BACKBONES = tuple(name for name, spec in SPECS.items()
                        if spec.layout in ("torch", "preact"))
# Backbones whose weights come from a TF1 checkpoint (kdseg/models/tf1_weights.py).
TF1_BACKBONES = tuple(name for name, spec in SPECS.items() if spec.layout == "deeplab")


class _Builder:
  """Layer factories of one spec: padding, bias, BN epsilon and activation by layout."""

  def __init__(self, spec: ResNetSpec):
    self.spec = spec
    self.torch = spec.layout in ("torch", "preact")
    self.deeplab = spec.layout == "deeplab"
    self.epsilon = (TORCH_BN_EPSILON if self.torch else
                    TF1_BN_EPSILON if self.deeplab else BN_EPSILON)
    self.biased = spec.layout == "keras"

  def act(self, x, name):
    if self.spec.activation == "leaky":
      return layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=name)(x)
    return layers.Activation("relu", name=name)(x)

  def bn(self, x, name):
    return BatchNormalization(epsilon=self.epsilon, momentum=BN_MOMENTUM, name=name)(x)

  def conv(self, x, filters, kernel, stride, dilation, name, groups=1):
    padding = "same"
    if self.torch and kernel > 1 and stride > 1:   # PyTorch pads both sides alike
      x = layers.ZeroPadding2D(dilation * (kernel - 1) // 2, name=f"{name}_pad")(x)
      padding = "valid"
    return AtrousConv2D(filters, kernel, strides=stride, dilation_rate=dilation, padding=padding,
                        groups=groups, use_bias=self.biased, name=name)(x)

  def conv_bn(self, x, filters, kernel, stride, dilation, name, relu=True, groups=1):
    x = self.conv(x, filters, kernel, stride, dilation, f"{name}_conv", groups)
    x = self.bn(x, f"{name}_bn")
    return self.act(x, f"{name}_{'act' if self.torch else 'relu'}") if relu else x


def _bottleneck(b: _Builder, x, width, out, stride, dilation, name, shortcut_conv):
  """Post-activation bottleneck: keras layout strides the first 1x1, torch layout the 3x3."""
  shortcut = x
  if shortcut_conv:
    shortcut = b.conv_bn(x, out, 1, stride, 1, f"{name}_0", relu=False)
  first, middle = (1, stride) if b.torch else (stride, 1)
  x = b.conv_bn(x, width, 1, first, 1, f"{name}_1")
  x = b.conv_bn(x, width, 3, middle, dilation, f"{name}_2", groups=b.spec.groups)
  x = b.conv_bn(x, out, 1, 1, 1, f"{name}_3", relu=False)
  x = layers.Add(name=f"{name}_add")([shortcut, x])
  return b.act(x, f"{name}_out")


def _preact_bottleneck(b: _Builder, x, width, out, stride, dilation, name, shortcut_conv):
  """Identity-mapping bottleneck (In-place ABN's IdentityResidualBlock): BN + activation of the
  input feeds the projection and the 1x1 (which carries the stride); no activation after the
  sum."""
  pre = b.act(b.bn(x, f"{name}_preact_bn"), f"{name}_preact_act")
  shortcut = b.conv(pre, out, 1, stride, 1, f"{name}_0_conv") if shortcut_conv else x
  y = b.conv_bn(pre, width, 1, stride, 1, f"{name}_1")
  y = b.conv_bn(y, width, 3, 1, dilation, f"{name}_2", groups=b.spec.groups)
  y = b.conv(y, out, 1, 1, 1, f"{name}_3_conv")
  return layers.Add(name=f"{name}_out")([shortcut, y])


def _basic(b: _Builder, x, width, out, stride, dilation, name, shortcut_conv):
  shortcut = x
  if shortcut_conv:
    shortcut = b.conv_bn(x, out, 1, stride, 1, f"{name}_0", relu=False)
  x = b.conv_bn(x, width, 3, stride, dilation, f"{name}_1")
  x = b.conv_bn(x, out, 3, 1, dilation, f"{name}_2", relu=False)
  x = layers.Add(name=f"{name}_add")([shortcut, x])
  return b.act(x, f"{name}_out")


def _stem(b: _Builder, inputs):
  spec = b.spec
  if spec.layout == "preact":   # three 3x3 convolutions; the third has no BN (the blocks' has)
    x = b.conv_bn(inputs, spec.stem_width, 3, 2, 1, "conv1")
    x = b.conv_bn(x, spec.stem_width, 3, 1, 1, "conv1_2")
    x = b.conv(x, spec.stem_width, 3, 1, 1, "conv1_3_conv")
    return TorchMaxPool2D(3, 2, 1, name="pool1_pool")(x)
  if b.deeplab:   # TensorFlow "SAME" padding, as the reference's tf.nn.conv2d / max_pool
    x = layers.Conv2D(spec.stem_width, 7, strides=2, padding="same", use_bias=False,
                      name="conv1_conv")(inputs)
    x = b.act(b.bn(x, "conv1_bn"), "conv1_relu")
    return layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_pool")(x)
  if spec.stem_kernel == 7:
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inputs)
    x = layers.Conv2D(spec.stem_width, 7, strides=2, use_bias=not b.torch, name="conv1_conv")(x)
  else:
    x = layers.Conv2D(spec.stem_width, spec.stem_kernel, strides=2, padding="same",
                      name="conv1_conv")(inputs)
  x = b.act(b.bn(x, "conv1_bn"), "conv1_act" if b.torch else "conv1_relu")
  if b.torch:
    return TorchMaxPool2D(3, 2, 1, name="pool1_pool")(x)
  x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
  return layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)


def stage_strides(output_stride: int) -> tuple[list[int], list[int]]:
  """(strides, dilations) of stages conv2..conv5 for the given output stride."""
  if output_stride == 16:
    return [1, 2, 2, 1], [1, 1, 1, 2]
  if output_stride == 8:
    return [1, 2, 1, 1], [1, 1, 2, 4]
  if output_stride == 32:
    return [1, 2, 2, 2], [1, 1, 1, 1]
  raise ValueError(f"--output_stride={output_stride}: choose 8, 16 or 32.")


def stage_ends(backbone: keras.Model) -> list[str]:
  """Names of the layers whose outputs end stages conv2..conv5 before their last activation: the
  residual sum of each stage's last block (`_add`; `_out` in the pre-activation layout, which
  has no activation after the sum). PLOP's POD distils these (CVPR2021_PLOP
  modules/residual.py:136-137 returns the sum before the activation of a stage's last block;
  models/resnet.py:118-139 collects one per stage)."""
  names = {layer.name for layer in backbone.layers}
  ends = []
  for stage in range(2, 6):
    last = max(int(name.split("_")[1][len("block"):]) for name in names
               if name.startswith(f"conv{stage}_block"))
    block = f"conv{stage}_block{last}"
    ends.append(f"{block}_add" if f"{block}_add" in names else f"{block}_out")
  return ends


def segment_ends(backbone: keras.Model) -> list[str]:
  """Names of the layers ending the stem, each residual block (and, before it, each stage's
  residual sum, stage_ends) and (pre-activation layouts) the final BN + activation, in order
  (recompute segments: every stage_ends output is a segment's output)."""
  stages = set(stage_ends(backbone))
  ends = ["pool1_pool"] + [layer.name for layer in backbone.layers
                           if layer.name in stages or (layer.name.startswith("conv")
                                                       and layer.name.endswith("_out"))]
  if backbone.layers[-1].name != ends[-1]:
    ends.append(backbone.layers[-1].name)
  return ends


def build_resnet(depth: str, output_stride: int = 16, name: str = "backbone") -> keras.Model:
  """Functional backbone: [B, H, W, 3] float32 -> [B, H/os, W/os, C] features."""
  if depth not in SPECS:
    raise ValueError(f"--backbone={depth!r} is unknown; choose one of {', '.join(SPECS)}.")
  spec = SPECS[depth]
  builder = _Builder(spec)
  if spec.layout == "preact":
    block = _preact_bottleneck
  else:
    block = _bottleneck if spec.block == "bottleneck" else _basic
  strides, dilations = stage_strides(output_stride)
  inputs = keras.Input((None, None, 3), name="images")
  x = _stem(builder, inputs)
  in_channels = spec.stem_width
  for stage, (count, width, stride, dilation) in enumerate(
      zip(spec.blocks, spec.widths, strides, dilations)):
    out = spec.output_channels(stage)
    for index in range(count):
      first = index == 0
      x = block(builder, x, width, out, stride if first else 1, dilation,
                f"conv{stage + 2}_block{index + 1}",
                shortcut_conv=first and (stride != 1 or in_channels != out))
      in_channels = out
  if spec.layout == "preact":
    x = builder.act(builder.bn(x, "post_bn"), "post_act")
  return keras.Model(inputs, x, name=name)
