"""Train-step speed, peak memory and GFLOP/s of the papers' networks, written to a JSON file.

  python tools/benchmark.py --output=benchmarks/cpu.json                 # the full grid
  python tools/benchmark.py --heads=v3 --backbones=resnet101 --sizes=512 --xla=false \
      --precisions=float32 --recompute=false,true --output=/tmp/r101.json

Grid: heads (v2 = DeepLab-v2 at output stride 8, KD paper; v3 = DeepLab-v3 at output stride 16,
MiB paper) x backbones x crop sizes x XLA x precision x gradient checkpointing. Each
configuration runs in its own process (a fresh peak-memory count, its own dtype policy): it
builds the model with 21 classes, runs kdseg's real train step (StepTrainer: cross-entropy,
weight decay, SGD) on random data, `--warmup` steps (tracing, XLA compilation) then `--steps`
timed steps, and reports

  seconds_per_image   mean timed step time / batch size
  peak_rss_gib        the process's peak resident memory (ru_maxrss), model + activations + TF
  forward_gflop       forward FLOPs per image, counted by the TensorFlow profiler on the graph
  train_gflops        3 x forward FLOPs x images per second (backward ~ 2 x forward, the usual
                      convention; recomputation's extra forward is not counted as useful work)

Results are appended to --output as they finish, so an interrupted grid keeps what it measured.

--deterministic=false,true times each configuration with and without TensorFlow's op determinism
(kdseg.train --deterministic), each in its own process.

With --crf_sizes the dense-CRF post-processing (kdseg/engine/crf.py, --test_crf) is timed too:
seconds per image of the mean-field inference on a synthetic photo-like image (a smooth colour
field plus noise, 21-class probabilities), after one untimed call; --heads= (empty) skips the
network grid:

  python tools/benchmark.py --heads= --crf_sizes=321,512 --append --output=benchmarks/cpu.json

With --presence_images the class-presence scan (kdseg/data/presence.py) is timed on a fake VOC
tree of that many 500x375 JPEG images with palette PNG labels (a few objects each), written to a
temporary folder: labels per second of the first (cold-cache) scan, of the cached reload, and of
the refresh after 1 % of the labels changed:

  python tools/benchmark.py --heads= --presence_images=10000 --append --output=benchmarks/cpu.json
"""
from __future__ import annotations

import itertools
import json
import os
import resource
import subprocess
import sys
import time

from absl import app, flags

from kdseg import atomic

flags.DEFINE_list("heads", ["v2", "v3"], "Heads: v2 (OS8) and/or v3 (OS16).")
flags.DEFINE_list("backbones", ["resnet50", "resnet101"], "Backbones.")
flags.DEFINE_list("sizes", ["321", "512"], "Square crop sides.")
flags.DEFINE_list("xla", ["false", "true"], "Compile the forward/backward with XLA.")
flags.DEFINE_list("precisions", ["float32", "mixed_bfloat16"], "Keras dtype policies.")
flags.DEFINE_list("recompute", ["false"], "Gradient checkpointing of the backbone.")
flags.DEFINE_list("deterministic", ["false"], "TensorFlow op determinism (kdseg.train "
                  "--deterministic): false, true or both, to measure its cost.")
flags.DEFINE_integer("batch_size", 2, "Images per train step.")
flags.DEFINE_integer("warmup", 1, "Untimed steps (tracing, compilation).")
flags.DEFINE_integer("steps", 3, "Timed steps.")
flags.DEFINE_integer("timeout", 1800, "Seconds per configuration before it is recorded as timed out.")
flags.DEFINE_string("output", "benchmarks/benchmark.json", "JSON file the results go to.")
flags.DEFINE_bool("append", False, "Add to the results already in --output (e.g. a second grid).")
flags.DEFINE_list("crf_sizes", [], "Also time the dense CRF on square images of these sides.")
flags.DEFINE_integer("presence_images", 0, "Also time the class-presence scan on a fake VOC tree "
                     "of this many images (0: skip).")
flags.DEFINE_string("_child", None, "Internal: run one configuration (JSON) and print its result.")
FLAGS = flags.FLAGS

OUTPUT_STRIDE = {"v2": 8, "v3": 16}
NUM_CLASSES = 21


def _bool(text: str) -> bool:
  return text.strip().lower() in ("1", "true", "yes", "on")


def forward_gflop(model, size: int) -> float | None:
  """Forward FLOPs of one image, from the TensorFlow profiler's per-op float_ops statistics."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tensorflow.python.profiler import model_analyzer, option_builder  # pylint: disable=g-import-not-at-top

  concrete = tf.function(lambda x: model(x, training=False)["logits"]).get_concrete_function(
      tf.TensorSpec([1, size, size, 3], tf.float32))
  options = option_builder.ProfileOptionBuilder.float_operation()
  options["output"] = "none"
  stats = model_analyzer.profile(concrete.graph, options=options)
  return stats.total_float_ops / 1e9 if stats.total_float_ops else None


def run_one(config: dict) -> dict:
  """Runs in the child process: one configuration's measurements."""
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from kdseg.engine.loop import Schedule, StepTrainer, make_optimizer  # pylint: disable=g-import-not-at-top
  from kdseg.methods import build_objective, get_method  # pylint: disable=g-import-not-at-top
  from kdseg.models.segmenter import ModelConfig, build_segmenter  # pylint: disable=g-import-not-at-top

  keras.config.set_dtype_policy(config["precision"])
  if config.get("deterministic"):
    tf.config.experimental.enable_op_determinism()
  model_config = ModelConfig(config["backbone"], OUTPUT_STRIDE[config["head"]], 256,
                             head=config["head"], recompute=config["recompute"])
  model = build_segmenter(model_config, [NUM_CLASSES])
  gflop = forward_gflop(model, config["size"])
  batch, size = config["batch_size"], config["size"]
  images = tf.random.stateless_normal([batch, size, size, 3], seed=[0, 1])
  labels = tf.random.stateless_uniform([batch, size, size], seed=[0, 2], maxval=NUM_CLASSES,
                                       dtype=tf.int32)
  schedule = Schedule(0.01, epochs=1, iterations_per_epoch=config["warmup"] + config["steps"])
  strategy = tf.distribute.get_strategy()
  trainer = StepTrainer(strategy, model, None, build_objective(get_method("ft"), 0),
                        make_optimizer(schedule, config["precision"] == "mixed_float16"),
                        1e-4, jit_compile=config["xla"])
  start = time.perf_counter()
  for _ in range(config["warmup"]):
    float(trainer._iteration((images, labels))["total"])  # pylint: disable=protected-access
  warmup_seconds = time.perf_counter() - start
  times = []
  for _ in range(config["steps"]):
    start = time.perf_counter()
    float(trainer._iteration((images, labels))["total"])  # pylint: disable=protected-access
    times.append(time.perf_counter() - start)
  seconds_per_image = sum(times) / len(times) / batch
  return {**config, "output_stride": OUTPUT_STRIDE[config["head"]],
          "seconds_per_image": seconds_per_image, "step_seconds": times,
          "warmup_seconds": warmup_seconds,
          "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
          "forward_gflop": gflop,
          "train_gflops": None if gflop is None else 3 * gflop / seconds_per_image,
          "status": "ok"}


def _grid() -> list[dict]:
  return [{"head": head, "backbone": backbone, "size": int(size), "xla": _bool(xla),
           "precision": precision, "recompute": _bool(recompute),
           "deterministic": _bool(deterministic),
           "batch_size": FLAGS.batch_size, "warmup": FLAGS.warmup, "steps": FLAGS.steps}
          for head, backbone, size, xla, precision, recompute, deterministic in itertools.product(
              FLAGS.heads, FLAGS.backbones, FLAGS.sizes, FLAGS.xla, FLAGS.precisions,
              FLAGS.recompute, FLAGS.deterministic)]


def _machine() -> dict:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from kdseg import machine  # pylint: disable=g-import-not-at-top
  return {**machine.describe(), "tensorflow": tf.__version__,
          "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}


def time_crf(size: int, classes: int = 21, repeats: int = 3) -> dict:
  """Seconds per image of dense_crf (default parameters) on a synthetic size x size image."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from kdseg.engine.crf import DenseCRF, dense_crf  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(0)
  rgb = tf.image.resize(rng.uniform(0, 255, [1, size // 16, size // 16, 3]), [size, size])
  rgb = tf.cast(tf.clip_by_value(rgb + rng.normal(0, 5, rgb.shape), 0, 255), tf.float32)
  logits = tf.image.resize(rng.normal(size=[1, size // 8, size // 8, classes]) * 3, [size, size])
  probabilities = tf.cast(tf.nn.softmax(logits), tf.float32)
  crf = DenseCRF()
  run = tf.function(lambda image, p: dense_crf(image, p, crf))
  run(rgb, probabilities)
  start = time.perf_counter()
  for _ in range(repeats):
    run(rgb, probabilities).numpy()
  return {"size": size, "classes": classes, "iterations": crf.iterations,
          "seconds_per_image": (time.perf_counter() - start) / repeats}


def time_presence(count: int, width: int = 500, height: int = 375, templates: int = 64) -> dict:
  """Labels per second of the class-presence scan on a fake `count`-image VOC tree."""
  import shutil  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from kdseg.data import presence  # pylint: disable=g-import-not-at-top
  from kdseg.data.voc import read_voc_layout, voc_palette  # pylint: disable=g-import-not-at-top

  root = tempfile.mkdtemp(prefix="kdseg_presence_")
  try:
    for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
      os.makedirs(os.path.join(root, folder))
    rng = np.random.default_rng(0)
    sources = []
    for index in range(templates):  # distinct files, copied: writing 10k encodes would dominate
      label = np.zeros((height, width), np.uint8)
      for _ in range(rng.integers(1, 4)):
        top, left = rng.integers(0, height - 50), rng.integers(0, width - 50)
        label[top:top + rng.integers(40, 200), left:left + rng.integers(40, 300)] = (
            rng.integers(1, 21))
      png = Image.fromarray(label, mode="P")
      png.putpalette(voc_palette().flatten().tolist())
      paths = (os.path.join(root, f"t{index}.png"), os.path.join(root, f"t{index}.jpg"))
      png.save(paths[0])
      Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(paths[1])
      sources.append(paths)
    ids = [f"{i:06d}" for i in range(count)]
    for i, image_id in enumerate(ids):
      label_path, image_path = sources[i % templates]
      shutil.copyfile(label_path, os.path.join(root, "SegmentationClass", f"{image_id}.png"))
      shutil.copyfile(image_path, os.path.join(root, "JPEGImages", f"{image_id}.jpg"))
    for split in ("train", "val"):
      with open(os.path.join(root, "ImageSets", "Segmentation", f"{split}.txt"), "w") as out:
        out.write("".join(f"{i}\n" for i in ids))
    source = read_voc_layout(root)
    cache = os.path.join(root, "cache")
    timings = {}
    for name in ("first_scan", "cached"):
      start = time.perf_counter()
      presence.class_pixel_counts(source, "train", cache)
      timings[name] = time.perf_counter() - start
    changed = source.split("train").label_paths[::100]
    for path in changed:
      os.utime(path, ns=(1, 1))
    start = time.perf_counter()
    presence.class_pixel_counts(source, "train", cache)
    timings["refresh_1_percent"] = time.perf_counter() - start
  finally:
    shutil.rmtree(root, ignore_errors=True)
  return {"images": count, "size": f"{width}x{height}", "workers": min(8, (os.cpu_count() or 1) * 2),
          **{f"{k}_seconds": v for k, v in timings.items()},
          "first_scan_labels_per_second": count / timings["first_scan"],
          "cached_labels_per_second": count / timings["cached"],
          "refresh_changed_labels": len(changed)}


def format_presence_table(rows: list[dict]) -> str:
  lines = ["| presence scan images | size | first scan s | labels/s | cached s | refresh 1 % s |",
           "|" + " --- |" * 6]
  lines += [f"| {r['images']} | {r['size']} | {r['first_scan_seconds']:.1f} | "
            f"{r['first_scan_labels_per_second']:.0f} | {r['cached_seconds']:.2f} | "
            f"{r['refresh_1_percent_seconds']:.2f} |" for r in rows]
  return "\n".join(lines)


def format_crf_table(rows: list[dict]) -> str:
  lines = ["| dense CRF size | classes | iterations | s/image |", "|" + " --- |" * 4]
  lines += [f"| {r['size']} | {r['classes']} | {r['iterations']} | {r['seconds_per_image']:.2f} |"
            for r in rows]
  return "\n".join(lines)


def format_table(results: list[dict]) -> str:
  lines = ["| head | backbone | size | XLA | precision | recompute | batch | s/image | peak GiB | "
           "fwd GFLOP | train GFLOP/s |", "|" + " --- |" * 11]
  for r in results:
    if r["status"] != "ok":
      lines.append(f"| {r['head']} | {r['backbone']} | {r['size']} | {r['xla']} | "
                   f"{r['precision']} | {r['recompute']} | {r['batch_size']} | {r['status']} "
                   "| | | |")
      continue
    gflop = "–" if r["forward_gflop"] is None else f"{r['forward_gflop']:.1f}"
    rate = "–" if r["train_gflops"] is None else f"{r['train_gflops']:.1f}"
    lines.append(f"| {r['head']} | {r['backbone']} | {r['size']} | {r['xla']} | "
                 f"{r['precision']} | {r['recompute']} | {r['batch_size']} | "
                 f"{r['seconds_per_image']:.2f} | "
                 f"{r['peak_rss_gib']:.2f} | {gflop} | {rate} |")
  return "\n".join(lines)


def main(argv):
  del argv
  if FLAGS._child:  # pylint: disable=protected-access
    print("RESULT " + json.dumps(run_one(json.loads(FLAGS._child))))  # pylint: disable=protected-access
    return
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
  document = {"machine": _machine(), "results": []}
  if FLAGS.append and os.path.isfile(FLAGS.output):
    with open(FLAGS.output) as handle:
      document = json.load(handle)
  for config in _grid():
    label = " ".join(f"{k}={v}" for k, v in config.items())
    print(f"benchmark: {label}", flush=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
         os.environ.get("PYTHONPATH", "")]))
    try:
      child = subprocess.run([sys.executable, os.path.abspath(__file__),
                              f"--_child={json.dumps(config)}"], env=env, capture_output=True,
                             text=True, timeout=FLAGS.timeout)
      lines = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
      if child.returncode or not lines:
        result = {**config, "status": f"failed (exit {child.returncode})",
                  "error": child.stderr.strip().splitlines()[-1:] or ""}
      else:
        result = json.loads(lines[-1][len("RESULT "):])
    except subprocess.TimeoutExpired:
      result = {**config, "status": f"timed out after {FLAGS.timeout}s"}
    document["results"].append(result)
    atomic.write_json(FLAGS.output, document)
    print("  " + (f"{result['seconds_per_image']:.2f} s/image, {result['peak_rss_gib']:.2f} GiB"
                  if result["status"] == "ok" else result["status"]), flush=True)
  for size in FLAGS.crf_sizes:
    row = time_crf(int(size))
    print(f"benchmark: dense CRF {size}: {row['seconds_per_image']:.2f} s/image", flush=True)
    document.setdefault("crf", []).append(row)
    atomic.write_json(FLAGS.output, document)
  if FLAGS.presence_images:
    row = time_presence(FLAGS.presence_images)
    print(f"benchmark: presence scan of {row['images']} labels: "
          f"{row['first_scan_labels_per_second']:.0f} labels/s", flush=True)
    document.setdefault("presence", []).append(row)
    atomic.write_json(FLAGS.output, document)
  table = format_table(document["results"])
  if document.get("crf"):
    table += "\n\n" + format_crf_table(document["crf"])
  if document.get("presence"):
    table += "\n\n" + format_presence_table(document["presence"])
  atomic.write_text(os.path.splitext(FLAGS.output)[0] + ".md",
                    f"{json.dumps(document['machine'])}\n\n{table}\n")
  print(table)


if __name__ == "__main__":
  app.run(main)
