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

With --demo the README's demo runs in a fresh run directory and data cache, and its wall time by
phase (kdseg.train's timing.json) is recorded, so a regression anywhere in a whole run shows:

  python tools/benchmark.py --heads= --demo --output=benchmarks/demo.json

With --graph_audit the grid's train steps are traced and counted instead of timed (ops by dtype,
Cast and Transpose ops; machine-independent):

  python tools/benchmark.py --graph_audit --heads=v2,v3 --backbones=resnet101 --sizes=65 \
      --xla=false --precisions=mixed_bfloat16,float32 --output=benchmarks/bf16_audit.json
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
flags.DEFINE_enum("compare", None, ["torch"], "Time the same networks in PyTorch in the same "
                  "process, interleaved with kdseg's steps (needs pip install -e \".[torch]\"): "
                  "v3 = the MiB network (resnet101_iabn, DeepLab-v3, OS16), v2 = the KD paper's "
                  "(resnet101_tv, DeepLab-v2, OS8); --heads, --sizes, --precisions choose; "
                  "PyTorch runs eager, bfloat16 under torch.autocast.")
flags.DEFINE_list("torch_norms", ["rebuild"], "--compare=torch, v3: the PyTorch baselines' norm "
                  "layers (tools/torch_networks.py NORMS): rebuild (this repository's in-place "
                  "ABN rebuild), inplace_abn (mapillary's compiled extension), bn (PyTorch's "
                  "BatchNorm2d + LeakyReLU in place); one row each.")
flags.DEFINE_list("batch_norms", ["train"], "--compare=torch: how both networks' BN layers "
                  "train: train (batch statistics, the MiB recipe) and/or frozen (moving "
                  "statistics, gamma and beta trained: the KD recipe's --batch_norm=frozen, as "
                  "the KD paper's code runs DeepLab-v2; PyTorch's norm layers in eval mode); "
                  "one row each.")
flags.register_validator("batch_norms", lambda values: set(values) <= {"train", "frozen"},
                         "--batch_norms takes train and/or frozen.")
flags.DEFINE_integer("rates_crop", 0, "Also measure, for the MiB network (DeepLab-v3, "
                     "resnet101_iabn, OS16), as ratios to its train step's image rate at this crop "
                     "(0: skip): evaluation images/s on 500x375 images (single scale; scales "
                     "0.5-1.5 + flip), the tf.data input pipeline alone (decode + augment of a "
                     "fake VOC tree's JPEG/PNG pairs), and the train step fed by that pipeline.")
flags.DEFINE_integer("records_images", 0, "Also time building TFDS records (kdseg_voc) of a fake "
                     "VOC tree of this many 500x375 images, and the training input pipeline "
                     "(crop 512) from records against from folders.", lower_bound=0)
flags.DEFINE_integer("records_pipeline_images", 1000, "Images the input pipeline comparison "
                     "reads from each (the first of the split).", lower_bound=1)
flags.DEFINE_bool("graph_audit", False, "Count instead of time: for each configuration of the "
                  "grid, the traced train step's ops by type and dtype -- which convolution, "
                  "matmul and batch-norm ops (forward and backward) run in float32, the Cast ops "
                  "by source and target dtype, the Transpose ops -- to --output. Machine-"
                  "independent: it needs no bfloat16 units.")
flags.DEFINE_bool("demo", False, "Also run the README's demo (flags/shapes_15_1.cfg) in a "
                  "fresh run directory and data cache and record its wall time by phase "
                  "(kdseg.train's timing.json: data -- the shapes generation included --, "
                  "training, evaluation, reporting) and the process's whole wall time.")
flags.DEFINE_string("_child", None, "Internal: run one configuration (JSON) and print its result.")
FLAGS = flags.FLAGS

OUTPUT_STRIDE = {"v2": 8, "v3": 16}
EVAL_SIZE = (375, 500)   # VOC's usual image, height x width: the evaluation rates' input
NUM_CLASSES = 21


def _write(path: str, document: dict | str) -> None:
  """Writes a results file whole (a dict as JSON). kdseg is imported here, not at the top: it
  imports TensorFlow, and a --compare=torch child must import torch first -- the
  other order crashes in triton's import."""
  from kdseg import atomic  # pylint: disable=g-import-not-at-top
  if isinstance(document, str):
    atomic.write_text(path, document)
  else:
    atomic.write_json(path, document)


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


def _random_batch(batch: int, size: int, width: int | None = None):
  """Seeded random images and labels of one train step (size x size, or size x width)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  width = width or size
  return (tf.random.stateless_normal([batch, size, width, 3], seed=[0, 1]),
          tf.random.stateless_uniform([batch, size, width], seed=[0, 2], maxval=NUM_CLASSES,
                                      dtype=tf.int32))


def _ft_trainer(model, iterations: int, xla: bool = False, loss_scaling: bool = False):
  """kdseg's real train step (StepTrainer: cross-entropy, weight decay 1e-4, SGD) for `model`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from kdseg.engine.loop import Schedule, StepTrainer, make_optimizer  # pylint: disable=g-import-not-at-top
  from kdseg.methods import build_objective, get_method  # pylint: disable=g-import-not-at-top
  return StepTrainer(tf.distribute.get_strategy(), model, None,
                     build_objective(get_method("ft"), 0),
                     make_optimizer(Schedule(0.01, epochs=1, iterations_per_epoch=iterations),
                                    loss_scaling), 1e-4, jit_compile=xla)


def run_one(config: dict) -> dict:
  """Runs in the child process: one configuration's measurements."""
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from kdseg.models.segmenter import ModelConfig, build_segmenter  # pylint: disable=g-import-not-at-top

  keras.config.set_dtype_policy(config["precision"])
  if config.get("deterministic"):
    tf.config.experimental.enable_op_determinism()
  model_config = ModelConfig(config["backbone"], OUTPUT_STRIDE[config["head"]], 256,
                             head=config["head"], recompute=config["recompute"])
  model = build_segmenter(model_config, [NUM_CLASSES])
  gflop = forward_gflop(model, config["size"])
  batch = config["batch_size"]
  images, labels = _random_batch(batch, config["size"])
  trainer = _ft_trainer(model, config["warmup"] + config["steps"], config["xla"],
                        config["precision"] == "mixed_float16")
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


# The ops that carry a train step's arithmetic (forward and backward).
HEAVY_OPS = ("Conv2D", "Conv2DBackpropInput", "Conv2DBackpropFilter", "DepthwiseConv2dNative",
             "MatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum", "FusedBatchNormV3",
             "FusedBatchNormGradV3")


def _attr_dtype(node, *keys: str) -> str | None:
  """The dtype in the first of `keys` a NodeDef has (T / dtype / DstT: what it computes in)."""
  from tensorflow.python.framework import dtypes  # pylint: disable=g-import-not-at-top
  for key in keys:
    if key in node.attr and node.attr[key].type:
      return dtypes.as_dtype(node.attr[key].type).name
  return None


def audit_graph(config: dict) -> dict:
  """Runs in the child process: the traced train step of one configuration, counted (its main
  graph and every function of its library: the gradient and custom-gradient bodies)."""
  import collections  # pylint: disable=g-import-not-at-top
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import keras  # pylint: disable=g-import-not-at-top

  from kdseg.models.segmenter import ModelConfig, build_segmenter  # pylint: disable=g-import-not-at-top

  keras.config.set_dtype_policy(config["precision"])
  model = build_segmenter(ModelConfig(config["backbone"], OUTPUT_STRIDE[config["head"]], 256,
                                      head=config["head"], recompute=config["recompute"]),
                          [NUM_CLASSES])
  trainer = _ft_trainer(model, 1, config["xla"], config["precision"] == "mixed_float16")
  batch = _random_batch(config["batch_size"], config["size"])
  graph_def = trainer._iteration.get_concrete_function(batch).graph.as_graph_def()  # pylint: disable=protected-access
  nodes = list(graph_def.node) + [node for function in graph_def.library.function
                                  for node in function.node_def]
  ops = collections.Counter(f"{node.op}:{_attr_dtype(node, 'T', 'dtype', 'DstT', 'out_type')}"
                            for node in nodes)
  casts = collections.Counter(f"{_attr_dtype(node, 'SrcT')}->{_attr_dtype(node, 'DstT')}"
                              for node in nodes if node.op == "Cast")
  heavy = {dtype: {op: ops[f"{op}:{dtype}"] for op in HEAVY_OPS if ops[f"{op}:{dtype}"]}
           for dtype in ("float32", "bfloat16", "float16")}
  return {**config, "status": "ok", "nodes": len(nodes),
          "heavy_ops": {dtype: counts for dtype, counts in heavy.items() if counts},
          "casts": dict(casts), "transposes": sum(v for k, v in ops.items()
                                                  if k.startswith("Transpose:")),
          "ops": dict(sorted(ops.items()))}


def format_audit_table(rows: list[dict]) -> str:
  lines = ["| head | backbone | precision | nodes | heavy ops in float32 | heavy ops in bfloat16 "
           "| Cast ops | Transpose ops |", "| --- | --- | --- | ---: | --- | --- | --- | ---: |"]
  for r in rows:
    if r["status"] != "ok":
      lines.append(f"| {r['head']} | {r['backbone']} | {r['precision']} | {r['status']} "
                   "| | | | |")
      continue
    heavy = r["heavy_ops"]

    def listed(counts: dict) -> str:
      return ", ".join(f"{op} {n}" for op, n in counts.items()) or "none"

    lines.append(f"| {r['head']} | {r['backbone']} | {r['precision']} | {r['nodes']} | "
                 f"{listed(heavy.get('float32', {}))} | {listed(heavy.get('bfloat16', {}))} | "
                 f"{listed(r['casts'])} | {r['transposes']} |")
  return "\n".join(lines)


GEMM_SIDE = 2048


def gemm_rates(torch, tf, bfloat16: bool, repeats: int = 15) -> dict:
  """This machine's matrix-multiply rate in GFLOP/s, each framework's own (TensorFlow's oneDNN
  MatMul, torch.mm): the fastest of `repeats` products of two 2048 x 2048 matrices of the step's
  compute dtype -- the yardstick the step efficiencies of format_efficiency_table use."""
  side, rates = GEMM_SIDE, {}
  a = tf.random.stateless_normal([side, side], seed=[0, 5],
                                 dtype=tf.bfloat16 if bfloat16 else tf.float32)
  product = tf.function(lambda x: tf.reduce_sum(tf.matmul(x, x)))
  ta = torch.from_numpy(tf.cast(a, tf.float32).numpy())
  ta = ta.bfloat16() if bfloat16 else ta
  for name, run in (("tensorflow", lambda: float(product(a))),
                    ("torch", lambda: float(torch.mm(ta, ta).float().sum()))):
    run()
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      run()
      times.append(time.perf_counter() - start)
    rates[name] = 2 * side ** 3 / min(times) / 1e9
  return rates


COMPARED_BACKBONE = {"v3": "resnet101_iabn", "v2": "resnet101_tv"}


def _median(values: list[float]) -> float:
  ordered = sorted(values)
  middle = len(ordered) // 2
  return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def run_compare(config: dict) -> dict:
  """Runs in the child process: kdseg's train step and PyTorch's on the same network, inputs
  and batch, alternating step by step (both use every core; neither runs while the other
  does), then each framework's forward alone, in the same rotation; `warmup` untimed rounds,
  then `steps` timed ones; medians reported, with the forward's FLOPs and both frameworks'
  matrix-product rates (format_efficiency_table)."""
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import torch  # pylint: disable=g-import-not-at-top  (before TensorFlow, see torch_networks)
  import torch_networks  # pylint: disable=g-import-not-at-top
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from kdseg.models.freezing import freeze_statistics  # pylint: disable=g-import-not-at-top
  from kdseg.models.segmenter import ModelConfig, build_segmenter  # pylint: disable=g-import-not-at-top

  head, batch, size = config["head"], config["batch_size"], config["size"]
  bfloat16 = config["precision"] == "mixed_bfloat16"
  keras.config.set_dtype_policy(config["precision"])
  model = build_segmenter(ModelConfig(COMPARED_BACKBONE[head], OUTPUT_STRIDE[head], 256,
                                      head=head), [NUM_CLASSES])
  frozen = config.get("batch_norm", "train") == "frozen"
  if frozen:
    freeze_statistics(model)
  images, labels = _random_batch(batch, size)
  total = config["warmup"] + config["steps"]
  trainer = _ft_trainer(model, total, config["xla"])

  torch.set_num_threads(os.cpu_count() or 1)
  torch.manual_seed(0)
  if head == "v3":   # the MiB network's norm layers; DeepLab-v2 is torchvision's layout
    torch_networks.set_norm(config.get("torch_norm", "rebuild"))
  network = (torch_networks.Segmentation([NUM_CLASSES]) if head == "v3"
             else torch_networks.DeepLabV2(NUM_CLASSES))
  network.train()
  if frozen:
    torch_networks.freeze_statistics(network)
  optimizer = torch.optim.SGD(network.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
  torch_images = torch.from_numpy(images.numpy()).permute(0, 3, 1, 2).contiguous()
  torch_labels = torch.from_numpy(labels.numpy()).long()

  def torch_step():
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
      logits = network(torch_images)
    loss = torch.nn.functional.cross_entropy(logits.float(), torch_labels, ignore_index=255)
    loss.backward()
    optimizer.step()
    return float(loss)

  def kdseg_step():
    return float(trainer._iteration((images, labels))["total"])  # pylint: disable=protected-access

  # The forward alone (training mode: batch statistics, as in the step; nothing recorded for a
  # backward), to split each step into forward and backward + update.
  kdseg_forward_graph = tf.function(lambda x: model(x, training=True)["logits"])

  def kdseg_forward():
    return float(tf.reduce_sum(kdseg_forward_graph(images)))

  def torch_forward():
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bfloat16):
      return float(network(torch_images).float().sum())

  timed = {"kdseg": [], "torch": [], "kdseg_forward": [], "torch_forward": []}
  for index in range(total):
    for name, step in (("kdseg", kdseg_step), ("torch", torch_step),
                       ("kdseg_forward", kdseg_forward), ("torch_forward", torch_forward)):
      start = time.perf_counter()
      step()
      if index >= config["warmup"]:
        timed[name].append(time.perf_counter() - start)
  kdseg_time, torch_time = _median(timed["kdseg"]), _median(timed["torch"])
  return {**config, "backbone": COMPARED_BACKBONE[head], "output_stride": OUTPUT_STRIDE[head],
          "kdseg_seconds_per_image": kdseg_time / batch,
          "torch_seconds_per_image": torch_time / batch,
          "speed_ratio": torch_time / kdseg_time,   # > 1: kdseg faster
          "kdseg_step_seconds": timed["kdseg"], "torch_step_seconds": timed["torch"],
          "kdseg_forward_seconds_per_image": _median(timed["kdseg_forward"]) / batch,
          "torch_forward_seconds_per_image": _median(timed["torch_forward"]) / batch,
          "forward_gflop": forward_gflop(model, size),
          "gemm_gflops": gemm_rates(torch, tf, bfloat16),
          "torch": torch.__version__, "tensorflow": tf.__version__,
          "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
          "status": "ok"}


def run_rates(config: dict) -> dict:
  """Runs in the child process: the rates --rates_crop describes."""
  import shutil  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from kdseg.data import pipeline  # pylint: disable=g-import-not-at-top
  from kdseg.data.source import identity_table  # pylint: disable=g-import-not-at-top
  from kdseg.data.voc import read_voc_layout  # pylint: disable=g-import-not-at-top
  from kdseg.engine.evaluation import TestTime, predict_probabilities  # pylint: disable=g-import-not-at-top
  from kdseg.models.segmenter import ModelConfig, build_segmenter  # pylint: disable=g-import-not-at-top

  crop, batch, steps = config["crop"], config["batch_size"], config["steps"]
  model = build_segmenter(ModelConfig("resnet101_iabn", 16, 256, head="v3"), [NUM_CLASSES])
  trainer = _ft_trainer(model, 100)

  def seconds_per_call(function, batches, warmup=1):
    for _ in range(warmup):
      function(next(batches))
    start = time.perf_counter()
    for _ in range(steps):
      function(next(batches))
    return (time.perf_counter() - start) / steps

  def train(batch_data):
    float(trainer._iteration(batch_data)["total"])  # pylint: disable=protected-access

  constant = _random_batch(batch, crop)
  result = {**config}
  result["train_images_per_second"] = batch / seconds_per_call(train, itertools.repeat(constant))
  # The same train step on images of the evaluation's size (VOC's 500x375): the rate the
  # evaluation rates compare with pixel for pixel.
  result["train_images_per_second_at_eval_size"] = batch / seconds_per_call(
      train, itertools.repeat(_random_batch(batch, EVAL_SIZE[0], EVAL_SIZE[1])))
  scales = (0.5, 0.75, 1.0, 1.25, 1.5)
  # One image at a time, and batches of two images of one size (what kdseg.evaluate's batches
  # hold: images of one size, never padded). eval_multiscale: the MiB paper's own multi-scale
  # test (§6.3.2: these scales, max voting, no flip).
  for name, test_time in (("eval_single", TestTime()),
                          ("eval_multiscale_flip", TestTime(scales, True)),
                          ("eval_multiscale", TestTime(scales, False, "max"))):
    predict = tf.function(lambda images, t=test_time: predict_probabilities(model, images, t))
    for images, suffix in ((1, ""), (2, "_batch2")):
      image = tf.random.stateless_normal([images, *EVAL_SIZE, 3], seed=[0, 3])
      result[f"{name}{suffix}_images_per_second"] = images / seconds_per_call(
          lambda x: predict(x).numpy(), itertools.repeat(image))
  # What the multi-scale + flip test computes, in single-scale forwards: sum of scale^2, twice.
  result["multiscale_flip_forwards"] = 2 * sum(s * s for s in scales)
  root = tempfile.mkdtemp(prefix="kdseg_input_")
  try:
    count = max(64, batch * (steps + 2) * 4)
    _fake_voc_tree(root, count)
    source = read_voc_layout(root)
    files = source.split("train")

    def batches():
      epoch = 0
      while True:
        yield from pipeline.train_dataset(source, files, identity_table(NUM_CLASSES), batch,
                                          crop, 0.5, 2.0, seed=0, epoch=epoch)
        epoch += 1

    start, images_read = time.perf_counter(), 0
    for _ in pipeline.train_dataset(source, files, identity_table(NUM_CLASSES), batch, crop, 0.5,
                                    2.0, seed=0):
      images_read += batch
    result["input_images_per_second"] = images_read / (time.perf_counter() - start)
    result["input_images"] = count
    result["train_images_per_second_with_input"] = batch / seconds_per_call(train, batches())
  finally:
    shutil.rmtree(root, ignore_errors=True)
  result["measured"] = time.strftime("%Y-%m-%d %H:%M")
  rate = result["train_images_per_second"]
  for ratio, measured in (("eval_single_ratio", "eval_single_images_per_second"),
                          ("eval_multiscale_flip_ratio", "eval_multiscale_flip_images_per_second"),
                          ("eval_single_batch2_ratio", "eval_single_batch2_images_per_second"),
                          ("eval_multiscale_flip_batch2_ratio",
                           "eval_multiscale_flip_batch2_images_per_second"),
                          ("eval_multiscale_ratio", "eval_multiscale_images_per_second"),
                          ("eval_multiscale_batch2_ratio",
                           "eval_multiscale_batch2_images_per_second"),
                          ("input_ratio", "input_images_per_second"),
                          ("train_with_input_ratio", "train_images_per_second_with_input")):
    result[ratio] = result[measured] / rate
  same_size = result["train_images_per_second_at_eval_size"]
  for name in ("eval_single", "eval_multiscale_flip", "eval_single_batch2",
               "eval_multiscale_flip_batch2", "eval_multiscale", "eval_multiscale_batch2"):
    result[f"{name}_ratio_same_size"] = result[f"{name}_images_per_second"] / same_size
  # The train step in single-scale forwards of the same size, and the ratio the multi-scale
  # test would have if each of its forwards cost its pixels' share of a single-scale one
  # (measured rates beat it a little: the flipped pair runs as one batch).
  result["train_step_forwards"] = (result["eval_single_images_per_second"] / same_size)
  result["multiscale_flip_ratio_from_pixels"] = (result["train_step_forwards"]
                                                 / result["multiscale_flip_forwards"])
  result["status"] = "ok"
  return result


def format_rates_table(rows: list[dict]) -> str:
  blocks = []
  for r in rows:   # one pair of tables per run
    lines = ["| MiB network (v3, resnet101_iabn) | images/s | ratio to the train step |",
             "| --- | --- | --- |"]
    when = f" ({r['measured']}, {r['steps']} timed calls each)" if "measured" in r else ""
    lines += [f"| train step, crop {r['crop']}, batch {r['batch_size']}{when} | "
              f"{r['train_images_per_second']:.3f} | 1 |",
              f"| train step fed by tf.data (decode + augment) | "
              f"{r['train_images_per_second_with_input']:.3f} | {r['train_with_input_ratio']:.2f} |",
              f"| tf.data input alone (500x375 JPEG/PNG, crop {r['crop']}) | "
              f"{r['input_images_per_second']:.1f} | {r['input_ratio']:.0f} |",
              f"| evaluation, single scale, 500x375 | {r['eval_single_images_per_second']:.3f} | "
              f"{r['eval_single_ratio']:.2f} |",
              f"| evaluation, scales 0.5-1.5 + flip | "
              f"{r['eval_multiscale_flip_images_per_second']:.3f} | "
              f"{r['eval_multiscale_flip_ratio']:.2f} |"]
    if "eval_single_batch2_images_per_second" in r:
      lines += [f"| evaluation, single scale, batches of 2 images of 500x375 | "
                f"{r['eval_single_batch2_images_per_second']:.3f} | "
                f"{r['eval_single_batch2_ratio']:.2f} |",
                f"| evaluation, scales 0.5-1.5 + flip, batches of 2 images | "
                f"{r['eval_multiscale_flip_batch2_images_per_second']:.3f} | "
                f"{r['eval_multiscale_flip_batch2_ratio']:.2f} |"]
    if "eval_multiscale_images_per_second" in r:
      lines += [f"| evaluation, scales 0.5-1.5, max voting, no flip (the MiB paper's test) | "
                f"{r['eval_multiscale_images_per_second']:.3f} | "
                f"{r['eval_multiscale_ratio']:.2f} |",
                f"| the same, batches of 2 images | "
                f"{r['eval_multiscale_batch2_images_per_second']:.3f} | "
                f"{r['eval_multiscale_batch2_ratio']:.2f} |"]
    if "train_images_per_second_at_eval_size" in r:
      lines += [f"| train step at the evaluation's size (500x375), batch {r['batch_size']} | "
                f"{r['train_images_per_second_at_eval_size']:.3f} | "
                f"{r['train_images_per_second_at_eval_size'] / r['train_images_per_second']:.2f} |",
                "", "| at the evaluation's size (500x375) | ratio to that train step |",
                "| --- | --- |",
                f"| evaluation, single scale | {r['eval_single_ratio_same_size']:.2f} |",
                f"| evaluation, scales 0.5-1.5 + flip | "
                f"{r['eval_multiscale_flip_ratio_same_size']:.2f} |",
                *([f"| evaluation, single scale, batches of 2 | "
                   f"{r['eval_single_batch2_ratio_same_size']:.2f} |",
                   f"| evaluation, scales 0.5-1.5 + flip, batches of 2 | "
                   f"{r['eval_multiscale_flip_batch2_ratio_same_size']:.2f} |"]
                  if "eval_single_batch2_ratio_same_size" in r else []),
                *([f"| evaluation, scales 0.5-1.5, max voting, no flip (the MiB paper's test) | "
                   f"{r['eval_multiscale_ratio_same_size']:.2f} |",
                   f"| the same, batches of 2 | "
                   f"{r['eval_multiscale_batch2_ratio_same_size']:.2f} |"]
                  if "eval_multiscale_ratio_same_size" in r else []),
                f"| from pixels alone: a train step costs {r['train_step_forwards']:.2f} "
                f"single-scale forwards, the test {r['multiscale_flip_forwards']:.2f} | "
                f"{r['multiscale_flip_ratio_from_pixels']:.2f} |"]
    blocks.append("\n".join(lines))
  return "\n\n".join(blocks)


BASELINES = {"rebuild": "tools/torch_networks.py in-place ABN rebuild",
             "inplace_abn": "mapillary inplace_abn (compiled CPU extension)",
             "bn": "nn.BatchNorm2d + LeakyReLU(inplace)",
             "torchvision": "torchvision's ResNet layers (BatchNorm2d + ReLU), rebuilt"}


def _baseline(row: dict) -> str:
  return BASELINES.get(row.get("torch_norm", "rebuild"), row.get("torch_norm"))


def _network(row: dict) -> str:
  frozen = ", frozen BN" if row.get("batch_norm", "train") == "frozen" else ""
  return (f"DeepLab-{row['head']} {row.get('backbone', '')} OS{OUTPUT_STRIDE[row['head']]}"
          f"{frozen}")


def format_compare_table(rows: list[dict]) -> str:
  lines = ["| network | PyTorch baseline | size | precision | batch | kdseg s/image | "
           "PyTorch s/image | kdseg speed / PyTorch |", "|" + " --- |" * 8]
  for r in rows:
    network, baseline = _network(r), _baseline(r)
    if r["status"] != "ok":
      lines.append(f"| {network} | {baseline} | {r['size']} | {r['precision']} | "
                   f"{r['batch_size']} | {r['status']} | | |")
      continue
    lines.append(f"| {network} | {baseline} | {r['size']} | {r['precision']} | "
                 f"{r['batch_size']} | {r['kdseg_seconds_per_image']:.2f} | "
                 f"{r['torch_seconds_per_image']:.2f} | {r['speed_ratio']:.2f}x |")
  return "\n".join(lines)


def format_efficiency_table(rows: list[dict]) -> str:
  """Each framework's forward and backward + update against the machine's matrix-multiply
  rate (the faster of the two frameworks' 2048^3 products): forward GFLOP from TensorFlow's
  profiler (convolutions and products of kdseg's graph, the same network on both sides),
  backward nominally twice the forward (input and kernel gradients), so the percentages compare
  the two frameworks' work on equal terms, and the last column is what kdseg's whole step would
  need for 1.2x PyTorch's speed."""
  lines = ["| network | PyTorch baseline | precision | GEMM GFLOP/s (TF / torch) | forward "
           "GFLOP / image | kdseg forward | kdseg backward + update | PyTorch forward | "
           "PyTorch backward + update | kdseg step | PyTorch step | kdseg step at 1.2x |",
           "|" + " --- |" * 12]
  for r in rows:
    if r["status"] != "ok" or not r.get("forward_gflop") or "gemm_gflops" not in r:
      continue
    peak, gflop = max(r["gemm_gflops"].values()), r["forward_gflop"]

    def share(flop: float, seconds: float) -> str:
      return f"{100 * flop / seconds / peak:.0f} %" if seconds > 0 else "n/a"

    kdseg, torch_ = r["kdseg_seconds_per_image"], r["torch_seconds_per_image"]
    kdseg_forward, torch_forward = (r["kdseg_forward_seconds_per_image"],
                                    r["torch_forward_seconds_per_image"])
    lines.append(
        f"| {_network(r)} | {_baseline(r)} | {r['precision']} | "
        f"{r['gemm_gflops']['tensorflow']:.0f} / {r['gemm_gflops']['torch']:.0f} | "
        f"{gflop:.1f} | {share(gflop, kdseg_forward)} | "
        f"{share(2 * gflop, kdseg - kdseg_forward)} | {share(gflop, torch_forward)} | "
        f"{share(2 * gflop, torch_ - torch_forward)} | {share(3 * gflop, kdseg)} | "
        f"{share(3 * gflop, torch_)} | {share(3 * gflop, torch_ / 1.2)} |")
  return "\n".join(lines) if len(lines) > 2 else ""


def _grid() -> list[dict]:
  if FLAGS.compare:
    return [{"compare": FLAGS.compare, "head": head, "size": int(size), "precision": precision,
             "xla": False, "batch_size": FLAGS.batch_size, "warmup": FLAGS.warmup,
             "steps": FLAGS.steps, "torch_norm": norm if head == "v3" else "torchvision",
             "batch_norm": batch_norm}
            for head, size, precision, batch_norm in itertools.product(
                FLAGS.heads, FLAGS.sizes, FLAGS.precisions, FLAGS.batch_norms)
            for norm in (FLAGS.torch_norms if head == "v3" else ["torchvision"])]
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


def _fake_voc_tree(root: str, count: int, width: int = 500, height: int = 375,
                   templates: int = 64) -> None:
  """A VOC-layout tree of `count` width x height JPEG photos (noise) with palette PNG labels of
  a few rectangles each; `templates` distinct pairs, copied (encoding 10k would dominate)."""
  import shutil  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from kdseg.data.voc import voc_palette  # pylint: disable=g-import-not-at-top

  for folder in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
    os.makedirs(os.path.join(root, folder))
  rng = np.random.default_rng(0)
  sources = []
  for index in range(templates):
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


def time_presence(count: int, width: int = 500, height: int = 375, templates: int = 64) -> dict:
  """Labels per second of the class-presence scan on a fake `count`-image VOC tree."""
  import shutil  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  from kdseg.data import presence  # pylint: disable=g-import-not-at-top
  from kdseg.data.voc import read_voc_layout  # pylint: disable=g-import-not-at-top

  root = tempfile.mkdtemp(prefix="kdseg_presence_")
  try:
    _fake_voc_tree(root, count, width, height, templates)
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


def time_records(count: int, pipeline_images: int, crop: int = 512, batch: int = 2) -> dict:
  """Seconds to build kdseg_voc records of a fake `count`-image VOC tree, and the training input
  pipeline's images/s over its first `pipeline_images` images from records and from folders."""
  import shutil  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top
  from kdseg.data import pipeline  # pylint: disable=g-import-not-at-top
  from kdseg.data.datasets import DataConfig, load_source  # pylint: disable=g-import-not-at-top
  from kdseg.data.shapes import ShapesConfig  # pylint: disable=g-import-not-at-top
  from kdseg.data.source import identity_table  # pylint: disable=g-import-not-at-top
  from kdseg.data.builders import prepare as build  # pylint: disable=g-import-not-at-top

  root = tempfile.mkdtemp(prefix="kdseg_records_")
  try:
    tree = os.path.join(root, "VOC2012")
    _fake_voc_tree(tree, count)
    cache, data_dir = os.path.join(root, "cache"), os.path.join(root, "records")
    start = time.perf_counter()
    build("voc", data_dir, tree, cache)
    build_seconds = time.perf_counter() - start
    result = {"images": count, "size": "500x375", "build_seconds": build_seconds,
              "build_images_per_second": 2 * count / build_seconds,   # train and val lists
              "pipeline_images": pipeline_images, "crop": crop, "batch_size": batch}
    for data_format in ("folder", "tfds"):
      start = time.perf_counter()
      source = load_source(DataConfig("voc", tree, cache, ShapesConfig(), data_format,
                                      data_dir if data_format == "tfds" else None))
      result[f"{data_format}_load_seconds"] = time.perf_counter() - start
      files = source.split("train")
      files = files.select(files.ids[:pipeline_images])
      start, images = time.perf_counter(), 0
      for _ in pipeline.train_dataset(source, files, identity_table(NUM_CLASSES), batch, crop,
                                      0.5, 2.0, seed=0):
        images += batch
      result[f"{data_format}_images_per_second"] = images / (time.perf_counter() - start)
    result["records_to_folder_ratio"] = (result["tfds_images_per_second"] /
                                         result["folder_images_per_second"])
    result["records_bytes"] = sum(os.path.getsize(os.path.join(folder, name))
                                  for folder, _, names in os.walk(data_dir) for name in names)
  finally:
    shutil.rmtree(root, ignore_errors=True)
  return result


def time_demo() -> dict:
  """The README's demo in a fresh run directory and cache: its timing.json and table."""
  import tempfile  # pylint: disable=g-import-not-at-top
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  with tempfile.TemporaryDirectory() as scratch:
    start = time.perf_counter()
    child = subprocess.run([sys.executable, "-m", "kdseg.train", "--flagfile=flags/shapes_15_1.cfg",
                            f"--run_dir={scratch}/run", f"--cache_dir={scratch}/cache"],
                           cwd=root, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if child.returncode:
      return {"status": f"failed (exit {child.returncode})",
              "error": child.stderr.strip().splitlines()[-1:]}
    with open(f"{scratch}/run/timing.json") as handle:
      timing = json.load(handle)
    with open(f"{scratch}/run/comparison.txt") as handle:
      comparison = handle.read()
  return {"status": "ok", "process_seconds": round(seconds, 1), **timing,
          "comparison": comparison}


def format_demo_table(rows: list[dict]) -> str:
  lines = ["| demo (flags/shapes_15_1.cfg) | process s | run s | " + " | ".join(
      f"{name} s" for name in ("data", "training", "evaluation", "reporting")) + " | other s |",
           "| --- |" + " ---: |" * 7]
  for r in rows:
    phases = r["phases"]
    lines.append(f"| fresh run dir and cache | {r['process_seconds']:.0f} | "
                 f"{r['total_seconds']:.0f} | " + " | ".join(
                     f"{phases.get(name, 0.0):.0f}"
                     for name in ("data", "training", "evaluation", "reporting")) +
                 f" | {r['other_seconds']:.0f} |")
  return "\n".join(lines)


def format_records_table(rows: list[dict]) -> str:
  lines = ["| records of fake VOC | build s | images/s built | input from folders images/s | "
           "from records | ratio |", "|" + " --- |" * 6]
  lines += [f"| {r['images']} x {r['size']} | {r['build_seconds']:.0f} | "
            f"{r['build_images_per_second']:.0f} | {r['folder_images_per_second']:.1f} | "
            f"{r['tfds_images_per_second']:.1f} | {r['records_to_folder_ratio']:.2f} |"
            for r in rows]
  return "\n".join(lines)


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


def _run_child(config: dict) -> dict:
  """One configuration in its own process (a fresh peak-memory count, its own dtype policy)."""
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
       os.environ.get("PYTHONPATH", "")]))
  try:
    child = subprocess.run([sys.executable, os.path.abspath(__file__),
                            f"--_child={json.dumps(config)}"], env=env, capture_output=True,
                           text=True, timeout=FLAGS.timeout)
  except subprocess.TimeoutExpired:
    return {**config, "status": f"timed out after {FLAGS.timeout}s"}
  lines = [line for line in child.stdout.splitlines() if line.startswith("RESULT ")]
  if child.returncode or not lines:
    return {**config, "status": f"failed (exit {child.returncode})",
            "error": child.stderr.strip().splitlines()[-1:] or ""}
  return json.loads(lines[-1][len("RESULT "):])


def main(argv):
  del argv
  if FLAGS._child:  # pylint: disable=protected-access
    config = json.loads(FLAGS._child)  # pylint: disable=protected-access
    runner = (run_compare if config.get("compare") else run_rates if config.get("rates")
              else audit_graph if config.get("audit") else run_one)
    print("RESULT " + json.dumps(runner(config)))
    return
  os.makedirs(os.path.dirname(os.path.abspath(FLAGS.output)), exist_ok=True)
  document = {"machine": _machine(), "results": []}
  if FLAGS.append and os.path.isfile(FLAGS.output):
    with open(FLAGS.output) as handle:
      document = json.load(handle)
  for config in _grid() if FLAGS.heads else []:
    if FLAGS.graph_audit:
      config["audit"] = True
    label = " ".join(f"{k}={v}" for k, v in config.items())
    print(f"benchmark: {label}", flush=True)
    result = _run_child(config)
    document.setdefault("comparisons" if FLAGS.compare else
                        "audits" if FLAGS.graph_audit else "results", []).append(result)
    _write(FLAGS.output, document)
    if result["status"] != "ok":
      print("  " + result["status"], flush=True)
    elif FLAGS.graph_audit:
      print(f"  {result['nodes']} nodes; float32 heavy ops "
            f"{result['heavy_ops'].get('float32', {})}; casts {result['casts']}", flush=True)
    elif FLAGS.compare:
      print(f"  kdseg {result['kdseg_seconds_per_image']:.2f} s/image, PyTorch "
            f"{result['torch_seconds_per_image']:.2f} s/image: kdseg at "
            f"{result['speed_ratio']:.2f}x PyTorch's speed", flush=True)
    else:
      print(f"  {result['seconds_per_image']:.2f} s/image, {result['peak_rss_gib']:.2f} GiB",
            flush=True)
  if FLAGS.rates_crop:
    print(f"benchmark: evaluation and input rates, crop {FLAGS.rates_crop}", flush=True)
    row = _run_child({"rates": True, "crop": FLAGS.rates_crop, "batch_size": FLAGS.batch_size,
                      "steps": FLAGS.steps})
    print("  " + (row["status"] if row["status"] != "ok" else
                  f"train {row['train_images_per_second']:.3f} images/s"), flush=True)
    document.setdefault("rates", []).append(row)
    _write(FLAGS.output, document)
  for size in FLAGS.crf_sizes:
    row = time_crf(int(size))
    print(f"benchmark: dense CRF {size}: {row['seconds_per_image']:.2f} s/image", flush=True)
    document.setdefault("crf", []).append(row)
    _write(FLAGS.output, document)
  if FLAGS.presence_images:
    row = time_presence(FLAGS.presence_images)
    print(f"benchmark: presence scan of {row['images']} labels: "
          f"{row['first_scan_labels_per_second']:.0f} labels/s", flush=True)
    document.setdefault("presence", []).append(row)
    _write(FLAGS.output, document)
  if FLAGS.records_images:
    row = time_records(FLAGS.records_images, FLAGS.records_pipeline_images)
    print(f"benchmark: records of {row['images']} images built in {row['build_seconds']:.0f} s; "
          f"input {row['folder_images_per_second']:.1f} images/s from folders, "
          f"{row['tfds_images_per_second']:.1f} from records", flush=True)
    document.setdefault("records", []).append(row)
    _write(FLAGS.output, document)
  if FLAGS.demo:
    row = time_demo()
    print("benchmark: demo " + (row["status"] if row["status"] != "ok" else
                                f"{row['process_seconds']:.0f} s, phases {row['phases']}"),
          flush=True)
    document.setdefault("demo", []).append(row)
    _write(FLAGS.output, document)
  table = format_table(document["results"]) if document.get("results") else ""
  if document.get("comparisons"):
    table += "\n\n" + format_compare_table(document["comparisons"])
    efficiency = format_efficiency_table(document["comparisons"])
    table += "\n\n" + efficiency if efficiency else ""
  if document.get("audits"):
    table += "\n\n" + format_audit_table(document["audits"])
  if document.get("rates"):
    table += "\n\n" + format_rates_table([r for r in document["rates"] if r["status"] == "ok"])
  if document.get("crf"):
    table += "\n\n" + format_crf_table(document["crf"])
  if document.get("presence"):
    table += "\n\n" + format_presence_table(document["presence"])
  if document.get("records"):
    table += "\n\n" + format_records_table(document["records"])
  if document.get("demo"):
    table += "\n\n" + format_demo_table([r for r in document["demo"] if r["status"] == "ok"])
  _write(os.path.splitext(FLAGS.output)[0] + ".md",
         f"{json.dumps(document['machine'])}\n\n{table}\n")
  print(table)


if __name__ == "__main__":
  app.run(main)
