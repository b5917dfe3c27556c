"""Exports a finished step as a SavedModel with a serving signature on uint8 images.

  python -m kdseg.export --run_dir=runs/shapes_15_1 --method=mib --step=5 \
      --export_dir=exported/shapes_15_1_mib_step5

The SavedModel's `serve` signature takes `images`: [B, H, W, 3] uint8 RGB (any size) and returns
  classes        [B, H, W] uint8, the predicted ORIGINAL dataset class ids (0 = background)
  probabilities  [B, H, W, C] float32, softmax over the step's classes in model order
Normalisation and the class-order mapping are inside the graph. `classes.json` next to it lists
the model order, the class names and the palette. Load with tf.saved_model.load(dir).serve(...).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from kdseg import atomic, config, fs  # noqa: E402
from kdseg.data.pipeline import normalize  # noqa: E402
from kdseg.models.segmenter import output_order  # noqa: E402
from kdseg.run import cli  # noqa: E402
from kdseg.run.scoring import finished_model  # noqa: E402
from kdseg.rundir import RunDir  # noqa: E402

FLAGS = config.FLAGS


class ExportError(FileExistsError):
  """The export directory already holds something."""


def export(model, order: tuple[int, ...], class_names, palette, export_dir: str) -> None:
  """Writes the SavedModel of `model` whose outputs are ordered as the original ids `order`."""
  to_original = tf.constant(order, tf.int32)

  def serve(images):
    logits = model(normalize(images), training=False)["logits"]
    classes = tf.gather(to_original, tf.argmax(logits, axis=-1, output_type=tf.int32))
    return {"classes": tf.cast(classes, tf.uint8),
            "probabilities": tf.nn.softmax(logits, axis=-1)}

  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.add_endpoint("serve", serve, input_signature=[
      tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")])
  archive.write_out(export_dir, verbose=False)
  atomic.write_json(fs.join(export_dir, "classes.json"),
                    {"model_order": list(order), "names": [class_names[c] for c in order],
                     "palette": [list(palette[c]) for c in order]})


def main(argv):
  del argv
  tool = config.tool_from_flags("kdseg.export")
  cli.start_process(tool.precision)
  if not FLAGS.export_dir:
    raise config.FlagValueError("--export_dir is required (a directory that does not exist yet).")
  if fs.exists(FLAGS.export_dir):
    raise ExportError(f"--export_dir={FLAGS.export_dir} already exists; choose a new directory "
                      "(nothing was overwritten).")
  run_dir = RunDir(tool.run_dir)
  recorded = run_dir.require_run()
  method = run_dir.load_method(tool.method)
  model, plan, step = finished_model(run_dir, recorded, method, tool.step)
  # Written beside its destination, then renamed: a failure (a full disk) leaves no partial
  # --export_dir to block the rerun.
  export_dir = fs.absolute(FLAGS.export_dir)
  partial = f"{export_dir}.partial"
  if fs.exists(partial):
    fs.rmtree(partial)   # left by an earlier export that failed
  try:
    export(model, output_order(plan, model), recorded.class_names, recorded.palette, partial)
  except BaseException:
    fs.rmtree(partial)
    raise
  fs.rename(partial, export_dir, overwrite=False)
  print(f"kdseg.export: {method.name} step {step} ({plan.num_classes(step)} classes) -> "
        f"{FLAGS.export_dir}")


flags.adopt_module_key_flags(config)   # --help lists kdseg's flags
run = cli.command_line("kdseg.export", main, ExportError)


if __name__ == "__main__":
  run()
