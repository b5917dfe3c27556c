"""Two train steps of step 1 on a fixed global batch, under a strategy (run as a script).

  python tests/replica_step.py STRATEGY METHOD[,METHOD...] OUT_DIR [jit]
STRATEGY: one (one device), mirrored (2 logical CPUs), multiworker (one worker of a
MultiWorkerMirroredStrategy cluster described by TF_CONFIG; one CPU each). Writes the trained
variables and loss terms of each method to OUT_DIR/<method>.npz (":" written as "_"), each from
a fresh Keras session; tests/test_replicas.py compares the strategies.
"""
import os
import sys

os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

mode, method_names, out_dir = sys.argv[1], sys.argv[2].split(","), sys.argv[3]
jit_compile = sys.argv[4:] == ["jit"]
if mode == "mirrored":
  cpu = tf.config.list_physical_devices("CPU")[0]
  tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

from kdseg.engine.loop import Schedule, StepTrainer, make_optimizer  # noqa: E402
from kdseg.losses.regularizers import ImportanceRegularizer  # noqa: E402
from kdseg.methods import build_objective, customize, get_method  # noqa: E402
from kdseg.models.classifier import HEAD_INITIALIZERS  # noqa: E402
from kdseg.models.freezing import freeze, freeze_statistics  # noqa: E402
from kdseg.models.segmenter import ModelConfig, build_segmenter, copy_matching_weights  # noqa: E402

from kdseg.engine.distribute import make_strategy  # noqa: E402

strategy = make_strategy({"one": "default"}.get(mode, mode))


def run(method_name: str, out_path: str) -> None:
  # EF freezes the backbone (its BN then uses moving statistics) and DeepLab-v2 has no BN, so the
  # step is a function of the global batch alone; per-replica BN statistics would differ.
  # "frozen-bn:<method>": no EF, DeepLab-v3 (BN in the head too), every BN with frozen statistics
  # (--batch_norm=frozen) -- again a function of the global batch.
  frozen_statistics = method_name.startswith("frozen-bn:")
  if frozen_statistics:
    method = get_method(method_name.split(":", 1)[1])
    config = ModelConfig("tiny", 8, 8, head="v3")
  else:
    method = customize(get_method(method_name), freeze="encoder")
    config = ModelConfig("tiny", 8, 8, head="v2")
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (4, 32, 32, 3)).astype(np.float32)
  labels = rng.integers(0, 4, (4, 32, 32)).astype(np.int32)   # no 255: equal counts per replica

  with strategy.scope():
    tf.keras.utils.set_random_seed(1)
    old_model = build_segmenter(config, [3])
    old_model.trainable = False
    model = build_segmenter(config, [3, 1])
    copy_matching_weights(old_model, model)
    HEAD_INITIALIZERS[method.init](model.classifier)
    objective = build_objective(method, 3)
    freeze(model, objective.freeze)
    if frozen_statistics:
      freeze_statistics(model)
    regularizer = None
    if method.regularizer:
      previous = {f"{k}/{v.path}": rng.uniform(0, 1, v.shape).astype(np.float32)
                  for v in model.trainable_variables for k in ("fisher", "omega", "score")}
      regularizer = ImportanceRegularizer(method.regularizer,
                                          [(v.path, v) for v in model.trainable_variables],
                                          previous,
                                          {v.path: v.numpy() for v in old_model.variables})
    schedule = Schedule(0.1, 1, 2)
    trainer = StepTrainer(strategy, model, old_model, objective, make_optimizer(schedule), 1e-2,
                          jit_compile=jit_compile, regularizer=regularizer)
  dataset = tf.data.Dataset.from_tensor_slices((images, labels)).repeat(2).batch(4)
  for batch in strategy.experimental_distribute_dataset(dataset):
    terms = trainer._iteration(batch)
  state = {} if regularizer is None else regularizer.finish()
  np.savez(out_path, **{f"var/{v.path}": v.numpy() for v in model.trainable_variables},
           **{f"term/{k}": float(v) for k, v in terms.items()},
           **{f"state/{k}": v for k, v in state.items()})


for name in method_names:   # every method from the same calls in every strategy's process
  run(name, os.path.join(out_dir, name.replace(":", "_") + ".npz"))
