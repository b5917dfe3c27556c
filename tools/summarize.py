"""Merges the results of several run directories into one paper-style table and plots.

  python tools/summarize.py runs/voc_15_1_overlapped runs/voc_15_5_overlapped \
      --methods=ft,lwf,ilt,mib --output=results/voc_table

Writes <output>.md (like MiB Table 1 / KD Table 7: one row per method; for each run the mIoU
after its last step over step 0's classes, the added classes, and all), <output>.csv (the same
numbers, as fractions) and <output>_<run>.png (mIoU per step per method, one plot per run).
A method missing from a run, or not finished, is shown as "–".
"""
from __future__ import annotations

import csv
import io
import json
import os

from absl import app, flags

from kdseg import atomic, plot, report

flags.DEFINE_list("methods", [], "Methods (rows) in this order; default: every method found.")
flags.DEFINE_string("output", "summary", "Path prefix of the files to write.")
FLAGS = flags.FLAGS


class SummaryError(ValueError):
  """A run directory without results."""


def run_label(run_dir: str) -> str:
  path = os.path.join(run_dir, "experiment.json")
  if not os.path.isfile(path):
    raise SummaryError(f"{path} is missing: {run_dir} is not a kdseg run directory "
                       "(python -m kdseg.train writes it).")
  with open(path) as handle:
    experiment = json.load(handle)
  return f"{experiment['dataset']} {experiment['task']} {experiment['setting']}"


def method_records(run_dir: str) -> dict[str, list[dict]]:
  """Every method of a run that has evaluated steps: name -> step records."""
  found = {}
  for name in sorted(os.listdir(run_dir)):
    if os.path.isdir(os.path.join(run_dir, name, "results")):
      records = report.load_records(os.path.join(run_dir, name))
      if records:
        found[name] = records
  return found


def summarize(run_dirs: list[str], methods: list[str]) -> tuple[str, list[dict], dict]:
  """Markdown table, CSV rows and the records per run for the given runs."""
  labels = [run_label(run_dir) for run_dir in run_dirs]
  if len(set(labels)) < len(labels):  # the same experiment with other flags: name the directory
    labels = [f"{label} ({os.path.basename(os.path.normpath(run_dir))})"
              for label, run_dir in zip(labels, run_dirs)]
  runs = {run_dir: (label, method_records(run_dir)) for run_dir, label in zip(run_dirs, labels)}
  for run_dir, (_, records) in runs.items():
    if not records:
      raise SummaryError(f"{run_dir} has no evaluated step (no <method>/results/step_*.json).")
  methods = methods or sorted({m for _, records in runs.values() for m in records})
  last_step = {}   # records name their task's number of steps (older ones: the latest found)
  for run_dir, (_, records) in runs.items():
    last_step[run_dir] = max(r[-1].get("num_steps", r[-1]["step"] + 1) - 1
                             for r in records.values())
  header, rule = ["method"], ["---"]
  for run_dir, (label, records) in runs.items():
    finals = [r[-1] for r in records.values() if r[-1]["step"] == last_step[run_dir]]
    base, added = (report.final_columns(finals[0])[:2] if finals else
                   ("step 0 classes", "added classes"))
    header += [f"{label} {base}", f"{label} {added}", f"{label} all"]
    rule += ["---"] * 3
  lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
  rows = []
  for method in methods:
    cells, row = [method], {"method": method}
    for run_dir, (label, records) in runs.items():
      record = records.get(method, [None])[-1]
      finished = record is not None and record["step"] == last_step[run_dir]
      values = ((None, None, None) if not finished else
                (*report.final_columns(record)[2:], record["miou_all"]))
      cells += ["–" if v is None else f"{100 * v:.1f}" for v in values]
      for key, value in zip(("old", "added", "all"), values):
        row[f"{label} {key}"] = value
    lines.append("| " + " | ".join(cells) + " |")
    rows.append(row)
  table = ("mIoU (%) after the last step; means over classes present in the ground truth; "
           "step 0's classes include background.\n\n" + "\n".join(lines) + "\n")
  return table, rows, {run_dir: value for run_dir, value in runs.items()}


def main(argv):
  run_dirs = argv[1:]
  if not run_dirs:
    raise app.UsageError("name at least one run directory.")
  for run_dir in run_dirs:
    if not os.path.isdir(run_dir):
      raise SummaryError(f"{run_dir} does not exist.")
  table, rows, runs = summarize(run_dirs, FLAGS.methods)
  atomic.write_text(FLAGS.output + ".md", table)
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
  writer.writeheader()
  writer.writerows(rows)
  atomic.write_text(FLAGS.output + ".csv", buffer.getvalue())
  for run_dir, (label, records) in runs.items():
    chosen = {m: r for m, r in records.items() if not FLAGS.methods or m in FLAGS.methods}
    name = os.path.basename(os.path.normpath(run_dir))
    plot.plot_miou_per_step(chosen, f"{FLAGS.output}_{name}.png", label)
  print(table)
  print(f"wrote {FLAGS.output}.md, {FLAGS.output}.csv and one plot per run")


if __name__ == "__main__":
  try:
    app.run(main)
  except SummaryError as error:
    raise SystemExit(f"summarize: error: {error}") from None
