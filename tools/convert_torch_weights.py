"""PyTorch checkpoints -> kdseg weights, without PyTorch (kdseg.models.torch_io reads the files).

ImageNet backbones (write a .weights.h5 for --backbone_weights):

  python tools/convert_torch_weights.py --source=torchvision --backbone=resnet101_tv \\
      --torch_file=resnet101-63fe2227.pth --weights_output=weights/resnet101_tv.weights.h5
  python tools/convert_torch_weights.py --source=iabn --backbone=resnet101_iabn \\
      --torch_file=pretrained/resnet101_iabn_sync.pth.tar --weights_output=weights/resnet101_iabn.weights.h5

A MiB or PLOP step checkpoint (checkpoints/step/<task>-<dataset>_<name>_<t>.pth) as step t of a
kdseg run directory, for the run's one --method; kdseg.train then continues from it:

  python tools/convert_torch_weights.py --source=mib --torch_file=15-5s-voc_MiB_0.pth \\
      --flagfile=flags/voc_15_1.cfg --method=mib --step=0 --data_root=...
  python -m kdseg.train --flagfile=flags/voc_15_1.cfg --method=mib --data_root=...

The step import records the run directory as kdseg.train would (same flags, same guard), checks
the checkpoint's classifier heads against the task's classes per step, converts every tensor
(an unknown, missing or mis-shaped one is an error naming it) and writes the step's finished
model. It never replaces a finished step. --norm=iabn (default for iabn, mib, plop) turns
In-place ABN's |weight| + eps scale into BN's gamma; use --norm=bn for checkpoints trained with
plain BN (torchvision, or a reference run with --norm_act=abn/std).
"""
from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from kdseg import atomic, config, fs  # noqa: E402  (config defines kdseg's flags)
from kdseg.models import resnet, torch_io, torch_weights  # noqa: E402
from kdseg.run import cli, imports  # noqa: E402

flags.DEFINE_string("torch_file", None, "The PyTorch checkpoint (.pth / .pth.tar, zip or legacy "
                    "format).")
flags.DEFINE_enum("source", None, list(torch_weights.SOURCES),
                  "Who wrote it: torchvision or iabn (ImageNet backbones), mib or plop (a step "
                  "checkpoint of those repositories).")
flags.DEFINE_enum("norm", None, list(torch_weights.NORMS),
                  "How its BN weights scale: iabn (|weight| + 1e-5, in-place ABN; default for "
                  "iabn, mib, plop) or bn (weight; default for torchvision).")
flags.DEFINE_string("weights_output", None, "Backbone weights to write (.weights.h5), for iabn and "
                    "torchvision sources.")
FLAGS = flags.FLAGS


ConvertError = imports.StepImportError


def read_state(path: str, source: str) -> dict:
  return torch_weights.state_dict(torch_io.load(path), source, path)


def convert_backbone(path: str, source: str, backbone: str, norm: str, output: str) -> int:
  """Writes the converted ImageNet backbone to `output`; returns the number of layers."""
  if not output.endswith(".weights.h5"):
    raise ConvertError(f"--weights_output={output}: name it <something>.weights.h5 (Keras' "
                       "weights format, which --backbone_weights reads).")
  model = resnet.build_resnet(backbone)
  converted = torch_weights.convert(read_state(path, source), backbone, source, norm, path)
  count = torch_weights.assign(torch_weights.backbone_layers(model), converted, path)
  # h5py writes local files: save to a local temporary file, then copy it whole into place
  # (any filesystem; kdseg.atomic renames it over `output` only once it is complete).
  with tempfile.TemporaryDirectory(prefix="kdseg-convert-") as scratch:
    local = os.path.join(scratch, "backbone.weights.h5")
    model.save_weights(local)
    with open(local, "rb") as handle:
      atomic.write_bytes(fs.absolute(output), handle.read())
  return count


def heads_of(tensors: dict) -> list[int]:
  """Classes per step of a MiB/PLOP checkpoint: the output count of each cls.<t>."""
  counts = {}
  for key, value in tensors.items():
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "cls" and parts[2] == "weight":
      counts[int(parts[1])] = value.shape[0]
  return [counts[t] for t in sorted(counts)]


def import_step(run_config: config.RunConfig, path: str, source: str, norm: str) -> str:
  """Writes a MiB/PLOP step checkpoint as step --step of the run; returns the step folder."""
  tensors = read_state(path, source)   # a file that is no checkpoint fails before the dataset

  def load(model, plan, step):
    expected, found = plan.classes_per_step(step), heads_of(tensors)
    if found != list(expected):
      raise ConvertError(
          f"{path} has classifier heads for {found} classes per step; step {step} of task "
          f"{run_config.protocol.task} ({run_config.methods[0].name}) has {list(expected)}. Is "
          "it the checkpoint of that task and step?")
    converted = torch_weights.convert(tensors, run_config.model.backbone, source, norm, path)
    torch_weights.assign(torch_weights.segmenter_layers(model), converted, path)

  return imports.import_step(run_config, path, load)


def main(argv):
  del argv
  if not FLAGS.torch_file or not FLAGS.source:
    raise ConvertError("--torch_file and --source are required.")
  norm = FLAGS.norm or torch_weights.DEFAULT_NORM[FLAGS.source]
  if FLAGS.source in ("torchvision", "iabn"):
    if not FLAGS.weights_output:
      raise ConvertError(f"--source={FLAGS.source} converts an ImageNet backbone: name the "
                         "file to write with --weights_output=<name>.weights.h5.")
    count = convert_backbone(FLAGS.torch_file, FLAGS.source, FLAGS.backbone, norm,
                             FLAGS.weights_output)
    print(f"{FLAGS.weights_output}: {count} layers of {FLAGS.backbone} from {FLAGS.torch_file} "
          f"(norm {norm}). Train with --backbone={FLAGS.backbone} "
          f"--backbone_weights={FLAGS.weights_output}")
    return
  run_config = config.from_flags()
  cli.start_process(run_config.precision, run_config.deterministic)
  directory = import_step(run_config, FLAGS.torch_file, FLAGS.source, norm)
  print(f"{directory}: step {run_config.step} of {run_config.methods[0].name} from "
        f"{FLAGS.torch_file} (norm {norm}). Continue with python -m kdseg.train <same flags>"
        + (f" --step={run_config.step + 1}" if run_config.step > 0 else ""))


flags.adopt_module_key_flags(config)
run = cli.command_line("convert_torch_weights", main, ConvertError, torch_io.TorchFileError,
                       torch_weights.ConversionError)


if __name__ == "__main__":
  run()
