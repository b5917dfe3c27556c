"""ADE20K scene parsing (ADEChallengeData2016, the MIT Scene Parsing benchmark) reader.

  <root>/images/training/ADE_train_<n>.jpg        20,210 images
  <root>/images/validation/ADE_val_<n>.jpg         2,000 images
  <root>/annotations/{training,validation}/<same stem>.png   grayscale, 0..150
Label 0 ("other": pixels of none of the 150 classes) is the background class 0, as the MiB
reference treats it: it is trained and predicted like VOC's background, old and future classes are
relabelled to it during training, and it is scored with the other classes. Class ids 1..150 follow
the benchmark's objectInfo150 order (the class order "proposed by [3]" in the MiB paper).
"""
from __future__ import annotations

import os

from kdseg.data.layout import check_dataset_root, paired_files
from kdseg.data.source import SegmentationSource, identity_table
from kdseg.data.voc import INDEX_PNG, voc_palette

ADE20K_CLASSES = ("other",) + (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain",
    "chair", "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing",
    "cushion", "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink",
    "skyscraper", "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case",
    "pool table", "pillow", "screen door", "stairway", "river", "bridge", "bookcase", "blind",
    "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove", "palm",
    "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth",
    "television receiver", "airplane", "dirt track", "apparel", "pole", "land", "bannister",
    "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank",
    "trade name", "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen",
    "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray", "ashcan", "fan",
    "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag")
assert len(ADE20K_CLASSES) == 151

_EXPECTED = ("expected the ADEChallengeData2016 layout: images/{training,validation}/<id>.jpg and "
             "annotations/{training,validation}/<id>.png")


def read_ade20k(root: str) -> SegmentationSource:
  root = check_dataset_root(root, _EXPECTED, "Download ADEChallengeData2016.zip (MIT Scene "
                            "Parsing benchmark), unzip it and point --data_root at "
                            "ADEChallengeData2016.")
  splits = {split: paired_files(os.path.join(root, "images", folder), ".jpg",
                                os.path.join(root, "annotations", folder), ".png", _EXPECTED)
            for split, folder in (("train", "training"), ("val", "validation"))}
  palette = tuple(tuple(int(v) for v in row) for row in voc_palette())
  return SegmentationSource(name="ade20k", root=root, class_names=ADE20K_CLASSES, splits=splits,
                            codec=INDEX_PNG, class_table=identity_table(len(ADE20K_CLASSES)),
                            palette=palette)
