"""Per-step result records (results/step_<t>.json) and the tables printed after each step.

mIoU conventions (spec §5): means over classes present in the ground truth; "old" = model ids
0..C_old-1 (background included unless background_in_old=False), "new" = C_old..C_t-1,
"all" = 0..C_t-1. Every record and table states the convention it used. Per-step groups
("step 0", "step 1", ...) give the papers' column splits (e.g. 0-15 / 16-20 for 15-1).
"""
from __future__ import annotations

from kdseg.data.tasks import TaskPlan
from kdseg.metrics import Scores


def _fmt(value: float | None) -> str:
  return "   X" if value is None else f"{100 * value:5.1f}"


def step_record(plan: TaskPlan, step: int, scores: Scores, class_names: tuple[str, ...],
                background_in_old: bool = True) -> dict:
  order = plan.order(step)
  num_old = len(plan.order(step - 1)) if step > 0 else 0
  old_ids = range(0 if background_in_old else 1, num_old)
  new_ids = range(num_old, len(order))
  groups, start = {}, 0
  for index, size in enumerate(plan.classes_per_step(step)):
    groups[f"step {index}"] = scores.mean_iou_of(range(start, start + size))
    start += size
  return {
      "step": step,
      "task": plan.name,
      "convention": ("mean over classes present in the ground truth; " + (
          f"old = ids {old_ids.start}..{num_old - 1} "
          f"({'with' if background_in_old else 'without'} background)" if num_old
          else "step 0: every class is new")),
      "miou_old": scores.mean_iou_of(old_ids) if num_old else None,
      "miou_new": scores.mean_iou_of(new_ids),
      "miou_all": scores.mean_iou_of(range(len(order))),
      "miou_per_step": groups,
      "overall_accuracy": scores.overall_accuracy,
      "mean_class_accuracy": scores.mean_accuracy,
      "class_iou": {class_names[original]: scores.class_iou[i] for i, original in enumerate(order)},
      "class_accuracy": {class_names[original]: scores.class_accuracy[i]
                         for i, original in enumerate(order)},
  }


def format_step_table(record: dict, method: str) -> str:
  lines = [f"{method} | step {record['step']} of {record['task']} | {record['convention']}"]
  names = list(record["class_iou"])
  width = max(len(n) for n in names)
  for name in names:
    lines.append(f"  {name:<{width}}  IoU {_fmt(record['class_iou'][name])}"
                 f"  acc {_fmt(record['class_accuracy'][name])}")
  lines.append(f"  mIoU old {_fmt(record['miou_old'])}  new {_fmt(record['miou_new'])}  "
               f"all {_fmt(record['miou_all'])}  | pixel acc {_fmt(record['overall_accuracy'])}"
               f"  mean class acc {_fmt(record['mean_class_accuracy'])}")
  groups = "  ".join(f"{k} {_fmt(v)}" for k, v in record["miou_per_step"].items())
  lines.append(f"  mIoU per step's classes: {groups}")
  return "\n".join(lines)


def _present_mean(values) -> float | None:
  values = [v for v in values if v is not None]
  return sum(values) / len(values) if values else None


def format_comparison(records: dict[str, dict], plan: TaskPlan) -> str:
  """Final-step table across methods: classes of step 0 (background included) vs added classes."""
  base = len(plan.steps[0])
  added = f"{base}-{base + sum(map(len, plan.steps[1:])) - 1}"
  lines = [f"{'method':<12} {f'0-{base - 1}':>6} {added:>6} {'all':>6}   "
           "(mIoU after the last step, classes present in the ground truth)"]
  for method, record in records.items():
    ious = list(record["class_iou"].values())
    lines.append(f"{method:<12} {_fmt(_present_mean(ious[:base])):>6} "
                 f"{_fmt(_present_mean(ious[base:])):>6} {_fmt(record['miou_all']):>6}")
  return "\n".join(lines)
