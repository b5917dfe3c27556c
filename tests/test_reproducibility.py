"""Reproducibility pieces: the seeds table (mean ± std, the unsettled mark) on hand-made result
records, a --seeds directory read by tools/summarize.py, split manifests and digests, and the
MiB / PLOP split-file reader on files the tests write in their format (train-<step>.npy of int64
indices into an ordered list). The deterministic kill-and-resume run is in test_train.py."""
import io
import json
import os
from contextlib import redirect_stdout

from absl import flags
import numpy as np
import tensorflow as tf

from kdseg import report
from kdseg import show_splits
from kdseg import train
from kdseg.atomic import write_json
from kdseg.data import splits
from kdseg.data.shapes import ShapesConfig, load_shapes
from kdseg.data.tasks import make_plan
from kdseg.metrics import scores
from kdseg.run import seeds
from kdseg.rundir import RunDir
from tools import summarize

FLAGS = flags.FLAGS
NAMES = ("background", "cat", "dog", "cow")
PLAN = make_plan("2-1", [1, 2, 3])   # step 0: background, cat, dog; step 1: cow


def _final(diagonal):
  """A step-1 record whose IoUs are diagonal / row sums of a diagonal-heavy confusion."""
  confusion = np.diag(diagonal).astype(float) + 1.0
  return report.step_record(PLAN, 1, scores(confusion), NAMES)


class SeedTableTest(tf.test.TestCase):

  def test_mean_sample_std_and_the_unsettled_mark(self):
    # "all" = mIoU over 3 classes. ft: 0.40, 0.50, 0.60 -> mean 0.5, std 0.1; mib: 0.55, 0.65,
    # 0.75 -> mean 0.65, std 0.1: the gap 0.15 > 0.1, settled. With a third method at 0.52 ±
    # 0.1 beside ft (gap 0.02), both of them are unsettled; mib stays settled (gap 0.13).
    def record(all_miou):
      return {"class_iou": {"background": all_miou, "cat": all_miou, "dog": all_miou},
              "classes_per_step": [2, 1], "miou_all": all_miou}
    finals = {"ft": [record(v) for v in (0.4, 0.5, 0.6)],
              "mib": [record(v) for v in (0.55, 0.65, 0.75)]}
    cells = report.seed_cells(finals)
    self.assertAllClose([cells["ft"]["all"]["mean"], cells["ft"]["all"]["std"]], [0.5, 0.1])
    self.assertEqual(cells["mib"]["all"]["n"], 3)
    self.assertFalse(cells["ft"]["all"]["unsettled"] or cells["mib"]["all"]["unsettled"])
    self.assertEqual(report.format_seed_cell(cells["ft"]["all"]), "50.0 ± 10.0 (n=3)")
    finals["lwf"] = [record(v) for v in (0.42, 0.52, 0.62)]
    cells = report.seed_cells(finals)
    self.assertTrue(cells["ft"]["all"]["unsettled"] and cells["lwf"]["all"]["unsettled"])
    self.assertFalse(cells["mib"]["all"]["unsettled"])
    self.assertIn("| lwf | 52.0 ± 10.0 (n=3) ~ |", report.format_seed_table(finals))

  def test_summarize_reads_a_seeds_directory_as_one_run(self):
    base = os.path.join(self.get_temp_dir(), "seeded")
    for seed, diagonal in ((0, [8, 6, 4, 2]), (1, [6, 8, 4, 3])):
      run_dir = RunDir(base).seed_dir(seed)
      write_json(os.path.join(run_dir, "experiment.json"),
                 {"dataset": "fake", "task": "2-1", "setting": "overlapped"})
      write_json(os.path.join(run_dir, "ft", "results", "step_1.json"), _final(diagonal))
    self.assertEqual(list(seeds.seed_run_dirs(base)), [0, 1])
    table, rows, _ = summarize.summarize([base], [])
    self.assertIn("fake 2-1 overlapped (2 seeds)", table)
    values = [report.final_values(_final(d))["all"] for d in ([8, 6, 4, 2], [6, 8, 4, 3])]
    self.assertAllClose(rows[0]["fake 2-1 overlapped (2 seeds) all"], np.mean(values))
    self.assertAllClose(rows[0]["fake 2-1 overlapped (2 seeds) all std"], np.std(values, ddof=1))
    self.assertIn("(n=2)", table)


  def test_seed_summary_covers_every_seed_directory(self):
    # --seeds=1 after --seeds=0,1: seeds.md still has n=2; a seed short of the latest step
    # (seed 2 only at step 0) is left out of that method's cells.
    base = os.path.join(self.get_temp_dir(), "union")
    for seed, diagonal in ((0, [8, 6, 4, 2]), (1, [6, 8, 4, 3])):
      write_json(os.path.join(RunDir(base).seed_dir(seed), "experiment.json"), {"task": "2-1"})
      write_json(os.path.join(RunDir(base).seed_dir(seed), "ft", "results", "step_1.json"),
                 _final(diagonal))
    write_json(os.path.join(RunDir(base).seed_dir(2), "experiment.json"), {"task": "2-1"})
    step0 = report.step_record(PLAN, 0, scores(np.eye(3) + 1), NAMES)
    write_json(os.path.join(RunDir(base).seed_dir(2), "ft", "results", "step_0.json"), step0)
    # A method no seed finished (it diverged at step 1) is named, not shown with step 0's numbers.
    write_json(os.path.join(RunDir(base).seed_dir(0), "mib", "results", "step_0.json"), step0)
    table = seeds.write_seed_summary(base)
    self.assertIn("(n=2)", table)
    self.assertNotIn("| mib |", table)
    self.assertIn("No seed has finished the last step of: mib.", table)
    with open(os.path.join(base, "seeds.json")) as handle:
      stored = json.load(handle)
    values = [report.final_values(_final(d))["all"] for d in ([8, 6, 4, 2], [6, 8, 4, 3])]
    self.assertAllClose(stored["cells"]["ft"]["all"]["values"], values)
    self.assertEqual(stored["seeds"], [0, 1, 2])
    self.assertEqual((sorted(stored["cells"]), stored["unfinished"]), (["ft"], ["mib"]))


class SplitFilesTest(tf.test.TestCase):

  def test_digest_ignores_order_and_manifest_counts_pixels(self):
    self.assertEqual(splits.ids_digest(["b", "a"]), splits.ids_digest(["a", "b"]))
    self.assertNotEqual(splits.ids_digest(["a"]), splits.ids_digest(["a", "b"]))
    counts = np.zeros((2, 256), np.int64)
    counts[0, 0], counts[0, 2], counts[1, 2], counts[1, 255] = 5, 3, 4, 1
    record = splits.manifest(("x", "y"), counts, NAMES)
    self.assertEqual(record["pixels_per_class"], {"background": 5, "dog": 7, "void": 1})
    self.assertEqual((record["images"], record["ids"]), (2, ["x", "y"]))

  def test_reference_split_files(self):
    folder = os.path.join(self.get_temp_dir(), "15-5s-ov")
    os.makedirs(folder)
    np.save(os.path.join(folder, "train-1.npy"), np.array([2, 0], np.int64))
    listed = ("a", "b", "c")
    self.assertEqual(splits.read_reference_split(folder, 1, listed), ("c", "a"))
    with self.assertRaisesRegex(splits.SplitError, "train-2.npy is missing"):
      splits.read_reference_split(folder, 2, listed)
    with self.assertRaisesRegex(splits.SplitError, "--split_list"):
      splits.read_reference_split(folder, 1, ("a", "b"))
    np.save(os.path.join(folder, "train-3.npy"), np.array([0.5]))
    with self.assertRaisesRegex(splits.SplitError, "integer"):
      splits.read_reference_split(folder, 3, listed)
    # MiB's train_aug.txt lines name image and label paths; the id is the image's stem.
    path = os.path.join(self.get_temp_dir(), "train_aug.txt")
    with open(path, "w") as out:
      out.write("/JPEGImages/2007_000032.jpg /SegmentationClassAug/2007_000032.png\n"
                "/JPEGImages/2007_000039.jpg /SegmentationClassAug/2007_000039.png\n")
    self.assertEqual(splits.read_list_file(path), ("2007_000032", "2007_000039"))
    difference = splits.compare(("a", "b", "c"), ("b", "c", "d"))
    self.assertEqual((difference["only_reference"], difference["only_kdseg"],
                      difference["common"], difference["same"]), (1, 1, 2, False))

  def test_kd_paper_split_lists(self):
    # LTTM/IL-SemSegm sample_dataset/: lists named by the step's class ids, lines of image and
    # label paths. 2-1-1 over ids 1..4: step 0 = train_1_2, step 1 = train_3 or
    # train_3_3_notin_following (preferred: no image with a later class), step 2 = train_4_4.
    folder = os.path.join(self.get_temp_dir(), "sample_dataset")
    os.makedirs(folder)
    lines = {"train_1_2.txt": ["a", "b"], "train_3.txt": ["c", "d"],
             "train_3_3_notin_following.txt": ["c"], "train_4_4.txt": ["e"]}
    for name, ids in lines.items():
      with open(os.path.join(folder, name), "w") as out:
        out.write("".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in ids))
    plan = make_plan("2-1-1", [1, 2, 3, 4])
    self.assertEqual([splits.read_reference_split(folder, step, (), plan) for step in range(3)],
                     [("a", "b"), ("c",), ("e",)])
    os.remove(os.path.join(folder, "train_3_3_notin_following.txt"))
    self.assertEqual(splits.read_reference_split(folder, 1, (), plan), ("c", "d"))
    with self.assertRaisesRegex(splits.SplitError, "consecutive class ids"):
      splits.read_reference_split(folder, 1, (), make_plan("2-2", [1, 3, 2, 4]))
    os.remove(os.path.join(folder, "train_4_4.txt"))
    with self.assertRaisesRegex(splits.SplitError, "train_4_4_notin_following.txt, train_4_4.txt, "
                                "train_4.txt"):
      splits.read_reference_split(folder, 2, (), plan)

  def test_splits_command_and_training_on_reference_split_files(self):
    base = os.path.join(os.environ.get("TEST_TMPDIR", "/tmp"), f"kdseg_splits_{os.getpid()}")
    common = [f"--cache_dir={base}/cache", "--dataset=shapes", "--shapes_image_size=32",
              "--shapes_num_train=64", "--shapes_num_val=24", "--task=19-1", "--backbone=tiny",
              "--output_stride=16", "--head_channels=16", "--batch_size=4", "--crop_size=32",
              "--eval_batch_size=12", "--verbose=0", "--method=ft", "--epochs=1",
              "--epochs_incremental=1"]
    FLAGS.unparse_flags()
    FLAGS(["kdseg.show_splits", *common, f"--manifest_dir={base}/manifests"])
    output = io.StringIO()
    with redirect_stdout(output):
      show_splits.main([])
    with open(f"{base}/manifests/step_1.json") as handle:
      own = json.load(handle)["kdseg"]
    self.assertIn(f"digest {own['digest']}", output.getvalue())
    self.assertEqual(own["digest"], splits.ids_digest(own["ids"]))
    # A reference folder whose step 1 drops one of kdseg's images and adds another.
    train_ids = load_shapes(f"{base}/cache", ShapesConfig(32, 64, 24)).split("train").ids
    step1 = sorted(train_ids.index(i) for i in own["ids"])
    extra = next(r for r in range(len(train_ids)) if r not in step1)
    folder = f"{base}/reference/19-1-ov"
    os.makedirs(folder)
    step0_rows = [r for r in range(len(train_ids)) if r not in step1]
    np.save(f"{folder}/train-0.npy", np.array(step0_rows, np.int64))
    np.save(f"{folder}/train-1.npy", np.array(step1[1:] + [extra], np.int64))
    FLAGS.unparse_flags()
    FLAGS(["kdseg.show_splits", *common, f"--split_files={folder}"])
    output = io.StringIO()
    with redirect_stdout(output):
      show_splits.main([])
    self.assertRegex(output.getvalue(), r"only in reference 1 \(e\.g\. .*\), only in kdseg 1")
    # Training on them: the run's split file is the reference's set, its manifest beside it.
    run_dir = f"{base}/run"
    FLAGS.unparse_flags()
    FLAGS(["kdseg.train", *common, f"--split_files={folder}", f"--run_dir={run_dir}"])
    train.main([])
    with open(f"{run_dir}/splits/step_1_train.txt") as handle:
      trained = [line.strip() for line in handle if line.strip()]
    self.assertEqual(sorted(trained), sorted(train_ids[r] for r in step1[1:] + [extra]))
    with open(f"{run_dir}/splits/step_1_train.json") as handle:
      self.assertEqual(json.load(handle)["digest"], splits.ids_digest(trained))
    with open(f"{run_dir}/experiment.json") as handle:
      self.assertEqual(json.load(handle)["split_files"], folder)


if __name__ == "__main__":
  tf.test.main()
