"""Evaluates any finished step of a run: any split, any test-time options, any checkpoint.

  python -m kdseg.evaluate --flagfile=flags/shapes_15_1.cfg --method=mib --step=5
  python -m kdseg.evaluate --flagfile=flags/shapes_15_1.cfg --method=mib --step=5 \
      --test_scales=0.5,0.75,1,1.25,1.5 --test_flip --eval_crop=0 --split=val
  python -m kdseg.evaluate --flagfile=... --method=mib --step=1 --checkpoint=/other/run/mib/step_1

Uses the run's flags (dataset, task, model) to rebuild the step's model and label mapping, scores
it on the images of --split that hold classes seen up to the step, prints the per-class table and
writes <run_dir>/<method>/results/eval/<split>_<test-time>_step_<t>.json. The training results
(results/step_<t>.json) are never overwritten. --step=-1 evaluates every finished step.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags, logging  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from kdseg import report, train  # noqa: E402
from kdseg.engine import checkpoints  # noqa: E402

flags.DEFINE_enum("split", "val", ["val", "train"], "Images to evaluate on.")
flags.DEFINE_string("checkpoint", None, "A step directory (holding final/) to evaluate instead "
                    "of the run's own; its network must match the flags.")
FLAGS = flags.FLAGS


def evaluate(step: int) -> list[dict]:
  """Scores step `step` (-1: every finished step) of the one --method; returns the records
  (also written to disk)."""
  method = train.resolve_methods()[0]
  experiment = train.build_experiment()
  test_time = train.test_time_from_flags()
  plan = train.joint_plan(experiment.plan) if method.offline else None
  if method.offline:  # joint trains one step, reported as the task's last
    steps = [0]
  elif step >= 0:
    steps = [step]
  else:
    steps = [t for t in range(experiment.plan.num_steps) if checkpoints.is_complete(
        checkpoints.step_dir(experiment.run_dir, method, t))]
    if not steps:
      raise checkpoints.CheckpointError(
          f"{method.name} has no finished step in {experiment.run_dir}; train it first "
          "(python -m kdseg.train with the same flags).")
  records = []
  for step_index in steps:
    record, _, _ = train.score_step(experiment, method, step_index, plan, FLAGS.split,
                                    test_time, FLAGS.checkpoint)
    name = f"{FLAGS.split}_{test_time.tag}_crop{FLAGS.eval_crop}_step_{record['step']}.json"
    path = os.path.join(experiment.run_dir, method.name, "results", "eval", name)
    checkpoints.write_json_atomic(path, record)
    print(report.format_step_table(record, f"{method.name} ({FLAGS.split}, {test_time.tag})"))
    print(f"  written to {path}", flush=True)
    records.append(record)
  return records


def main(argv):
  del argv
  tf.get_logger().setLevel("ERROR")
  logging.set_verbosity(logging.WARNING)
  keras.config.set_dtype_policy(FLAGS.precision)
  if len(FLAGS.method) != 1:
    raise train.FlagValueError(f"--method={','.join(FLAGS.method)}: evaluate one method at a time.")
  if FLAGS.checkpoint and FLAGS.step < 0:
    raise train.FlagValueError("--checkpoint needs --step (the step that checkpoint finished).")
  evaluate(FLAGS.step)


run = train.command_line("kdseg.evaluate", main)


if __name__ == "__main__":
  run()
