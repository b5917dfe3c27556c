"""Incremental scenarios: a task name and a class order become the classes learned at each step.

Grammar (MiB and KD papers' names), for a dataset with N object classes (background excluded):
  "A-B"      A classes first, then steps of B classes until all N are learned
             (19-1 -> [19, 1]; 15-1 -> [15, 1, 1, 1, 1, 1]; 100-10 -> [100, 10, 10, 10, 10, 10]);
  "A-Bs"     A classes, then B steps of one class each ("15-5s" == "15-1" on VOC);
  "A-B-C..." the given sizes exactly; they must sum to N ("10-5-5").
Background (id 0) always belongs to step 0. Class ids are the dataset's original ids.
"""
from __future__ import annotations

import dataclasses
import re

_TASK_PATTERN = re.compile(r"^(\d+)(?:-(\d+))+s?$")


class TaskError(ValueError):
  """A task name or class order that cannot describe an incremental scenario."""


def step_sizes(task: str, num_object_classes: int) -> list[int]:
  """Number of new object classes per step; step 0 excludes background."""
  name = task.strip()
  if not _TASK_PATTERN.match(name):
    raise TaskError(
        f"--task={task!r} is not a scenario name: use 'A-B' (e.g. 19-1, 15-1, 100-10), "
        f"'A-Bs' (e.g. 15-5s) or explicit sizes 'A-B-C' (e.g. 10-5-5).")
  sequential = name.endswith("s")
  sizes = [int(part) for part in name.rstrip("s").split("-")]
  if any(size == 0 for size in sizes):
    raise TaskError(f"--task={task!r}: every step must add at least one class.")
  base, rest = sizes[0], num_object_classes - sizes[0]
  if rest <= 0:
    raise TaskError(f"--task={task!r}: the first step takes {base} classes but the dataset has "
                    f"only {num_object_classes}; nothing would be left to learn incrementally.")
  if sequential:
    if len(sizes) != 2 or sizes[1] != rest:
      raise TaskError(f"--task={task!r}: 'A-Bs' means B single-class steps after A, so A+B must "
                      f"equal the {num_object_classes} classes of the dataset.")
    return [base] + [1] * rest
  if len(sizes) == 2:
    increment = sizes[1]
    if rest % increment:
      raise TaskError(f"--task={task!r}: the {rest} classes after the first step cannot be split "
                      f"into steps of {increment}.")
    return [base] + [increment] * (rest // increment)
  if sum(sizes) != num_object_classes:
    raise TaskError(f"--task={task!r}: explicit step sizes sum to {sum(sizes)}, but the dataset "
                    f"has {num_object_classes} object classes.")
  return sizes


@dataclasses.dataclass(frozen=True)
class TaskPlan:
  """Which original class ids are learned at each step.

  steps[0] starts with background (0); each later step holds only new object classes.
  Model outputs at step t are ordered as `order(t)`: position in that list = model class id.
  `joint`: the offline upper bound's plan (every class in one step), reported as the last step
  of the task's own plan.
  """
  name: str
  steps: tuple[tuple[int, ...], ...]
  joint: bool = False

  @property
  def num_steps(self) -> int:
    return len(self.steps)

  def new_classes(self, step: int) -> tuple[int, ...]:
    """Object classes first learned at `step` (background excluded)."""
    return tuple(c for c in self.steps[step] if c != 0)

  def old_classes(self, step: int) -> tuple[int, ...]:
    """Object classes learned before `step` (background excluded)."""
    return tuple(c for s in self.steps[:step] for c in s if c != 0)

  def order(self, step: int) -> tuple[int, ...]:
    """Original ids in model-output order after `step`: [0] + old + new."""
    return (0,) + self.old_classes(step) + self.new_classes(step)

  def num_classes(self, step: int) -> int:
    """Classes the model predicts after `step`, background included (C_t)."""
    return len(self.order(step))

  def classes_per_step(self, step: int) -> list[int]:
    """Output channels of each classifier head up to `step` (head 0 includes background)."""
    return [len(s) for s in self.steps[:step + 1]]

  def future_classes(self, step: int) -> tuple[int, ...]:
    return tuple(c for s in self.steps[step + 1:] for c in s)

  def require_step(self, step: int) -> int:
    """`step` if this plan has it, else TaskError naming --step and the plan's steps."""
    if not 0 <= step < self.num_steps:
      raise TaskError(f"--step={step}, but task {self.name} has steps 0..{self.num_steps - 1}.")
    return step


def make_plan(task: str, class_order: list[int] | tuple[int, ...],
              name: str | None = None) -> TaskPlan:
  """Builds the plan of `task` over object classes taken in `class_order` (background excluded)."""
  order = list(class_order)
  if 0 in order:
    raise TaskError("the class order lists object classes only; background (0) is implicit.")
  if len(set(order)) != len(order):
    raise TaskError(f"the class order repeats classes: {order}")
  sizes = step_sizes(task, len(order))
  steps, start = [], 0
  for index, size in enumerate(sizes):
    chunk = tuple(order[start:start + size])
    steps.append((0,) + chunk if index == 0 else chunk)
    start += size
  return TaskPlan(name=name or task, steps=tuple(steps))
