"""PyTorch builds of the networks kdseg compares itself with (needs `pip install -e ".[torch]"`).

Rebuilt here from the facts of the reference repositories (their own code needs the inplace_abn
CUDA extension): the MiB reference's ResNet (fcdl94/MiB models/resnet.py, modules/residual.py)
with in-place ABN (BN scaled by |weight| + eps, then leaky ReLU 0.01; mapillary/inplace_abn
functions.py), its DeepLab-v3 head (modules/deeplab.py, global image pooling) and incremental
classifiers (segmentation_module.py), In-place ABN's pre-activation ResNeXt-101
(models/resnext.py), and the KD paper's DeepLab-v2 (four dilated 3x3 classifiers summed) on
torchvision's dilated ResNet (rebuilt with torchvision's layers and names). Module names are
the references', so their state dicts are what those repositories save. Used by
tools/compare_torch_forward.py (forward parity) and tools/benchmark.py --compare=torch (speed).
Import this before TensorFlow: the other order crashed in triton's import (seen when this file
still imported torchvision).

Norm layers of the MiB network (`NORMS`, the speed baselines of tools/benchmark.py):
  rebuild      this file's ABN: F.batch_norm with |weight| + eps, then leaky ReLU (two passes,
               not in place); numerically the reference's layer.
  inplace_abn  mapillary's InPlaceABN from its compiled extension (what a MiB user runs). Its CPU
               extension builds from the v1.1.0 source once setup.py's `torch.has_cuda` (gone
               from recent torch) reads `torch.cuda.is_available()`:
               SETUPTOOLS_SCM_PRETEND_VERSION=1.1.0 pip install --no-build-isolation <source>
               (with setuptools_scm, ninja); measured equal to `rebuild` (loss of a train step,
               eval logits within 1e-7) with torch 2.13 CPU.
  bn           PyTorch's own nn.BatchNorm2d followed by nn.LeakyReLU(0.01, inplace=True): the
               standard layers of the same shapes (oneDNN's batch norm), without the |weight|.
Nothing here imports torchvision: only torch.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

MIB_DILATIONS = {16: (1, 1, 1, 2), 8: (1, 1, 2, 4)}
MIB_ASPP_RATES = {16: (6, 12, 18), 8: (12, 24, 32)}
V2_RATES = {8: (6, 12, 18, 24), 16: (3, 6, 9, 12)}


class ABN(nn.BatchNorm2d):
  """In-place ABN: BN scaled by |weight| + eps (batch statistics when training), then leaky
  ReLU 0.01 or no activation."""

  def __init__(self, channels, activation="leaky_relu"):
    super().__init__(channels)
    self.activation = activation

  def forward(self, x):
    x = F.batch_norm(x, self.running_mean, self.running_var, self.weight.abs() + self.eps,
                     self.bias, self.training, self.momentum, self.eps)
    return F.leaky_relu(x, 0.01) if self.activation == "leaky_relu" else x


NORMS = ("rebuild", "inplace_abn", "bn")
_NORM = {"kind": "rebuild"}


def set_norm(kind: str) -> None:
  """The norm layer the MiB networks built after this call use (NORMS)."""
  if kind not in NORMS:
    raise ValueError(f"norm {kind!r}; choose one of {', '.join(NORMS)}")
  _NORM["kind"] = kind


def _bn_leaky(channels, activation="leaky_relu"):
  if activation == "identity":
    return nn.BatchNorm2d(channels)
  return nn.Sequential(nn.BatchNorm2d(channels), nn.LeakyReLU(0.01, inplace=True))


def norm_act(channels, activation="leaky_relu"):
  """BN + activation of the kind set_norm chose."""
  kind = _NORM["kind"]
  if kind == "inplace_abn":
    import inplace_abn  # pylint: disable=g-import-not-at-top
    return inplace_abn.InPlaceABN(channels, activation=activation, activation_param=0.01)
  if kind == "bn":
    return _bn_leaky(channels, activation)
  return ABN(channels, activation)


def conv(cin, cout, k, stride=1, dilation=1, groups=1):
  return nn.Conv2d(cin, cout, k, stride=stride, padding=dilation * (k - 1) // 2,
                   dilation=dilation, groups=groups, bias=False)


class ResidualBlock(nn.Module):
  """MiB's post-activation bottleneck: stride on the 3x3, leaky ReLU after the sum."""

  def __init__(self, cin, channels, stride, dilation):
    super().__init__()
    self.convs = nn.Sequential()
    self.convs.add_module("conv1", conv(cin, channels[0], 1))
    self.convs.add_module("bn1", norm_act(channels[0]))
    self.convs.add_module("conv2", conv(channels[0], channels[1], 3, stride, dilation))
    self.convs.add_module("bn2", norm_act(channels[1]))
    self.convs.add_module("conv3", conv(channels[1], channels[2], 1))
    self.convs.add_module("bn3", norm_act(channels[2], "identity"))
    if stride != 1 or cin != channels[2]:
      self.proj_conv = conv(cin, channels[2], 1, stride)
      self.proj_bn = norm_act(channels[2], "identity")

  def forward(self, x):
    residual = self.proj_bn(self.proj_conv(x)) if hasattr(self, "proj_conv") else x
    return F.leaky_relu(self.convs(x) + residual, 0.01)


class IdentityResidualBlock(nn.Module):
  """In-place ABN's pre-activation bottleneck: stride on the first 1x1, no activation after the
  sum."""

  def __init__(self, cin, channels, stride, dilation, groups):
    super().__init__()
    self.bn1 = norm_act(cin)
    self.convs = nn.Sequential()
    self.convs.add_module("conv1", conv(cin, channels[0], 1, stride))
    self.convs.add_module("bn2", norm_act(channels[0]))
    self.convs.add_module("conv2", conv(channels[0], channels[1], 3, 1, dilation, groups))
    self.convs.add_module("bn3", norm_act(channels[1]))
    self.convs.add_module("conv3", conv(channels[1], channels[2], 1))
    if stride != 1 or cin != channels[2]:
      self.proj_conv = conv(cin, channels[2], 1, stride)

  def forward(self, x):
    if hasattr(self, "proj_conv"):
      pre = self.bn1(x)
      shortcut = self.proj_conv(pre)
    else:   # an in-place ABN overwrites x: keep the shortcut's copy first
      shortcut = x.clone() if _NORM["kind"] == "inplace_abn" else x
      pre = self.bn1(x)
    return self.convs(pre) + shortcut


def _stages(net, structure, channels, dilations, make):
  cin = 64
  for mod, count in enumerate(structure):
    blocks = nn.Sequential()
    for index in range(count):
      d = dilations[mod]
      stride = 2 if d == 1 and index == 0 and mod > 0 else 1
      blocks.add_module(f"block{index + 1}", make(cin, channels, stride, d))
      cin = channels[-1]
    net.add_module(f"mod{mod + 2}", blocks)
    channels = [c * 2 for c in channels]


class ResNet(nn.Module):
  """MiB models/resnet.py with in-place ABN."""

  def __init__(self, structure=(3, 4, 23, 3), output_stride=16):
    super().__init__()
    self.mod1 = nn.Sequential()
    self.mod1.add_module("conv1", nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False))
    self.mod1.add_module("bn1", norm_act(64))
    self.mod1.add_module("pool1", nn.MaxPool2d(3, stride=2, padding=1))
    _stages(self, structure, (64, 64, 256), MIB_DILATIONS[output_stride],
            lambda cin, ch, s, d: ResidualBlock(cin, ch, s, d))

  def forward(self, x):
    for mod in (self.mod1, self.mod2, self.mod3, self.mod4, self.mod5):
      x = mod(x)
    return x


class ResNeXt(nn.Module):
  """inplace_abn models/resnext.py: input_3x3, 64 groups, base channels (128, 128, 256)."""

  def __init__(self, structure=(3, 4, 23, 3), output_stride=16):
    super().__init__()
    self.mod1 = nn.Sequential()
    self.mod1.add_module("conv1", nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False))
    self.mod1.add_module("bn1", norm_act(64))
    self.mod1.add_module("conv2", nn.Conv2d(64, 64, 3, padding=1, bias=False))
    self.mod1.add_module("bn2", norm_act(64))
    self.mod1.add_module("conv3", nn.Conv2d(64, 64, 3, padding=1, bias=False))
    self.mod1.add_module("pool", nn.MaxPool2d(3, stride=2, padding=1))
    _stages(self, structure, (128, 128, 256), MIB_DILATIONS[output_stride],
            lambda cin, ch, s, d: IdentityResidualBlock(cin, ch, s, d, 64))
    self.bn_out = norm_act(2048)

  def forward(self, x):
    for mod in (self.mod1, self.mod2, self.mod3, self.mod4, self.mod5):
      x = mod(x)
    return self.bn_out(x)


class DeeplabV3(nn.Module):
  """MiB modules/deeplab.py with global image pooling (its training-time branch)."""

  def __init__(self, cin, hidden=256, out=256, output_stride=16):
    super().__init__()
    rates = MIB_ASPP_RATES[output_stride]
    self.map_convs = nn.ModuleList([conv(cin, hidden, 1)] +
                                   [conv(cin, hidden, 3, 1, r) for r in rates])
    self.map_bn = norm_act(hidden * 4)
    self.global_pooling_conv = conv(cin, hidden, 1)
    self.global_pooling_bn = norm_act(hidden)
    self.red_conv = conv(hidden * 4, out, 1)
    self.pool_red_conv = conv(hidden, out, 1)
    self.red_bn = norm_act(out)

  def forward(self, x):
    out = self.red_conv(self.map_bn(torch.cat([m(x) for m in self.map_convs], dim=1)))
    pool = self.pool_red_conv(self.global_pooling_bn(
        self.global_pooling_conv(x.mean(dim=(2, 3), keepdim=True))))
    return self.red_bn(out + pool)


class Segmentation(nn.Module):
  """MiB's IncrementalSegmentationModule: body, DeepLab-v3 head, one 1x1 classifier per step,
  logits upsampled bilinearly (align_corners=False) to the input size."""

  def __init__(self, classes, structure=(3, 4, 23, 3), output_stride=16):
    super().__init__()
    self.body = ResNet(structure, output_stride)
    self.head = DeeplabV3(2048, output_stride=output_stride)
    self.cls = nn.ModuleList([nn.Conv2d(256, c, 1) for c in classes])

  def forward(self, x):
    features = self.head(self.body(x))
    logits = torch.cat([c(features) for c in self.cls], dim=1)
    return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


class Bottleneck(nn.Module):
  """torchvision's ResNet bottleneck (v1.5: stride on the 3x3), same module names, so a
  torchvision state dict loads: conv1/bn1, conv2/bn2, conv3/bn3, downsample; ReLU."""

  def __init__(self, cin, planes, stride, dilation):
    super().__init__()
    self.conv1, self.bn1 = conv(cin, planes, 1), nn.BatchNorm2d(planes)
    self.conv2, self.bn2 = conv(planes, planes, 3, stride, dilation), nn.BatchNorm2d(planes)
    self.conv3, self.bn3 = conv(planes, planes * 4, 1), nn.BatchNorm2d(planes * 4)
    self.relu = nn.ReLU(inplace=True)
    self.downsample = (nn.Sequential(conv(cin, planes * 4, 1, stride), nn.BatchNorm2d(planes * 4))
                       if stride != 1 or cin != planes * 4 else None)

  def forward(self, x):
    shortcut = x if self.downsample is None else self.downsample(x)
    out = self.relu(self.bn1(self.conv1(x)))
    out = self.relu(self.bn2(self.conv2(out)))
    return self.relu(self.bn3(self.conv3(out)) + shortcut)


class TorchvisionResNet(nn.Module):
  """torchvision.models.resnet{50,101}(replace_stride_with_dilation=...) without torchvision
  (PyPI's torchvision wheels link the CUDA torch): the same layers, names and dilation rule --
  a dilated layer's first block keeps the previous dilation, the rest take the new one."""

  def __init__(self, blocks=(3, 4, 23, 3), output_stride=8):
    super().__init__()
    self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
    self.bn1, self.relu = nn.BatchNorm2d(64), nn.ReLU(inplace=True)
    self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
    dilate = {8: (False, True, True), 16: (False, False, True)}[output_stride]
    cin, dilation = 64, 1
    for index, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks)):
      stride, previous = (1 if index == 0 else 2), dilation
      if index and dilate[index - 1]:
        dilation, stride = dilation * stride, 1
      layer = [Bottleneck(cin, planes, stride, previous)]
      layer += [Bottleneck(planes * 4, planes, 1, dilation) for _ in range(count - 1)]
      self.add_module(f"layer{index + 1}", nn.Sequential(*layer))
      cin = planes * 4

  def forward(self, x):
    x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
    return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class DeepLabV2(nn.Module):
  """The KD paper's DeepLab-v2: torchvision's ResNet dilated to output stride 8 (torchvision
  layout, ReLU), four dilated 3x3 classifiers (6, 12, 18, 24) summed, bilinear upsampling."""

  def __init__(self, num_classes, depth="resnet101", output_stride=8):
    super().__init__()
    self.body = TorchvisionResNet({"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}[depth],
                                  output_stride)
    self.branches = nn.ModuleList([nn.Conv2d(2048, num_classes, 3, padding=r, dilation=r)
                                   for r in V2_RATES[output_stride]])

  def forward(self, x):
    features = self.body(x)
    logits = sum(branch(features) for branch in self.branches)
    return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def freeze_statistics(network) -> int:
  """Every norm layer of `network` (BatchNorm2d, the ABN rebuild, mapillary's ABN and
  InPlaceABN) normalises with its running statistics and keeps them while its weight and bias
  still train: eval mode on those modules only (kdseg's --batch_norm=frozen). Returns how many."""
  count = 0
  for module in network.modules():
    if (isinstance(module, nn.modules.batchnorm._BatchNorm)  # pylint: disable=protected-access
        or type(module).__module__.startswith("inplace_abn")):
      module.eval()
      count += 1
  return count


def randomise_bn(model, generator) -> None:
  """BN statistics and affine parameters away from their (1, 0) defaults, so a wrong mapping
  of any of the four shows (signed weights: in-place ABN's |weight| matters)."""
  for module in model.modules():
    if isinstance(module, nn.BatchNorm2d):
      with torch.no_grad():
        module.running_mean.uniform_(-0.2, 0.2, generator=generator)
        module.running_var.uniform_(0.5, 1.5, generator=generator)
        module.weight.uniform_(-1.5, 1.5, generator=generator)
        module.bias.uniform_(-0.2, 0.2, generator=generator)
