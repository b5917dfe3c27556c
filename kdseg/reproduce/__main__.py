"""Re-runs a table of the MiB or KD paper and prints our numbers beside the paper's.

  python -m kdseg.reproduce --paper=mib --table=1,2 --seeds=0,1,2            # shapes budget
  python -m kdseg.reproduce --paper=kd --table=1 --budget=paper \
      --data_root=/data/VOCdevkit/VOC2012 --backbone_weights=/data/deeplab_resnet_init.ckpt
  python -m kdseg.reproduce --paper=mib --table=1 --rows=mib       # this machine: one row
  python -m kdseg.reproduce --paper=mib --table=1 --scenarios="15-1 overlapped"   # one scenario
  python -m kdseg.reproduce --paper=mib --table=1 --report_only    # tables from what has run

Every cell is an ordinary run directory under --run_root (finished rows are skipped, an
interrupted grid continues); per table <results_dir>/<paper>_table_<N>.md/.csv/.json and plots,
and <results_dir>/<paper>_claims.md/.json: each claim of the paper's text, checked.
Run from the repository root (the flagfiles of flags/ name each other relative to it).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from absl import flags  # noqa: E402

from kdseg import atomic, config, fs, machine, train  # noqa: E402  (config defines the flags)
from kdseg.reproduce import claims as claims_module, grids, results, runner  # noqa: E402
from kdseg.engine.loop import TrainingDivergedError  # noqa: E402
from kdseg.run import cli  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_enum("paper", None, list(grids.PAPERS), "kdseg.reproduce: whose tables.")
flags.DEFINE_list("table", [], "kdseg.reproduce: table numbers as printed (e.g. 1,2); default "
                  "every table of the paper.")
flags.DEFINE_enum("budget", None, list(runner.BUDGETS), "kdseg.reproduce: paper (the papers' "
                  "recipes, needs --data_root), shapes (the shapes recipe; default without "
                  "--data_root) or smoke (seconds per step, for tests).")
flags.DEFINE_list("rows", [], "kdseg.reproduce: only these rows of each table (methods, or "
                  "the row names of the weak tables); other machines can take the others.")
flags.DEFINE_list("scenarios", [], "kdseg.reproduce: only these scenarios of each table, by "
                  "name as printed (e.g. '15-1 overlapped'); the tables show every scenario.")
flags.DEFINE_string("run_root", "runs/reproduce", "kdseg.reproduce: where the cells' run "
                    "directories go (<run_root>/<budget>/<paper>/<scenario>).")
flags.DEFINE_string("results_dir", None, "kdseg.reproduce: where tables and claims go; "
                    "default <run_root>/<budget>/results.")
flags.DEFINE_bool("report_only", False, "kdseg.reproduce: train nothing; tables from the runs "
                  "that exist.")
flags.DEFINE_list("merge_results", [], "kdseg.reproduce: results folders of earlier grids (their "
                  "<paper>_table_<N>.json; other machines, other seeds, runs since deleted): "
                  "their runs join the ones found here in every cell, a run (run directory "
                  "and seed) in both counted once. Checked before anything trains.")
flags.DEFINE_bool("dry_run", False, "kdseg.reproduce: print each kdseg.train command, run none.")

# Flags of kdseg.train a grid passes on to every run when given (the rest come from the grid).
PASSED_ON = ("deterministic", "backbone_weights", "cache_dir", "precision", "jit_compile",
             "verbose", "checkpoint_minutes")


def _commit() -> str | None:
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, cwd=runner.repository_root(), timeout=30,
                          check=True).stdout.strip() or None
  except (OSError, subprocess.SubprocessError):
    return None


def _earlier_results(chosen, budget: str, run_root: str, data_root) -> dict[str, list[dict]]:
  """table id -> the checked contents of --merge_results' <paper>_table_<N>.json files (each
  with its path); a folder without a chosen table's file is skipped with a message."""
  found: dict[str, list[dict]] = {}
  for folder in FLAGS.merge_results:
    if not fs.isdir(folder):
      raise config.FlagValueError(f"--merge_results={folder}: no such folder (give the "
                                  "results folders of earlier grids, e.g. docs/results).")
  for table in chosen:
    labels: dict = {}   # (scenario, row) -> the run directories this grid gives the cell
    for spec in runner.run_specs(table, budget, run_root, None, data_root):
      for row in spec.rows:
        labels.setdefault((spec.scenario.name, row), set()).add(spec.label)
    for folder in FLAGS.merge_results:
      path = fs.join(folder, f"{table.paper}_table_{table.id}.json")
      if not fs.isfile(path):
        print(f"kdseg.reproduce: --merge_results: {path} does not exist; Table {table.id} "
              "takes nothing from that folder.", flush=True)
        continue
      try:
        earlier = fs.read_json(path)
      except fs.CorruptFileError as error:
        raise config.FlagValueError(f"--merge_results: {error}") from None
      try:
        results.check_earlier(table, budget, path, earlier, labels)
      except results.MergeError as error:
        raise config.FlagValueError(f"--merge_results: {error}") from None
      found.setdefault(table.id, []).append({**earlier, "path": path})
  return found


def main(argv):
  del argv
  if not FLAGS.paper:
    raise config.FlagValueError("kdseg.reproduce needs --paper=mib or --paper=kd.")
  budget = FLAGS.budget or ("paper" if FLAGS.data_root else "shapes")
  if budget == "paper" and not FLAGS.data_root:
    raise config.FlagValueError("--budget=paper trains on the paper's dataset: give --data_root.")
  if not fs.isfile(fs.join("flags", "recipe_shapes.cfg")):
    raise config.FlagValueError(f"kdseg.reproduce runs from the repository root (the folder "
                                f"holding flags/), e.g. cd {runner.repository_root()}.")
  tables = grids.load_tables(FLAGS.paper)
  unknown = [t for t in FLAGS.table if t not in tables]
  if unknown:
    raise config.FlagValueError(f"--table={','.join(unknown)}: the {FLAGS.paper} grid has "
                                f"tables {', '.join(tables)}.")
  chosen = [tables[t] for t in (FLAGS.table or tables)]
  seeds = config.seeds_flag() or (FLAGS.seed,)
  run_root = fs.absolute(FLAGS.run_root)
  results_dir = fs.absolute(FLAGS.results_dir or fs.join(run_root, budget, "results"))
  passed_on = tuple(FLAGS[name].serialize() for name in PASSED_ON if FLAGS[name].present)
  rows, data_root = list(FLAGS.rows), FLAGS.data_root
  report_only, dry_run, paper = FLAGS.report_only, FLAGS.dry_run, FLAGS.paper
  command = " ".join(["python -m kdseg.reproduce", *sys.argv[1:]])
  earlier = _earlier_results(chosen, budget, run_root, data_root)
  start = time.time()
  every_cell = []
  names = {scenario.name for table in chosen for scenario in table.scenarios}
  unknown = [name for name in FLAGS.scenarios if name not in names]
  if unknown:
    raise config.FlagValueError(f"--scenarios={','.join(unknown)}: the chosen tables have "
                                f"scenarios {', '.join(sorted(names))}.")
  for table in chosen:
    specs = runner.run_specs(table, budget, run_root, rows, data_root)
    trained = [spec for spec in specs
               if not FLAGS.scenarios or spec.scenario.name in FLAGS.scenarios]
    for spec in trained if not report_only else ():
      todo = runner.unfinished(spec, seeds)
      if not todo:
        print(f"kdseg.reproduce: {spec.run_dir}: {', '.join(spec.rows.values())} finished "
              "for every seed", flush=True)
        continue
      # One method per kdseg.train run (they share step 0 through the run directory): a
      # method that diverges is recorded and the grid goes on with the others.
      for method in todo:
        train_argv = runner.train_argv(spec, [method], seeds, passed_on)
        print(f"kdseg.reproduce: python -m kdseg.train {' '.join(train_argv[1:])}", flush=True)
        if dry_run:
          continue
        FLAGS.unparse_flags()
        FLAGS(train_argv)
        try:
          train.main([])
        except TrainingDivergedError as error:
          runner.record_divergence(spec, method, str(error))
          print(f"kdseg.reproduce: {method} diverged ({error}); its cells are reported as "
                "diverged, the grid goes on.", flush=True)
    if dry_run:
      continue
    before = earlier.get(table.id, [])
    cells = results.merge(results.collect(table, specs), before)
    curves = results.merge_curves(results.collect_curves(table, specs), before)
    about = {"command": command, "budget": budget, "seeds": list(seeds), "commit": _commit(),
             "machine": machine.describe(), "wall_seconds_so_far": round(time.time() - start),
             # whose runs the cells hold besides this machine's: each earlier file, and the
             # files it had merged in turn
             "merged": [entry for result in before
                        for entry in [*result.get("merged", ()),
                                      {k: result.get(k) for k in ("path", "commit", "command")}]]}
    print("\n" + results.write_table(table, cells, budget, results_dir, about, curves),
          flush=True)
    for path in results.write_plots(table, curves, results_dir):
      print(f"plot: {path}")
    every_cell += cells
  if dry_run:
    return
  chosen_ids = {table.id for table in chosen}
  checked = [claims_module.check(claim, every_cell) for claim in grids.load_claims(paper)
             if claim.table in chosen_ids]
  if checked:
    report = claims_module.format_report(checked, paper)
    atomic.write_text(fs.join(results_dir, f"{paper}_claims.md"), report)
    atomic.write_json(fs.join(results_dir, f"{paper}_claims.json"),
                      {"command": command, "claims": checked})
    print(report)
  print(f"kdseg.reproduce: {len(chosen)} table(s) in {time.time() - start:.0f} s; results in "
        f"{results_dir}")


flags.adopt_module_key_flags(config)
run = cli.command_line("kdseg.reproduce", main, grids.GridError)


if __name__ == "__main__":
  run()
