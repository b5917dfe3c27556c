"""Per-step result records (results/step_<t>.json), the tables printed after each step, and the
per-method summaries (results/summary.{md,csv,json}) and cross-method tables built from them.

mIoU conventions (spec §5): means over classes present in the ground truth; "old" = model ids
0..C_old-1 (background included unless background_in_old=False), "new" = C_old..C_t-1,
"all" = 0..C_t-1. Every record and table states the convention it used. Per-step groups
("step 0", "step 1", ...) give the papers' column splits (e.g. 0-15 / 16-20 for 15-1).
"""
from __future__ import annotations

import csv
import io
import json

import numpy as np

from kdseg import fs
from kdseg.data.tasks import TaskPlan, make_plan
from kdseg.metrics import Scores
from kdseg.rundir import RunDir


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
      "classes_per_step": plan.classes_per_step(step),
      "num_steps": plan.num_steps,
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


def final_columns(record: dict) -> tuple[str, str, float | None, float | None]:
  """The papers' final-step columns: (label of step 0's classes, label of the added classes,
  their mIoUs), e.g. ("0-15", "16-20", ...) for 15-1. Background counts with step 0's classes."""
  ious = list(record["class_iou"].values())
  if "classes_per_step" in record:
    base = record["classes_per_step"][0]
  else:  # records written before classes_per_step existed: only final steps are read here
    base = len(make_plan(record["task"], list(range(1, len(ious)))).steps[0])
  return (f"0-{base - 1}", f"{base}-{len(ious) - 1}", _present_mean(ious[:base]),
          _present_mean(ious[base:]))


def last_step_of(record: dict) -> int:
  """The last step of a record's task (records from before num_steps: their own step)."""
  return record.get("num_steps", record["step"] + 1) - 1


def format_comparison(records: dict[str, dict]) -> str:
  """Table across methods of each one's latest record: classes of step 0 (background included)
  vs added classes. The header says after which step; a column does when the methods differ."""
  steps = sorted({record["step"] for record in records.values()})
  last = max((last_step_of(record) for record in records.values()), default=0)
  with_step = len(steps) > 1
  if all(record["step"] == last_step_of(record) for record in records.values()):
    when = "after the last step"
  else:
    when = (f"after step {steps[0]}" if not with_step else "after the step shown") + \
        f" of steps 0-{last}"
  lines = []
  for method, record in records.items():
    base_label, added_label, base_miou, added_miou = final_columns(record)
    if not lines:
      lines.append(f"{'method':<12} {base_label:>6} {added_label:>6} {'all':>6}"
                   f"{' step' if with_step else ''}   "
                   f"(mIoU {when}, classes present in the ground truth)")
    lines.append(f"{method:<12} {_fmt(base_miou):>6} {_fmt(added_miou):>6} "
                 f"{_fmt(record['miou_all']):>6}" + (f" {record['step']:>4}" if with_step else ""))
  return "\n".join(lines)


# --- several seeds of one experiment (--seeds; tools/summarize.py) -----------------------------

SEED_COLUMNS = ("old", "added", "all")


def final_values(record: dict) -> dict[str, float | None]:
  """{"old", "added", "all"}: a final record's mIoU over step 0's classes, the added ones, all."""
  _, _, old, added = final_columns(record)
  return {"old": old, "added": added, "all": record["miou_all"]}


def seed_cells(finals: dict[str, list[dict]]) -> dict[str, dict[str, dict]]:
  """method -> column -> {"mean", "std", "n", "values", "unsettled"} over the final records of
  the seeds (std: the sample standard deviation, None for one seed). A cell is "unsettled" when
  its spread or that of the method nearest to it in the column is larger than the gap between
  their means: those seeds do not establish the order of the two methods."""
  cells = {}
  for method, records in finals.items():
    cells[method] = {}
    for column in SEED_COLUMNS:
      values = [v for v in (final_values(r)[column] for r in records) if v is not None]
      n = len(values)
      cells[method][column] = {"mean": float(np.mean(values)) if n else None,
                               "std": float(np.std(values, ddof=1)) if n > 1 else None,
                               "n": n, "values": values, "unsettled": False}
  for column in SEED_COLUMNS:
    for method, cell in ((m, c[column]) for m, c in cells.items()):
      others = [c[column] for m, c in cells.items() if m != method and c[column]["mean"] is not None]
      if cell["mean"] is None or not others:
        continue
      nearest = min(others, key=lambda other: abs(other["mean"] - cell["mean"]))
      spread = max(s for s in (cell["std"], nearest["std"], 0.0) if s is not None)
      cell["unsettled"] = spread > abs(nearest["mean"] - cell["mean"])
  return cells


def format_seed_cell(cell: dict) -> str:
  if cell["mean"] is None:
    return "–"
  if cell["std"] is None:
    return f"{100 * cell['mean']:.1f} (n=1)"
  return (f"{100 * cell['mean']:.1f} ± {100 * cell['std']:.1f} (n={cell['n']})"
          + (" ~" if cell["unsettled"] else ""))


def format_seed_table(finals: dict[str, list[dict]]) -> str:
  """Markdown: one row per method, mean ± std (n) of old / added / all over the seeds."""
  cells = seed_cells(finals)
  first = next(r for records in finals.values() for r in records)
  base, added, _, _ = final_columns(first)
  lines = [f"| method | {base} | {added} | all |", "| --- | --- | --- | --- |"]
  for method, columns in cells.items():
    lines.append(f"| {method} | " + " | ".join(format_seed_cell(columns[c])
                                                for c in SEED_COLUMNS) + " |")
  return ("mIoU (%) after the last step, mean ± sample standard deviation over seeds (n); "
          "~: the spread of this cell or of the nearest method in its column is larger than "
          "the gap between their means.\n\n" + "\n".join(lines) + "\n")


def load_records(run_dir: RunDir, method_name: str) -> list[dict]:
  """The step records of one method (results/step_<t>.json), in step order."""
  records = [fs.read_json(path) for path in run_dir.step_result_files(method_name)]
  return sorted(records, key=lambda record: record["step"])


def method_records(run_dir: RunDir) -> dict[str, list[dict]]:
  """Every method of a run directory that has evaluated steps: name -> its step records."""
  found = {name: load_records(run_dir, name) for name in run_dir.evaluated_methods()}
  return {name: records for name, records in found.items() if records}


def latest_records(run_dir: RunDir) -> dict[str, dict]:
  """Each method's record of its latest evaluated step in a run directory."""
  return {method: records[-1] for method, records in method_records(run_dir).items()}


def _summary_rows(records: list[dict]) -> list[dict]:
  """One flat row per step: the means, then every class's IoU (None = absent or not learned)."""
  classes = list(records[-1]["class_iou"]) if records else []
  rows = []
  for record in records:
    row = {"step": record["step"], "miou_old": record["miou_old"],
           "miou_new": record["miou_new"], "miou_all": record["miou_all"],
           "pixel_accuracy": record["overall_accuracy"],
           "mean_class_accuracy": record["mean_class_accuracy"]}
    row.update({f"miou {group}": value for group, value in record["miou_per_step"].items()})
    row.update({f"iou {name}": record["class_iou"].get(name) for name in classes})
    rows.append(row)
  return rows


def format_summary(method: str, records: list[dict]) -> str:
  """Markdown: one row per step (old/new/all mIoU, mPA, mCA), then per-class IoU per step."""
  if not records:
    return f"# {method}\n\nno evaluated step yet\n"
  last = records[-1]
  groups = list(last["miou_per_step"])
  lines = [f"# {method}: {last['task']}", "",
           f"mIoU convention: means over classes present in the ground truth; old = the classes "
           f"learned before the step ({'with' if _background_in_old(last) else 'without'} "
           "background), new = the step's classes. X = class absent from the validation ground "
           "truth; blank = not learned yet. mPA = pixel accuracy, mCA = mean class accuracy. "
           "'step k' = mIoU of the classes learned at step k.", "",
           "| step | mIoU old | mIoU new | mIoU all | mPA | mCA | " + " | ".join(groups) + " |",
           "|" + " --- |" * (6 + len(groups))]
  for record in records:
    cells = [_fmt(v).strip() for v in (record["miou_old"], record["miou_new"],
                                       record["miou_all"], record["overall_accuracy"],
                                       record["mean_class_accuracy"])]
    if record["step"] == 0:
      cells[0] = ""   # no old classes yet
    cells += [_fmt(record["miou_per_step"][group]).strip()
              if group in record["miou_per_step"] else "" for group in groups]
    lines.append(f"| {record['step']} | " + " | ".join(cells) + " |")
  classes = list(last["class_iou"])
  lines += ["", "Per-class IoU", "", "| step | " + " | ".join(classes) + " |",
            "|" + " --- |" * (1 + len(classes))]
  for record in records:
    cells = [(_fmt(record["class_iou"][name]).strip() if name in record["class_iou"] else "")
             for name in classes]
    lines.append(f"| {record['step']} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def _background_in_old(record: dict) -> bool:
  return "without background" not in record["convention"]


def write_summary(run_dir: RunDir, method: str) -> list[dict]:
  """(Re)writes results/summary.{md,csv,json} of one method from its step records."""
  records = load_records(run_dir, method)
  rows = _summary_rows(records)
  buffer = io.StringIO()
  if rows:
    writer = csv.DictWriter(buffer, fieldnames=list(rows[-1]), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
  outputs = {"summary.md": format_summary(method, records), "summary.csv": buffer.getvalue(),
             "summary.json": json.dumps({"method": method, "steps": [
                 {k: v for k, v in r.items() if k != "confusion"} for r in records]}, indent=1)}
  for name, text in outputs.items():
    run_dir.write_text(run_dir.summary(method, name), text)
  return records
