"""Segments images with a finished step: colour PNGs in the dataset's palette and side-by-side views.

  python -m kdseg.predict --run_dir=runs/shapes_15_1 --method=mib --step=5 \
      --inputs=photo.jpg,more_photos/ --output_dir=predictions

For every input image (JPEG/PNG/BMP; folders are read non-recursively) writes
  <output_dir>/<name>.png        palette PNG of the predicted original class ids (the dataset's
                                 colour map, like VOC's SegmentationClass)
  <output_dir>/<name>_side.png   the image | the prediction blended over it, side by side
<name> is the file's stem, made longer where two inputs would share an output (output_names).
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


# Larger images are refused before they are decoded (a decompression bomb, or a photo the
# network cannot hold in memory at once): 64 Mpx, e.g. 8000 x 8000.
MAX_PIXELS = 64_000_000


def read_image(path: str) -> np.ndarray:
  """The image as [H, W, 3] uint8 RGB: 16-bit grey PNGs scaled to 8 bits (not clipped), others
  through PIL's RGB conversion; InputError for unreadable, oversized or unsupported images."""
  try:
    with fs.open_image(path) as image:
      width, height = image.size
      if width * height > MAX_PIXELS:
        raise InputError(f"{path} is {width} x {height} pixels, more than kdseg.predict segments "
                         f"at once ({MAX_PIXELS // 1_000_000} Mpx): downscale it first.")
      if image.mode.startswith("I;16"):   # 16-bit grey: 0..65535 -> 0..255
        grey = np.round(np.asarray(image, np.float64) / 257.0).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
      if image.mode in ("I", "F"):
        raise InputError(f"{path} holds {'32-bit integer' if image.mode == 'I' else 'float'} "
                         "pixels, which have no fixed range to map to colours: save it as an "
                         "8- or 16-bit image.")
      return np.asarray(image.convert("RGB"))
  except (OSError, ValueError, Image.DecompressionBombError) as error:
    raise InputError(f"{path} is not a readable image ({error}).") from None


def output_names(paths: list[str]) -> list[str]:
  """A distinct output name per input, for <name>.png and <name>_side.png: the file's stem, or,
  where two inputs' outputs would collide (a.jpg and a.png; d1/x.jpg and d2/x.jpg; b.jpg's side
  view and b_side.jpg), the stem with its extension, then its folder, then its position."""
  def candidate(index: int, level: int) -> str:
    path = paths[index]
    stem, extension = os.path.splitext(fs.basename(path))
    name = stem if level == 0 else f"{stem}_{extension.lstrip('.').lower()}"
    if level >= 2:
      name = f"{fs.basename(fs.dirname(path)) or 'root'}_{name}"
    return name if level < 3 else f"{name}_{index}"

  levels = [0] * len(paths)
  while True:
    names = [candidate(i, level) for i, level in enumerate(levels)]
    owners: dict[str, list[int]] = {}
    for index, name in enumerate(names):
      for output in (name, f"{name}_side"):
        owners.setdefault(output, []).append(index)
    clashing = {i for indices in owners.values() if len(indices) > 1 for i in indices}
    if not clashing:
      return names
    if all(levels[i] == 3 for i in clashing):   # (positions make names distinct: not reached)
      raise InputError(f"--inputs: cannot give {sorted(names)[:3]}... distinct output names.")
    for index in clashing:
      levels[index] = min(3, levels[index] + 1)


def _save_png(path: str, image: Image.Image) -> None:
  atomic.write_png(path, lambda out: image.save(out, format="PNG"))


def main(argv):
  del argv
  tool = config.tool_from_flags("kdseg.predict")
  cli.start_process(tool.precision)
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
  for index, (path, name) in enumerate(zip(paths, output_names(paths))):
    image = read_image(path)
    classes = to_original[segment(tf.constant(image)).numpy()]
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
