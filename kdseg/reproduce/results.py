"""A table's cells from its runs: our mean ± std (n) over seeds (and pooled variants) beside the
paper's number and the difference, written as Markdown, CSV and JSON in the paper's layout, and
old-class mIoU per step per row where a scenario has more than one incremental step."""
from __future__ import annotations

import csv
import io
import math

import numpy as np

from kdseg import atomic, fs, plot, report
from kdseg.reproduce import runner
from kdseg.reproduce.grids import Table, paper_value, slug


PER_CLASS = "iou:"   # "iou:<class name>": that class's IoU (per-class columns)


def column_value(record: dict, column: str) -> float | None:
  """A column of a paper's table from a record, in % (None where undefined): old, new, all,
  pacc, cacc, "step k" (mIoU of step k's classes) or "iou:<class>" of the record's step."""
  if column.startswith(PER_CLASS):
    value = record.get("class_iou", {}).get(column[len(PER_CLASS):])
  elif column in ("old", "new"):
    _, _, old, new = report.final_columns(record)
    value = old if column == "old" else new
  elif column.startswith("step "):
    value = record["miou_per_step"].get(column)
  else:
    value = {"all": record["miou_all"], "pacc": record.get("overall_accuracy"),
             "cacc": record.get("mean_class_accuracy")}.get(column)
  return None if value is None else 100.0 * value


def _class_names(table: Table, scenario, specs: list[runner.RunSpec]) -> list[str]:
  """The classes of the scenario's per-class columns, in learning order from its
  per_class_first: read from any final record of its runs (none run yet: [])."""
  if not scenario.per_class:
    return []
  for row in table.rows:
    for spec in specs:
      if spec.scenario is scenario and row.name in spec.rows:
        for record in runner.final_records(spec, spec.rows[row.name]).values():
          names = list(record.get("class_iou", {}))
          width = max(len(values) for values in scenario.per_class.values())
          return names[scenario.per_class_first:scenario.per_class_first + width]
  return []


def per_class_columns(cells: list[dict], scenario_name: str) -> list[str]:
  """The per-class columns collected for a scenario, in order."""
  return list(dict.fromkeys(c["column"] for c in cells if c["scenario"] == scenario_name
                            and c["column"].startswith(PER_CLASS)))


def collect(table: Table, specs: list[runner.RunSpec]) -> list[dict]:
  """One cell per (scenario, row, column): our values over seeds and variants, the paper's; and
  where the paper prints per-class IoU, one per (row, class) too ("iou:<class>")."""
  cells = []
  for scenario in table.scenarios:
    classes = _class_names(table, scenario, specs)
    for row in table.rows:
      holding = [spec for spec in specs if spec.scenario is scenario and row.name in spec.rows]
      finals = [record for spec in holding
                for record in runner.final_records(spec, spec.rows[row.name]).values()]
      diverged = [message for spec in holding
                  for method, message in runner.divergences(spec).items()
                  if method == spec.rows[row.name]]
      paper_classes = scenario.per_class.get(row.name, ())
      columns = [(c, paper_value(scenario, row.name, c)) for c in scenario.columns]
      columns += [(PER_CLASS + name, paper_classes[i] if i < len(paper_classes) else None)
                  for i, name in enumerate(classes)]
      for column, paper in columns:
        # "<column>@<k>": the column after step k (KD Table 8's M_k rows); a row with a step
        # (Table 9's) reads every column there; else after the last step.
        name, _, at = column.partition("@")
        at = at or ("" if row.step is None else str(row.step))
        records = finals if not at else [
            record for spec in holding
            for per_seed in runner.step_records(spec, spec.rows[row.name]).values()
            for record in per_seed if record["step"] == int(at)]
        values = [v for v in (column_value(r, name) for r in records) if v is not None]
        mean = float(np.mean(values)) if values else None
        std = float(np.std(values, ddof=1)) if len(values) > 1 else None
        paper = None if paper is None or math.isnan(paper) else paper
        cells.append({"table": table.id, "scenario": scenario.name, "row": row.name,
                      "column": column, "mean": mean, "std": std, "n": len(values),
                      "values": values, "paper": paper,
                      "diverged": diverged[0] if diverged else None,
                      "difference": None if mean is None or paper is None else mean - paper})
  return cells


def _cell_text(cell: dict) -> str:
  if cell["mean"] is None:
    ours = "diverged" if cell.get("diverged") else "–"
  elif cell["std"] is None:
    ours = f"{cell['mean']:.1f} (n={cell['n']})"
  else:
    ours = f"{cell['mean']:.1f} ± {cell['std']:.1f} (n={cell['n']})"
  paper = "–" if cell["paper"] is None else f"{cell['paper']:.1f}"
  difference = "" if cell["difference"] is None else f", {cell['difference']:+.1f}"
  return f"{ours} [{paper}{difference}]"


def _machine_text(machine: dict) -> str:
  return (f"{machine.get('cpu', '?')}, {machine.get('cores', '?')} cores, "
          f"{' '.join(machine.get('instruction_sets', [])) or 'no listed extensions'}")


def format_markdown(table: Table, cells: list[dict], budget: str,
                    about: dict | None = None) -> str:
  """One Markdown table per scenario: rows as the paper's, each cell `ours ± std (n) [paper,
  difference]`; `about` (command, commit, machine, seeds) as a header where given."""
  lines = [f"## {table.paper.upper()} Table {table.id}: {table.caption}", "",
           f"Budget `{budget}`. Each cell: our mean ± sample std (n runs: seeds × variants) "
           "[the paper's number, ours − paper]; mIoU and accuracies in %.", ""]
  if about:
    # The seeds a command asks for are not always the runs there are (a grid still running, or
    # tables reported over seeds only some of them finished): say how many each cell holds.
    counts = sorted({c["n"] for c in cells if not c["column"].startswith(PER_CLASS)})
    held = (f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}") if counts else "0"
    lines += [f"- command: `{about.get('command')}`",
              f"- commit: {about.get('commit') or 'unknown'}; seeds asked: "
              f"{', '.join(str(s) for s in about.get('seeds', []))}; runs per cell: n = {held}",
              f"- machine: {_machine_text(about.get('machine') or {})}", ""]
  for scenario in table.scenarios:
    lines += [f"### {scenario.name}", "",
              "| row | " + " | ".join(scenario.columns) + " |",
              "| --- |" + " --- |" * len(scenario.columns)]
    for row in table.rows:
      found = {c["column"]: c for c in cells
               if c["scenario"] == scenario.name and c["row"] == row.name}
      lines.append(f"| {row.name} | " + " | ".join(_cell_text(found[column])
                                                   for column in scenario.columns) + " |")
    lines.append("")
    classes = per_class_columns(cells, scenario.name)
    if classes:   # the paper's per-class IoU: one row per table row, one column per class
      lines += [f"Per-class IoU, {scenario.name}:", "",
                "| row | " + " | ".join(c[len(PER_CLASS):] for c in classes) + " |",
                "| --- |" + " --- |" * len(classes)]
      for row in table.rows:
        found = {c["column"]: c for c in cells
                 if c["scenario"] == scenario.name and c["row"] == row.name}
        lines.append(f"| {row.name} | " + " | ".join(_cell_text(found[c]) for c in classes)
                     + " |")
      lines.append("")
  stopped = sorted({(c["scenario"], c["row"], c["diverged"]) for c in cells if c.get("diverged")})
  if stopped:
    lines += ["Stopped by a non-finite loss (cells with fewer runs than seeds, or none):", ""]
    lines += [f"- {scenario}, {row}: {message}" for scenario, row, message in stopped]
    lines.append("")
  return "\n".join(lines)


def format_csv(cells: list[dict]) -> str:
  buffer = io.StringIO()
  writer = csv.writer(buffer, lineterminator="\n")
  writer.writerow(["table", "scenario", "row", "column", "mean", "std", "n", "paper",
                   "difference"])
  for cell in cells:
    writer.writerow([cell["table"], cell["scenario"], cell["row"], cell["column"]] +
                    ["" if cell[k] is None else (f"{cell[k]:.4f}" if isinstance(cell[k], float)
                                                else cell[k])
                     for k in ("mean", "std", "n", "paper", "difference")])
  return buffer.getvalue()


def _mean_records(per_seed: list[list[dict]]) -> list[dict]:
  """Step records averaged over seeds (the steps every seed reached): old-class and all-class
  mIoU, the fields plot_miou_per_step draws."""
  length = min(len(records) for records in per_seed)
  averaged = []
  for index in range(length):
    first = dict(per_seed[0][index])
    first["miou_per_step"] = {"step 0": float(np.mean(
        [records[index]["miou_per_step"]["step 0"] for records in per_seed]))}
    first["miou_all"] = float(np.mean([records[index]["miou_all"] for records in per_seed]))
    averaged.append(first)
  return averaged


def write_plots(table: Table, specs: list[runner.RunSpec], directory: str) -> list[str]:
  """Per scenario with two or more incremental steps: old-class mIoU per step per row (mean over
  seeds of the first variant). Returns the paths written."""
  written = []
  for scenario in table.scenarios:
    by_row = {}
    if any(row.step is not None for row in table.rows):   # rows are steps (Table 9): no curve
      continue
    for row in table.rows:
      spec = next((s for s in specs if s.scenario is scenario and row.name in s.rows), None)
      if spec is None:
        continue
      per_seed = [r for r in runner.step_records(spec, spec.rows[row.name]).values() if r]
      if per_seed:
        by_row[row.name] = _mean_records(per_seed)
    if not by_row or max(len(records) for records in by_row.values()) < 3:
      continue
    path = fs.join(directory, f"{table.paper}_table_{table.id}_{slug(scenario.name)}.png")
    plot.plot_miou_per_step(by_row, path, f"{table.paper.upper()} Table {table.id}, "
                            f"{scenario.name} (mean over seeds)")
    written.append(path)
  return written


def write_table(table: Table, cells: list[dict], budget: str, directory: str,
                about: dict) -> str:
  """<directory>/<paper>_table_<N>.md / .csv / .json; returns the Markdown."""
  markdown = format_markdown(table, cells, budget, about)
  stem = fs.join(directory, f"{table.paper}_table_{table.id}")
  atomic.write_text(stem + ".md", markdown + "\n")
  atomic.write_text(stem + ".csv", format_csv(cells))
  atomic.write_json(stem + ".json", {**about, "table": table.id, "caption": table.caption,
                                     "cells": [{k: (None if isinstance(v, float) and math.isnan(v)
                                                    else v) for k, v in cell.items()}
                                               for cell in cells]})
  return markdown
