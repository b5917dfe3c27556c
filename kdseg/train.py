"""Trains every step of an incremental task, evaluating after each step.

  python -m kdseg.train --flagfile=flags/shapes_15_1.cfg
  python -m kdseg.train --flagfile=flags/voc_15_1.cfg --data_root=/data/VOCdevkit/VOC2012
  python -m kdseg.train --flagfile=flags/shapes_15_1.cfg --method=mib --step=3

Step t is initialised from the finished checkpoint of step t-1, which is also loaded, frozen, as
the old model. Finished steps are skipped, interrupted ones resume after their last save.
The work is done by kdseg.run (experiment, stepping, scoring); this file reads the flags.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402
import time  # noqa: E402

from kdseg import config  # noqa: E402  (defines the flags)
from kdseg.engine import progress  # noqa: E402
from kdseg.engine.distribute import worker_id  # noqa: E402
from kdseg.run import cli, seeds  # noqa: E402
from kdseg.run.experiment import build_experiment  # noqa: E402
from kdseg.run.stepping import run_experiment  # noqa: E402
from kdseg import report  # noqa: E402
from kdseg.rundir import RunDir  # noqa: E402


def main(argv):
  del argv
  run_config = config.from_flags()
  cli.start_process(run_config.precision, run_config.deterministic)
  if not run_config.seeds:
    train(run_config)
    return
  chief = True
  for seed_config in seeds.seed_configs(run_config):
    print(f"\n=== seed {seed_config.seed}: {seed_config.run_dir}", flush=True)
    chief = train(seed_config) is not None   # (None: a non-chief worker)
  if chief:   # every seed of the directory, those of earlier --seeds runs too
    table = seeds.write_seed_summary(run_config.run_dir)
    print(f"\n{table}\n(also in {RunDir(run_config.run_dir).seeds_table})")


def train(run_config: config.RunConfig) -> dict | None:
  """Trains and scores one experiment; returns the final record of each method (None on a
  non-chief worker)."""
  start = time.time()
  progress.phase_seconds(reset=True)
  with progress.phase("data"):
    experiment = build_experiment(run_config)
  print(f"kdseg: {experiment.source.name} {run_config.protocol.task} "
        f"{run_config.protocol.setting}, methods {[m.name for m in run_config.methods]}, "
        f"{experiment.strategy.num_replicas_in_sync} replica(s), run dir "
        f"{experiment.run_dir.path}", flush=True)
  finals = run_experiment(experiment)
  if not experiment.chief:
    print(f"worker {worker_id(experiment.strategy)} done; the chief wrote the results.")
    return None
  total = time.time() - start
  phases = progress.phase_seconds()
  other = max(0.0, total - sum(phases.values()))   # (phases are rounded to 0.1 s)
  experiment.run_dir.write_json(experiment.run_dir.timing_json,
                                {"total_seconds": round(total, 1), "phases": phases,
                                 "other_seconds": round(other, 1)})
  print(f"\n{report.format_comparison(finals)}\n"
        f"(total wall time {total:.0f}s: " +
        ", ".join(f"{name} {seconds:.0f}" for name, seconds in phases.items()) +
        f", other {other:.0f})")
  print(f"per-method summaries in {experiment.run_dir.summary('<method>', 'summary.md')}, plot "
        f"{experiment.run_dir.miou_plot}")
  return finals


flags.adopt_module_key_flags(config)   # --help lists kdseg's flags
run = cli.command_line("kdseg.train", main)


if __name__ == "__main__":
  run()
