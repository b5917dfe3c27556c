"""TensorBoard summaries of an evaluated step: image panels, the per-class table, hparams.

Training scalars (every loss term, the learning rate) are written by the loop; this module adds,
per method and step, in <run_dir>/tensorboard/<method>/eval:
  eval/miou_old, eval/miou_new, eval/miou_all, eval/pixel_accuracy, eval/mean_class_accuracy
  eval/images      input | ground truth | prediction, in the dataset's palette, for the first
                   `num_images` validation images the step's evaluation reads (the same images
                   every time), each predicted alone
  eval/per_class   the step's per-class table (text)
and, once per method, the method record and main flags through the hparams plugin.
"""
from __future__ import annotations

import dataclasses

import numpy as np
from tensorboard.plugins.hparams import api as hparams_api
import tensorflow as tf

from kdseg import fs
from kdseg.data.pipeline import denormalize
from kdseg.constants import IGNORE_LABEL

SCALARS = ("miou_old", "miou_new", "miou_all", "overall_accuracy", "mean_class_accuracy")
SCALAR_TAGS = {"overall_accuracy": "pixel_accuracy"}


def colorize(labels: tf.Tensor, model_to_original: tf.Tensor, palette: tf.Tensor) -> tf.Tensor:
  """[B, H, W] model class ids (255 = ignore) -> [B, H, W, 3] uint8 colours of the original ids.

  model_to_original: [C] int32, the step's class order; palette: [256, 3] uint8.
  """
  labels = tf.cast(labels, tf.int32)
  ignore = labels == IGNORE_LABEL
  safe = tf.where(ignore, 0, tf.minimum(labels, tf.shape(model_to_original)[0] - 1))
  original = tf.where(ignore, IGNORE_LABEL, tf.gather(model_to_original, safe))
  return tf.gather(palette, original)


def image_panels(images: tf.Tensor, labels: tf.Tensor, predictions: tf.Tensor,
                 model_to_original, palette) -> tf.Tensor:
  """[B, H, 3W, 3] uint8: the (de-normalised) input, ground truth and prediction side by side."""
  rgb = tf.cast(denormalize(images), tf.uint8)
  model_to_original = tf.constant(model_to_original, tf.int32)
  palette = tf.constant(np.asarray(palette, np.uint8))
  return tf.concat([rgb, colorize(labels, model_to_original, palette),
                    colorize(predictions, model_to_original, palette)], axis=2)


def write_step(writer: tf.summary.SummaryWriter, step: int, record: dict, table: str,
               panels: tf.Tensor | None) -> None:
  with writer.as_default(step=step):
    for key in SCALARS:
      if record.get(key) is not None:
        tf.summary.scalar(f"eval/{SCALAR_TAGS.get(key, key)}", record[key])
    # Indented lines are preformatted in TensorBoard's markdown: the table keeps its columns.
    tf.summary.text("eval/per_class", "\n".join("    " + line for line in table.splitlines()))
    if panels is not None:
      tf.summary.image("eval/images", panels, max_outputs=int(panels.shape[0]))
  writer.flush()


def write_hparams(writer: tf.summary.SummaryWriter, method, settings: dict) -> None:
  """The method record (flattened) and the run's main settings, for the hparams dashboard."""
  values = {f"method.{k}": v for k, v in dataclasses.asdict(method).items()}
  values.update(settings)
  flat = {key: value if isinstance(value, (bool, int, float, str)) else str(value)
          for key, value in values.items() if value is not None}
  with writer.as_default():
    hparams_api.hparams(flat, trial_id=method.name)
  writer.flush()


def purge_after(directory: str, last_step: int) -> int:
  """Drops the events with a step above `last_step` from the event files in `directory` (the
  iterations a resumed run will log again); returns how many were dropped. Each file is
  rewritten whole through a temporary file, so a kill leaves the old or the new one. A file cut
  short (a kill or a full disk mid-flush) keeps the events before the cut."""
  dropped = 0
  for path in sorted(tf.io.gfile.glob(fs.join(directory, "events.out.tfevents.*"))):
    events, truncated = [], False
    try:
      for event in tf.compat.v1.train.summary_iterator(path):
        events.append(event)
    except tf.errors.DataLossError:
      truncated = True
    kept = [event for event in events if event.step <= last_step or event.HasField("file_version")]
    if len(kept) == len(events) and not truncated:
      continue
    dropped += len(events) - len(kept)
    temporary = path + ".purging"
    with tf.io.TFRecordWriter(temporary) as out:
      for event in kept:
        out.write(event.SerializeToString())
    tf.io.gfile.rename(temporary, path, overwrite=True)
  return dropped
