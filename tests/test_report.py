"""Per-method summaries (summary.md/.csv/.json), the mIoU plot and tools/summarize.py, on records
built from hand-written confusion matrices."""
import csv
import json
import os

import numpy as np
import tensorflow as tf

from kdseg import plot, report
from kdseg.data.tasks import make_plan
from kdseg.atomic import write_json
from kdseg.metrics import scores
from kdseg.rundir import RunDir
from tools import summarize

NAMES = ("background", "cat", "dog", "cow")
PLAN = make_plan("2-1", [1, 2, 3])   # step 0: background, cat, dog; step 1: cow


def _records():
  # Step 0: 3 classes; dog never in the ground truth (absent -> X, not 0).
  step0 = scores(np.array([[8, 2, 0], [2, 6, 0], [0, 0, 0]]))
  # Step 1: 4 classes. IoU: bg 6/(10+9-6)=6/13, cat 4/(6+6-4)=1/2, dog absent, cow 3/(4+4-3)=3/5.
  step1 = scores(np.array([[6, 2, 1, 1], [2, 4, 0, 0], [0, 0, 0, 0], [1, 0, 0, 3]]))
  return [report.step_record(PLAN, 0, step0, NAMES), report.step_record(PLAN, 1, step1, NAMES)]


def _write_run(run_dir, methods):
  write_json(os.path.join(run_dir, "experiment.json"),
                    {"dataset": "fake", "task": "2-1", "setting": "overlapped"})
  for method, records in methods.items():
    for record in records:
      write_json(os.path.join(run_dir, method, "results", f"step_{record['step']}.json"),
                        record)


class SummaryTest(tf.test.TestCase):

  def test_summary_files_per_method(self):
    run_dir = self.get_temp_dir()
    _write_run(run_dir, {"mib": _records()})
    records = report.write_summary(RunDir(run_dir), "mib")
    self.assertEqual([r["step"] for r in records], [0, 1])
    results = os.path.join(run_dir, "mib", "results")
    with open(os.path.join(results, "summary.md")) as handle:
      markdown = handle.read()
    # Step 1: old = bg, cat (6/13, 1/2 -> 48.1); new = cow 60.0; all = mean of 3 present (52.1);
    # mPA = 13/20; mCA = mean(6/10, 4/6, 3/4). Step 0: bg 8/12, cat 6/10; no old classes.
    all_1 = 100 * (6 / 13 + 0.5 + 0.6) / 3
    self.assertIn(f"| 1 | 48.1 | 60.0 | {all_1:.1f} | 65.0 | 67.2 | 48.1 | 60.0 |", markdown)
    self.assertIn("| 0 |  | 63.3 | 63.3 | 77.8 | 77.5 | 63.3 |  |", markdown)
    self.assertIn("| 0 | 66.7 | 60.0 | X |  |", markdown)  # cow not learned yet: blank, dog X
    with open(os.path.join(results, "summary.csv")) as handle:
      rows = list(csv.DictReader(handle))
    self.assertAlmostEqual(float(rows[1]["miou_all"]), all_1 / 100, places=4)
    self.assertEqual(rows[0]["iou cow"], "")
    self.assertAlmostEqual(float(rows[1]["iou cow"]), 0.6, places=4)
    with open(os.path.join(results, "summary.json")) as handle:
      stored = json.load(handle)
    self.assertNotIn("confusion", stored["steps"][1])

  def test_final_columns_split_step_0_classes_from_added_ones(self):
    final = _records()[1]
    base_label, added_label, base, added = report.final_columns(final)
    self.assertEqual((base_label, added_label), ("0-2", "3-3"))
    self.assertAlmostEqual(base, (6 / 13 + 0.5) / 2, places=5)
    self.assertAlmostEqual(added, 0.6, places=5)
    del final["classes_per_step"]   # records from before the field: recomputed from the task
    self.assertEqual(report.final_columns(final)[:2], ("0-2", "3-3"))

  def test_comparison_names_the_step_it_compares(self):
    step0, step1 = _records()
    self.assertIn("after the last step", report.format_comparison({"ft": step1, "mib": step1}))
    three = make_plan("1-1", [1, 2, 3])   # steps 0, 1, 2: after --step=1, not the last one
    middle = report.step_record(three, 1, scores(np.eye(3) + 1), NAMES)
    table = report.format_comparison({"ft": middle})
    self.assertIn("after step 1 of steps 0-2", table)
    self.assertNotIn("last", table)
    mixed = report.format_comparison({"ft": step1, "mib": step0})
    self.assertIn("after the step shown of steps 0-1", mixed)
    self.assertRegex(mixed, r"\nmib .* 0\Z")

  def test_method_records_cover_every_evaluated_method_of_the_directory(self):
    run_dir = os.path.join(self.get_temp_dir(), "union")
    _write_run(run_dir, {"ft": _records(), "mib": _records()[:1]})
    os.makedirs(os.path.join(run_dir, "lwf", "results"))   # started, nothing evaluated
    found = report.method_records(RunDir(run_dir))
    self.assertEqual({m: [r["step"] for r in rs] for m, rs in found.items()},
                     {"ft": [0, 1], "mib": [0]})
    self.assertEqual({m: r["step"] for m, r in report.latest_records(RunDir(run_dir)).items()},
                     {"ft": 1, "mib": 0})
    self.assertEqual(report.method_records(RunDir(os.path.join(run_dir, "missing"))), {})

  def test_plot_is_a_png(self):
    path = plot.plot_miou_per_step({"mib": _records(), "joint": _records()[1:]},
                                   os.path.join(self.get_temp_dir(), "plot.png"), "fake 2-1")
    with open(path, "rb") as handle:
      self.assertEqual(handle.read(8), b"\x89PNG\r\n\x1a\n")

  def test_summarize_merges_runs_and_marks_missing_methods(self):
    first, second = (os.path.join(self.get_temp_dir(), name) for name in ("a", "b"))
    _write_run(first, {"ft": _records(), "mib": _records()})
    _write_run(second, {"ft": _records()[:1]})   # ft unfinished in the second run
    table, rows, _ = summarize.summarize([first, second], ["mib", "ft"])
    lines = table.splitlines()
    self.assertIn("fake 2-1 overlapped (a) 0-2", lines[2])   # same experiment: directory named
    base = 100 * (6 / 13 + 0.5) / 2
    self.assertIn(f"| mib | {base:.1f} | 60.0 | ", lines[4])
    self.assertTrue(lines[5].startswith("| ft |") and lines[5].endswith("| – | – | – |"))
    self.assertIsNone(rows[1]["fake 2-1 overlapped (b) all"])
    with self.assertRaisesRegex(summarize.SummaryError, "experiment.json"):
      summarize.summarize([self.get_temp_dir()], [])
    with self.assertRaisesRegex(summarize.SummaryError,
                                r"--methods: lwf has no evaluated step .*hold ft, mib"):
      summarize.summarize([first, second], ["mib", "lwf"])


if __name__ == "__main__":
  tf.test.main()
