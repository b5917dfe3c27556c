"""kdseg's forward on converted weights against PyTorch's own forward (needs `pip install -e
".[torch]"`; never a dependency of kdseg itself).

Each family: a PyTorch network with seeded random weights and non-trivial BN statistics (no
download), saved with torch.save, converted by tools/convert_torch_weights.py's code (which
reads the file without torch), run by kdseg on the same seeded input; reported: the largest
absolute difference of the outputs, and its ratio to the outputs' spread.

  torchvision-resnet101      torchvision.models.resnet101, ImageNet logits (kdseg backbone at
                             output stride 32 + global pooling + the converted fc)
  torchvision-resnext101     torchvision.models.resnext101_32x8d, ImageNet logits
  mib-resnet101-deeplabv3    the MiB reference's network rebuilt from its facts (tools/torch_networks.py) (ResNet-101
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

try:   # before TensorFlow: the other order crashes in triton's import
  import torch  # noqa: E402
  import torchvision  # noqa: E402
  import torch_networks  # noqa: E402  (tools/torch_networks.py)
except ImportError:   # the module stays importable; main() says what to install
  torch = torchvision = torch_networks = None


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
    torch_networks.randomise_bn(network, generator)
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
  if family == "mib-resnet101-deeplabv3":
    classes = [16, 1]
    network = torch_networks.Segmentation(classes)
    torch_networks.randomise_bn(network, generator)
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
    network = torch_networks.ResNeXt()
    torch_networks.randomise_bn(network, generator)
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
