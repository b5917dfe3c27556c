"""Dataset registry: --dataset name -> a reader returning a SegmentationSource."""
from __future__ import annotations

import dataclasses
from typing import Callable

from kdseg.data import shapes
from kdseg.data.source import DatasetLayoutError, SegmentationSource
from kdseg.data.voc import read_voc_layout


@dataclasses.dataclass(frozen=True)
class DataConfig:
  dataset: str
  data_root: str | None
  cache_dir: str
  shapes: shapes.ShapesConfig


def _voc(config: DataConfig) -> SegmentationSource:
  if not config.data_root:
    raise DatasetLayoutError("--dataset=voc needs --data_root=<path to VOCdevkit/VOC2012> "
                             "(download VOCtrainval_11-May-2012.tar from the Pascal VOC site).")
  return read_voc_layout(config.data_root)


READERS: dict[str, Callable[[DataConfig], SegmentationSource]] = {
    "shapes": lambda config: shapes.load_shapes(config.cache_dir, config.shapes),
    "voc": _voc,
}


def load_source(config: DataConfig) -> SegmentationSource:
  if config.dataset not in READERS:
    raise DatasetLayoutError(f"--dataset={config.dataset!r} is unknown; choose from "
                             f"{', '.join(READERS)}.")
  return READERS[config.dataset](config)
