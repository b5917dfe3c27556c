"""TensorFlow Datasets builders of kdseg's datasets: sharded records of each split that
--data_format=tfds reads (kdseg.data.records).

  tfds build kdseg_voc --imports=kdseg.datasets --manual_dir=<folder> --data_dir=<records>

Nothing downloads: --manual_dir holds the dataset as kdseg's folder readers read it (the same
layouts as --data_root), or the official archive where one archive holds the whole layout
(VOCtrainval_11-May-2012.tar, ADEChallengeData2016.zip), which TFDS extracts. Each builder reads
the folder with kdseg's own reader, so records and folders give the same ids, splits and labels.

One example per image of the reader's split lists ("train", "val"):
  id      the image id (the reader's: VOC file stem, ADE20K stem, Cityscapes <city>/<stem>)
  index   its position in the reader's split list (records are stored in TFDS's shuffled order;
          kdseg restores the reader's order from this)
  image   the image file's bytes as stored (JPEG, PNG or BMP; not re-encoded)
  label   the label's raw values (the reader's codec applied: VOC palette indices, Cityscapes
          labelIds, MSRC colour indices) as a grayscale PNG; the dataset's class table maps them
  counts  [256] int64 pixels per raw value (the class-presence index, so splits need no rescan)
Building validates like the presence scan does: an unreadable image, a label of another size or
a label value the dataset never uses stops the build with the file's name.

TFDS's own builders were checked: `scene_parse150` downloads ChallengeData2017's instance
annotations (not ADEChallengeData2016's 150-class maps that the MiB paper uses) and has no
manual-directory path, so kdseg_ade20k replaces it; `cityscapes/semantic_segmentation` stores
gtFine labelIds, the encoding kdseg uses, and kdseg reads its records too
(--tfds_name=cityscapes/semantic_segmentation; kdseg_cityscapes also reads extracted folders).
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from kdseg import fs
from kdseg.data import presence
from kdseg.data.ade20k import read_ade20k
from kdseg.data.cityscapes import read_cityscapes
from kdseg.data.msrc import read_msrc
from kdseg.data.shapes import CLASS_NAMES, ShapesConfig, ensure_shapes
from kdseg.data.source import DatasetLayoutError, SegmentationSource, SplitFiles
from kdseg.data.voc import read_voc_layout

SPLITS = ("train", "val")


def features() -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({
      "id": tfds.features.Text(),
      "index": tfds.features.Scalar(np.int64),
      "image": tfds.features.Image(shape=(None, None, 3)),
      "label": tfds.features.Image(shape=(None, None, 1), encoding_format="png"),
      "counts": tfds.features.Tensor(shape=(256,), dtype=np.int64),
  })


def _examples(source: SegmentationSource, split: str):
  """(key, example) of every image of `split`, checked as the presence scan checks them."""
  files = source.split(split)
  for index, (image_id, image_path, label_path) in enumerate(
      zip(files.ids, files.image_paths, files.label_paths)):
    values, problem = presence.read_pair(source.codec, label_path, image_path)
    if problem:
      raise presence.LabelValueError(f"{source.name} records: {problem}")
    counts = np.bincount(values.ravel(), minlength=256).astype(np.int64)
    presence.check_values(source, SplitFiles((image_id,), (image_path,), (label_path,)),
                          counts[None])
    yield image_id, {"id": image_id, "index": index, "image": fs.read_bytes(image_path),
                     "label": values[..., None], "counts": counts}


class _FolderBuilder(tfds.core.GeneratorBasedBuilder):
  """A dataset read by one of kdseg's folder readers from --manual_dir."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release: id, index, image, label (raw values), counts."}
  # Relative folders under manual_dir that may hold the layout ("" = manual_dir itself), and the
  # official archive holding it (extracted by TFDS), with the layout's folder inside it.
  ROOTS: tuple[str, ...] = ("",)
  ARCHIVE: tuple[str, str] | None = None
  READ = staticmethod(lambda root: None)
  DOWNLOAD = ""

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    cls.MANUAL_DOWNLOAD_INSTRUCTIONS = cls.DOWNLOAD   # what TFDS prints for a missing folder

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, description=self.__doc__, features=features())

  def _source(self, dl_manager) -> SegmentationSource:
    """The dataset read from the first of ROOTS under --manual_dir that holds its layout, else
    from the extracted ARCHIVE."""
    manual = str(dl_manager.manual_dir)
    for relative in self.ROOTS:
      try:
        return self.READ(fs.join(manual, relative) if relative else manual)
      except DatasetLayoutError:
        continue
    if self.ARCHIVE and fs.isfile(fs.join(manual, self.ARCHIVE[0])):
      extracted = str(dl_manager.extract(fs.join(manual, self.ARCHIVE[0])))
      return self.READ(fs.join(extracted, self.ARCHIVE[1]))
    places = ", ".join(fs.join(manual, r) if r else manual for r in self.ROOTS)
    archive = f" or the archive {fs.join(manual, self.ARCHIVE[0])}" if self.ARCHIVE else ""
    raise DatasetLayoutError(f"{self.name}: no dataset under --manual_dir ({places}{archive}). "
                             f"{self.DOWNLOAD}")

  def _split_generators(self, dl_manager):
    source = self._source(dl_manager)
    return {split: self._generate_examples(source, split) for split in SPLITS}

  def _generate_examples(self, source: SegmentationSource, split: str):
    yield from _examples(source, split)


class KdsegVoc(_FolderBuilder):
  """Pascal VOC 2012 (+ SBD's train_aug when tools/prepare_voc.py added it) in kdseg's encoding."""
  ROOTS = ("VOCdevkit/VOC2012", "VOC2012", "")
  ARCHIVE = ("VOCtrainval_11-May-2012.tar", "VOCdevkit/VOC2012")
  READ = staticmethod(read_voc_layout)
  DOWNLOAD = ("Put VOCtrainval_11-May-2012.tar there, or the extracted VOCdevkit/ (run "
              "tools/prepare_voc.py on it first for SBD's train_aug).")


class KdsegAde20k(_FolderBuilder):
  """ADE20K (ADEChallengeData2016, the 150 classes of the MiB paper) in kdseg's encoding."""
  ROOTS = ("ADEChallengeData2016", "")
  ARCHIVE = ("ADEChallengeData2016.zip", "ADEChallengeData2016")
  READ = staticmethod(read_ade20k)
  DOWNLOAD = "Put ADEChallengeData2016.zip there, or the extracted ADEChallengeData2016/."


class KdsegCityscapes(_FolderBuilder):
  """Cityscapes (leftImg8bit + gtFine labelIds) in kdseg's encoding."""
  ROOTS = ("cityscapes", "")
  READ = staticmethod(read_cityscapes)
  DOWNLOAD = ("Unzip leftImg8bit_trainvaltest.zip and gtFine_trainvaltest.zip into it (or build "
              "TFDS's cityscapes/semantic_segmentation from the zips and read that).")


class KdsegMsrc(_FolderBuilder):
  """MSRC-v2 with the TextonBoost splits in kdseg's encoding."""
  ROOTS = ("MSRC_ObjCategImageDatabase_v2", "")
  READ = staticmethod(read_msrc)
  DOWNLOAD = ("Unzip MSRC_ObjCategImageDatabase_v2.zip there and TextonBoostSplits.zip into "
              "its folder.")


@dataclasses.dataclass
class ShapesBuilderConfig(tfds.core.BuilderConfig):
  shapes: ShapesConfig = dataclasses.field(default_factory=ShapesConfig)


def shapes_builder_config(config: ShapesConfig) -> ShapesBuilderConfig:
  """The builder config of one shapes generation (named by ShapesConfig.key())."""
  return ShapesBuilderConfig(name=config.key(), shapes=config,
                             description=f"shapes {dataclasses.asdict(config)}")


class KdsegShapes(_FolderBuilder):
  """The procedural shapes dataset (VOC classes), generated: no --manual_dir needed. Other
  generations: kdseg.data.builders.shapes_builder_config(ShapesConfig(...))."""
  BUILDER_CONFIGS = [shapes_builder_config(ShapesConfig())]

  def _source(self, dl_manager) -> SegmentationSource:
    root = ensure_shapes(str(dl_manager.download_dir), self.builder_config.shapes)
    return read_voc_layout(root, class_names=CLASS_NAMES, name="shapes")


# --dataset -> the builder's TFDS name.
BUILDERS = {"shapes": KdsegShapes, "voc": KdsegVoc, "ade20k": KdsegAde20k,
            "cityscapes": KdsegCityscapes, "msrc": KdsegMsrc}


def tfds_name(dataset: str, shapes_key: str) -> str:
  """kdseg's builder of --dataset (shapes: the config of the --shapes_* flags)."""
  return f"kdseg_{dataset}/{shapes_key}" if dataset == "shapes" else f"kdseg_{dataset}"


def make_builder(name: str, data_dir: str, shapes=None):
  """The TFDS builder `name` over `data_dir`; kdseg_shapes with the generation `shapes` (a
  ShapesConfig), which need not be one of the builder's registered configs."""
  if shapes is not None:
    config = shapes_builder_config(shapes)
    if config.name in {c.name for c in KdsegShapes.BUILDER_CONFIGS}:
      config = config.name   # TFDS refuses a new config object under a registered name
    return KdsegShapes(config=config, data_dir=data_dir)
  return tfds.builder(name, data_dir=data_dir)


def prepare(dataset: str, data_dir: str, manual_dir: str | None, cache_dir: str,
            shapes: ShapesConfig = ShapesConfig()):
  """Prepares the records of `dataset` under `data_dir` (shapes: the generation `shapes`);
  returns the builder."""
  if dataset not in BUILDERS:
    raise DatasetLayoutError(f"--dataset={dataset!r} has no builder; choose from "
                             f"{', '.join(BUILDERS)}.")
  generated = shapes if dataset == "shapes" else None
  builder = make_builder(tfds_name(dataset, shapes.key()), data_dir, generated)
  if dataset != "shapes" and not manual_dir:
    raise DatasetLayoutError(f"--dataset={dataset} needs --manual_dir: "
                             f"{BUILDERS[dataset].DOWNLOAD}")
  if manual_dir and not (fs.isdir(manual_dir) and fs.listdir(manual_dir)):
    raise DatasetLayoutError(f"--manual_dir={manual_dir} does not exist or is empty. "
                             f"{BUILDERS[dataset].DOWNLOAD}")
  download = tfds.download.DownloadConfig(manual_dir=manual_dir and fs.absolute(manual_dir))
  builder.download_and_prepare(download_config=download,
                               download_dir=fs.join(cache_dir, "tfds_downloads"))
  return builder
