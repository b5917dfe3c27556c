"""kdseg.reproduce: the grids are consistent data (every run they describe parses; every claim
holds on the paper's own numbers), the checker's verdicts on hand-written cells, and a smoke run
of a MiB and a KD table end to end (tables, claims, skipping what has finished)."""
import io
import json
import os
import shutil
from contextlib import redirect_stdout
from unittest import mock

from absl import flags
import numpy as np
import tensorflow as tf

from kdseg import config
from kdseg.data import voc
from kdseg.data.datasets import TABLES
from kdseg.data.orders import task_plan
from kdseg.engine.loop import TrainingDivergedError
from kdseg.reproduce import __main__ as reproduce, claims, grids, results, runner
from kdseg.reproduce.grids import Claim, GridError

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cell(row, mean, std=None, column="all", scenario="s", table="1"):
  return {"table": table, "scenario": scenario, "row": row, "column": column, "mean": mean,
          "std": std, "n": 3 if std is not None else 1}


class GridTest(tf.test.TestCase):

  def test_every_run_of_every_table_parses_under_every_budget(self):
    self.addCleanup(os.chdir, os.getcwd())
    os.chdir(ROOT)
    try:
      for paper in grids.PAPERS:
        for table in grids.load_tables(paper).values():
          for budget in runner.BUDGETS:
            for spec in runner.run_specs(table, budget, "/tmp/unused", data_root="/data"):
              argv = runner.train_argv(spec, sorted(set(spec.rows.values())), (0,))
              FLAGS.unparse_flags()
              FLAGS(argv)
              where = f"{paper} Table {table.id} {spec.scenario.name} ({budget})"
              self.assertEqual([m.name for m in config.resolve_methods()],
                               sorted(set(spec.rows.values())), where)
              names, scenarios, orders = TABLES[FLAGS.dataset]
              counts = np.arange(256, 0, -1)[None]
              plan = task_plan(FLAGS.task, FLAGS.class_order, names, scenarios, counts, orders)
              if budget == "paper":
                self.assertEqual(FLAGS.task, spec.scenario.task, where)
              for row, values in (spec.scenario.per_class.items() if budget == "paper" else ()):
                self.assertLen(values, len(plan.order(plan.num_steps - 1))
                               - spec.scenario.per_class_first, f"{where} {row}")
    finally:
      FLAGS.unparse_flags()

  def test_every_claim_holds_on_the_papers_own_numbers(self):
    for paper in grids.PAPERS:
      tables = grids.load_tables(paper)
      every = grids.load_claims(paper)
      self.assertGreaterEqual(len(every), 25, paper)
      for claim in every:
        scenario = next(s for s in tables[claim.table].scenarios if s.name == claim.scenario)
        cells = [_cell(row.name, _paper(scenario, row.name, claim.column),
                       column=claim.column, scenario=claim.scenario, table=claim.table)
                 for row in tables[claim.table].rows]
        result = claims.check(claim, cells)
        self.assertEqual(result["verdict"], claims.HOLDS, (paper, claim.id, result["compared"]))

  def test_paper_numbers_where_they_are_printed(self):
    mib, kd = grids.load_tables("mib"), grids.load_tables("kd")
    overlapped_15_1 = mib["1"].scenarios[5]
    self.assertEqual(overlapped_15_1.name, "15-1 overlapped")
    self.assertEqual(overlapped_15_1.paper["mib"], (35.1, 13.5, 29.7))
    self.assertEqual(grids.paper_value(kd["1"].scenarios[0], "ef+kd-cls-t", "new"), 51.9)
    self.assertEqual(kd["1"].scenarios[0].per_class["kd-ft"][-1], 20.1)   # tv/monitor
    self.assertEqual(mib["3"].scenarios[1].columns[-1], "all")
    self.assertLen(mib["3"].scenarios[0].variants, 2)   # ADE20K: two class orders pooled

  def test_a_table_that_contradicts_itself_is_refused(self):
    table = {"columns": ["old", "new", "all"]}
    with self.assertRaisesRegex(GridError, r"row ft: 2 numbers for the 3 columns"):
      grids._scenario({"name": "x", "task": "19-1", "setting": "overlapped",
                       "paper": {"ft": [1.0, 2.0]}}, table, "test")
    with self.assertRaisesRegex(GridError, r"expected '<row> <op> <rows or number>'"):
      claims.parse("mib better than ft")


class CheckerTest(tf.test.TestCase):

  def _claim(self, check, column="all"):
    return Claim("c", "text", "1", "s", column, check)

  def test_verdicts_on_hand_written_cells(self):
    cells = [_cell("mib", 40.0, 1.0), _cell("lwf", 30.0, 2.0), _cell("ilt", 39.5, 1.5),
             _cell("ft", 3.0, 0.5), _cell("joint", None)]
    cases = {"mib > lwf": claims.HOLDS, "lwf > mib": claims.FAILS,
             "mib > ilt": claims.SPREAD,           # gap 0.5 <= the larger std 1.5
             "mib > lwf,ilt": claims.SPREAD, "lwf > mib,ilt": claims.FAILS,
             "ft < 5": claims.HOLDS, "ft < 3.2": claims.SPREAD, "ft > 10": claims.FAILS,
             "joint > mib": claims.NOT_RUN, "mib >= lwf": claims.HOLDS}
    for check, expected in cases.items():
      result = claims.check(self._claim(check), cells)
      self.assertEqual(result["verdict"], expected, (check, result["compared"]))
    self.assertEqual(claims.check(self._claim("mib > lwf"), cells)["compared"],
                     ["mib 40.0±1.0 > lwf 30.0±2.0"])
    self.assertEqual(claims.check(self._claim("ft < 5"), cells)["compared"], ["ft 3.0±0.5 < 5"])
    # One seed: no spread, the means decide.
    single = [_cell("a", 10.0), _cell("b", 10.2)]
    self.assertEqual(claims.check(self._claim("b > a"), single)["verdict"], claims.HOLDS)
    self.assertEqual(claims.check(self._claim("b > a"), single)["compared"], ["b 10.2 > a 10.0"])
    # Two identical runs: a std of 0, shown as such (not as one run).
    same = [_cell("a", 5.5, 0.0), _cell("b", 9.0, 1.0)]
    self.assertEqual(claims.check(self._claim("b > a"), same)["compared"],
                     ["b 9.0±1.0 > a 5.5±0.0"])
    with self.assertRaisesRegex(GridError, r"has no row 'pi'"):
      claims.check(self._claim("mib > pi"), cells)


class ColumnsTest(tf.test.TestCase):

  def test_a_column_after_step_k_reads_that_steps_record(self):
    # KD Table 8: mIoU / mPA / mCA after each step of 15-1, from the per-step records.
    table = grids.load_tables("kd")["8"]

    def record(step, seed):
      return {"step": step, "miou_all": 0.1 * step + 0.01 * seed,
              "overall_accuracy": 0.5 + 0.01 * step, "mean_class_accuracy": 0.3}

    cells = _collect_faked(table, record)
    found = {(c["row"], c["column"]): c for c in cells}
    self.assertAllClose(found[("ef", "all@2")]["values"], [20.0, 21.0])
    self.assertAllClose(found[("ef", "pacc@5")]["values"], [55.0, 55.0])
    self.assertAlmostEqual(found[("ef", "all@5")]["mean"], 50.5)
    self.assertEqual(found[("ef", "all@3")]["paper"], 65.7)

  def test_rows_at_a_step_and_per_class_cells(self):
    # KD Table 9: rows M0..M5 are one method's records after step k; the paper's per-class IoU
    # gets our per-class cells beside it, the classes named by the records.
    table = grids.load_tables("kd")["9"]
    names = list(voc.VOC_CLASSES)

    def record(step, seed):
      known = names[:16 + step]
      return {"step": step, "miou_all": 0.1 * step + 0.01 * seed,
              "class_iou": {name: (0.5 if name == "chair" else 0.2) + 0.01 * step
                            for name in known}}

    cells = _collect_faked(table, record)
    found = {(c["row"], c["column"]): c for c in cells}
    self.assertAllClose(found[("M2", "all")]["values"], [20.0, 21.0])
    self.assertAllClose(found[("M3", "iou:chair")]["values"], [53.0, 53.0])
    self.assertEqual(found[("M3", "iou:chair")]["paper"], 26.2)
    self.assertEqual(found[("M1", "iou:pottedplant")]["paper"], 29.0)
    self.assertIsNone(found[("M0", "iou:pottedplant")]["paper"])   # "-": not yet learned
    self.assertEqual(found[("M0", "iou:pottedplant")]["n"], 0)
    self.assertEqual(results.per_class_columns(cells, "15-1")[0], "iou:background")
    self.assertIn("Per-class IoU, 15-1", results.format_markdown(table, cells, "shapes"))
    # The header names the seeds asked for and the runs the cells hold: the faked records have
    # no accuracies (pacc, cacc: n = 0); per-class cells (M0's pottedplant: 0) are not counted.
    header = results.format_markdown(table, cells, "shapes", {"command": "c", "seeds": [0, 1, 2]})
    self.assertIn("seeds asked: 0, 1, 2; runs per cell: n = 0-2", header)
    filled = [{**c, "n": 2} if c["column"] in ("pacc", "cacc") else c for c in cells]
    self.assertIn("runs per cell: n = 2", results.format_markdown(table, filled, "shapes",
                                                                  {"seeds": [0, 1]}))
    filled[0] = {**filled[0], "n": 1}
    self.assertIn("runs per cell: n = 1-2", results.format_markdown(table, filled, "shapes",
                                                                    {"seeds": [0, 1]}))


class MergeTest(tf.test.TestCase):
  """--merge_results: earlier results' runs join a table's cells, each run (run directory and
  seed) once; files that cannot be merged are refused with the reason."""

  def setUp(self):
    super().setUp()
    self.table = grids.load_tables("kd")["8"]

    def record(step, seed):
      return {"step": step, "miou_all": 0.1 * step + 0.01 * seed,
              "overall_accuracy": 0.5, "mean_class_accuracy": 0.3,
              "miou_per_step": {"step 0": 0.5 - 0.01 * step}, "class_iou": {"a": 0.5}}

    self.record = record
    self.cells = _collect_faked(self.table, record)
    self.labels = {(c["scenario"], c["row"]): {"s-key"} for c in self.cells}

  def _earlier(self, seeds, shift=0.0, label="s-key", **overrides):
    """A table JSON of the same cells from runs of `seeds` (values + shift)."""
    cells = []
    for cell in self.cells:
      runs = [{"run": label, "seed": seed} for seed in seeds]
      cells.append({**cell, "runs": runs, "values": [cell["values"][0] + shift] * len(seeds)})
    return {"table": "8", "budget": "shapes", "cells": cells, **overrides}

  def test_each_value_names_its_run_and_seed(self):
    cell = next(c for c in self.cells if (c["row"], c["column"]) == ("ef", "all@2"))
    self.assertEqual(cell["runs"], [{"run": "s-key", "seed": 0}, {"run": "s-key", "seed": 1}])
    self.assertAllClose(cell["values"], [20.0, 21.0])

  def test_runs_found_in_both_count_once(self):
    earlier = self._earlier([1, 2], shift=100.0)
    results.check_earlier(self.table, "shapes", "e.json", earlier, self.labels)
    merged = {(c["row"], c["column"]): c for c in results.merge(self.cells, [earlier])}
    cell = merged[("ef", "all@2")]
    # seeds 0, 1 from the runs here (seed 1's earlier value is not counted), seed 2 from earlier
    self.assertAllClose(cell["values"], [20.0, 21.0, 120.0])
    self.assertEqual([source["seed"] for source in cell["runs"]], [0, 1, 2])
    self.assertEqual(cell["n"], 3)
    self.assertAlmostEqual(cell["mean"], np.mean([20.0, 21.0, 120.0]))
    self.assertAlmostEqual(cell["std"], np.std([20.0, 21.0, 120.0], ddof=1))
    self.assertAlmostEqual(cell["difference"], cell["mean"] - cell["paper"])
    # values come in run and seed order whichever side holds them
    reverse = {(c["row"], c["column"]): c
               for c in results.merge(self._earlier([2])["cells"], [{"cells": self.cells}])}
    self.assertEqual([source["seed"] for source in reverse[("ef", "all@2")]["runs"]], [0, 1, 2])
    self.assertAllClose(reverse[("ef", "all@2")]["values"], [20.0, 21.0, 20.0])
    # merging the same file twice, or a table with itself, adds nothing
    again = results.merge(results.merge(self.cells, [earlier]), [earlier, earlier])
    self.assertEqual([c["n"] for c in again], [c["n"] for c in merged.values()])

  def test_unmergeable_files_are_refused(self):
    for earlier, message in [
        (self._earlier([2], budget="smoke"), "not Table 8 of budget 'shapes'"),
        (self._earlier([2], table="7"), "not Table 8"),
        (self._earlier([2], label="s-other"), "run s-other, which this grid no longer trains"),
        ({**self._earlier([2]), "cells": [{k: v for k, v in c.items() if k != "runs"}
                                          for c in self.cells]}, "which run and seed"),
        ([1, 2], "no cells"),
        ({**self._earlier([2]), "curves": [{"scenario": "15-1", "row": "ef", "run": "s-other",
                                            "seed": 2, "records": []}]}, "per-step curve")]:
      with self.assertRaisesRegex(results.MergeError, message):
        results.check_earlier(self.table, "shapes", "e.json", earlier, self.labels)
    unknown = self._earlier([2])
    unknown["cells"][0] = {**unknown["cells"][0], "row": "no-such-row"}
    with self.assertRaisesRegex(results.MergeError, "no-such-row is not in kd Table 8"):
      results.check_earlier(self.table, "shapes", "e.json", unknown, self.labels)

  def test_plots_average_every_runs_curve_and_name_the_seeds(self):
    table = grids.load_tables("mib")["1"]
    spec = runner.RunSpec(table.scenarios[0], "/unused", (), {"ft": "ft"}, "s-key")
    steps = {seed: [self.record(step, seed) for step in range(3)] for seed in (0, 1)}
    with mock.patch.object(runner, "step_records", lambda spec, method: steps):
      curves = results.collect_curves(table, [spec])
    self.assertEqual([(c["row"], c["seed"], len(c["records"])) for c in curves],
                     [("ft", 0, 3), ("ft", 1, 3)])
    later = [{**curves[0], "seed": 2, "records": [
        {**r, "miou_all": r["miou_all"] + 0.3} for r in curves[0]["records"]]}]
    merged = results.merge_curves(curves, [{"curves": later + curves}])
    self.assertEqual([c["seed"] for c in merged], [0, 1, 2])
    drawn = {}
    with mock.patch.object(results.plot, "plot_miou_per_step",
                           lambda by_row, path, title: drawn.update(by_row=by_row, title=title)):
      results.write_plots(table, merged, self.get_temp_dir())
      self.assertIn("(mean over seeds 0, 1, 2)", drawn["title"])
      self.assertAllClose([r["miou_all"] for r in drawn["by_row"]["ft"]],
                          [np.mean([0.0, 0.01, 0.3]), np.mean([0.1, 0.11, 0.4]),
                           np.mean([0.2, 0.21, 0.5])])
      results.write_plots(table, curves[:1], self.get_temp_dir())
      self.assertIn("1, 19-1 disjoint (seed 0)", drawn["title"])
      results.write_plots(table, curves + [{**later[0], "row": "mib"}], self.get_temp_dir())
      self.assertIn("(mean over each row's runs among seeds 0, 1, 2)", drawn["title"])


def _collect_faked(table, record):
  """The cells of `table`'s first scenario with every run's step records faked: record(step,
  seed) for steps 0..5 and seeds 0, 1."""
  spec = runner.RunSpec(table.scenarios[0], "/unused", (), {row.name: row.method
                                                             for row in table.rows}, "s-key")
  steps = {seed: [record(step, seed) for step in range(6)] for seed in (0, 1)}
  with mock.patch.object(runner, "step_records", lambda spec, method: steps), \
       mock.patch.object(runner, "final_records",
                         lambda spec, method: {s: r[-1] for s, r in steps.items()}):
    return results.collect(table, [spec])


def _paper(scenario, row, column):
  """The paper's number of a cell; per-class columns ("iou:<VOC class>") from the per-class
  block (the VOC tables' learning order is VOC's, from per_class_first)."""
  if not column.startswith(results.PER_CLASS):
    return grids.paper_value(scenario, row, column)
  index = voc.VOC_CLASSES.index(column[len(results.PER_CLASS):]) - scenario.per_class_first
  return scenario.per_class[row][index]


class DivergenceTest(tf.test.TestCase):
  """Grid runs with kdseg.train's main faked: what would train, in which order."""

  def _grid(self, record, *args, diverging=None):
    """Runs kdseg.reproduce on the smoke budget; each faked training appends record() to the
    returned list, and the method `diverging` raises TrainingDivergedError."""
    self.addCleanup(os.chdir, os.getcwd())
    os.chdir(ROOT)
    base = self.get_temp_dir()
    trained = []

    def fake_train(argv):
      del argv
      trained.append(record())
      if diverging and FLAGS.method == [diverging]:
        raise TrainingDivergedError(f"[{diverging}] step 1: the loss became nan at iteration 4")

    with mock.patch.object(reproduce.train, "main", fake_train):
      output = SmokeTest._reproduce(self, "--budget=smoke", f"--run_root={base}/runs",
                                    f"--results_dir={base}/results", *args)
    return trained, output, base

  def test_a_diverging_method_is_recorded_and_the_grid_goes_on(self):
    trained, output, base = self._grid(lambda: FLAGS.method, "--paper=kd", "--table=1",
                                       "--rows=kd-ft,kd-enc,kd-dec", diverging="kd-enc")
    # One kdseg.train run per method; the one after the diverged method still runs.
    self.assertEqual(trained, [["kd-dec"], ["kd-enc"], ["kd-ft"]])
    self.assertIn("kd-enc diverged", output)
    with open(f"{base}/results/kd_table_1.json") as handle:
      cells = {(c["row"], c["column"]): c for c in json.load(handle)["cells"]}
    self.assertIn("the loss became nan", cells[("kd-enc", "all")]["diverged"])
    self.assertIsNone(cells[("kd-ft", "all")]["diverged"])
    with open(f"{base}/results/kd_table_1.md") as handle:
      markdown = handle.read()
    self.assertIn("| kd-enc | diverged [", markdown)
    self.assertIn("- 19-1, kd-enc: [kd-enc] step 1: the loss became nan", markdown)

  def test_scenarios_chooses_what_trains(self):
    common = ["--paper=mib", "--table=1", "--rows=ft,mib"]
    record = lambda: (FLAGS.task, FLAGS.setting, FLAGS.method)  # noqa: E731
    trained, _, _ = self._grid(record, *common, "--scenarios=15-1 overlapped")
    self.assertEqual(trained, [("15-1", "overlapped", ["ft"]), ("15-1", "overlapped", ["mib"])])
    with self.assertRaisesRegex(config.FlagValueError, "15-1 overlapped, 15-5 disjoint"):
      self._grid(record, *common, "--scenarios=15-1 overlap")


class SmokeTest(tf.test.TestCase):

  def _reproduce(self, *args):
    FLAGS.unparse_flags()
    FLAGS(["kdseg.reproduce", *args])
    output = io.StringIO()
    with redirect_stdout(output):
      reproduce.main([])
    FLAGS.unparse_flags()
    return output.getvalue()

  def test_smoke_tables_of_both_papers(self):
    self.addCleanup(os.chdir, os.getcwd())
    os.chdir(ROOT)
    base = os.path.join(os.environ.get("TEST_TMPDIR", "/tmp"), f"kdseg_reproduce_{os.getpid()}")
    self.addCleanup(shutil.rmtree, base, ignore_errors=True)
    common = ["--budget=smoke", f"--run_root={base}/runs", f"--results_dir={base}/results",
              f"--cache_dir={base}/cache"]
    self._reproduce("--paper=kd", "--table=1", "--rows=kd-ft,ef+kd-cls-t", *common)
    self._reproduce("--paper=mib", "--table=5", "--rows=pce-bkg,unl (lr 1e-4)", *common)
    with open(f"{base}/results/kd_table_1.json") as handle:
      table = json.load(handle)
    self.assertEqual(table["budget"], "smoke")
    cells = {(c["row"], c["column"]): c for c in table["cells"]}
    self.assertEqual(cells[("kd-ft", "all")]["n"], 1)
    self.assertEqual(cells[("kd-ft", "all")]["paper"], 65.1)
    self.assertAlmostEqual(cells[("kd-ft", "all")]["difference"],
                           cells[("kd-ft", "all")]["mean"] - 65.1)
    self.assertEqual(cells[("kd-enc", "all")]["n"], 0)   # a row not asked for: no run
    with open(f"{base}/results/kd_table_1.md") as handle:
      self.assertIn("| kd-ft | ", handle.read())
    with open(f"{base}/results/kd_claims.json") as handle:
      verdicts = {c["id"]: c["verdict"] for c in json.load(handle)["claims"]}
    self.assertIn(verdicts["t1-ef-cls-t-over-parts"], (claims.NOT_RUN,))   # ef alone not run
    self.assertIn(verdicts["t1-forgetting"], (claims.NOT_RUN,))
    with open(f"{base}/results/mib_table_5.csv") as handle:
      rows = handle.read()
    self.assertIn("5,points,pce-bkg,all,", rows)
    # The runs of weak rows are their own directories; a second call trains nothing.
    self.assertTrue(os.path.isdir(f"{base}/runs/smoke/mib"))
    again = self._reproduce("--paper=kd", "--table=1", "--rows=kd-ft,ef+kd-cls-t", *common)
    self.assertIn("finished for every seed", again)
    self.assertNotIn("python -m kdseg.train", again)
    # Results of another machine (here: this one's, its runs since deleted) merge in, each run
    # once: the table from them alone equals the original; merged with its own runs, n stays 1.
    for run_root, name in ((f"{base}/elsewhere", "merged"), (f"{base}/runs", "again")):
      self._reproduce("--paper=kd", "--table=1", "--report_only", f"--run_root={run_root}",
                      "--budget=smoke", f"--results_dir={base}/{name}",
                      f"--merge_results={base}/results")
      with open(f"{base}/{name}/kd_table_1.json") as handle:
        merged = json.load(handle)
      self.assertEqual([(c["n"], c["values"]) for c in merged["cells"]],
                       [(c["n"], c["values"]) for c in table["cells"]])
      self.assertEqual(merged["merged"][0]["path"], f"{base}/results/kd_table_1.json")
    with open(f"{base}/merged/kd_table_1.md") as handle:
      self.assertIn(f"- with the runs of `{base}/results/kd_table_1.json`", handle.read())
    with self.assertRaisesRegex(config.FlagValueError, "no such folder"):
      self._reproduce("--paper=kd", "--table=1", "--report_only", "--budget=smoke",
                      f"--run_root={base}/runs", f"--merge_results={base}/nowhere")


if __name__ == "__main__":
  tf.test.main()
