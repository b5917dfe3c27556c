"""Segments images with a finished step: colour PNGs in the dataset's palette and side-by-side views.

  python -m kdseg.predict --flagfile=flags/shapes_15_1.cfg --method=mib --step=5 \
      --inputs=photo.jpg,more_photos/ --output_dir=predictions

For every input image (JPEG/PNG/BMP; folders are read non-recursively) writes
  <output_dir>/<name>.png        palette PNG of the predicted original class ids (the dataset's
                                 colour map, like VOC's SegmentationClass)
  <output_dir>/<name>_side.png   the image | the prediction blended over it, side by side
The run's flags (dataset, task, model) give the step's classes and their colours. The test-time
flags (--test_scales, --test_flip, --test_merge, --test_crf) apply.
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import sys  # noqa: E402

from absl import flags, logging  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
import tensorflow as tf  # noqa: E402

from kdseg import train  # noqa: E402
from kdseg.data.pipeline import normalize  # noqa: E402
from kdseg.engine.evaluation import predict_probabilities  # noqa: E402

flags.DEFINE_list("inputs", [], "Image files and/or folders of images.")
flags.DEFINE_string("output_dir", "predictions", "Where the PNGs go.")
flags.DEFINE_float("overlay_alpha", 0.5, "Opacity of the prediction in the side-by-side view.")
FLAGS = flags.FLAGS

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class InputError(FileNotFoundError):
  """An input path that is missing or holds no readable image."""


def list_images(inputs: list[str]) -> list[str]:
  paths = []
  for item in inputs:
    if os.path.isdir(item):
      found = sorted(os.path.join(item, name) for name in os.listdir(item)
                     if name.lower().endswith(IMAGE_SUFFIXES))
      if not found:
        raise InputError(f"--inputs: folder {item} holds no {'/'.join(IMAGE_SUFFIXES)} image.")
      paths += found
    elif os.path.isfile(item):
      paths.append(item)
    else:
      raise InputError(f"--inputs: {item} does not exist.")
  if not paths:
    raise InputError("--inputs is empty: name image files or folders.")
  return paths


def read_image(path: str) -> np.ndarray:
  try:
    with Image.open(path) as image:
      return np.asarray(image.convert("RGB"))
  except (OSError, ValueError) as error:
    raise InputError(f"{path} is not a readable image ({error}).") from None


def main(argv):
  del argv
  tf.get_logger().setLevel("ERROR")
  logging.set_verbosity(logging.WARNING)
  keras.config.set_dtype_policy(FLAGS.precision)
  paths = list_images(FLAGS.inputs)
  method = train.resolve_methods()[0]
  experiment = train.build_experiment()
  model, plan, step = train.finished_model(experiment, method, FLAGS.step)
  test_time = train.test_time_from_flags()
  to_original = np.asarray(plan.order(step), np.uint8)
  palette = np.asarray(experiment.source.palette, np.uint8)

  @tf.function(input_signature=[tf.TensorSpec([None, None, 3], tf.uint8)])
  def segment(image):
    probabilities = predict_probabilities(model, normalize(image)[None], test_time)
    return tf.argmax(probabilities[0], axis=-1, output_type=tf.int32)

  os.makedirs(FLAGS.output_dir, exist_ok=True)
  progress = keras.utils.Progbar(len(paths), verbose=1 if sys.stdout.isatty() else 0)
  for index, path in enumerate(paths):
    image = read_image(path)
    classes = to_original[segment(tf.constant(image)).numpy()]
    name = os.path.splitext(os.path.basename(path))[0]
    label = Image.fromarray(classes)                   # mode L; a palette makes it P
    label.putpalette(palette.flatten().tolist())
    label.save(os.path.join(FLAGS.output_dir, f"{name}.png"))
    blended = ((1 - FLAGS.overlay_alpha) * image + FLAGS.overlay_alpha * palette[classes])
    side = np.concatenate([image, blended.astype(np.uint8)], axis=1)
    Image.fromarray(side).save(os.path.join(FLAGS.output_dir, f"{name}_side.png"))
    progress.update(index + 1)
  present = sorted(set(np.unique(classes)) - {0})
  print(f"kdseg.predict: {len(paths)} images of {method.name} step {step} -> {FLAGS.output_dir}"
        f" (last image: {[experiment.source.class_names[c] for c in present]})")


run = train.command_line("kdseg.predict", main, InputError)


if __name__ == "__main__":
  run()
