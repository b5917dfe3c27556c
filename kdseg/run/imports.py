"""A step trained by a reference implementation, imported as a finished step of a run directory.

tools/convert_torch_weights.py (a MiB / PLOP PyTorch step checkpoint) and
tools/convert_tf1_weights.py (a KD-paper TF1 step checkpoint) read their files; this module does
the rest the same way for both: the run directory recorded as kdseg.train would (same flags, same
guard), the model of the step built and filled, the step's finished model written. Everything is
checked before anything is written, and a finished step is never replaced.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from kdseg.config import RunConfig
from kdseg.data.tasks import TaskPlan
from kdseg.engine import checkpoints
from kdseg.models.segmenter import Segmenter, build_segmenter, step_heads
from kdseg.rundir import RunDir, lock
from kdseg.run.experiment import build_experiment, joint_plan, resolve_data


class StepImportError(ValueError):
  """A checkpoint that cannot become the named step of this run."""


# load(model, plan, step): fills `model` (the step's network) from the file, or raises.
Loader = Callable[[Segmenter, TaskPlan, int], None]


def import_step(run_config: RunConfig, path: str, load: Loader) -> str:
  """Writes the checkpoint at `path` as step --step of the run's one --method; returns the step
  folder."""
  if len(run_config.methods) != 1:
    raise StepImportError(f"--method names {len(run_config.methods)} methods; name the one the "
                          "checkpoint was trained with.")
  method, step = run_config.methods[0], run_config.step
  if step < 0:
    raise StepImportError("--step: name the step the checkpoint finished (0 for a step-0 model).")
  if method.regularizer is not None:
    raise StepImportError(
        f"--method={method.name} hands its {method.regularizer} importance state to the next "
        "step, which a reference's checkpoint does not hold in kdseg's form. Import the step "
        "under a method without a regulariser (step 0 is shared by every method with the same "
        "recipe).")
  _, _, _, plan = resolve_data(run_config)
  plan = joint_plan(plan) if method.offline else plan
  if step >= plan.num_steps:
    raise StepImportError(f"--step={step}, but {method.name} on task {run_config.protocol.task} "
                          f"has steps 0..{plan.num_steps - 1}.")
  directory = RunDir(run_config.run_dir).step_dir(method, step)
  if checkpoints.is_complete(directory):
    raise StepImportError(f"{directory} already holds a finished step {step}; kdseg never "
                          "replaces one. Remove that folder first, or use another --run_dir.")
  model = build_segmenter(run_config.model, step_heads(run_config.model, plan, step))
  load(model, plan, step)
  # Records the run; the step's weights come from the file, so step 0 needs no starting weights.
  experiment = build_experiment(dataclasses.replace(run_config, step=0, from_scratch=True))
  with lock(directory, f"step {step} ({directory})", wait=False):
    checkpoints.save_final(model, directory)
  names = experiment.source.class_names
  for index, classes in enumerate(plan.steps[:len(model.classifier.classes_per_step)]):
    print(f"  head {index}: {', '.join(names[c] for c in classes)}")
  return directory
