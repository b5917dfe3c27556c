"""Evaluates any finished step of a run: any split, any test-time options, any checkpoint.

  python -m kdseg.evaluate --run_dir=runs/shapes_15_1 --method=mib --step=5
  python -m kdseg.evaluate --run_dir=runs/shapes_15_1 --method=mib --step=5 \
      --test_scales=0.5,0.75,1,1.25,1.5 --test_flip --eval_crop=0 --split=val
  python -m kdseg.evaluate --run_dir=... --method=mib --step=1 --checkpoint=/other/run/mib/step_1

The run directory says everything else (its run.json: dataset and where it is, task plan, model;
--data_root/--cache_dir point at another copy of the same data). Scores the step on the images of
--split that hold classes seen up to the step, prints the per-class table and writes
<run_dir>/<method>/results/eval/<split>_<test-time>_crop<N>_step_<t>.json. The training results
(results/step_<t>.json) are never overwritten. --step=-1 evaluates every finished step.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402
from kdseg import config, report  # noqa: E402
from kdseg.engine import checkpoints  # noqa: E402
from kdseg.run import cli  # noqa: E402
from kdseg.run.experiment import joint_plan, open_experiment  # noqa: E402
from kdseg.run.scoring import score_step, tool_evaluation  # noqa: E402
from kdseg.rundir import RunDir  # noqa: E402


def evaluate(tool: config.ToolConfig, split: str = "val",
             checkpoint: str | None = None) -> list[dict]:
  """Scores step tool.step (-1: every finished step) of tool.method; returns the records (also
  written to disk)."""
  run_dir = RunDir(tool.run_dir)
  recorded = run_dir.require_run()
  method = run_dir.load_method(tool.method)
  evaluation = tool_evaluation(recorded, tool.evaluation, tool.given)
  experiment = open_experiment(run_dir, recorded, method, evaluation, tool.data_root,
                               tool.cache_dir, tool.verbose)
  plan = None
  if method.offline:  # joint trains one step, reported as the task's last
    plan, steps = joint_plan(recorded.plan), [0]
  elif tool.step >= 0:
    steps = [recorded.plan.require_step(tool.step)]
  else:
    steps = [t for t in range(recorded.plan.num_steps)
             if checkpoints.is_complete(run_dir.step_dir(method, t))]
    if not steps:
      raise checkpoints.CheckpointError(
          f"{method.name} has no finished step in {run_dir.path}; train it first.")
  records = []
  for step in steps:
    record, _, _ = score_step(experiment, method, step, plan, split, evaluation, checkpoint)
    tag = evaluation.test_time.tag
    path = run_dir.eval_results(
        method.name, f"{split}_{tag}_crop{evaluation.crop}_step_{record['step']}.json")
    run_dir.write_json(path, record)
    print(report.format_step_table(record, f"{method.name} ({split}, {tag})"))
    print(f"  written to {path}", flush=True)
    records.append(record)
  return records


def main(argv):
  del argv
  tool = config.tool_from_flags("kdseg.evaluate")
  cli.start_process(tool.precision)
  if config.FLAGS.checkpoint and tool.step < 0:
    raise config.FlagValueError("--checkpoint needs --step (the step that checkpoint finished).")
  evaluate(tool, config.FLAGS.split, config.FLAGS.checkpoint)


flags.adopt_module_key_flags(config)   # --help lists kdseg's flags
run = cli.command_line("kdseg.evaluate", main)


if __name__ == "__main__":
  run()
