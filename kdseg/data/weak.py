"""Weak annotations (points, scribbles) as sparse label maps, read from the released formats or
simulated from full labels (MiB paper §5, §6.3).

Whatever their origin, an image's weak annotation becomes one sparse label map: class ids (the
dataset's, before any step's renumbering) on annotated pixels, UNLABELED (254) on every other
pixel. Maps are written once per annotation set as index PNGs, `<cache_dir>/weak/<key>/<id>.png`,
with a manifest.json (origin, options, how many pixels and images are annotated); the key hashes
the dataset's label files, the origin and the options, so a changed input builds a new set and an
interrupted build (no manifest yet) is rebuilt. Training reads these maps instead of the full
labels (kdseg.data.pipeline); validation keeps the full labels.

Origins (--weak_format):
  simulate         from the full training labels, seeded (--seed): points -- n per connected
                   region of a class (--points_per_region), drawn among the region's inner pixels
                   (distance to the region's border at least half its largest), optionally
                   dilated to a disc (--point_radius) that never leaves the region; scribbles --
                   the skeleton of each region (scikit-image), drawn --scribble_width pixels wide
                   inside the region. Background regions get points / scribbles only with
                   --weak_background (default: not for points, as Bearman et al.'s clicks; yes
                   for scribbles, as ScribbleSup's). Void pixels are never annotated.
  points-json      "What's the point" (Bearman et al. 2016) clicks: one JSON dict, image id -> list
                   of {"x", "y" (zero-indexed), "cls" (1-20, VOC's alphabetical order = its class
                   ids), "rank"}; pascal2012_trainval_main.json holds one click per instance.
                   Every click is used (the MiB paper: "all the points available"); a click is one
                   pixel (the format has no radius; --point_radius dilates). The same schema with
                   cls = ADE20K class ids 1-150 reads point sets for ADE20K.
  scribblesup-xml  ScribbleSup (Lin et al. 2016) pascal_2012/<id>.xml: <polygon> elements, each a
                   <tag> (class name; ScribbleSup's short names plane, bike, table, plant, monitor
                   accepted) and <point><X/><Y/></point> spots joined into a polyline drawn
                   --scribble_width wide (3, as the converted PNGs in wide use); "background" is
                   class 0; spots outside the image are clipped.
  sparse-png       <dir>/<id>.png sparse label maps in the dataset's label encoding with
                   --weak_unlabeled_value on unannotated pixels: the converted ScribbleSup PNGs
                   (pascal_2012_scribble, unlabeled 255), or point maps for ADE20K in the
                   ADEChallengeData2016 encoding (1-150, unlabeled 0).
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import json
import os
import xml.etree.ElementTree as ElementTree

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from kdseg import atomic, fs
from kdseg.constants import IGNORE_LABEL, UNLABELED
from kdseg.data.source import INVALID, SegmentationSource, SplitFiles

SUPERVISIONS = ("full", "points", "scribbles")
FORMATS = ("simulate", "points-json", "scribblesup-xml", "sparse-png")
_VERSION = 1
# ScribbleSup's tags for VOC classes whose VOC names differ.
SCRIBBLESUP_NAMES = {"plane": "aeroplane", "bike": "bicycle", "table": "diningtable",
                     "plant": "pottedplant", "monitor": "tvmonitor", "tv": "tvmonitor"}
_EIGHT_CONNECTED = np.ones((3, 3), bool)


class WeakAnnotationError(ValueError):
  """Weak annotations that cannot be read or do not match the dataset."""


@dataclasses.dataclass(frozen=True)
class WeakConfig:
  """How training labels are weakened (flags --supervision, --weak_*)."""
  supervision: str = "full"
  loss: str = "unl"                    # kdseg.losses.weak.WEAK_LOSSES
  gamma: float = 1.0                   # weight of l_UNL's unlabeled term (Eq. 13)
  format: str = "simulate"
  annotations: str = ""                # file or folder of released annotations
  points_per_region: int = 1
  point_radius: int = 0
  background: str = "auto"             # annotate background regions: auto | yes | no
  scribble_width: int = 3
  unlabeled_value: int = 255           # sparse-png: value of unannotated pixels

  @property
  def weak(self) -> bool:
    return self.supervision != "full"

  @property
  def annotate_background(self) -> bool:
    if self.background == "auto":
      return self.supervision == "scribbles"
    return self.background == "yes"

  def record(self) -> dict:
    """What a run directory records: the options that change the training labels or loss."""
    return {"loss": self.loss, "gamma": self.gamma, **self.annotation_record()}

  def annotation_record(self) -> dict:
    """The options that change the sparse label maps (not the loss): an annotation set's key."""
    record = {"supervision": self.supervision, "format": self.format}
    if self.format == "simulate":
      record["background"] = self.annotate_background
      if self.supervision == "points":
        record.update(points_per_region=self.points_per_region, point_radius=self.point_radius)
      else:
        record["scribble_width"] = self.scribble_width
    else:
      record["annotations"] = fs.absolute(self.annotations)
      if self.format == "sparse-png":
        record["unlabeled_value"] = self.unlabeled_value
      elif self.format == "points-json":
        record["point_radius"] = self.point_radius
      else:
        record["scribble_width"] = self.scribble_width
    return record


def check(config: WeakConfig) -> None:
  """WeakAnnotationError naming the flag for an inconsistent combination."""
  if config.supervision not in SUPERVISIONS:
    raise WeakAnnotationError(f"--supervision={config.supervision!r}; choose one of "
                              f"{', '.join(SUPERVISIONS)}.")
  if not config.weak:
    return
  if config.format not in FORMATS:
    raise WeakAnnotationError(f"--weak_format={config.format!r}; choose one of "
                              f"{', '.join(FORMATS)}.")
  if config.format == "simulate":
    if config.annotations:
      raise WeakAnnotationError("--weak_annotations is read only with --weak_format="
                                "points-json, scribblesup-xml or sparse-png; drop it to simulate.")
  elif not fs.exists(config.annotations):
    raise WeakAnnotationError(
        f"--weak_format={config.format} needs --weak_annotations: the released file or folder "
        f"({config.annotations or 'not given'} does not exist). Download it (docs/WEAK.md says "
        "where) and name it with --weak_annotations.")
  expected = {"points-json": "points", "scribblesup-xml": "scribbles"}.get(config.format)
  if expected and expected != config.supervision:
    raise WeakAnnotationError(f"--weak_format={config.format} holds {expected}; set "
                              f"--supervision={expected}.")
  if config.points_per_region < 1 or config.point_radius < 0 or config.scribble_width < 1:
    raise WeakAnnotationError("--points_per_region >= 1, --point_radius >= 0 and "
                              "--scribble_width >= 1 are required.")


# --- simulation -----------------------------------------------------------------------------


def _regions(labels: np.ndarray, background: bool):
  """(class id, bounding slices, region mask inside them) of every 8-connected class region."""
  for cls in np.unique(labels):
    if cls == IGNORE_LABEL or (cls == 0 and not background):
      continue
    components, _ = ndimage.label(labels == cls, structure=_EIGHT_CONNECTED)
    for index, box in enumerate(ndimage.find_objects(components), start=1):
      if box is not None:
        yield int(cls), box, components[box] == index


def _depth(region: np.ndarray) -> np.ndarray:
  """Each region pixel's distance to the nearest pixel outside the region (the image's edge
  counts as outside)."""
  return ndimage.distance_transform_edt(np.pad(region, 1))[1:-1, 1:-1]


def _disc(radius: int) -> np.ndarray:
  grid = np.arange(-radius, radius + 1)
  return grid[:, None] ** 2 + grid[None, :] ** 2 <= radius ** 2


def simulate_points(labels: np.ndarray, per_region: int, radius: int, background: bool,
                    rng: np.random.Generator) -> np.ndarray:
  """Sparse map with `per_region` points in each class region (fewer if it has fewer inner
  pixels), each a disc of `radius` clipped to its region."""
  sparse = np.full(labels.shape, UNLABELED, np.uint8)
  for cls, box, region in _regions(labels, background):
    depth = _depth(region)
    inner = np.flatnonzero(depth >= 0.5 * depth.max())
    chosen = rng.choice(inner, size=min(per_region, inner.size), replace=False)
    marks = np.zeros(region.shape, bool)
    marks.flat[chosen] = True
    if radius:
      marks = ndimage.binary_dilation(marks, structure=_disc(radius))
    sparse[box][marks & region] = cls
  return sparse


def simulate_scribbles(labels: np.ndarray, width: int, background: bool) -> np.ndarray:
  """Sparse map with each class region's skeleton drawn `width` pixels wide inside the region
  (a region too thin for a skeleton gets its innermost pixel)."""
  from skimage.morphology import skeletonize  # a heavy import, only when simulating scribbles
  sparse = np.full(labels.shape, UNLABELED, np.uint8)
  for cls, box, region in _regions(labels, background):
    # The skeleton of the region shrunk by the stroke's half width: the drawn stroke keeps off
    # the region's border, and border wiggles add no branches.
    inner = ndimage.binary_erosion(region, structure=_disc(width // 2)) if width > 1 else region
    stroke = skeletonize(inner if inner.any() else region)
    if not stroke.any():
      stroke.flat[np.argmax(_depth(region))] = True
    if width > 1:
      stroke = ndimage.binary_dilation(stroke, structure=_disc(width // 2))
    sparse[box][stroke & region] = cls
  return sparse


# --- released formats -------------------------------------------------------------------------


def _image_size(path: str) -> tuple[int, int]:
  with fs.open_image(path) as image:
    return image.height, image.width


def read_points_json(path: str) -> dict[str, list[tuple[int, int, int]]]:
  """image id -> [(x, y, class id)] from a "What's the point" JSON file."""
  try:
    with fs.open(path) as handle:
      data = json.load(handle)
    return {str(image_id): [(int(c["x"]), int(c["y"]), int(c["cls"])) for c in clicks]
            for image_id, clicks in data.items()}
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
    raise WeakAnnotationError(
        f"{path} is not a \"What's the point\" click file (a JSON dict image id -> list of "
        f"{{x, y, cls, rank}}): {error}") from None


def rasterize_points(points, shape: tuple[int, int], radius: int, num_classes: int,
                     where: str) -> np.ndarray:
  """Sparse map of clicks (x, y, class id), each a disc of `radius` clipped to the image, drawn
  in order; a click outside the image is dropped."""
  sparse = np.full(shape, UNLABELED, np.uint8)
  disc = _disc(radius)
  for x, y, cls in points:
    if not 0 < cls < num_classes:
      raise WeakAnnotationError(f"{where}: click at ({x}, {y}) has cls={cls}, outside the "
                                f"dataset's classes 1..{num_classes - 1}.")
    if 0 <= y < shape[0] and 0 <= x < shape[1]:
      top, left = max(0, y - radius), max(0, x - radius)
      bottom, right = min(shape[0], y + radius + 1), min(shape[1], x + radius + 1)
      stamp = disc[top - y + radius:bottom - y + radius, left - x + radius:right - x + radius]
      sparse[top:bottom, left:right][stamp] = cls
  return sparse


def read_scribblesup_xml(path: str, class_names: tuple[str, ...], shape: tuple[int, int],
                         width: int) -> np.ndarray:
  """Sparse map of one ScribbleSup XML file, polylines drawn in file order."""
  ids = {name: i for i, name in enumerate(class_names)}
  ids.update({short: ids[name] for short, name in SCRIBBLESUP_NAMES.items() if name in ids})
  try:
    root = ElementTree.parse(path).getroot()
  except (OSError, ElementTree.ParseError) as error:
    raise WeakAnnotationError(f"{path}: unreadable ScribbleSup XML: {error}") from None
  canvas = Image.new("L", (shape[1], shape[0]), UNLABELED)
  draw = ImageDraw.Draw(canvas)
  for polygon in root.iter("polygon"):
    tag = (polygon.findtext("tag") or "").strip()
    if tag not in ids:
      raise WeakAnnotationError(f"{path}: scribble tag {tag!r} is not a class of this dataset "
                                f"({', '.join(class_names)}).")
    try:
      spots = [(int(float(p.findtext("X"))), int(float(p.findtext("Y"))))
               for p in polygon.iter("point")]
    except (TypeError, ValueError) as error:
      raise WeakAnnotationError(f"{path}: a <point> of {tag!r} has no integer X/Y: "
                                f"{error}") from None
    if len(spots) == 1:
      draw.point(spots, fill=ids[tag])
    elif spots:
      draw.line(spots, fill=ids[tag], width=width)
  return np.asarray(canvas, np.uint8)


def read_sparse_png(path: str, source: SegmentationSource, unlabeled_value: int) -> np.ndarray:
  try:
    with fs.open_image(path) as image:
      if image.mode not in ("P", "L"):
        raise WeakAnnotationError(f"{path}: a sparse label map must be an index or grey PNG, "
                                  f"not mode {image.mode}.")
      raw = np.asarray(image, np.uint8)
  except OSError as error:
    raise WeakAnnotationError(f"{path}: unreadable PNG: {error}") from None
  unlabeled = raw == unlabeled_value
  classes = source.class_table[raw]
  bad = (classes == INVALID) & ~unlabeled
  if bad.any():
    raise WeakAnnotationError(f"{path}: values {sorted(set(raw[bad].tolist()))[:5]} are not "
                              f"labels of {source.name} (--weak_unlabeled_value="
                              f"{unlabeled_value}).")
  return np.where(unlabeled, UNLABELED, classes).astype(np.uint8)


# --- annotation sets --------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AnnotationSet:
  """Sparse label maps of a split's images: paths in the split's order, and the manifest."""
  directory: str
  files: SplitFiles            # the split with label_paths replaced by the sparse maps
  manifest: dict


def _key(source: SegmentationSource, files: SplitFiles, config: WeakConfig, seed: int) -> str:
  parts = [str(_VERSION), source.name, json.dumps(config.annotation_record(), sort_keys=True),
           *files.label_paths]
  if config.format == "simulate":   # simulated maps depend on the seed and the label files
    parts.append(str(seed))
    parts += [f"{size}:{mtime}" for mtime, size in (fs.stat(p) for p in files.label_paths)]
  else:
    annotations = config.annotations
    walked = (sorted(fs.walk(annotations)) if fs.isdir(annotations)
              else [("", None, [annotations])])
    for folder, _, names in walked:
      for name in sorted(names):
        mtime, size = fs.stat(fs.join(folder, name))
        parts.append(f"{name}:{size}:{mtime}")
  return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


def _image_seed(seed: int, image_id: str) -> list[int]:
  return [seed, int.from_bytes(hashlib.sha1(image_id.encode()).digest()[:8], "little")]


def _build_one(source, config: WeakConfig, seed: int, clicks, image_id: str, image_path: str,
               label_path: str, out_path: str) -> tuple[int, int]:
  """Writes one sparse map; returns (annotated pixels, pixels)."""
  fmt = config.format
  if fmt == "simulate":
    labels = source.class_table[source.codec.read(label_path)].astype(np.int64)
    labels[labels == INVALID] = IGNORE_LABEL
    if config.supervision == "points":
      sparse = simulate_points(labels, config.points_per_region, config.point_radius,
                               config.annotate_background,
                               np.random.default_rng(_image_seed(seed, image_id)))
    else:
      sparse = simulate_scribbles(labels, config.scribble_width, config.annotate_background)
  elif fmt == "points-json":
    sparse = rasterize_points(clicks.get(image_id, ()), _image_size(image_path),
                              config.point_radius, len(source.class_names),
                              f"{config.annotations}, image {image_id}")
  elif fmt == "scribblesup-xml":
    xml = fs.join(config.annotations, f"{image_id}.xml")
    sparse = (read_scribblesup_xml(xml, source.class_names, _image_size(image_path),
                                   config.scribble_width) if fs.isfile(xml)
              else np.full(_image_size(image_path), UNLABELED, np.uint8))
  else:
    png = fs.join(config.annotations, f"{image_id}.png")
    sparse = (read_sparse_png(png, source, config.unlabeled_value) if fs.isfile(png)
              else np.full(_image_size(image_path), UNLABELED, np.uint8))
  atomic.write_png(out_path, lambda handle: Image.fromarray(sparse).save(handle, format="PNG"))
  return int(np.count_nonzero(sparse != UNLABELED)), int(sparse.size)


def annotation_set(source: SegmentationSource, split: str, config: WeakConfig, seed: int,
                   cache_dir: str, workers: int | None = None) -> AnnotationSet:
  """The sparse label maps of `split` (built once, then read from the cache)."""
  check(config)
  files = source.split(split)
  directory = fs.join(cache_dir, "weak", _key(source, files, config, seed))
  manifest_path = fs.join(directory, "manifest.json")
  paths = tuple(fs.join(directory, f"{image_id}.png") for image_id in files.ids)
  sparse_files = SplitFiles(files.ids, files.image_paths, paths)
  clicks = read_points_json(config.annotations) if config.format == "points-json" else {}
  workers = workers or min(8, (os.cpu_count() or 1) * 2)

  def build(rows):
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
      return list(pool.map(
          lambda row: _build_one(source, config, seed, clicks, files.ids[row],
                                 files.image_paths[row], files.label_paths[row], paths[row]),
          rows))

  if fs.isfile(manifest_path):
    manifest = fs.read_json(manifest_path)
    build([row for row, path in enumerate(paths) if not fs.exists(path)])   # deleted entries
    return AnnotationSet(directory, sparse_files, manifest)
  unknown = sorted(set(clicks) - set(files.ids))
  fs.makedirs(directory)
  counts = build(range(len(files.ids)))
  annotated = np.array([c[0] for c in counts])
  if not annotated.sum():
    source_file = config.annotations or f"the {config.format} annotations"
    matched = (f"; its {len(clicks)} id(s) (e.g. {unknown[:3]}) match none of the split's "
               f"(e.g. {list(files.ids[:3])})" if clicks and len(unknown) == len(clicks) else "")
    raise WeakAnnotationError(
        f"{source_file} annotates no pixel of the {len(files.ids)} {split} images{matched}: "
        "give the annotation file of this dataset and split (--weak_annotations).")
  manifest = {
      "dataset": source.name, "split": split, "seed": seed, **config.annotation_record(),
      "images": len(files.ids), "images_without_annotation": int(np.sum(annotated == 0)),
      "annotated_pixel_fraction": float(annotated.sum() / max(1, sum(c[1] for c in counts))),
      "annotated_pixels_per_image": float(annotated.mean()) if len(counts) else 0.0}
  if config.format == "points-json":
    manifest["annotated_images_not_in_split"] = len(unknown)
  atomic.write_json(manifest_path, manifest)
  return AnnotationSet(directory, sparse_files, manifest)
