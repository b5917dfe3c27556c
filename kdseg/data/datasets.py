"""Dataset registry: --dataset name -> a reader returning a SegmentationSource."""
from __future__ import annotations

import dataclasses
from typing import Callable

from kdseg.data import ade20k, cityscapes, msrc, records, shapes, voc
from kdseg.data.ade20k import ade20k_source, read_ade20k
from kdseg.data.cityscapes import cityscapes_source, read_cityscapes
from kdseg.data.msrc import msrc_source, read_msrc
from kdseg.data.source import DatasetLayoutError, SegmentationSource
from kdseg.data.voc import read_voc_layout, voc_source


@dataclasses.dataclass(frozen=True)
class DataConfig:
  dataset: str
  data_root: str | None
  cache_dir: str
  shapes: shapes.ShapesConfig
  # folder: the dataset's files (--data_root); tfds: records of kdseg's TFDS builders under
  # tfds_data_dir (kdseg.data.records), tfds_name another records dataset of the same data.
  data_format: str = "folder"
  tfds_data_dir: str | None = None
  tfds_name: str | None = None
  tfds_shuffle_buffer: int = 2048


# --data_root each dataset reads (shapes: none, it is generated into --cache_dir).
ROOTS = {"shapes": "none: generated on first use into --cache_dir",
         "voc": "VOCdevkit/VOC2012", "ade20k": "ADEChallengeData2016",
         "cityscapes": "the folder holding leftImg8bit/ and gtFine/",
         "msrc": "MSRC_ObjCategImageDatabase_v2"}


def _on_disk(reader: Callable[[str], SegmentationSource], root_example: str):
  """A reader of a dataset the user downloads: it needs --data_root."""

  def read(config: DataConfig) -> SegmentationSource:
    if not config.data_root:
      raise DatasetLayoutError(f"--dataset={config.dataset} needs --data_root=<path to "
                               f"{root_example}>; see docs/DATASETS.md.")
    return reader(config.data_root)

  return read


READERS: dict[str, Callable[[DataConfig], SegmentationSource]] = {
    "shapes": lambda config: shapes.load_shapes(config.cache_dir, config.shapes),
    "voc": _on_disk(read_voc_layout, ROOTS["voc"]),
    "ade20k": _on_disk(read_ade20k, ROOTS["ade20k"]),
    "cityscapes": _on_disk(read_cityscapes, ROOTS["cityscapes"]),
    "msrc": _on_disk(read_msrc, ROOTS["msrc"]),
}


# Each dataset's class names, named scenarios and named class orders, as its reader gives them,
# for listing and planning without the data (python -m kdseg.data, tests of the flagfiles).
# shapes uses VOC's class names, so VOC's named orders apply to it.
TABLES = {"shapes": (shapes.CLASS_NAMES, {}, voc.VOC_ORDERS),
          "voc": (voc.VOC_CLASSES, {}, voc.VOC_ORDERS),
          "ade20k": (ade20k.ADE20K_CLASSES, {}, ade20k.ADE20K_ORDERS),
          "cityscapes": (cityscapes.CITYSCAPES_CLASSES, cityscapes.SCENARIOS, {}),
          "msrc": (msrc.MSRC_CLASSES, {}, {})}


# Each dataset's classes, class table and orders around given splits (a folder's or records').
DESCRIBE = {"shapes": lambda root, splits: voc_source(root, splits, shapes.CLASS_NAMES, "shapes"),
            "voc": voc_source, "ade20k": ade20k_source, "cityscapes": cityscapes_source,
            "msrc": msrc_source}


def load_source(config: DataConfig) -> SegmentationSource:
  if config.dataset not in READERS:
    raise DatasetLayoutError(f"--dataset={config.dataset!r} is unknown; choose from "
                             f"{', '.join(READERS)}.")
  if config.data_format == "tfds":
    if not config.tfds_data_dir:
      raise DatasetLayoutError("--data_format=tfds needs --tfds_data_dir=<the folder tfds build "
                               "wrote the records to>; see docs/DATASETS.md, 'Datasets as TFDS "
                               "records'.")
    from kdseg.data.builders import tfds_name   # (tensorflow_datasets: only for records)
    name = config.tfds_name or tfds_name(config.dataset, config.shapes.key())
    generated = config.shapes if config.dataset == "shapes" and not config.tfds_name else None
    return records.load_records_source(DESCRIBE[config.dataset]("", {}), name,
                                       config.tfds_data_dir, config.cache_dir,
                                       config.tfds_shuffle_buffer, generated)
  return READERS[config.dataset](config)
