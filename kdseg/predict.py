"""Segments images with a finished step: colour PNGs in the dataset's palette and side-by-side views.

  python -m kdseg.predict --run_dir=runs/shapes_15_1 --method=mib --step=5 \
      --inputs=photo.jpg,more_photos/ --output_dir=predictions

For every input image (JPEG/PNG/BMP; folders are read non-recursively) writes
  <output_dir>/<name>.png        palette PNG of the predicted original class ids (the dataset's
                                 colour map, like VOC's SegmentationClass)
  <output_dir>/<name>_side.png   the image | the prediction blended over it, side by side
The run directory alone (its run.json) gives the model, the step's classes and their colours: no
dataset is read. The test-time flags (--test_scales, --test_flip, --test_merge, --test_crf) apply.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402
import sys  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
import tensorflow as tf  # noqa: E402

from kdseg import atomic, config, fs  # noqa: E402
from kdseg.data.pipeline import normalize  # noqa: E402
from kdseg.engine.evaluation import predict_probabilities  # noqa: E402
from kdseg.models.segmenter import output_order  # noqa: E402
from kdseg.run import cli  # noqa: E402
from kdseg.run.scoring import finished_model  # noqa: E402
from kdseg.rundir import RunDir  # noqa: E402

FLAGS = config.FLAGS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class InputError(FileNotFoundError):
  """An input path that is missing or holds no readable image."""


def list_images(inputs: list[str]) -> list[str]:
  paths = []
  for item in inputs:
    if fs.isdir(item):
      found = sorted(fs.join(item, name) for name in fs.listdir(item)
                     if name.lower().endswith(IMAGE_SUFFIXES))
      if not found:
        raise InputError(f"--inputs: folder {item} holds no {'/'.join(IMAGE_SUFFIXES)} image.")
      paths += found
    elif fs.isfile(item):
      paths.append(item)
    else:
      raise InputError(f"--inputs: {item} does not exist.")
  if not paths:
    raise InputError("--inputs is empty: name image files or folders.")
  return paths


def read_image(path: str) -> np.ndarray:
  try:
    with fs.open_image(path) as image:
      return np.asarray(image.convert("RGB"))
  except (OSError, ValueError) as error:
    raise InputError(f"{path} is not a readable image ({error}).") from None


def _save_png(path: str, image: Image.Image) -> None:
  atomic.write_png(path, lambda out: image.save(out, format="PNG"))


def main(argv):
  del argv
  tool = config.tool_from_flags("kdseg.predict")
  cli.quiet_start(tool.precision)
  paths = list_images(FLAGS.inputs)
  run_dir = RunDir(tool.run_dir)
  recorded = run_dir.require_run()
  method = run_dir.load_method(tool.method)
  model, plan, step = finished_model(run_dir, recorded, method, tool.step)
  test_time = tool.evaluation.test_time
  to_original = np.asarray(output_order(plan, model), np.uint8)
  palette = np.asarray(recorded.palette, np.uint8)

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
  def segment(image):
    probabilities = predict_probabilities(model, normalize(image)[None], test_time)
    return tf.argmax(probabilities[0], axis=-1, output_type=tf.int32)

  progress = keras.utils.Progbar(len(paths), verbose=1 if sys.stdout.isatty() else 0)
  for index, path in enumerate(paths):
    image = read_image(path)
    classes = to_original[segment(tf.constant(image)).numpy()]
    name = os.path.splitext(fs.basename(path))[0]
    label = Image.fromarray(classes)                   # mode L; a palette makes it P
    label.putpalette(palette.flatten().tolist())
    _save_png(fs.join(FLAGS.output_dir, f"{name}.png"), label)
    blended = ((1 - FLAGS.overlay_alpha) * image + FLAGS.overlay_alpha * palette[classes])
    side = np.concatenate([image, blended.astype(np.uint8)], axis=1)
    _save_png(fs.join(FLAGS.output_dir, f"{name}_side.png"), Image.fromarray(side))
    progress.update(index + 1)
  present = sorted(set(np.unique(classes)) - {0})
  print(f"kdseg.predict: {len(paths)} images of {method.name} step {step} -> {FLAGS.output_dir}"
        f" (last image: {[recorded.class_names[c] for c in present]})")


flags.adopt_module_key_flags(config)   # --help lists kdseg's flags
run = cli.command_line("kdseg.predict", main, InputError)


if __name__ == "__main__":
  run()
