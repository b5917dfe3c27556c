"""kdseg's forward on converted weights against PyTorch's own forward (needs `pip install -e
".[torch]"`; never a dependency of kdseg itself).

Each family: a PyTorch network with seeded random weights and non-trivial BN statistics (no
download), saved with torch.save, converted by tools/convert_torch_weights.py's code (which
reads the file without torch), run by kdseg on the same seeded input; reported: the largest
absolute difference of the outputs, and its ratio to the outputs' spread.

  torchvision-resnet101      torchvision.models.resnet101, ImageNet logits (kdseg backbone at
                             output stride 32 + global pooling + the converted fc)
  torchvision-resnext101     torchvision.models.resnext101_32x8d, ImageNet logits
  mib-resnet101-deeplabv3    the MiB reference's network rebuilt here from its facts (ResNet-101
                             with ResidualBlocks, in-place ABN = BN with |weight| + eps and leaky
                             ReLU 0.01, DeepLab-v3 head, one 1x1 classifier per step), saved as a
                             MiB step checkpoint ({"model_state": {"module.…"}}): per-pixel logits
  iabn-resnext101            In-place ABN's pre-activation ResNeXt-101 (64 groups, 3x3 stem),
                             backbone features at output stride 16

  python tools/compare_torch_forward.py --size=224 --output=benchmarks/torch_forward.json
"""
from __future__ import annotations

import json
import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags  # noqa: E402
import numpy as np  # noqa: E402

flags.DEFINE_integer("size", 224, "Input height and width.")
flags.DEFINE_list("families", ["torchvision-resnet101", "torchvision-resnext101",
                               "mib-resnet101-deeplabv3", "iabn-resnext101"],
                  "Which networks to compare.")
flags.DEFINE_string("output", None, "JSON file for the results (e.g. benchmarks/"
                    "torch_forward.json).")
flags.DEFINE_integer("seed", 0, "Seed of the weights and the input.")
FLAGS = flags.FLAGS

try:   # torch and torchvision before TensorFlow: the other order crashes in triton's import
  import torch  # noqa: E402
  from torch import nn  # noqa: E402
  import torch.nn.functional as F  # noqa: E402
  import torchvision  # noqa: E402
except ImportError:   # the module stays importable; main() says what to install
  torch = nn = F = torchvision = None


def randomise_bn(model, generator) -> None:
  """BN statistics and affine parameters away from their (1, 0) defaults, so a wrong mapping
  of any of the four shows."""
  for module in model.modules():
    if isinstance(module, nn.BatchNorm2d):
      with torch.no_grad():
        module.running_mean.uniform_(-0.2, 0.2, generator=generator)
        module.running_var.uniform_(0.5, 1.5, generator=generator)
        module.weight.uniform_(-1.5, 1.5, generator=generator)   # signed: |w| matters for iABN
        module.bias.uniform_(-0.2, 0.2, generator=generator)


# -- the reference networks, rebuilt from the facts of fcdl94/MiB and mapillary/inplace_abn ------
def _reference_modules():
  class ABN(nn.BatchNorm2d):
    """In-place ABN at inference: BN scaled by |weight| + eps, then leaky ReLU 0.01 or none."""

    def __init__(self, channels, activation="leaky_relu"):
      super().__init__(channels)
      self.activation = activation

    def forward(self, x):
      x = F.batch_norm(x, self.running_mean, self.running_var, self.weight.abs() + self.eps,
                       self.bias, False, 0.0, self.eps)
      return F.leaky_relu(x, 0.01) if self.activation == "leaky_relu" else x

  def conv(cin, cout, k, stride=1, dilation=1, groups=1):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=dilation * (k - 1) // 2,
                     dilation=dilation, groups=groups, bias=False)

  class ResidualBlock(nn.Module):   # post-activation bottleneck, stride on the 3x3
    def __init__(self, cin, channels, stride, dilation):
      super().__init__()
      self.convs = nn.Sequential()
      self.convs.add_module("conv1", conv(cin, channels[0], 1))
      self.convs.add_module("bn1", ABN(channels[0]))
      self.convs.add_module("conv2", conv(channels[0], channels[1], 3, stride, dilation))
      self.convs.add_module("bn2", ABN(channels[1]))
      self.convs.add_module("conv3", conv(channels[1], channels[2], 1))
      self.convs.add_module("bn3", ABN(channels[2], "identity"))
      if stride != 1 or cin != channels[2]:
        self.proj_conv = conv(cin, channels[2], 1, stride)
        self.proj_bn = ABN(channels[2], "identity")

    def forward(self, x):
      residual = self.proj_bn(self.proj_conv(x)) if hasattr(self, "proj_conv") else x
      return F.leaky_relu(self.convs(x) + residual, 0.01)

  class IdentityResidualBlock(nn.Module):   # pre-activation, stride on the first 1x1
    def __init__(self, cin, channels, stride, dilation, groups):
      super().__init__()
      self.bn1 = ABN(cin)
      self.convs = nn.Sequential()
      self.convs.add_module("conv1", conv(cin, channels[0], 1, stride))
      self.convs.add_module("bn2", ABN(channels[0]))
      self.convs.add_module("conv2", conv(channels[0], channels[1], 3, 1, dilation, groups))
      self.convs.add_module("bn3", ABN(channels[1]))
      self.convs.add_module("conv3", conv(channels[1], channels[2], 1))
      if stride != 1 or cin != channels[2]:
        self.proj_conv = conv(cin, channels[2], 1, stride)

    def forward(self, x):
      pre = self.bn1(x)
      shortcut = self.proj_conv(pre) if hasattr(self, "proj_conv") else x
      return self.convs(pre) + shortcut

  def stages(net, structure, channels, dilations, make):
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

  class ResNet(nn.Module):   # MiB models/resnet.py, output stride 16
    def __init__(self, structure=(3, 4, 23, 3)):
      super().__init__()
      self.mod1 = nn.Sequential()
      self.mod1.add_module("conv1", nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False))
      self.mod1.add_module("bn1", ABN(64))
      self.mod1.add_module("pool1", nn.MaxPool2d(3, stride=2, padding=1))
      stages(self, structure, (64, 64, 256), (1, 1, 1, 2),
             lambda cin, ch, s, d: ResidualBlock(cin, ch, s, d))

    def forward(self, x):
      for mod in (self.mod1, self.mod2, self.mod3, self.mod4, self.mod5):
        x = mod(x)
      return x

  class ResNeXt(nn.Module):   # inplace_abn models/resnext.py, input_3x3, 64 groups
    def __init__(self, structure=(3, 4, 23, 3)):
      super().__init__()
      self.mod1 = nn.Sequential()
      self.mod1.add_module("conv1", nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False))
      self.mod1.add_module("bn1", ABN(64))
      self.mod1.add_module("conv2", nn.Conv2d(64, 64, 3, padding=1, bias=False))
      self.mod1.add_module("bn2", ABN(64))
      self.mod1.add_module("conv3", nn.Conv2d(64, 64, 3, padding=1, bias=False))
      self.mod1.add_module("pool", nn.MaxPool2d(3, stride=2, padding=1))
      stages(self, structure, (128, 128, 256), (1, 1, 1, 2),
             lambda cin, ch, s, d: IdentityResidualBlock(cin, ch, s, d, 64))
      self.bn_out = ABN(2048)

    def forward(self, x):
      for mod in (self.mod1, self.mod2, self.mod3, self.mod4, self.mod5):
        x = mod(x)
      return self.bn_out(x)

  class DeeplabV3(nn.Module):   # MiB modules/deeplab.py at output stride 16, global pooling
    def __init__(self, cin, hidden=256, out=256):
      super().__init__()
      self.map_convs = nn.ModuleList([conv(cin, hidden, 1)] +
                                     [conv(cin, hidden, 3, 1, r) for r in (6, 12, 18)])
      self.map_bn = ABN(hidden * 4)
      self.global_pooling_conv = conv(cin, hidden, 1)
      self.global_pooling_bn = ABN(hidden)
      self.red_conv = conv(hidden * 4, out, 1)
      self.pool_red_conv = conv(hidden, out, 1)
      self.red_bn = ABN(out)

    def forward(self, x):
      out = self.red_conv(self.map_bn(torch.cat([m(x) for m in self.map_convs], dim=1)))
      pool = self.pool_red_conv(self.global_pooling_bn(
          self.global_pooling_conv(x.mean(dim=(2, 3), keepdim=True))))
      return self.red_bn(out + pool)

  class Segmentation(nn.Module):   # MiB's IncrementalSegmentationModule
    def __init__(self, classes):
      super().__init__()
      self.body, self.head = ResNet(), DeeplabV3(2048)
      self.cls = nn.ModuleList([nn.Conv2d(256, c, 1) for c in classes])

    def forward(self, x):
      features = self.head(self.body(x))
      logits = torch.cat([c(features) for c in self.cls], dim=1)
      return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

  return Segmentation, ResNeXt


# -- one comparison per family -------------------------------------------------------------------
def _spread(reference: np.ndarray) -> float:
  return float(reference.max() - reference.min())


def _result(reference: np.ndarray, ours: np.ndarray, what: str) -> dict:
  difference = float(np.abs(reference.astype(np.float64) - ours.astype(np.float64)).max())
  return {"output": what, "shape": list(reference.shape), "max_abs_difference": difference,
          "output_range": _spread(reference),
          "relative": difference / max(_spread(reference), 1e-12)}


def compare(family: str, size: int, seed: int, workdir: str) -> dict:
  import tensorflow as tf
  from kdseg.models import resnet, torch_io, torch_weights
  from kdseg.models.segmenter import ModelConfig, build_segmenter

  generator = torch.Generator().manual_seed(seed)
  torch.manual_seed(seed)
  images = torch.randn(1, 3, size, size, generator=generator)
  channels_last = images.permute(0, 2, 3, 1).numpy()
  path = os.path.join(workdir, f"{family}.pth")
  if family.startswith("torchvision"):
    network = (torchvision.models.resnet101 if family.endswith("resnet101")
               else torchvision.models.resnext101_32x8d)(weights=None)
    backbone_name = "resnet101_tv" if family.endswith("resnet101") else "resnext101_tv"
    randomise_bn(network, generator)
    network.eval()
    torch.save(network.state_dict(), path)
    with torch.no_grad():
      reference = network(images).numpy()
    state = torch_weights.state_dict(torch_io.load(path), "torchvision", path)
    backbone = resnet.build_resnet(backbone_name, output_stride=32)
    converted = torch_weights.convert(state, backbone_name, "torchvision", "bn", path)
    torch_weights.assign(torch_weights.backbone_layers(backbone), converted, path)
    features = backbone(channels_last, training=False).numpy().mean(axis=(1, 2))
    ours = features @ state["fc.weight"].T + state["fc.bias"]
    return _result(reference, ours, "ImageNet logits")
  segmentation, resnext = _reference_modules()
  if family == "mib-resnet101-deeplabv3":
    classes = [16, 1]
    network = segmentation(classes)
    randomise_bn(network, generator)
    network.eval()
    torch.save({"epoch": 29, "best_score": 0.0,
                "model_state": {f"module.{k}": v for k, v in network.state_dict().items()}},
               path)
    with torch.no_grad():
      reference = network(images).permute(0, 2, 3, 1).numpy()
    model = build_segmenter(ModelConfig("resnet101_iabn", 16, 256, "v3"), classes)
    state = torch_weights.state_dict(torch_io.load(path), "mib", path)
    converted = torch_weights.convert(state, "resnet101_iabn", "mib", "iabn", path)
    torch_weights.assign(torch_weights.segmenter_layers(model), converted, path)
    ours = model(tf.constant(channels_last), training=False)["logits"].numpy()
    return _result(reference, ours, "per-pixel logits")
  if family == "iabn-resnext101":
    network = resnext()
    randomise_bn(network, generator)
    network.eval()
    torch.save({"state_dict": {f"module.{k}": v for k, v in network.state_dict().items()}},
               path, _use_new_zipfile_serialization=False)   # the 2018 release's format
    with torch.no_grad():
      reference = network(images).permute(0, 2, 3, 1).numpy()
    backbone = resnet.build_resnet("resnext101_iabn", output_stride=16)
    state = torch_weights.state_dict(torch_io.load(path), "iabn", path)
    converted = torch_weights.convert(state, "resnext101_iabn", "iabn", "iabn", path)
    torch_weights.assign(torch_weights.backbone_layers(backbone), converted, path)
    ours = backbone(channels_last, training=False).numpy()
    return _result(reference, ours, "backbone features (OS16)")
  raise app.UsageError(f"--families: unknown {family}")


def main(argv):
  del argv
  if torch is None:
    raise app.UsageError('PyTorch is not installed: pip install -e ".[torch]"')
  torch.set_num_threads(os.cpu_count() or 1)
  import tensorflow as tf
  from kdseg import machine
  results = {"torch": torch.__version__, "tensorflow": tf.__version__,
             "machine": machine.describe(), "size": FLAGS.size, "seed": FLAGS.seed,
             "families": {}}
  with tempfile.TemporaryDirectory() as workdir:
    for family in FLAGS.families:
      result = compare(family, FLAGS.size, FLAGS.seed, workdir)
      results["families"][family] = result
      print(f"{family:26s} {result['output']:26s} max |diff| {result['max_abs_difference']:.3g}"
            f"  (output range {result['output_range']:.3g}, relative "
            f"{result['relative']:.2g})", flush=True)
  if FLAGS.output:
    with open(FLAGS.output, "w") as handle:
      json.dump(results, handle, indent=1)
    print(f"written: {FLAGS.output}")


if __name__ == "__main__":
  app.run(main)
