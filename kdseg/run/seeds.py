"""Several seeds of one experiment side by side (--seeds=0,1,2): <run_dir>/seed_<s> holds the
run of seed s (a complete run directory), <run_dir>/seeds.md and seeds.json the mean ± std over
them (kdseg.report.seed_cells). tools/summarize.py reads such a directory as one run."""
from __future__ import annotations

import dataclasses
import re

from kdseg import atomic, fs, report
from kdseg.config import RunConfig


def seed_dir(run_dir: str, seed: int) -> str:
  return fs.join(run_dir, f"seed_{seed}")


def seed_configs(config: RunConfig) -> list[RunConfig]:
  """One RunConfig per --seeds entry, each with its own run directory."""
  return [dataclasses.replace(config, seed=seed, run_dir=seed_dir(config.run_dir, seed), seeds=())
          for seed in config.seeds]


def seed_run_dirs(run_dir: str) -> dict[int, str]:
  """seed -> run directory of a --seeds directory ({} for an ordinary run directory)."""
  found = {}
  for path in fs.glob(fs.join(run_dir, "seed_*")):
    match = re.fullmatch(r"seed_(-?\d+)", fs.basename(path))
    if match and fs.isfile(fs.join(path, "experiment.json")):
      found[int(match.group(1))] = path
  return dict(sorted(found.items()))


def write_seed_summary(run_dir: str, finals: dict[int, dict[str, dict]]) -> str:
  """seeds.md (the table) and seeds.json (the cells, with every seed's values) of `finals`:
  seed -> method -> final record."""
  by_method: dict[str, list[dict]] = {}
  for records in finals.values():
    for method, record in records.items():
      by_method.setdefault(method, []).append(record)
  table = report.format_seed_table(by_method)
  atomic.write_text(fs.join(run_dir, "seeds.md"), table)
  atomic.write_json(fs.join(run_dir, "seeds.json"),
                    {"seeds": sorted(finals), "cells": report.seed_cells(by_method)})
  return table
