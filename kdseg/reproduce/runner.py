"""From a table of the grid to ordinary kdseg.train runs, and back to each cell's final records.

Each (scenario, variant, row group) is one run directory under
<run_root>/<budget>/<paper>/<scenario key>[/v<k>][/<row>], trained with --seeds: resume, the
method locks and the rule that methods of one directory may train in parallel processes all
apply, so several machines can share a grid (--rows=mib on one, --rows=ft on another). A row
whose every seed has its final record is not trained again.
"""
from __future__ import annotations

import dataclasses
import os

from kdseg import atomic, fs, report
from kdseg.reproduce.grids import Row, Scenario, Table, slug
from kdseg.rundir import RunDir
from kdseg.run import seeds as seeds_module

BUDGETS = ("paper", "shapes", "smoke")

# The smoke budget: the shapes recipe shrunk to seconds per step (tests, a first try).
SMOKE_FLAGS = ("--shapes_image_size=32", "--shapes_num_train=80", "--shapes_num_val=16",
               "--backbone=tiny", "--output_stride=16", "--head_channels=8", "--batch_size=4",
               "--crop_size=32", "--eval_batch_size=16", "--epochs=1", "--epochs_incremental=1",
               "--iterations_per_class=0", "--verbose=0")


# The shapes budget: the shapes recipe sized for grids (given after the table's flagfile, before
# its scenario and row flags, which win).
BUDGET_FLAGS = {"shapes": ("--flagfile=flags/recipe_shapes_budget.cfg",)}


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One kdseg.train invocation: its run directory, its flags (method and seeds apart), and
  which table rows it holds (row name -> method folder). label: the run directory below
  <run_root>/<budget>/<paper>, the same on every machine (merging results across machines)."""
  scenario: Scenario
  run_dir: str
  flags: tuple[str, ...]
  rows: dict
  label: str = ""


def _flagfile(row: Row, scenario: Scenario, variant, table: Table, budget: str) -> str | None:
  if budget == "paper":
    return row.flagfile or variant.flagfile
  return row.shapes_flagfile or scenario.shapes_flagfile or table.shapes_flagfile


def run_specs(table: Table, budget: str, run_root: str, rows: list[str] | None = None,
              data_root: str | None = None) -> list[RunSpec]:
  """The runs of `table` under `budget` (only the rows named in `rows`, if given)."""
  if budget not in BUDGETS:
    raise ValueError(f"--budget={budget}: choose one of {', '.join(BUDGETS)}.")
  chosen = [table.row(name) for name in rows] if rows else list(table.rows)
  specs = []
  for scenario in table.scenarios:
    recipe = None if budget == "paper" else (scenario.shapes_flagfile or table.shapes_flagfile)
    key = scenario.key(budget, recipe)
    task = scenario.task if budget == "paper" else (scenario.shapes_task or scenario.task)
    for index, variant in enumerate(scenario.variants):
      folder = "" if len(scenario.variants) == 1 else f"v{index}"
      groups: dict = {}
      for row in chosen:
        flagfile = _flagfile(row, scenario, variant, table, budget)
        if budget == "paper" and not flagfile:
          raise ValueError(f"{table.paper} Table {table.id}, {scenario.name}: no paper "
                           "flagfile for this scenario.")
        flags = [f"--flagfile={flagfile}", *BUDGET_FLAGS.get(budget, ()), f"--task={task}",
                 f"--setting={scenario.setting}"]
        flags += variant.flags if budget == "paper" else variant.shapes_flags
        flags += row.flags + (row.paper_flags if budget == "paper" else row.shapes_flags)
        if budget == "smoke":
          flags += SMOKE_FLAGS
        if budget == "paper" and data_root:
          flags.append(f"--data_root={data_root}")
        label = "/".join(part for part in (key, folder, slug(row.name) if row.own_run else "")
                         if part)
        run_dir = fs.join(run_root, budget, table.paper, *label.split("/"))
        spec = groups.setdefault(run_dir, RunSpec(scenario, run_dir, tuple(flags), {}, label))
        spec.rows[row.name] = row.method
      specs.extend(groups.values())
  return specs


def final_records(spec: RunSpec, method: str) -> dict[int, dict]:
  """seed -> the method's record after the task's last step, for the seeds that have one."""
  found = {}
  for seed, path in seeds_module.seed_run_dirs(spec.run_dir).items():
    records = report.load_records(RunDir(path), method)
    if records and records[-1]["step"] == report.last_step_of(records[-1]):
      found[seed] = records[-1]
  return found


def step_records(spec: RunSpec, method: str) -> dict[int, list[dict]]:
  """seed -> every step record of the method (for the per-step plot)."""
  return {seed: report.load_records(RunDir(path), method)
          for seed, path in seeds_module.seed_run_dirs(spec.run_dir).items()}


def unfinished(spec: RunSpec, seeds: tuple[int, ...]) -> list[str]:
  """The methods of `spec` some seed of `seeds` has not finished."""
  return sorted({method for method in spec.rows.values()
                 if not set(seeds) <= set(final_records(spec, method))})


DIVERGED_FILE = "reproduce_diverged.json"


def record_divergence(spec: RunSpec, method: str, message: str) -> None:
  """Keeps why `method` stopped (a non-finite loss) beside the runs, for the tables."""
  path = fs.join(spec.run_dir, DIVERGED_FILE)
  found = fs.read_json(path) if fs.isfile(path) else {}
  found[method] = message
  atomic.write_json(path, found)


def divergences(spec: RunSpec) -> dict[str, str]:
  """method -> the message of its last divergence in `spec`'s run directory."""
  path = fs.join(spec.run_dir, DIVERGED_FILE)
  return fs.read_json(path) if fs.isfile(path) else {}


def train_argv(spec: RunSpec, methods: list[str], seeds: tuple[int, ...],
               extra: tuple[str, ...] = ()) -> list[str]:
  """kdseg.train's command line for the unfinished methods of `spec` (extra: the user's
  overrides, e.g. --deterministic, given last so they win)."""
  return ["kdseg.train", *spec.flags, f"--method={','.join(methods)}",
          f"--run_dir={spec.run_dir}", f"--seeds={','.join(str(s) for s in seeds)}", *extra]


def repository_root() -> str:
  """The folder holding flags/ (flagfiles name nested flagfiles relative to it)."""
  return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
