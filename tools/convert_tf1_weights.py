"""A step checkpoint of the KD paper's code (TF1, LTTM/IL-SemSegm) as a finished step of a kdseg
run directory, for the run's one --method; kdseg.train then continues from it:

  python tools/convert_tf1_weights.py --tf1_checkpoint=checkpoints/1_to_19/model.ckpt-20000 \\
      --flagfile=flags/kd_voc_19_1.cfg --method=kd-ft --step=0 --data_root=...
  python -m kdseg.train --flagfile=flags/kd_voc_19_1.cfg --method=kd-ft,kd-cls,ef \\
      --data_root=...

The checkpoint (its prefix, without .index / .data-*) holds DeepLab-v2 ResNet-101 in the code's
names (kdseg/models/tf1_weights.py): the backbone, and the four fc1_voc12_c<k> classifiers with
one output per dataset class id, which are split by class into kdseg's heads (the task's class
order; with --classifier=full every head, else those of the steps up to --step). Optimizer slots
and the global step are skipped. The network must be the KD recipe's (--backbone=
resnet101_deeplab --head=v2, flags/recipe_kd.cfg). For the backbone alone (the MS-COCO
deeplab_resnet_init.ckpt the code starts from) no conversion is needed: pass it to kdseg.train
as --backbone_weights.
"""
from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402

from kdseg import config, fs  # noqa: E402  (config defines kdseg's flags)
from kdseg.models import tf1_weights  # noqa: E402
from kdseg.models.conversion import ConversionError, assign  # noqa: E402
from kdseg.run import cli, imports  # noqa: E402

flags.DEFINE_string("tf1_checkpoint", None, "The KD code's step checkpoint: its prefix, e.g. "
                    "checkpoints/1_to_19/model.ckpt-20000.")
FLAGS = flags.FLAGS


def import_step(run_config: config.RunConfig, path: str) -> str:
  """Writes a KD-code step checkpoint as step --step of the run; returns the step folder."""
  path = fs.absolute(path)
  if not tf1_weights.exists(path):
    raise imports.StepImportError(f"--tf1_checkpoint={path}: no such checkpoint (neither the "
                                  f"file nor {path}.index); give its prefix.")
  reader = tf1_weights.open_checkpoint(path)   # a file that is no checkpoint fails here

  def load(model, plan, step):
    del step
    columns = list(plan.order(len(model.classifier.classes_per_step) - 1))
    converted = tf1_weights.convert_backbone(reader, model.backbone, path)
    converted.update(tf1_weights.convert_classifier(reader, model.classifier, columns, path))
    assign(tf1_weights.segmenter_layers(model), converted, path)

  return imports.import_step(run_config, path, load)


def main(argv):
  del argv
  if not FLAGS.tf1_checkpoint:
    raise imports.StepImportError("--tf1_checkpoint is required: the prefix of the KD code's "
                                  "step checkpoint.")
  run_config = config.from_flags()
  cli.start_process(run_config.precision, run_config.deterministic)
  directory = import_step(run_config, FLAGS.tf1_checkpoint)
  print(f"{directory}: step {run_config.step} of {run_config.methods[0].name} from "
        f"{FLAGS.tf1_checkpoint}. Continue with python -m kdseg.train <same flags>"
        + (f" --step={run_config.step + 1}" if run_config.step > 0 else ""))


flags.adopt_module_key_flags(config)
run = cli.command_line("convert_tf1_weights", main, imports.StepImportError, ConversionError,
                       tf1_weights.Tf1CheckpointError)


if __name__ == "__main__":
  run()
