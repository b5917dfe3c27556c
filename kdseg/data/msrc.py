"""MSRC-v2 (MSRC_ObjCategImageDatabase_v2) reader, with the TextonBoost train/validation/test split.

  <root>/Images/<id>.bmp
  <root>/GroundTruth/<id>_GT.bmp        colours of the VOC colour map (void = black)
  <root>/TextonBoostSplits/{Train,Validation,Test}.txt   one "<id>.bmp" per line
The KD paper trains on trainval (Train + Validation, 335 images) and tests on Test (256): here
the "train" split is trainval and the "val" split is Test. Horse and mountain are excluded, as the
dataset's authors suggest (their pixels become 255, ignored), leaving 21 object classes with ids
1..21 in the dataset's order. Void pixels are ignored too; class 0 is the incremental background,
which holds only old or future classes relabelled in training.
"""
from __future__ import annotations

import os

import numpy as np

from kdseg import fs
from kdseg.data.layout import check_dataset_root, image_files, require_dirs
from kdseg.constants import IGNORE_LABEL
from kdseg.data.source import (INVALID, DatasetLayoutError, SegmentationSource,
                               SplitFiles)
from kdseg.data.voc import COLOUR_CODED, voc_palette

# (colour index in the VOC colour map, name) of every MSRC-v2 label colour; None = not a class.
_COLOURS = (
    (0, None), (1, "building"), (2, "grass"), (3, "tree"), (4, "cow"), (5, None),  # horse
    (6, "sheep"), (7, "sky"), (8, None),  # mountain
    (9, "aeroplane"), (10, "water"), (11, "face"), (12, "car"), (13, "bicycle"), (14, "flower"),
    (15, "sign"), (16, "bird"), (17, "book"), (18, "chair"), (21, "road"), (22, "cat"),
    (23, "dog"), (24, "body"), (25, "boat"))
MSRC_CLASSES = ("background",) + tuple(name for _, name in _COLOURS if name)
_SPLIT_LISTS = {"train": ("Train.txt", "Validation.txt"), "val": ("Test.txt",)}

_EXPECTED = ("expected the MSRC-v2 layout: Images/<id>.bmp, GroundTruth/<id>_GT.bmp and "
             "TextonBoostSplits/{Train,Validation,Test}.txt")


def class_table() -> np.ndarray:
  table = np.full(256, INVALID, np.int16)
  table[IGNORE_LABEL] = IGNORE_LABEL
  names = list(MSRC_CLASSES)
  for colour, name in _COLOURS:
    table[colour] = names.index(name) if name else IGNORE_LABEL
  return table


def _read_list(path: str) -> tuple[str, ...]:
  if not fs.isfile(path):
    raise DatasetLayoutError(f"missing split list {path}: {_EXPECTED} (TextonBoostSplits.zip "
                             "holds the lists; unzip it into the MSRC-v2 folder)")
  with fs.open(path) as handle:
    return tuple(os.path.splitext(line.strip())[0] for line in handle if line.strip())


def read_msrc(root: str) -> SegmentationSource:
  root = check_dataset_root(root, _EXPECTED, "Download MSRC_ObjCategImageDatabase_v2.zip and "
                            "TextonBoostSplits.zip from Microsoft Research, unzip the splits into "
                            "the database folder and point --data_root at it.")
  require_dirs(root, ("Images", "GroundTruth", "TextonBoostSplits"), _EXPECTED)
  splits = {}
  for split, lists in _SPLIT_LISTS.items():
    ids = tuple(i for name in lists for i in _read_list(fs.join(root, "TextonBoostSplits",
                                                                     name)))
    where = fs.join(root, "TextonBoostSplits", "+".join(lists))
    splits[split] = SplitFiles(ids, image_files(root, "Images", ids, ".bmp", where),
                               image_files(root, "GroundTruth", ids, "_GT.bmp", where))
  return msrc_source(root, splits)


def msrc_source(root: str, splits: dict[str, SplitFiles]) -> SegmentationSource:
  """MSRC-v2's classes and colour-coded labels around `splits`."""
  palette = voc_palette().copy()
  for class_id, (colour, _) in enumerate((c for c in _COLOURS if c[1]), start=1):
    palette[class_id] = voc_palette()[colour]
  return SegmentationSource(name="msrc", root=root, class_names=MSRC_CLASSES, splits=splits,
                            codec=COLOUR_CODED, class_table=class_table(),
                            palette=tuple(tuple(int(v) for v in row) for row in palette))
