"""Adds the SBD augmentation to a Pascal VOC 2012 tree (10,582 training images, as both papers).

  python tools/prepare_voc.py --voc_root=/data/VOCdevkit/VOC2012 \
      --sbd_root=/data/benchmark_RELEASE/dataset

Downloads (by hand; nothing is fetched here): VOCtrainval_11-May-2012.tar from the Pascal VOC
site, benchmark.tgz (SBD) from the Berkeley "Semantic Boundaries Dataset" page. Writes
SegmentationClassAug/<id>.png (grayscale class ids, 255 = ignore) and
ImageSets/Segmentation/train_aug.txt into --voc_root; kdseg's VOC reader uses both when present.
Safe to re-run: labels already written are kept.
"""
from absl import app, flags

from kdseg.data.sbd import merge_sbd
from kdseg.data.source import DatasetLayoutError

flags.DEFINE_string("voc_root", None, "VOCdevkit/VOC2012 folder.", required=True)
flags.DEFINE_string("sbd_root", None, "SBD's benchmark_RELEASE/dataset folder (cls/, train.txt, "
                    "val.txt).", required=True)
flags.DEFINE_integer("workers", 8, "Parallel label conversions.")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  try:
    counts = merge_sbd(FLAGS.voc_root, FLAGS.sbd_root, FLAGS.workers)
  except DatasetLayoutError as error:
    raise SystemExit(f"prepare_voc: error: {error}") from None
  print(f"train_aug: {counts['train_aug']} images; labels from VOC {counts['from_voc']}, from "
        f"SBD {counts['from_sbd']}, {counts['written']} written now, into "
        f"{FLAGS.voc_root}/SegmentationClassAug")


if __name__ == "__main__":
  app.run(main)
