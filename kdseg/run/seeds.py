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
  directory of `run_dir`: per method, the seeds' records of the latest step any seed of it
  reached (a seed still short of it is left out)."""
  latest = {seed: report.latest_records(RunDir(path))
            for seed, path in seed_run_dirs(run_dir).items()}
  by_method: dict[str, list[dict]] = {}
  for records in latest.values():
    for method, record in records.items():
      by_method.setdefault(method, []).append(record)
  by_method = {method: [r for r in records if r["step"] == max(x["step"] for x in records)]
               for method, records in by_method.items()}
  table = report.format_seed_table(by_method)
  seeded = RunDir(run_dir)
  seeded.write_text(seeded.seeds_table, table)
  seeded.write_json(seeded.seeds_json,
                    {"seeds": sorted(latest), "cells": report.seed_cells(by_method)})
  return table
