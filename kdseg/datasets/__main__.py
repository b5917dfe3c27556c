"""Builds a dataset's TFDS records with kdseg's flags (the --shapes_* generation included):

  python -m kdseg.datasets --dataset=voc --manual_dir=/data/VOCdevkit --tfds_data_dir=/data/tfds
  python -m kdseg.datasets --dataset=shapes --tfds_data_dir=/data/tfds     # no manual_dir

The same as `tfds build kdseg_<dataset> --imports=kdseg.datasets --manual_dir=...
--data_dir=...`, which builds only the default shapes generation. Prints the records' folder, the
examples per split and the time taken. Records already built are kept (TFDS reuses them).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import time  # noqa: E402

from absl import flags  # noqa: E402

from kdseg import config, fs  # noqa: E402  (config defines the flags)
from kdseg.data.builders import prepare  # noqa: E402
from kdseg.run import cli  # noqa: E402

flags.DEFINE_string("manual_dir", None, "The dataset's folder (the layout --data_root reads) or "
                    "the folder holding its official archive; not needed for shapes.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  if not FLAGS.tfds_data_dir:
    raise config.FlagValueError("--tfds_data_dir is the folder to write the records to.")
  start = time.perf_counter()
  builder = prepare(FLAGS.dataset, fs.absolute(FLAGS.tfds_data_dir), FLAGS.manual_dir,
                  fs.absolute(FLAGS.cache_dir), config.data_config().shapes)
  counts = ", ".join(f"{name} {split.num_examples}" for name, split in builder.info.splits.items())
  print(f"{builder.data_dir}: {counts} examples ({time.perf_counter() - start:.1f} s)")


run = cli.command_line("kdseg.datasets", main)

if __name__ == "__main__":
  run()
