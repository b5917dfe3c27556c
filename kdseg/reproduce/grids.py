"""The papers' tables as data: kdseg/reproduce/<paper>.toml holds, per table, its scenarios (task,
setting, the flagfile of the paper's recipe, what changes on shapes), its rows (methods, or a
method with flags of its own) and the paper's printed numbers per cell; <paper>_claims.toml the
qualitative claims of the paper's text in a form kdseg.reproduce.claims checks.

The TOML files are the only place the papers' numbers live; this module turns them into frozen
records and refuses a file that contradicts itself (a number for a row the table does not have,
a row of the wrong width), naming the table and scenario.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import tomllib

PAPERS = ("mib", "kd")
HERE = os.path.dirname(os.path.abspath(__file__))


class GridError(ValueError):
  """A grid or claims file that cannot describe a table, or a request for a table it lacks."""


@dataclasses.dataclass(frozen=True)
class Row:
  """One row of a table: `method` trained with `flags` (every budget), `paper_flags` (paper
  budget only) or `shapes_flags` (shapes and smoke); `flagfile` / `shapes_flagfile` replace the
  scenario's when the row needs another recipe (e.g. full supervision in a weak table)."""
  name: str
  method: str
  flags: tuple[str, ...] = ()
  paper_flags: tuple[str, ...] = ()
  shapes_flags: tuple[str, ...] = ()
  flagfile: str | None = None
  shapes_flagfile: str | None = None
  step: int | None = None   # the record after this step (KD Table 9's M_k rows); default last

  @property
  def own_run(self) -> bool:
    """Whether the row needs a run directory of its own (anything beyond the method name)."""
    return bool(self.flags or self.paper_flags or self.shapes_flags or self.flagfile
                or self.shapes_flagfile)


@dataclasses.dataclass(frozen=True)
class Variant:
  """One run of a scenario; a scenario with several (ADE20K's two class orders) pools them."""
  flagfile: str | None
  flags: tuple[str, ...] = ()
  shapes_flags: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Scenario:
  name: str
  task: str
  setting: str
  columns: tuple[str, ...]
  variants: tuple[Variant, ...]
  paper: dict          # row name -> tuple of numbers (NaN where the paper prints "-")
  per_class: dict      # row name -> the paper's per-class IoU in its column order (KD tables)
  shapes_task: str | None = None
  shapes_flagfile: str | None = None
  per_class_first: int = 0   # the class (index in the learning order) per_class starts at

  def key(self, budget: str, flagfile: str | None = None) -> str:
    """The run-directory name of this scenario: its name and a digest of what it runs (with the
    table's flagfile), so two tables with the same scenario and recipe share the runs (MiB
    Tables 1 and 2) and no others do."""
    what = [self.task, self.setting, self.shapes_task if budget != "paper" else None,
            [dataclasses.astuple(v) for v in self.variants]]
    if flagfile:
      what.append(flagfile)
    digest = hashlib.sha256(json.dumps(what, default=list).encode()).hexdigest()[:8]
    return f"{slug(self.name)}-{digest}"


@dataclasses.dataclass(frozen=True)
class Table:
  paper: str
  id: str
  caption: str
  rows: tuple[Row, ...]
  scenarios: tuple[Scenario, ...]
  shapes_flagfile: str

  def row(self, name: str) -> Row:
    for row in self.rows:
      if row.name == name:
        return row
    raise GridError(f"{self.paper} Table {self.id} has no row {name!r}; its rows: "
                    f"{', '.join(r.name for r in self.rows)}.")


@dataclasses.dataclass(frozen=True)
class Claim:
  """`text` as the paper says it; `check` the machine form ("mib > ft,lwf" or "ft < 10"), over
  `column` of `scenario` in `table`."""
  id: str
  text: str
  table: str
  scenario: str
  column: str
  check: str
  source: str = ""


def slug(name: str) -> str:
  return re.sub(r"[^a-z0-9.+-]+", "_", name.lower()).strip("_")


def _numbers(values, where: str) -> tuple[float, ...]:
  if not isinstance(values, list) or not all(isinstance(v, (int, float)) for v in values):
    raise GridError(f"{where}: expected a list of numbers, got {values!r}")
  return tuple(float(v) for v in values)


def _scenario(data: dict, table: dict, where: str) -> Scenario:
  columns = tuple(data.get("columns", table.get("columns", ())))
  if not columns:
    raise GridError(f"{where}: no columns (give them on the table or the scenario)")
  if "variants" in data:
    variants = tuple(Variant(v.get("flagfile"), tuple(v.get("flags", ())),
                             tuple(v.get("shapes_flags", ()))) for v in data["variants"])
  else:
    variants = (Variant(data.get("flagfile"), tuple(data.get("flags", ())),
                        tuple(data.get("shapes_flags", ()))),)
  paper = {}
  for row, values in data.get("paper", {}).items():
    paper[row] = _numbers(values, f"{where}, row {row}")
    if len(paper[row]) != len(columns):
      raise GridError(f"{where}, row {row}: {len(paper[row])} numbers for the "
                      f"{len(columns)} columns {list(columns)}")
  per_class = {row: _numbers(values, f"{where}, per-class row {row}")
               for row, values in data.get("per_class", {}).items()}
  return Scenario(data["name"], data["task"], data["setting"], columns, variants, paper,
                  per_class, data.get("shapes_task"), data.get("shapes_flagfile"),
                  data.get("per_class_first", 0))


def load_tables(paper: str) -> dict[str, Table]:
  """Every table of `paper` (mib or kd) by its number as printed ("1", "13", ...)."""
  if paper not in PAPERS:
    raise GridError(f"--paper={paper}: choose one of {', '.join(PAPERS)}.")
  with open(os.path.join(HERE, f"{paper}.toml"), "rb") as handle:
    data = tomllib.load(handle)
  tables = {}
  for table_id, table in data["tables"].items():
    where = f"{paper}.toml, table {table_id}"
    rows_data = table.get("rows", {})
    rows = tuple(Row(name, **{k: tuple(v) if isinstance(v, list) else v
                              for k, v in rows_data.get(name, {"method": name}).items()})
                 for name in table["methods"])
    scenarios = tuple(_scenario(s, table, f"{where}, scenario {s.get('name')}")
                      for s in table["scenarios"])
    names = {row.name for row in rows}
    for scenario in scenarios:
      unknown = (set(scenario.paper) | set(scenario.per_class)) - names
      if unknown:
        raise GridError(f"{where}, scenario {scenario.name}: numbers for rows the table does "
                        f"not list: {sorted(unknown)}")
    tables[table_id] = Table(paper, table_id, table["caption"], rows, scenarios,
                             data["shapes_flagfile"])
  return tables


def load_claims(paper: str) -> list[Claim]:
  with open(os.path.join(HERE, f"{paper}_claims.toml"), "rb") as handle:
    data = tomllib.load(handle)
  claims = [Claim(**claim) for claim in data["claims"]]
  tables = load_tables(paper)
  for claim in claims:
    if claim.table not in tables:
      raise GridError(f"{paper}_claims.toml, claim {claim.id}: no Table {claim.table}")
    if claim.scenario not in [s.name for s in tables[claim.table].scenarios]:
      raise GridError(f"{paper}_claims.toml, claim {claim.id}: Table {claim.table} has no "
                      f"scenario {claim.scenario!r}")
  return claims


def paper_value(scenario: Scenario, row: str, column: str) -> float | None:
  values = scenario.paper.get(row)
  if values is None or column not in scenario.columns:
    return None
  value = values[scenario.columns.index(column)]
  return None if math.isnan(value) else value
