"""End to end: 2-step runs on 32 px shapes, checkpoint chaining, resuming and start-up errors."""
import csv
import errno
import glob
import json
import os
import subprocess
import sys
import time
from unittest import mock

from absl import flags
import numpy as np
import tensorflow as tf

from kdseg import config, train
from kdseg.config import FlagValueError
from kdseg.data.tasks import TaskError
from kdseg.rundir import ConfigMismatchError, RunDir, RunDirError
from kdseg.engine import checkpoints
from kdseg.methods import MethodError, get_method
from kdseg.models.segmenter import ModelConfig
from kdseg.data import presence
from kdseg.data.cityscapes import CITYSCAPES_CLASSES
from kdseg.data.shapes import CLASS_NAMES, ShapesConfig, load_shapes
from tests.helpers import END_TO_END_GROUPS, free_port, write_cityscapes_tree

FLAGS = flags.FLAGS
MODEL = ModelConfig("tiny", 16, 16)


def _event_values(directory: str, tag: str) -> list:
  values = []
  for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.tag == tag:
          values.append(tf.make_ndarray(value.tensor))
  return values


def _event_tags(directory: str) -> set[str]:
  tags = set()
  for path in glob.glob(os.path.join(directory, "events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(path):
      tags.update(value.tag for value in event.summary.value)
  return tags


def run_train(*args):
  FLAGS.unparse_flags()
  FLAGS(["kdseg.train", *args])
  train.main([])


class EndToEndTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.base = os.path.join(os.environ.get("TEST_TMPDIR", "/tmp"), f"kdseg_e2e_{os.getpid()}")
    cls.common = [
        f"--cache_dir={cls.base}/cache", "--dataset=shapes", "--shapes_image_size=32",
        "--shapes_num_train=64", "--shapes_num_val=24", "--task=19-1", "--backbone=tiny",
        "--output_stride=16", "--head_channels=16", "--batch_size=8", "--crop_size=32",
        "--lr=0.01", "--lr_incremental=0.001", "--eval_batch_size=12", "--verbose=0"]

  def _two_steps_of_15_1(self, group: str) -> tuple[str, list[str]]:
    """Trains one group of helpers.END_TO_END_GROUPS through steps 0 and 1 of 15-1 in a run
    directory of its own (the groups are three tests, so pytest-xdist's workers take them side
    by side) and checks every method's records; returns the run directory and the flags."""
    run_dir = f"{self.base}/two_steps_{group}"
    methods = END_TO_END_GROUPS[group]
    # 15-1's first added class is in only 3 of the 64 training images: batches of 2.
    args = [*self.common, "--task=15-1", "--batch_size=2", f"--run_dir={run_dir}",
            f"--method={','.join(methods)}", "--epochs=1", "--epochs_incremental=1"]
    run_train(*args, "--step=0")
    run_train(*args, "--step=1")
    for method in methods:
      if method != "joint":
        self.assertTrue(checkpoints.is_complete(f"{run_dir}/{method}/step_1"), msg=method)
      # joint is reported as the last step (5) of 15-1: all 21 classes.
      step = 5 if method == "joint" else 1
      with open(f"{run_dir}/{method}/results/step_{step}.json") as handle:
        record = json.load(handle)
      self.assertEqual(record["step"], step)
      self.assertLen(record["class_iou"], 21 if method == "joint" else 17)
      self.assertBetween(record["miou_all"], 0.0, 1.0)
      confusion = np.array(record["confusion"])
      self.assertEqual(confusion.shape, (21, 21) if method == "joint" else (17, 17))
      self.assertGreater(confusion.sum(), 0)
      self.assertTrue(os.path.isfile(f"{run_dir}/{method}/results/summary.md"), msg=method)
    with open(f"{run_dir}/comparison.txt") as handle:
      table = handle.read()
    for method in methods:
      self.assertIn(method, table)
    self.assertTrue(os.path.isfile(f"{run_dir}/splits/step_1_train.txt"))
    self.assertTrue(os.path.isfile(f"{run_dir}/miou_per_step.png"))
    with open(f"{run_dir}/timing.json") as handle:   # the last run's wall time by phase
      timing = json.load(handle)
    self.assertContainsSubset({"data", "training", "evaluation", "reporting"}, timing["phases"])
    self.assertAllGreaterEqual(list(timing["phases"].values()), 0.0)
    self.assertLessEqual(sum(timing["phases"].values()), timing["total_seconds"] + 0.5)
    return run_dir, args

  # Every loss term, classifier loss, regulariser, freezing mode and the offline bound trains two
  # steps in one of the three tests below (helpers.END_TO_END_GROUPS; test_methods.py checks the
  # other named methods' terms).

  def test_two_steps_of_15_1_mib_paper_methods_share_step_0(self):
    run_dir, args = self._two_steps_of_15_1("mib_step_0")
    # Step 0 is shared by recipe: these methods start from the one MiB-paper CE step 0.
    self.assertTrue(checkpoints.is_complete(f"{run_dir}/step_0"))
    self.assertFalse(os.path.exists(f"{run_dir}/step_0_ce-valid"))
    for method in END_TO_END_GROUPS["mib_step_0"]:
      self.assertFalse(os.path.exists(f"{run_dir}/{method}/step_0"), msg=method)
    # PLOP's thresholds: one per class after the step, saved in its step folder.
    with open(f"{run_dir}/plop/step_1/pseudo_thresholds.json") as handle:
      saved = json.load(handle)
    self.assertLen(saved["thresholds"], 17)
    self.assertEqual(np.array(saved["histogram"]).shape, (17, 100))
    self.assertGreater(np.array(saved["histogram"]).sum(), 0)
    self.assertContainsSubset({"train/ce", "train/pod", "train/pod_logits"},
                              _event_tags(f"{run_dir}/tensorboard/plop/step_1"))
    # TensorBoard, read back: every loss term and the learning rate while training; after
    # each step mIoU old/new/all, image panels, the per-class table and the hparams record.
    train_tags = _event_tags(f"{run_dir}/tensorboard/mib/step_1")
    self.assertContainsSubset({"train/unce", "train/ukd", "train/weight_decay", "train/total",
                               "train/learning_rate"}, train_tags)
    eval_tags = _event_tags(f"{run_dir}/tensorboard/mib/eval")
    self.assertContainsSubset({"eval/miou_old", "eval/miou_new", "eval/miou_all",
                               "eval/pixel_accuracy", "eval/mean_class_accuracy", "eval/images",
                               "eval/per_class", "_hparams_/session_start_info"}, eval_tags)
    panels = _event_values(f"{run_dir}/tensorboard/mib/eval", "eval/images")[-1]
    # An image summary holds width, height, then the encoded PNGs: input | truth | prediction.
    self.assertEqual([int(v) for v in panels[:2]], [3 * 32, 32])
    self.assertLen(panels, 2 + 4)
    with open(f"{run_dir}/mib/results/summary.csv") as handle:
      self.assertEqual([row["step"] for row in csv.DictReader(handle)], ["0", "1"])

    # Running again finds every step finished: nothing is retrained or rewritten.
    before = os.path.getmtime(f"{run_dir}/mib/step_1/final/done.json")
    evaluations = len(_event_values(f"{run_dir}/tensorboard/mib/eval", "eval/miou_all"))
    self.assertEqual(evaluations, 2)
    run_train(*args[:-3], "--method=mib", "--epochs=1", "--epochs_incremental=1", "--step=1")
    self.assertEqual(before, os.path.getmtime(f"{run_dir}/mib/step_1/final/done.json"))
    # ... nor logged again to TensorBoard (unchanged evaluations are not repeated).
    self.assertLen(_event_values(f"{run_dir}/tensorboard/mib/eval", "eval/miou_all"), 2)

    # Other flags in the same run directory are refused before anything is touched.
    with self.assertRaisesRegex(ConfigMismatchError, "epochs"):
      run_train(*args[:-3], "--method=mib", "--epochs=3", "--epochs_incremental=1")

  def test_two_steps_of_15_1_kd_paper_methods_and_encoder_freezing(self):
    run_dir, _ = self._two_steps_of_15_1("kd_step_0")
    # The KD paper's methods share its valid-pixel CE step 0, not the MiB paper's.
    self.assertTrue(checkpoints.is_complete(f"{run_dir}/step_0_ce-valid"))
    self.assertFalse(os.path.exists(f"{run_dir}/step_0"))
    # EF: the whole encoder, BN statistics included, is the step-0 encoder; E2LF: only conv1 and
    # conv2_x are, the rest of the encoder trained.
    step0 = checkpoints.load_final(f"{run_dir}/step_0_ce-valid", MODEL, [16])
    before = {v.path: v.numpy() for v in step0.backbone.variables}
    for method, frozen_prefixes in (("ef", ("",)), ("e2lf", ("conv1_", "conv2_"))):
      after = checkpoints.load_final(f"{run_dir}/{method}/step_1", MODEL, [16, 1])
      for variable in after.backbone.variables:
        layer = variable.path.split("/")[-2]
        if layer.startswith(frozen_prefixes):
          self.assertAllEqual(variable, before[variable.path], msg=f"{method} {variable.path}")
      changed = [v.path for v in after.backbone.variables
                 if not np.array_equal(v.numpy(), before[v.path])]
      self.assertEqual(bool(changed), method == "e2lf", msg=method)

  def test_two_steps_of_15_1_regularised_methods_and_joint_train_their_own_step_0(self):
    run_dir, _ = self._two_steps_of_15_1("own_step_0")
    # EWC, PI and RW gather their importance while training step 0, and joint trains every
    # class at once: each trains a step 0 of its own, and no shared one is trained.
    self.assertFalse(os.path.exists(f"{run_dir}/step_0"))
    for method in ("ewc", "pi", "rw", "joint"):
      self.assertTrue(checkpoints.is_complete(f"{run_dir}/{method}/step_0"), msg=method)
    for method in ("ewc", "pi", "rw"):   # state saved with each step for the next one
      for step in (0, 1):
        self.assertTrue(os.path.isfile(f"{run_dir}/{method}/step_{step}/final/regularizer.npz"))
    self.assertTrue(os.path.isfile(f"{run_dir}/splits/joint/step_0_train.txt"))

  def test_deeplab_v2_decoder_distillation_and_composed_flags(self):
    run_dir = f"{self.base}/v2"
    run_train(*self.common, f"--run_dir={run_dir}", "--head=v2", "--output_stride=8",
              "--method=kd-dec,mib", "--freeze=encoder", "--distill=dec:0.5", "--epochs=1",
              "--epochs_incremental=1")
    for name in ("kd-dec+freeze=encoder+dec=0.5", "mib+freeze=encoder+dec=0.5"):
      with open(f"{run_dir}/{name}/method.json") as handle:
        record = json.load(handle)["method"]
      self.assertEqual(record["freeze"], "encoder")
      self.assertIn({"loss": "dec", "weight": 0.5, "endpoint": None, "pixels": None},
                    record["distillation"])
      self.assertTrue(os.path.isfile(f"{run_dir}/{name}/results/step_1.json"))
    # The KD paper's CE restricted to new-class pixels trains through the same loop.
    run_train(*self.common, f"--run_dir={run_dir}", "--head=v2", "--output_stride=8",
              "--method=kd-cls", "--ce_pixels=new", "--epochs=1", "--epochs_incremental=1")
    self.assertTrue(os.path.isfile(f"{run_dir}/kd-cls+ce_pixels=new/results/step_1.json"))
    # LwF-MC's disjoint variant: its supervised term reads the old logits too.
    run_train(*self.common, f"--run_dir={run_dir}", "--head=v2", "--output_stride=8",
              "--method=lwf-mc", "--classification=bce-old-bg", "--distill=bce_distill:0",
              "--epochs=1", "--epochs_incremental=1")
    self.assertTrue(os.path.isfile(
        f"{run_dir}/lwf-mc+classification=bce-old-bg+bce_distill=0/results/step_1.json"))
    with self.assertRaisesRegex(MethodError, "--distill"):
      run_train(*self.common, f"--run_dir={run_dir}", "--method=ft", "--distill=foo:1")

  def test_weak_labels_compose_with_incremental_steps_and_methods(self):
    # Points simulated from the shapes labels, the unlabeled-prior loss at step 0 and under
    # MiB's distillation at step 1 (its unbiased form), on the point protocols' network (no
    # ASPP); the run records the weak labels and refuses to continue with other ones.
    run_dir = f"{self.base}/weak"
    args = [*self.common, f"--run_dir={run_dir}", "--head=classifier", "--method=ft,mib",
            "--supervision=points", "--weak_loss=unl", "--point_radius=1", "--epochs=1",
            "--epochs_incremental=1"]
    run_train(*args)
    with open(f"{run_dir}/experiment.json") as handle:
      recorded = json.load(handle)["weak"]
    self.assertEqual(recorded["supervision"], "points")
    self.assertEqual(recorded["loss"], "unl")
    self.assertFalse(recorded["background"])
    for method in ("ft", "mib"):
      with open(f"{run_dir}/{method}/results/step_1.json") as handle:
        self.assertBetween(json.load(handle)["miou_all"], 0.0, 1.0)
    self.assertIn("train/unl", _event_tags(f"{run_dir}/tensorboard/mib/step_1"))
    with self.assertRaises(ConfigMismatchError):
      run_train(*[a for a in args if not a.startswith("--weak_loss")], "--weak_loss=pce")
    with self.assertRaisesRegex(MethodError, "no weak form"):
      run_train(*self.common, f"--run_dir={self.base}/weak_bce", "--method=lwf-mc",
                "--supervision=scribbles")
    with self.assertRaisesRegex(FlagValueError, "--supervision=points"):
      run_train(*self.common, f"--run_dir={self.base}/weak_flag", "--method=ft",
                "--weak_loss=pce")
    with self.assertRaisesRegex(FlagValueError, "--head=classifier"):
      run_train(*self.common, f"--run_dir={self.base}/weak_head", "--method=kd-dec",
                "--head=classifier")
    self.assertFalse(os.path.exists(f"{self.base}/weak_bce"))

  def test_interrupted_step_resumes_from_its_last_epoch(self):
    run_dir = f"{self.base}/resume"
    args = [*self.common, f"--run_dir={run_dir}", "--method=ft", "--epochs=2", "--step=0"]
    run_train(*args)
    finished = checkpoints.load_final(f"{run_dir}/step_0", MODEL, [20])
    # Simulate an interruption after the last epoch's checkpoint, before the final save.
    os.remove(f"{run_dir}/step_0/final/done.json")
    run_train(*args)  # restores model, optimizer slots and epoch 2 of 2: nothing left to train
    resumed = checkpoints.load_final(f"{run_dir}/step_0", MODEL, [20])
    for before, after in zip(finished.variables, resumed.variables):
      self.assertAllEqual(before, after, msg=before.path)

  def test_regularised_step_resumes_with_its_state(self):
    run_dir = f"{self.base}/ewc_resume"
    args = [*self.common, f"--run_dir={run_dir}", "--method=ewc", "--epochs=1",
            "--epochs_incremental=2"]
    run_train(*args)
    with np.load(f"{run_dir}/ewc/step_1/final/regularizer.npz") as stored:
      fisher = {key: stored[key] for key in stored.files}
    # Interrupted after the last epoch's checkpoint: model, optimizer, epoch and the EWC
    # statistics (and penalty constants) come back from the training checkpoint.
    os.remove(f"{run_dir}/ewc/step_1/final/done.json")
    run_train(*args, "--step=1")
    with np.load(f"{run_dir}/ewc/step_1/final/regularizer.npz") as stored:
      self.assertCountEqual(stored.files, fisher)
      for key in stored.files:
        self.assertAllEqual(stored[key], fisher[key], msg=key)
    # The previous step's state is required: without it step 1 cannot be trained.
    os.remove(f"{run_dir}/ewc/step_0/final/regularizer.npz")
    os.remove(f"{run_dir}/ewc/step_1/final/done.json")
    with self.assertRaisesRegex(checkpoints.CheckpointError, "regularizer.npz is missing"):
      run_train(*args, "--step=1")

  def test_two_localhost_workers_train_and_the_chief_writes(self):
    # MultiWorkerMirroredStrategy, two processes on this machine (TF_CONFIG), one CPU each.
    run_dir = f"{self.base}/multiworker"
    addresses = [f"localhost:{free_port()}" for _ in range(2)]
    processes = []
    for index in range(2):
      env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(__file__)) or ".",
                 TF_CONFIG=json.dumps({"cluster": {"worker": addresses},
                                       "task": {"type": "worker", "index": index}}))
      processes.append(subprocess.Popen(
          [sys.executable, "-m", "kdseg.train", *self.common, "--method=ft", "--epochs=1",
           "--epochs_incremental=1", "--strategy=multiworker", f"--run_dir={run_dir}"],
          env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    outputs = [process.communicate(timeout=600)[0].decode() for process in processes]
    for process, output in zip(processes, outputs):
      self.assertEqual(process.returncode, 0, output[-3000:])
    self.assertIn("2 replica(s)", outputs[0])
    self.assertIn("worker 1 done", outputs[1])
    for step in (0, 1):   # the chief's checkpoints and results; no worker scratch left behind
      directory = RunDir(run_dir).step_dir(get_method("ft"), step)
      self.assertTrue(checkpoints.is_complete(directory))
      self.assertEqual(glob.glob(os.path.join(directory, ".worker_*")), [])
      with open(os.path.join(run_dir, "ft", "results", f"step_{step}.json")) as handle:
        self.assertEqual(json.load(handle)["step"], step)
    self.assertTrue(os.path.isfile(os.path.join(run_dir, "comparison.txt")))

  def _train_process(self, run_dir, *args):
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(__file__)) or ".")
    return subprocess.Popen(
        [sys.executable, "-m", "kdseg.train", *self.common, "--epochs=2",
         "--epochs_incremental=1", f"--run_dir={run_dir}", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

  def _wait_for(self, path, process, seconds=300):
    deadline = time.time() + seconds
    while not os.path.exists(path):
      if process.poll() is not None:   # (read only then: reading blocks until the process ends)
        self.fail(f"exited with {process.returncode} before {path} appeared:\n"
                  + process.stdout.read().decode()[-3000:])
      self.assertLess(time.time(), deadline, f"{path} never appeared")
      time.sleep(0.1)

  def test_parallel_runs_share_step_0_and_a_second_copy_is_refused(self):
    # Two real processes on one run directory: ft, then mib started while ft trains the shared
    # step 0. mib waits for it and uses it (step 0 is trained once); a second ft is refused while
    # the first runs, naming it, before it writes anything.
    run_dir = f"{self.base}/parallel"
    slow = "--epochs=30"   # step 0 lasts while the other two start
    first = self._train_process(run_dir, "--method=ft", slow)
    self._wait_for(f"{run_dir}/step_0/.lock", first)
    records = {name: os.stat(f"{run_dir}/{name}").st_mtime_ns
               for name in ("experiment.json", "run.json")}
    copy = self._train_process(run_dir, "--method=ft", slow)
    copy_output = copy.communicate(timeout=600)[0].decode()
    self.assertEqual(copy.returncode, 2, copy_output[-3000:])
    self.assertRegex(copy_output, rf"method ft of {run_dir} is in use by pid {first.pid} on ")
    for name, written in records.items():   # the refused copy wrote nothing
      self.assertEqual(os.stat(f"{run_dir}/{name}").st_mtime_ns, written, msg=name)
    second = self._train_process(run_dir, "--method=mib", slow)
    outputs = [process.communicate(timeout=900)[0].decode() for process in (first, second)]
    for process, output in zip((first, second), outputs):
      self.assertEqual(process.returncode, 0, output[-3000:])
    self.assertRegex(outputs[1], r"waiting since \d\d:\d\d:\d\d for step 0 .*: in use by pid ")
    trained_step0 = sum(output.count("step 0: classes") for output in outputs)
    self.assertEqual(trained_step0, 1)
    for method in ("ft", "mib"):
      with open(f"{run_dir}/{method}/results/step_1.json") as handle:
        self.assertEqual(json.load(handle)["step"], 1)
    self.assertEqual(glob.glob(f"{run_dir}/**/.lock", recursive=True), [])

  def test_a_deterministic_run_killed_twice_resumes_to_the_same_weights_and_results(self):
    # --deterministic: a real process saving inside epochs (--checkpoint_minutes tiny: after
    # every iteration) is killed (SIGKILL) during step 0, resumed and killed again during step 1,
    # and resumed to the end. It ends bit-identical to an uninterrupted run of the same command
    # (weights, result records, evaluation caches named by the weights' digest): the data
    # position is part of the checkpoint and every epoch's order and augmentation depend only on
    # (seed, epoch, position), so two deterministic runs are identical too.
    def files(run_dir):
      return sorted(os.path.relpath(os.path.join(root, name), run_dir)
                    for root, _, names in os.walk(run_dir) for name in names
                    if "/train" not in root and "tensorboard" not in root)

    def content(run_dir, name):   # (records name their run directory: compare without it)
      with open(os.path.join(run_dir, name), "rb") as handle:
        return handle.read().replace(run_dir.encode(), b"<run_dir>")

    args = ["--method=ft", "--epochs=3", "--epochs_incremental=8", "--checkpoint_minutes=0.000001",
            "--deterministic"]
    whole = f"{self.base}/uninterrupted"
    uninterrupted = self._train_process(whole, *args)   # alongside: determinism holds anyway
    killed = f"{self.base}/killed"
    for marker in ("step_0/train/checkpoint", "ft/step_1/train/checkpoint"):
      process = self._train_process(killed, *args)
      self._wait_for(f"{killed}/{marker}", process)
      time.sleep(0.5)
      process.kill()
      process.communicate(timeout=60)
      self.assertFalse(checkpoints.is_complete(os.path.dirname(os.path.dirname(
          f"{killed}/{marker}"))), msg=f"killed too late: {marker}'s step had finished")
    resumed = self._train_process(killed, *args)
    output = resumed.communicate(timeout=900)[0].decode()
    self.assertEqual(resumed.returncode, 0, output[-3000:])
    self.assertRegex(output, r"resuming step 1 from .* \(epoch \d, after iteration \d+\)")
    uninterrupted_output = uninterrupted.communicate(timeout=900)[0].decode()
    self.assertEqual(uninterrupted.returncode, 0, uninterrupted_output[-3000:])
    self.assertEqual(files(killed), files(whole))
    compared = [name for name in files(whole) if name.endswith((".json", ".npy", ".data-00000-of-00001"))
                and not name.endswith(("run.json", "method.json", "timing.json"))]   # (wall time)
    self.assertIn("ft/results/step_1.json", compared)
    self.assertIn("ft/step_1/final/model.data-00000-of-00001", compared)
    for name in compared:
      self.assertEqual(content(killed, name), content(whole, name), msg=name)

  def test_replaced_weights_are_scored_again(self):
    run_dir = f"{self.base}/rescore"
    args = [*self.common, f"--run_dir={run_dir}", "--method=ft", "--epochs=1", "--step=0"]
    run_train(*args)
    (cache,) = glob.glob(f"{run_dir}/step_0/final/confusion_val_*.npy")
    digest = checkpoints.digest(f"{run_dir}/step_0")
    self.assertTrue(cache.endswith(f"_{digest}.npy"))
    # Other weights in the same folder (here: zeroed classifier bias): another digest, so the
    # next run scores them instead of reusing the cached confusion of the old ones.
    model = checkpoints.load_final(f"{run_dir}/step_0", MODEL, [20])
    model.classifier.heads[0].bias.assign(tf.zeros_like(model.classifier.heads[0].bias))
    checkpoints.save_final(model, f"{run_dir}/step_0")
    self.assertNotEqual(checkpoints.digest(f"{run_dir}/step_0"), digest)
    run_train(*args)
    self.assertLen(glob.glob(f"{run_dir}/step_0/final/confusion_val_*.npy"), 2)
    with open(f"{run_dir}/ft/results/step_0.json") as handle:
      self.assertEqual(json.load(handle)["checkpoint_digest"],
                       checkpoints.digest(f"{run_dir}/step_0"))

  def test_evaluate_predict_and_export_a_finished_step(self):
    from kdseg import evaluate, export, predict   # noqa: E402  (define their flags)
    run_dir = f"{self.base}/tools"
    args = [*self.common, f"--run_dir={run_dir}", "--method=ft", "--epochs=1",
            "--epochs_incremental=1"]
    run_train(*args)
    with open(f"{run_dir}/ft/results/step_1.json") as handle:
      trained = json.load(handle)

    # kdseg.evaluate with the run directory and the method alone (no dataset or schedule
    # flags): the training-time options reproduce the training-time record (scored again: the
    # confusion cached beside the checkpoint is removed first); multi-scale + flip goes to its
    # own file and leaves the training results alone.
    tool = [f"--run_dir={run_dir}", "--method=ft", "--verbose=0"]
    (cache,) = glob.glob(f"{run_dir}/ft/step_1/final/confusion_val_single_crop0_*.npy")
    os.remove(cache)
    FLAGS.unparse_flags()
    FLAGS(["kdseg.evaluate", *tool, "--step=1"])
    (record,) = evaluate.evaluate(config.tool_from_flags("kdseg.evaluate"))
    self.assertEqual(record["confusion"], trained["confusion"])
    self.assertTrue(os.path.isfile(cache))
    FLAGS.unparse_flags()
    FLAGS(["kdseg.evaluate", *tool, "--step=-1", "--test_scales=0.75,1.25", "--test_flip"])
    records = evaluate.evaluate(config.tool_from_flags("kdseg.evaluate"))
    self.assertEqual([r["step"] for r in records], [0, 1])
    self.assertTrue(os.path.isfile(
        f"{run_dir}/ft/results/eval/val_ms0.75-1.25+flip+mean_crop0_step_1.json"))
    self.assertEqual(records[1]["num_images"], trained["num_images"])
    with open(f"{run_dir}/ft/results/step_1.json") as handle:
      self.assertEqual(json.load(handle), trained)
    FLAGS.unparse_flags()
    FLAGS(["kdseg.evaluate", *tool, "--step=7"])
    with self.assertRaisesRegex(TaskError, r"--step=7, but task 19-1 has steps 0..1"):
      evaluate.evaluate(config.tool_from_flags("kdseg.evaluate"))

    # kdseg.predict: palette PNGs of original class ids, side-by-side views.
    source = load_shapes(f"{self.base}/cache", ShapesConfig(32, 64, 24))
    images = list(source.split("val").image_paths[:2])
    out_dir = f"{run_dir}/predictions"
    FLAGS.unparse_flags()
    FLAGS(["kdseg.predict", *tool, f"--inputs={','.join(images)}", f"--output_dir={out_dir}"])
    predict.main([])
    from PIL import Image  # noqa: E402
    name = os.path.splitext(os.path.basename(images[0]))[0]
    with Image.open(f"{out_dir}/{name}.png") as label:
      self.assertEqual(label.mode, "P")
      predicted = np.asarray(label)
    self.assertTrue(set(np.unique(predicted)) <= set(range(21)))
    with Image.open(f"{out_dir}/{name}_side.png") as side:
      self.assertEqual(side.size, (64, 32))

    # kdseg.export: a SavedModel on uint8 images that agrees with kdseg.predict. A disk that
    # fills up mid-export leaves no partial --export_dir to block the rerun.
    export_dir = f"{run_dir}/exported"
    FLAGS.unparse_flags()
    FLAGS(["kdseg.export", *tool, f"--export_dir={export_dir}"])

    def full_disk(model, order, names, palette, directory):
      del model, order, names, palette
      os.makedirs(f"{directory}/variables")
      raise OSError(errno.ENOSPC, "No space left on device", f"{directory}/variables")

    with mock.patch.object(export, "export", full_disk):
      with self.assertRaisesRegex(OSError, "No space"):
        export.main([])
    self.assertFalse(os.path.exists(export_dir) or os.path.exists(f"{export_dir}.partial"))
    export.main([])
    exported = tf.saved_model.load(export_dir)  # kept referenced: it owns the variables
    served = exported.serve(
        tf.constant(np.asarray(Image.open(images[0]).convert("RGB"))[None]))
    self.assertAllEqual(served["classes"][0], predicted)
    self.assertAllClose(tf.reduce_sum(served["probabilities"], -1), tf.ones([1, 32, 32]))
    with self.assertRaisesRegex(export.ExportError, "already exists"):
      export.main([])

    # A --run_dir that holds no run is an error that writes nothing; so is an unknown method.
    empty = f"{self.base}/not_a_run"
    FLAGS.unparse_flags()
    FLAGS(["kdseg.export", f"--run_dir={empty}", "--method=ft", f"--export_dir={empty}/x"])
    with self.assertRaisesRegex(RunDirError, "does not exist"):
      export.main([])
    self.assertFalse(os.path.exists(empty))
    FLAGS.unparse_flags()
    FLAGS(["kdseg.predict", f"--run_dir={run_dir}", "--method=mib", f"--inputs={images[0]}"])
    with self.assertRaisesRegex(RunDirError, r"--method=mib: no .* Methods in this run: ft\."):
      predict.main([])
    FLAGS.unparse_flags()

  def test_kd_protocol_in_frequency_order_with_a_holdout(self):
    run_dir = f"{self.base}/kd_frequency"
    run_train(*self.common, f"--run_dir={run_dir}", "--method=ft", "--epochs=1",
              "--epochs_incremental=1", "--setting=incremental-learning",
              "--class_order=frequency", "--holdout_fraction=0.2", "--task=15-5")
    source = load_shapes(f"{self.base}/cache", ShapesConfig(32, 64, 24))
    counts = presence.class_pixel_counts(source, "train", f"{self.base}/cache")
    totals = counts[:, 1:21].sum(axis=0)
    with open(f"{run_dir}/experiment.json") as handle:
      order = json.load(handle)["class_order"]
    self.assertCountEqual(order, range(1, 21))
    self.assertTrue(all(totals[a - 1] >= totals[b - 1] for a, b in zip(order, order[1:])))
    added = order[15:]

    def ids(name):
      with open(f"{run_dir}/splits/{name}.txt") as handle:
        return handle.read().split()

    rows = {image_id: r for r, image_id in enumerate(source.split("train").ids)}
    step0 = ids("step_0_train") + ids("step_0_holdout")
    self.assertFalse(counts[[rows[i] for i in step0]][:, added].any())  # no future class
    self.assertTrue(counts[[rows[i] for i in ids("step_1_train")]][:, added].any(axis=1).all())
    self.assertFalse(set(ids("step_1_train")) & set(ids("step_1_holdout")))
    self.assertEqual(len(ids("step_1_holdout")),
                     round(0.2 * (len(ids("step_1_train")) + len(ids("step_1_holdout")))))
    with open(f"{run_dir}/ft/results/step_1.json") as handle:
      record = json.load(handle)
    self.assertEqual((record["split"], record["num_images"]),
                     ("holdout", len(ids("step_1_holdout"))))
    self.assertEqual(list(record["class_iou"])[-5:], [CLASS_NAMES[c] for c in added])
    # The same run directory refuses another class order.
    with self.assertRaisesRegex(ConfigMismatchError, "class_order"):
      run_train(*self.common, f"--run_dir={run_dir}", "--method=ft", "--epochs=1",
                "--epochs_incremental=1", "--setting=incremental-learning",
                "--class_order=random:1", "--holdout_fraction=0.2", "--task=15-5")

  def test_cityscapes_tree_trains_the_vehicles_scenario(self):
    rng = np.random.default_rng(0)
    label_ids = np.array([7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32,
                          33, 0, 9])
    def labels(count, city):
      return {f"{city}/{city}_{i:06d}_000019": rng.choice(label_ids, (16, 32)).astype(np.uint8)
              for i in range(count)}
    root = write_cityscapes_tree(f"{self.base}/cityscapes", {
        "train": labels(24, "aachen"), "val": labels(4, "lindau")})
    run_dir = f"{self.base}/cityscapes_run"
    run_train(*self.common, f"--run_dir={run_dir}", "--dataset=cityscapes",
              f"--data_root={root}", "--task=vehicles", "--setting=partition",
              "--min_images_per_class=4", "--method=ft", "--epochs=1", "--epochs_incremental=1",
              "--batch_size=4", "--crop_size=16")
    for step in (0, 1):
      with open(f"{run_dir}/splits/step_{step}_train.txt") as handle:
        self.assertGreaterEqual(len(handle.read().split()), 4)
    with open(f"{run_dir}/ft/results/step_1.json") as handle:
      record = json.load(handle)
    self.assertEqual(record["task"], "vehicles")
    self.assertEqual(list(record["class_iou"])[-6:],
                     ["car", "truck", "bus", "train", "motorcycle", "bicycle"])
    self.assertEqual(set(record["class_iou"]), set(CITYSCAPES_CLASSES))
    self.assertIsNone(record["class_iou"]["background"])  # never in the ground truth

  def test_missing_previous_step_is_a_clear_error(self):
    run_dir = f"{self.base}/missing"
    with self.assertRaisesRegex(checkpoints.CheckpointError,
                                r"needs the finished step 0 .*--step=0"):
      run_train(*self.common, f"--run_dir={run_dir}", "--method=ft", "--step=1")
    self.assertFalse(os.path.exists(f"{run_dir}/ft/step_1"))

  def test_unknown_method_and_task(self):
    with self.assertRaisesRegex(MethodError, "--method='mibb'"):
      get_method("mibb")
    with self.assertRaisesRegex(TaskError, "--task"):
      run_train(*self.common, f"--run_dir={self.base}/bad_task", "--task=19-2")
    with self.assertRaisesRegex(flags.IllegalFlagValueError, "output_stride"):
      run_train(*self.common, f"--run_dir={self.base}/bad_stride", "--output_stride=12")

  def test_split_smaller_than_a_batch_is_a_clear_error(self):
    run_dir = f"{self.base}/big_batch"
    with self.assertRaisesRegex(FlagValueError, r"step 1 has \d+ training images.*"
                                r"--batch_size=40"):
      run_train(*self.common, f"--run_dir={run_dir}", "--batch_size=40", "--method=ft")
    self.assertFalse(os.path.exists(f"{run_dir}/step_0"))  # refused before step 0 trained


if __name__ == "__main__":
  tf.test.main()
