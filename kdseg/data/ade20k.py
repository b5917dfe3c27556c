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


from kdseg import fs
from kdseg.data.layout import check_dataset_root, paired_files
from kdseg.data.source import SegmentationSource, SplitFiles, identity_table
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

# The MiB reference's second and third class orders (its tasks.py: "100-50b", "100-10b", "50b"
# and the "c" ones): for each task, the class ids learned at each step, background (0) in step 0.
# Within a step the classes are in increasing id order, as the reference lists them and so
# numbers its outputs.
_B_100 = (0, 1, 3, 5, 6, 8, 9, 10, 12, 13, 14, 18, 19, 21, 22, 23, 24, 25, 26, 27, 28, 29, 31, 32,
          33, 34, 36, 38, 39, 40, 42, 43, 44, 45, 46, 47, 48, 49, 53, 54, 55, 56, 57, 58, 60, 61,
          62, 63, 69, 70, 71, 74, 75, 76, 77, 80, 81, 82, 84, 86, 87, 90, 91, 93, 95, 96, 99,
          100, 101, 103, 104, 105, 106, 107, 109, 113, 116, 117, 119, 120, 121, 123, 125, 126,
          128, 129, 130, 131, 132, 133, 134, 135, 136, 140, 142, 143, 144, 147, 148, 149, 150)
_B_LAST_50 = (2, 4, 7, 11, 15, 16, 17, 20, 30, 35, 37, 41, 50, 51, 52, 59, 64, 65, 66, 67, 68, 72,
              73, 78, 79, 83, 85, 88, 89, 92, 94, 97, 98, 102, 108, 110, 111, 112, 114, 115, 118,
              122, 124, 127, 137, 138, 139, 141, 145, 146)
_C_100 = (0, 1, 5, 6, 8, 9, 10, 11, 12, 13, 14, 16, 17, 19, 20, 23, 24, 25, 26, 27, 28, 29, 30,
          31, 32, 33, 34, 35, 36, 37, 40, 41, 43, 44, 45, 46, 48, 50, 52, 54, 56, 57, 61, 63, 65,
          66, 67, 68, 69, 70, 71, 74, 76, 77, 78, 79, 81, 82, 83, 84, 85, 86, 87, 90, 94, 95, 96,
          97, 98, 99, 102, 105, 106, 109, 110, 111, 112, 114, 115, 118, 119, 120, 121, 123, 124,
          126, 128, 129, 132, 133, 134, 135, 136, 138, 139, 142, 143, 144, 146, 147, 149)
_C_LAST_50 = (2, 3, 4, 7, 15, 18, 21, 22, 38, 39, 42, 47, 49, 51, 53, 55, 58, 59, 60, 62, 64, 72,
              73, 75, 80, 88, 89, 91, 92, 93, 100, 101, 103, 104, 107, 108, 113, 116, 117, 122,
              125, 127, 130, 131, 137, 140, 141, 145, 148, 150)
ADE20K_ORDERS = {
    "b": {
        "100-50": (_B_100, _B_LAST_50),
        "100-10": (_B_100, (11, 16, 50, 64, 66, 73, 89, 92, 145, 146),
                   (30, 37, 51, 52, 72, 85, 98, 114, 115, 138),
                   (2, 35, 65, 97, 110, 111, 112, 118, 124, 141),
                   (4, 7, 15, 41, 67, 78, 79, 88, 108, 139),
                   (17, 20, 59, 68, 83, 94, 102, 122, 127, 137)),
        "50-50": ((0, 1, 9, 14, 18, 22, 24, 25, 27, 28, 29, 32, 38, 42, 45, 46, 47, 48, 49, 54, 56,
                   58, 61, 62, 63, 69, 74, 75, 76, 77, 81, 82, 84, 90, 93, 96, 100, 103, 104, 109,
                   117, 119, 121, 123, 128, 129, 130, 134, 135, 136, 144),
                  (3, 5, 6, 8, 10, 12, 13, 19, 21, 23, 26, 31, 33, 34, 36, 39, 40, 43, 44, 53, 55,
                   57, 60, 70, 71, 80, 86, 87, 91, 95, 99, 101, 105, 106, 107, 113, 116, 120, 125,
                   126, 131, 132, 133, 140, 142, 143, 147, 148, 149, 150),
                  _B_LAST_50),
    },
    "c": {
        "100-50": (_C_100, _C_LAST_50),
        "100-10": (_C_100, (3, 4, 7, 18, 39, 64, 73, 101, 113, 137),
                   (47, 51, 55, 60, 62, 80, 116, 127, 140, 148),
                   (22, 42, 49, 58, 59, 89, 91, 92, 108, 125),
                   (2, 38, 53, 100, 104, 117, 130, 131, 141, 145),
                   (15, 21, 72, 75, 88, 93, 103, 107, 122, 150)),
        "50-50": ((0, 5, 10, 11, 12, 13, 16, 17, 19, 20, 23, 27, 28, 30, 31, 32, 33, 37, 43, 46,
                   52, 56, 57, 65, 66, 69, 70, 74, 76, 77, 79, 82, 83, 86, 87, 105, 109, 110, 111,
                   119, 128, 129, 132, 133, 134, 138, 142, 143, 144, 146, 147),
                  (1, 6, 8, 9, 14, 24, 25, 26, 29, 34, 35, 36, 40, 41, 44, 45, 48, 50, 54, 61, 63,
                   67, 68, 71, 78, 81, 84, 85, 90, 94, 95, 96, 97, 98, 99, 102, 106, 112, 114, 115,
                   118, 120, 121, 123, 124, 126, 135, 136, 139, 149),
                  _C_LAST_50),
    },
}

_EXPECTED = ("expected the ADEChallengeData2016 layout: images/{training,validation}/<id>.jpg and "
             "annotations/{training,validation}/<id>.png")


def read_ade20k(root: str) -> SegmentationSource:
  root = check_dataset_root(root, _EXPECTED, "Download ADEChallengeData2016.zip (MIT Scene "
                            "Parsing benchmark), unzip it and point --data_root at "
                            "ADEChallengeData2016.")
  splits = {split: paired_files(fs.join(root, "images", folder), ".jpg",
                                fs.join(root, "annotations", folder), ".png", _EXPECTED)
            for split, folder in (("train", "training"), ("val", "validation"))}
  return ade20k_source(root, splits)


def ade20k_source(root: str, splits: dict[str, SplitFiles]) -> SegmentationSource:
  """ADE20K's classes, orders and label encoding around `splits` (a folder's or records')."""
  palette = tuple(tuple(int(v) for v in row) for row in voc_palette())
  return SegmentationSource(name="ade20k", root=root, class_names=ADE20K_CLASSES, splits=splits,
                            codec=INDEX_PNG, class_table=identity_table(len(ADE20K_CLASSES)),
                            palette=palette, class_orders=ADE20K_ORDERS, scene_parsing=True)
