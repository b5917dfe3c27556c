"""Writes the shapes dataset in the Pascal VOC 2012 layout.

  python tools/make_shapes.py --output_dir=/tmp/shapes --image_size=128 --num_train=2000

kdseg.train generates it on first use into --cache_dir; this tool writes it where you choose,
e.g. to look at it or to train another framework on the same images.
"""
import dataclasses

from absl import app, flags

from kdseg import fs
from kdseg.data import shapes

flags.DEFINE_string("output_dir", None, "Folder to write (JPEGImages/, SegmentationClass/, "
                    "ImageSets/Segmentation/).", required=True)
flags.DEFINE_integer("image_size", 64, "Image side in pixels.")
flags.DEFINE_integer("num_train", 1000, "Training images.")
flags.DEFINE_integer("num_val", 300, "Validation images.")
flags.DEFINE_integer("seed", 0, "Generator seed.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  config = shapes.ShapesConfig(image_size=FLAGS.image_size, num_train=FLAGS.num_train,
                               num_val=FLAGS.num_val, seed=FLAGS.seed)
  if fs.exists(fs.join(FLAGS.output_dir, "JPEGImages")):
    raise SystemExit(f"{FLAGS.output_dir} already holds a dataset; choose an empty folder.")
  shapes.write_voc_tree(FLAGS.output_dir, config)
  print(f"wrote {config.num_train} + {config.num_val} images to {FLAGS.output_dir} "
        f"({dataclasses.asdict(config)})")


if __name__ == "__main__":
  app.run(main)
