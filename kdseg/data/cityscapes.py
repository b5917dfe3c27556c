"""Cityscapes (fine annotations) reader.

  <root>/leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png   2,975 / 500
  <root>/gtFine/{train,val}/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png
Labels are read as the official labelIds and mapped in the class table to the 19 evaluation
classes (trainIds 0..18 -> class ids 1..19); every other labelId (void, parking, rail track,
guard rail, caravan, ...) becomes 255 (ignored), as the Cityscapes benchmark does. Class 0 is the
incremental background: it holds no pixel of its own; old and future classes become it during
training (MiB paper §6.2.5). Evaluation uses the full-resolution images (--eval_crop=0).
"""
from __future__ import annotations


import numpy as np

from kdseg import fs
from kdseg.data.layout import check_dataset_root, paired_files
from kdseg.constants import IGNORE_LABEL
from kdseg.data.source import INVALID, SegmentationSource, SplitFiles
from kdseg.data.voc import INDEX_PNG, voc_palette

# (labelId, name, colour) of the 19 evaluation classes, in trainId order.
_EVALUATED = (
    (7, "road", (128, 64, 128)), (8, "sidewalk", (244, 35, 232)), (11, "building", (70, 70, 70)),
    (12, "wall", (102, 102, 156)), (13, "fence", (190, 153, 153)), (17, "pole", (153, 153, 153)),
    (19, "light", (250, 170, 30)), (20, "sign", (220, 220, 0)),
    (21, "vegetation", (107, 142, 35)), (22, "terrain", (152, 251, 152)),
    (23, "sky", (70, 130, 180)), (24, "person", (220, 20, 60)), (25, "rider", (255, 0, 0)),
    (26, "car", (0, 0, 142)), (27, "truck", (0, 0, 70)), (28, "bus", (0, 60, 100)),
    (31, "train", (0, 80, 100)), (32, "motorcycle", (0, 0, 230)), (33, "bicycle", (119, 11, 32)))
NUM_LABEL_IDS = 34  # labelIds 0..33; the others cannot occur in gtFine_labelIds.png

CITYSCAPES_CLASSES = ("background",) + tuple(name for _, name, _ in _EVALUATED)

_VEHICLES = ("car", "truck", "bus", "train", "motorcycle", "bicycle")
_NON_DRIVING = ("building", "wall", "fence", "vegetation", "terrain", "sky")
_ORDER = CITYSCAPES_CLASSES[1:]
# MiB paper §6.2.5 (Table 4): named scenarios -> (step sizes, class order).
SCENARIOS = {
    "vehicles": ("13-6", tuple(c for c in _ORDER if c not in _VEHICLES) + _VEHICLES),
    "non-driving": ("13-6", tuple(c for c in _ORDER if c not in _NON_DRIVING) + _NON_DRIVING),
    "11-2": ("11-2", _ORDER),
}

_EXPECTED = ("expected the Cityscapes layout: leftImg8bit/{train,val}/<city>/<id>_leftImg8bit.png "
             "and gtFine/{train,val}/<city>/<id>_gtFine_labelIds.png")


def class_table() -> np.ndarray:
  """[256] labelId -> class id (1..19), 255 for the labelIds not evaluated, INVALID above 33."""
  table = np.full(256, INVALID, np.int16)
  table[:NUM_LABEL_IDS] = IGNORE_LABEL
  table[IGNORE_LABEL] = IGNORE_LABEL
  for class_id, (label_id, _, _) in enumerate(_EVALUATED, start=1):
    table[label_id] = class_id
  return table


def read_cityscapes(root: str) -> SegmentationSource:
  root = check_dataset_root(root, _EXPECTED, "Download leftImg8bit_trainvaltest.zip and "
                            "gtFine_trainvaltest.zip from the Cityscapes site, unzip both into "
                            "one folder and point --data_root at it.")
  splits = {split: paired_files(fs.join(root, "leftImg8bit", split), "_leftImg8bit.png",
                                fs.join(root, "gtFine", split), "_gtFine_labelIds.png",
                                _EXPECTED)
            for split in ("train", "val")}
  return cityscapes_source(root, splits)


def cityscapes_source(root: str, splits: dict[str, SplitFiles]) -> SegmentationSource:
  """Cityscapes' classes, scenarios and labelIds encoding around `splits`."""
  palette = voc_palette().copy()
  palette[0] = 0
  for class_id, (_, _, colour) in enumerate(_EVALUATED, start=1):
    palette[class_id] = colour
  return SegmentationSource(name="cityscapes", root=root, class_names=CITYSCAPES_CLASSES,
                            splits=splits, codec=INDEX_PNG, class_table=class_table(),
                            palette=tuple(tuple(int(v) for v in row) for row in palette),
                            scenarios=SCENARIOS)
