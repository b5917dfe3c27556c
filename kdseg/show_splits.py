"""Prints each step's training images of a flagfile -- count, digest, pixels per class -- without
training, and where the MiB / PLOP reference's split files differ from kdseg's own filtering.

  python -m kdseg.show_splits --flagfile=flags/voc_15_1.cfg --data_root=/data/VOCdevkit/VOC2012
  python -m kdseg.show_splits --flagfile=flags/voc_15_1.cfg --split_files=MiB/data/voc/15-5s-ov \
      --split_list=MiB/data/voc/splits/train_aug.txt
  python -m kdseg.show_splits --flagfile=... --manifest_dir=manifests      # also one JSON per step

Two users compare splits by digest: the sha256 of the sorted image ids (kdseg.data.splits).
The sets are those before --holdout_fraction takes its share (a run's splits/step_<t>_train.json
is after it). Nothing is written to a run directory; the label scan is cached as for training.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from kdseg import atomic, config, fs  # noqa: E402  (config defines the flags)
from kdseg.data import splits  # noqa: E402
from kdseg.run import cli  # noqa: E402
from kdseg.run.experiment import own_rows, reference_rows, resolve_data  # noqa: E402

FLAGS = flags.FLAGS


def step_manifests(run_config: config.RunConfig) -> list[dict]:
  """Per step: kdseg's own image set (manifest), and the reference's with the comparison when
  --split_files is given."""
  source, train_counts, _, plan = resolve_data(run_config)
  ids = source.split("train").ids
  protocol = run_config.protocol
  steps = []
  for step in range(plan.num_steps):
    rows = own_rows(protocol, run_config.seed, source, train_counts > 0, plan, step)
    own = tuple(ids[r] for r in rows)
    entry = {"step": step, "classes": [source.class_names[c] for c in plan.new_classes(step)],
             "kdseg": splits.manifest(own, train_counts[rows], source.class_names)}
    if protocol.split_files:
      chosen = reference_rows(protocol, source, plan, step)
      reference = tuple(ids[r] for r in chosen)
      entry["reference"] = splits.manifest(reference, train_counts[chosen],
                                           source.class_names)
      entry["difference"] = splits.compare(reference, own)
    steps.append(entry)
  return steps


def format_manifests(steps: list[dict], top: int = 5) -> str:
  lines = []
  for entry in steps:
    own = entry["kdseg"]
    pixels = sorted(own["pixels_per_class"].items(), key=lambda item: -item[1])[:top]
    lines.append(f"step {entry['step']}: {', '.join(entry['classes'])}")
    lines.append(f"  kdseg      {own['images']:6d} images  digest {own['digest']}  most pixels: "
                 + ", ".join(f"{name} {count}" for name, count in pixels))
    if "reference" in entry:
      reference, difference = entry["reference"], entry["difference"]
      lines.append(f"  reference  {reference['images']:6d} images  digest {reference['digest']}"
                   + ("  (the same images)" if difference["same"] else
                      f"  only in reference {difference['only_reference']} "
                      f"(e.g. {', '.join(difference['examples_only_reference']) or '-'}), only in "
                      f"kdseg {difference['only_kdseg']} "
                      f"(e.g. {', '.join(difference['examples_only_kdseg']) or '-'})"))
  return "\n".join(lines)


def main(argv):
  del argv
  run_config = config.from_flags()
  cli.start_process()
  steps = step_manifests(run_config)
  print(f"{run_config.data.dataset} {run_config.protocol.task} {run_config.protocol.setting} "
        f"(seed {run_config.seed})")
  print(format_manifests(steps))
  if FLAGS.manifest_dir:
    for entry in steps:
      atomic.write_json(fs.join(FLAGS.manifest_dir, f"step_{entry['step']}.json"), entry)
    print(f"manifests in {FLAGS.manifest_dir}/step_<t>.json")


flags.adopt_module_key_flags(config)
run = cli.command_line("kdseg.show_splits", main)


if __name__ == "__main__":
  run()
