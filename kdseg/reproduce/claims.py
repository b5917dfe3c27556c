"""Checks a paper's qualitative claims against our cells.

A claim's `check` is `<row> <op> <rows or number>` over one column of one scenario:
  "mib > ft,lwf,ilt"   mib's mean above each of those rows' means;
  "ft < 10"            ft's mean below 10 (%);
  "mib-ce-kd > lwf"    ... with >, <, >= or <=.
Verdict per comparison, with the "~" rule of --seeds: `within spread` when the larger of the two
sample standard deviations (one for a number) is at least the gap between the means; else `holds`
or `does not hold`. A claim over several rows is `does not hold` if any comparison does not,
else `within spread` if any is, else `holds`; `not run` where a cell has no value yet.
"""
from __future__ import annotations

import re

from kdseg.reproduce.grids import Claim, GridError

_CHECK = re.compile(r"^\s*(?P<lhs>.+?)\s+(?P<op>>=|<=|>|<)\s+(?P<rhs>.+?)\s*$")
HOLDS, FAILS, SPREAD, NOT_RUN = "holds", "does not hold", "within spread", "not run"


def parse(check: str) -> tuple[str, str, list[str] | float]:
  match = _CHECK.match(check)
  if not match:
    raise GridError(f"claim check {check!r}: expected '<row> <op> <rows or number>' with op one "
                    "of >, <, >=, <=")
  rhs = match.group("rhs")
  try:
    return match.group("lhs"), match.group("op"), float(rhs)
  except ValueError:
    return match.group("lhs"), match.group("op"), [r.strip() for r in rhs.split(",")]


def _compare(op: str, left: dict, right: dict | float) -> tuple[str, str]:
  """(verdict, what was compared) of one comparison; cells carry mean/std/n."""
  if isinstance(right, dict):
    right_mean, right_std, right_text = right["mean"], right["std"], right["row"]
  else:
    right_mean, right_std, right_text = right, None, f"{right:g}"
  if left["mean"] is None or right_mean is None:
    return NOT_RUN, f"{left['row']} vs {right_text}: no value yet"
  gap = left["mean"] - right_mean
  spread = max(s for s in (left["std"], right_std, 0.0) if s is not None)
  greater = op in (">", ">=")
  satisfied = gap > 0 if op == ">" else gap < 0 if op == "<" else (gap >= 0 if greater else gap <= 0)
  verdict = SPREAD if spread >= abs(gap) and spread > 0 else HOLDS if satisfied else FAILS
  # A row: its name and mean, ± std where it has several runs (identical runs show ±0.0, one run
  # no std); a number: itself.
  if isinstance(right, dict):
    right_text += f" {right_mean:.1f}" + (f"±{right_std:.1f}" if right_std is not None else "")
  left_std = "" if left["std"] is None else f"±{left['std']:.1f}"
  shown = f"{left['row']} {left['mean']:.1f}{left_std} {op} {right_text}"
  return verdict, shown


def check(claim: Claim, cells: list[dict]) -> dict:
  """{"claim", "verdict", "compared": [...]} of one claim over a table's cells."""
  lhs, op, rhs = parse(claim.check)
  found = {c["row"]: c for c in cells
           if c["table"] == claim.table and c["scenario"] == claim.scenario
           and c["column"] == claim.column}
  for row in [lhs] + (rhs if isinstance(rhs, list) else []):
    if row not in found:
      raise GridError(f"claim {claim.id}: Table {claim.table}, {claim.scenario} has no row "
                      f"{row!r} in column {claim.column!r}")
  results = [_compare(op, found[lhs], found[r] if isinstance(rhs, list) else rhs)
             for r in (rhs if isinstance(rhs, list) else [rhs])]
  verdicts = [verdict for verdict, _ in results]
  verdict = next((v for v in (NOT_RUN, FAILS, SPREAD) if v in verdicts), HOLDS)
  return {"id": claim.id, "text": claim.text, "table": claim.table, "scenario": claim.scenario,
          "column": claim.column, "check": claim.check, "verdict": verdict,
          "compared": [shown for _, shown in results]}


def format_report(results: list[dict], paper: str) -> str:
  counts = {v: sum(r["verdict"] == v for r in results) for v in (HOLDS, SPREAD, FAILS, NOT_RUN)}
  lines = [f"## Claims of the {paper.upper()} paper", "",
           ", ".join(f"{n} {v}" for v, n in counts.items() if n) + ".", "",
           "| claim | table, scenario, column | check | verdict | compared |",
           "| --- | --- | --- | --- | --- |"]
  for r in results:
    lines.append(f"| {r['text']} | {r['table']}, {r['scenario']}, {r['column']} | "
                 f"`{r['check']}` | {r['verdict']} | {'; '.join(r['compared'])} |")
  return "\n".join(lines) + "\n"
