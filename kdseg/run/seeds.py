"""Several seeds of one experiment side by side (--seeds=0,1,2): <run_dir>/seed_<s> holds the
run of seed s (a complete run directory), <run_dir>/seeds.md and seeds.json the mean ± std over
them (kdseg.report.seed_cells). tools/summarize.py reads such a directory as one run."""
from __future__ import annotations

import dataclasses
import re

from kdseg import fs, report
from kdseg.config import RunConfig
from kdseg.rundir import RunDir


def seed_configs(config: RunConfig) -> list[RunConfig]:
  """One RunConfig per --seeds entry, each with its own run directory."""
  return [dataclasses.replace(config, seed=seed, run_dir=RunDir(config.run_dir).seed_dir(seed),
                              seeds=())
          for seed in config.seeds]


def seed_run_dirs(run_dir: str) -> dict[int, str]:
  """seed -> run directory of a --seeds directory ({} for an ordinary run directory)."""
  found = {}
  for path in fs.glob(RunDir(run_dir).seed_dir("*")):
    match = re.fullmatch(r"seed_(-?\d+)", fs.basename(path))
    if match and fs.isfile(RunDir(path).experiment_json):
      found[int(match.group(1))] = path
  return dict(sorted(found.items()))


def write_seed_summary(run_dir: str) -> str:
  """seeds.md (the table) and seeds.json (the cells, with every seed's values) over every seed
  directory of `run_dir`: per method, the seeds' records after the task's last step (a seed
  still short of it is left out); a method no seed has finished is named below the table, not
  mixed in with an earlier step's numbers."""
  latest = {seed: report.latest_records(RunDir(path))
            for seed, path in seed_run_dirs(run_dir).items()}
  by_method: dict[str, list[dict]] = {}
  for records in latest.values():
    for method, record in records.items():
      by_method.setdefault(method, []).append(record)
  unfinished = sorted(method for method, records in by_method.items()
                      if not any(r["step"] == report.last_step_of(r) for r in records))
  by_method = {method: [r for r in records if r["step"] == report.last_step_of(r)]
               for method, records in by_method.items() if method not in unfinished}
  table = report.format_seed_table(by_method) if by_method else ""
  if unfinished:
    table += (f"\nNo seed has finished the last step of: {', '.join(unfinished)}.\n")
  seeded = RunDir(run_dir)
  seeded.write_text(seeded.seeds_table, table)
  seeded.write_json(seeded.seeds_json, {"seeds": sorted(latest),
                                        "cells": report.seed_cells(by_method) if by_method else {},
                                        "unfinished": unfinished})
  return table
