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


def _source(spec: runner.RunSpec, seed: int) -> dict:
  """Which run a value comes from: its run directory below <run_root>/<budget>/<paper> and seed
  (the same on every machine, so results of several machines merge without counting twice)."""
  return {"run": spec.label, "seed": seed}


def summarise(cell: dict) -> dict:
  """`cell` with mean, sample std, n and the difference to the paper from its values."""
  values = cell["values"]
  mean = float(np.mean(values)) if values else None
  return {**cell, "mean": mean, "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
          "n": len(values),
          "difference": None if mean is None or cell["paper"] is None else mean - cell["paper"]}


def collect(table: Table, specs: list[runner.RunSpec]) -> list[dict]:
  """One cell per (scenario, row, column): our values over seeds and variants (each with its
  run in "runs"), the paper's; and where the paper prints per-class IoU, one per (row, class)
  too ("iou:<class>")."""
  cells = []
  for scenario in table.scenarios:
    classes = _class_names(table, scenario, specs)
    for row in table.rows:
      holding = [spec for spec in specs if spec.scenario is scenario and row.name in spec.rows]
      finals = [(_source(spec, seed), record) for spec in holding
                for seed, record in runner.final_records(spec, spec.rows[row.name]).items()]
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
            (_source(spec, seed), record) for spec in holding
            for seed, per_seed in runner.step_records(spec, spec.rows[row.name]).items()
            for record in per_seed if record["step"] == int(at)]
        found = [(source, value) for source, value in
                 ((source, column_value(record, name)) for source, record in records)
                 if value is not None]
        paper = None if paper is None or math.isnan(paper) else paper
        cells.append(summarise({
            "table": table.id, "scenario": scenario.name, "row": row.name, "column": column,
            "values": [value for _, value in found], "runs": [source for source, _ in found],
            "paper": paper, "diverged": diverged[0] if diverged else None}))
  return cells


def _key(cell: dict) -> tuple:
  return cell["scenario"], cell["row"], cell["column"]


def _run_key(source: dict) -> tuple:
  return source["run"], source["seed"]


class MergeError(ValueError):
  """Earlier results that cannot join a table's (another table, budget or recipe; too old)."""


def check_earlier(table: Table, budget: str, path: str, earlier: dict,
                  labels: dict[tuple[str, str], set[str]]) -> None:
  """Raises MergeError unless `earlier` (a <paper>_table_<N>.json read from `path`) holds runs
  of this table under this budget, every value with its run, from run directories this grid
  would write (labels: (scenario, row) -> the grid's run-directory labels)."""
  if not isinstance(earlier, dict) or not isinstance(earlier.get("cells"), list):
    raise MergeError(f"{path}: not a table kdseg.reproduce wrote (no cells).")
  if earlier.get("table") != table.id or earlier.get("budget") != budget:
    raise MergeError(f"{path}: holds {table.paper} Table {earlier.get('table')} of budget "
                     f"{earlier.get('budget')!r}, not Table {table.id} of budget {budget!r}.")
  for cell in earlier["cells"]:
    if "runs" not in cell or len(cell["runs"]) != len(cell.get("values", ())):
      raise MergeError(f"{path}: its cells do not say which run and seed each value comes from "
                       "(written before kdseg recorded it): write it again with --report_only "
                       "where its run directories are, or leave it out.")
    expected = labels.get((cell["scenario"], cell["row"]))
    if expected is None:
      raise MergeError(f"{path}: cell {cell['scenario']} / {cell['row']} is not in "
                       f"{table.paper} Table {table.id} as this kdseg defines it.")
    stray = sorted({source["run"] for source in cell["runs"]} - expected)
    if stray:
      raise MergeError(f"{path}: {cell['scenario']} / {cell['row']} comes from run "
                       f"{stray[0]}, which this grid no longer trains (its recipe or scenario "
                       f"changed; this grid's: {', '.join(sorted(expected))}): its numbers "
                       "would not be comparable. Leave the file out.")
  for curve in earlier.get("curves", ()):
    if not (isinstance(curve, dict) and {"scenario", "row", "run", "seed", "records"} <= set(curve)
            and curve["run"] in labels.get((curve["scenario"], curve["row"]), ())):
      raise MergeError(f"{path}: a per-step curve ({str(curve)[:80]}) is not one of this grid's "
                       "runs with its records: leave the file out.")


def merge(cells: list[dict], earlier: list[dict]) -> list[dict]:
  """`cells` with the values of earlier results' cells (checked by check_earlier) added, in run
  and seed order: a run (run directory and seed) found in both is counted once, from `cells`.
  Cells only the earlier results have (per-class columns, named by runs that are not here)
  follow their row's."""
  by_key: dict[tuple, list[dict]] = {}
  for result in earlier:
    for other in result["cells"]:
      by_key.setdefault(_key(other), []).append(other)
  known = {_key(cell) for cell in cells}
  only_earlier: dict[tuple, list[dict]] = {}   # (scenario, row) -> cells not in `cells`
  for key, found in by_key.items():
    if key not in known:
      only_earlier.setdefault(key[:2], []).append({**found[0], "values": [], "runs": []})
  ordered = []
  for index, cell in enumerate(cells):
    ordered.append(cell)
    group = _key(cell)[:2]
    if index + 1 == len(cells) or _key(cells[index + 1])[:2] != group:
      ordered += only_earlier.get(group, [])
  merged = []
  for cell in ordered:
    values, runs = list(cell["values"]), list(cell["runs"])
    seen = {_run_key(source) for source in runs}
    diverged = cell.get("diverged")
    for other in by_key.get(_key(cell), ()):
      for value, source in zip(other["values"], other["runs"]):
        if _run_key(source) not in seen:
          seen.add(_run_key(source))
          values.append(value)
          runs.append(source)
      diverged = diverged or other.get("diverged")
    ordered_runs = sorted(range(len(runs)), key=lambda i: _run_key(runs[i]))   # seed order
    merged.append(summarise({**cell, "values": [values[i] for i in ordered_runs],
                             "runs": [runs[i] for i in ordered_runs], "diverged": diverged}))
  return merged


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
    found = sorted({source["seed"] for c in cells for source in c.get("runs", ())})
    lines += [f"- command: `{about.get('command')}`",
              f"- commit: {about.get('commit') or 'unknown'}; seeds asked: "
              f"{', '.join(str(s) for s in about.get('seeds', []))}; runs per cell: n = {held}"
              + (f" (seeds {', '.join(str(s) for s in found)})" if found else ""),
              f"- machine: {_machine_text(about.get('machine') or {})}"]
    lines += [f"- with the runs of `{earlier['path']}` (commit {earlier.get('commit') or '?'}: "
              f"`{earlier.get('command')}`)" for earlier in about.get("merged", ())]
    lines.append("")
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
        lines.append(f"| {row.name} | " + " | ".join(_cell_text(found[c]) if c in found else "–"
                                                   for c in classes) + " |")
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


# The fields of a step record the per-step plot reads (kept in the table's JSON, so results of
# several machines can be drawn together).
CURVE_FIELDS = ("step", "num_steps", "task", "classes_per_step", "miou_all", "class_iou")


def collect_curves(table: Table, specs: list[runner.RunSpec]) -> list[dict]:
  """Per scenario with two or more incremental steps, per row and run: the run's step records,
  trimmed to what the plot reads ({"scenario", "row", "run", "seed", "records"})."""
  if any(row.step is not None for row in table.rows):   # rows are steps (Table 9): no curve
    return []
  curves = []
  for scenario in table.scenarios:
    found = [{"scenario": scenario.name, "row": row.name, **_source(spec, seed),
              "records": [{**{k: r[k] for k in CURVE_FIELDS if k in r},
                           "miou_per_step": {"step 0": r["miou_per_step"]["step 0"]}}
                          for r in records]}
             for row in table.rows
             for spec in specs if spec.scenario is scenario and row.name in spec.rows
             for seed, records in runner.step_records(spec, spec.rows[row.name]).items()
             if records]
    if found and max(len(curve["records"]) for curve in found) >= 3:
      curves += found
  return curves


def merge_curves(curves: list[dict], earlier: list[dict]) -> list[dict]:
  """`curves` with earlier results' curves of other runs (run directory and seed) added."""
  key = lambda curve: (curve["scenario"], curve["row"], curve["run"], curve["seed"])  # noqa: E731
  seen = {key(curve) for curve in curves}
  extra = [curve for result in earlier for curve in result.get("curves", ())
           if key(curve) not in seen]
  return curves + extra


def write_plots(table: Table, curves: list[dict], directory: str) -> list[str]:
  """Per scenario with curves: old-class mIoU per step per row (mean over the seeds of each
  row's first run directory, its first variant), the seeds named in the title. Returns the
  paths written."""
  written = []
  for scenario in table.scenarios:
    by_row, seeds, every = {}, set(), None
    for row in table.rows:
      mine = [c for c in curves if c["scenario"] == scenario.name and c["row"] == row.name]
      if not mine:
        continue
      first = min(curve["run"] for curve in mine)
      chosen = sorted((c for c in mine if c["run"] == first), key=lambda c: c["seed"])
      by_row[row.name] = _mean_records([curve["records"] for curve in chosen])
      seeds.update(curve["seed"] for curve in chosen)
      mine_seeds = {curve["seed"] for curve in chosen}
      every = mine_seeds if every is None else every & mine_seeds
    if not by_row:
      continue
    path = fs.join(directory, f"{table.paper}_table_{table.id}_{slug(scenario.name)}.png")
    named = ", ".join(str(seed) for seed in sorted(seeds))
    plot.plot_miou_per_step(by_row, path, f"{table.paper.upper()} Table {table.id}, "
                            f"{scenario.name} " + (
                                f"(seed {named})" if len(seeds) == 1 else
                                f"(mean over seeds {named})" if every == seeds else
                                f"(mean over each row's runs among seeds {named})"))
    written.append(path)
  return written


def write_table(table: Table, cells: list[dict], budget: str, directory: str,
                about: dict, curves: list[dict] = ()) -> str:
  """<directory>/<paper>_table_<N>.md / .csv / .json (with the curves the plots draw); returns
  the Markdown."""
  markdown = format_markdown(table, cells, budget, about)
  stem = fs.join(directory, f"{table.paper}_table_{table.id}")
  atomic.write_text(stem + ".md", markdown + "\n")
  atomic.write_text(stem + ".csv", format_csv(cells))
  atomic.write_json(stem + ".json", {**about, "table": table.id, "caption": table.caption,
                                     "cells": [{k: (None if isinstance(v, float) and math.isnan(v)
                                                    else v) for k, v in cell.items()}
                                               for cell in cells],
                                     "curves": list(curves)})
  return markdown
