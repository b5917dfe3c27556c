"""Merges the results of several run directories into one paper-style table and plots.

  python tools/summarize.py runs/voc_15_1_overlapped runs/voc_15_5_overlapped \
      --methods=ft,lwf,ilt,mib --output=results/voc_table

Writes <output>.md (like MiB Table 1 / KD Table 7: one row per method; for each run the mIoU
after its last step over step 0's classes, the added classes, and all), <output>.csv (the same
numbers, as fractions) and <output>_<run>.png (mIoU per step per method, one plot per run).
A method missing from a run, or not finished, is shown as "–". A directory of several seeds
(python -m kdseg.train --seeds=0,1,2) counts as one run: its cells are mean ± standard deviation
(n seeds), marked "~" where the spread is larger than the gap to the nearest method in the column
(kdseg.report.seed_cells); the CSV has the means and the standard deviations.
"""
from __future__ import annotations

import csv
import io
import os

from absl import app, flags

from kdseg import atomic, fs, plot, report
from kdseg.run import seeds
from kdseg.rundir import RunDir

flags.DEFINE_list("methods", [], "Methods (rows) in this order; default: every method found.")
flags.DEFINE_string("output", "summary", "Path prefix of the files to write.")
FLAGS = flags.FLAGS


class SummaryError(ValueError):
  """A run directory without results."""


def run_label(run_dir: str) -> str:
  seed_dirs = seeds.seed_run_dirs(run_dir)
  if seed_dirs:
    return f"{run_label(next(iter(seed_dirs.values())))} ({len(seed_dirs)} seeds)"
  path = RunDir(run_dir).experiment_json
  if not fs.isfile(path):
    raise SummaryError(f"{path} is missing: {run_dir} is not a kdseg run directory "
                       "(python -m kdseg.train writes it).")
  experiment = fs.read_json(path)
  return f"{experiment['dataset']} {experiment['task']} {experiment['setting']}"


def seed_records(run_dir: str) -> list[dict[str, list[dict]]]:
  """method_records of each seed of a --seeds directory, or [method_records(run_dir)]."""
  seed_dirs = seeds.seed_run_dirs(run_dir)
  return ([report.method_records(RunDir(path)) for path in seed_dirs.values()] if seed_dirs
          else [report.method_records(RunDir(run_dir))])


def summarize(run_dirs: list[str], methods: list[str]) -> tuple[str, list[dict], dict]:
  """Markdown table, CSV rows and the records per run for the given runs."""
  labels = [run_label(run_dir) for run_dir in run_dirs]
  if len(set(labels)) < len(labels):  # the same experiment with other flags: name the directory
    labels = [f"{label} ({os.path.basename(os.path.normpath(run_dir))})"
              for label, run_dir in zip(labels, run_dirs)]
  per_seed = {run_dir: seed_records(run_dir) for run_dir in run_dirs}
  # Plots and column labels from the first seed; cells from every seed.
  runs = {run_dir: (label, per_seed[run_dir][0]) for run_dir, label in zip(run_dirs, labels)}
  for run_dir, (_, records) in runs.items():
    if not records:
      raise SummaryError(f"{run_dir} has no evaluated step (no <method>/results/step_*.json).")
  found = sorted({m for seed_runs in per_seed.values() for records in seed_runs for m in records})
  missing = [m for m in methods if m not in found]
  if missing:
    raise SummaryError(f"--methods: {', '.join(missing)} has no evaluated step in any of these "
                       f"runs (they hold {', '.join(found)}).")
  methods = methods or found
  last_step = {}   # records name their task's number of steps (older ones: the latest found)
  for run_dir, (_, records) in runs.items():
    last_step[run_dir] = max(report.last_step_of(r[-1])
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
  statistics = {}
  for run_dir, seed_runs in per_seed.items():
    finals = {}
    for records in seed_runs:
      for method, steps in records.items():
        if steps[-1]["step"] == last_step[run_dir]:
          finals.setdefault(method, []).append(steps[-1])
    statistics[run_dir] = report.seed_cells(finals)
  for method in methods:
    cells, row = [method], {"method": method}
    for run_dir, (label, _) in runs.items():
      columns = statistics[run_dir].get(method)
      for key in report.SEED_COLUMNS:
        cell = None if columns is None else columns[key]
        if cell is None or cell["mean"] is None:
          cells.append("–")
        elif len(per_seed[run_dir]) > 1:
          cells.append(report.format_seed_cell(cell))
        else:
          cells.append(f"{100 * cell['mean']:.1f}")
        row[f"{label} {key}"] = None if cell is None else cell["mean"]
        if len(per_seed[run_dir]) > 1:
          row[f"{label} {key} std"] = None if cell is None else cell["std"]
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
    if not fs.isdir(run_dir):
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
  except (SummaryError, fs.CorruptFileError) as error:
    raise SystemExit(f"summarize: error: {error}") from None
