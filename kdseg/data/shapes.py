"""The `shapes` dataset: a seeded, procedural stand-in for Pascal VOC, written in the VOC layout.

Each of the 20 object classes is one (shape, texture, colour) combination; instances vary in scale,
aspect, rotation, colour and position, overlap (occlusion) and may be cut by the image border.
The class list mirrors VOC's roles: the last five classes (learned incrementally in 15-5 / 15-1)
each have a near twin among the first fifteen, as sheep/cow, sofa/chair and train/bus do in VOC:
  cow (10) / sheep (17)   same shape and texture, different colour
  chair (9) / sofa (18)   same shape and texture, different colour
  bus (6) / train (19)    same texture and colour, different aspect ratio
  cat (8) / dog (12)      same shape and colour, different texture
Scenes are indoor or outdoor; objects are drawn mostly from their scene's group, so classes
co-occur as in VOC. Backgrounds are textured, and carry distractor shapes that are background:
they reuse the classes' shapes, textures and colours but never a class's combination.
Object borders are labelled 255 (about 2 px wide), as in VOC.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import time
import uuid

import numpy as np
import tensorflow as tf
from PIL import Image

from kdseg import atomic, fs
from kdseg.data.source import SegmentationSource
from kdseg.constants import IGNORE_LABEL
from kdseg.data.voc import read_voc_layout, voc_palette

COLOURS = {
    "red": (200, 30, 30), "green": (40, 160, 50), "blue": (40, 70, 200), "yellow": (230, 200, 30),
    "orange": (235, 120, 20), "brown": (120, 70, 30), "purple": (130, 40, 160),
    "cyan": (30, 190, 200), "pink": (240, 150, 170), "white": (235, 235, 235),
    "black": (25, 25, 30), "lightgrey": (185, 185, 175),
}
SHAPES = ("circle", "ellipse", "square", "bar", "longbar", "triangle", "diamond", "hexagon",
          "star", "cross", "ring")
TEXTURES = ("solid", "stripes", "dots", "checker")


@dataclasses.dataclass(frozen=True)
class ShapeClass:
  name: str
  shape: str
  texture: str
  colour: str
  scenes: tuple[str, ...]
  weight: float = 1.0


CLASSES = (
    ShapeClass("aeroplane", "cross", "solid", "white", ("outdoor",)),
    ShapeClass("bicycle", "ring", "solid", "green", ("outdoor",)),
    ShapeClass("bird", "triangle", "solid", "cyan", ("outdoor",)),
    ShapeClass("boat", "diamond", "stripes", "blue", ("outdoor",)),
    ShapeClass("bottle", "bar", "solid", "green", ("indoor",)),
    ShapeClass("bus", "bar", "stripes", "yellow", ("outdoor",)),
    ShapeClass("car", "square", "solid", "red", ("outdoor",)),
    ShapeClass("cat", "triangle", "stripes", "orange", ("indoor",)),
    ShapeClass("chair", "square", "checker", "brown", ("indoor",)),
    ShapeClass("cow", "ellipse", "dots", "brown", ("outdoor",)),
    ShapeClass("diningtable", "hexagon", "solid", "brown", ("indoor",)),
    ShapeClass("dog", "triangle", "dots", "orange", ("indoor", "outdoor")),
    ShapeClass("horse", "ellipse", "solid", "brown", ("outdoor",)),
    ShapeClass("motorbike", "ring", "stripes", "red", ("outdoor",)),
    ShapeClass("person", "circle", "solid", "pink", ("indoor", "outdoor"), weight=2.5),
    ShapeClass("pottedplant", "star", "solid", "green", ("indoor",)),
    ShapeClass("sheep", "ellipse", "dots", "lightgrey", ("outdoor",)),
    ShapeClass("sofa", "square", "checker", "purple", ("indoor",)),
    ShapeClass("train", "longbar", "stripes", "yellow", ("outdoor",)),
    ShapeClass("tvmonitor", "square", "solid", "black", ("indoor",)),
)
CLASS_NAMES = ("background",) + tuple(c.name for c in CLASSES)
_CLASS_COMBOS = {(c.shape, c.texture, c.colour) for c in CLASSES}
_ASPECT = {"ellipse": 1.7, "bar": 2.2, "longbar": 3.6}  # width / height of elongated shapes


@dataclasses.dataclass(frozen=True)
class ShapesConfig:
  image_size: int = 64
  num_train: int = 1000
  num_val: int = 300
  seed: int = 0
  min_objects: int = 1
  max_objects: int = 4

  def key(self) -> str:
    text = json.dumps(dataclasses.asdict(self), sort_keys=True) + "|v1"
    return hashlib.sha1(text.encode()).hexdigest()[:12]


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Inside-test in normalised object coordinates (unit radius)."""
  radius, angle = np.hypot(u, v), np.arctan2(v, u)

  def polygon(sides: int) -> np.ndarray:
    sector = np.mod(angle + np.pi / 2, 2 * np.pi / sides) - np.pi / sides
    return radius * np.cos(sector) <= np.cos(np.pi / sides)

  if shape in ("circle", "ellipse"):
    return radius <= 1.0
  if shape in ("square", "bar", "longbar"):
    return np.maximum(np.abs(u), np.abs(v)) <= 0.85
  if shape == "triangle":
    return polygon(3)
  if shape == "hexagon":
    return polygon(6)
  if shape == "diamond":
    return np.abs(u) + np.abs(v) <= 1.0
  if shape == "star":
    return radius <= 0.42 + 0.58 * ((np.cos(5 * angle) + 1) / 2) ** 1.5
  if shape == "cross":
    return ((np.abs(u) <= 0.33) & (np.abs(v) <= 1)) | ((np.abs(v) <= 0.33) & (np.abs(u) <= 1))
  if shape == "ring":
    return (radius <= 1.0) & (radius >= 0.55)
  raise ValueError(f"unknown shape {shape!r}")


def _texture(texture: str, u: np.ndarray, v: np.ndarray, period: float) -> np.ndarray:
  """Shading factor in [0.4, 1] from pixel-unit object coordinates."""
  if texture == "solid":
    return 0.92 + 0.08 * np.tanh(u / (4 * period))
  if texture == "stripes":
    return np.where(np.sin(2 * np.pi * u / period) > 0, 1.0, 0.42)
  if texture == "dots":
    du = np.mod(u, period) - period / 2
    dv = np.mod(v, period) - period / 2
    return np.where(np.hypot(du, dv) < period * 0.3, 0.4, 1.0)
  if texture == "checker":
    parity = (np.floor(u / period) + np.floor(v / period)) % 2
    return np.where(parity == 0, 1.0, 0.45)
  raise ValueError(f"unknown texture {texture!r}")


def _smooth_noise(rng: np.random.Generator, size: int, cells: int, channels: int) -> np.ndarray:
  coarse = rng.uniform(0, 255, (cells, cells, channels)).astype(np.uint8)
  image = Image.fromarray(coarse.squeeze() if channels == 1 else coarse)
  return np.asarray(image.resize((size, size), Image.BICUBIC), np.float32).reshape(
      size, size, channels) / 255.0


def _background(rng: np.random.Generator, size: int, scene: str) -> np.ndarray:
  rows = np.linspace(0, 1, size)[:, None, None]
  horizon = rng.uniform(0.35, 0.7)
  if scene == "outdoor":
    top = np.array([120, 170, 225]) + rng.normal(0, 15, 3)
    bottom = np.array([95, 125, 70]) + rng.normal(0, 15, 3)
  else:
    top = np.array([200, 185, 160]) + rng.normal(0, 20, 3)
    bottom = np.array([140, 110, 90]) + rng.normal(0, 20, 3)
  image = np.where(rows < horizon, top, bottom) * np.ones((size, size, 1))
  image += (_smooth_noise(rng, size, 5, 3) - 0.5) * 55
  image += rng.normal(0, 6, (size, size, 3))
  return image


def _object_layer(rng, size, shape, texture, colour, scale):
  """Returns (mask [H, W] bool, rgb [H, W, 3]) of one randomly placed instance."""
  radius = size * scale * rng.uniform(0.75, 1.25)
  aspect = _ASPECT.get(shape, 1.0) * rng.uniform(0.88, 1.12)
  centre = rng.uniform(-0.05, 1.05, 2) * size
  theta = rng.uniform(0, 2 * np.pi)
  yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
  dx, dy = xx - centre[0], yy - centre[1]
  u = np.cos(theta) * dx + np.sin(theta) * dy
  v = -np.sin(theta) * dx + np.cos(theta) * dy
  width, height = radius * np.sqrt(aspect), radius / np.sqrt(aspect)
  mask = _shape_mask(shape, u / width, v / height)
  period = max(3.0, size / 14) * rng.uniform(0.85, 1.15)
  base = np.array(COLOURS[colour], np.float32) * rng.uniform(0.85, 1.15) + rng.normal(0, 10, 3)
  rgb = _texture(texture, u, v, period)[..., None] * base
  return mask, rgb


def _border(label: np.ndarray) -> np.ndarray:
  """Pixels with an 8-neighbour of a different class: the 255 band (1 px on each side)."""
  padded = np.pad(label, 1, mode="edge")
  size_y, size_x = label.shape
  border = np.zeros(label.shape, bool)
  for dy in (0, 1, 2):
    for dx in (0, 1, 2):
      border |= padded[dy:dy + size_y, dx:dx + size_x] != label
  return border


def render(rng: np.random.Generator, config: ShapesConfig) -> tuple[np.ndarray, np.ndarray]:
  """One (image [S, S, 3] uint8, label [S, S] uint8) pair."""
  size = config.image_size
  scene = "indoor" if rng.random() < 0.5 else "outdoor"
  image = _background(rng, size, scene)
  label = np.zeros((size, size), np.uint8)
  for _ in range(rng.integers(2, 6)):  # distractors: never a class's exact combination
    while True:
      combo = (rng.choice(SHAPES), rng.choice(TEXTURES),
               rng.choice(list(COLOURS) + ["grey"] * 4))
      if combo not in _CLASS_COMBOS:
        break
    shape, texture, colour = combo
    if colour == "grey":
      colour = "lightgrey" if rng.random() < 0.5 else "black"
    mask, rgb = _object_layer(rng, size, shape, texture, colour, rng.uniform(0.06, 0.14))
    image[mask] = rgb[mask]
  weights = np.array([c.weight * (1.0 if scene in c.scenes else 0.12) for c in CLASSES])
  count = rng.integers(config.min_objects, config.max_objects + 1)
  for class_index in rng.choice(len(CLASSES), size=count, p=weights / weights.sum()):
    spec = CLASSES[class_index]
    mask, rgb = _object_layer(rng, size, spec.shape, spec.texture, spec.colour,
                              rng.uniform(0.12, 0.24))
    image[mask] = rgb[mask]
    label[mask] = class_index + 1
  label[_border(label)] = IGNORE_LABEL
  return np.clip(image, 0, 255).astype(np.uint8), label


def _encoded(image: Image.Image, **save_options) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, **save_options)
  return buffer.getvalue()


def write_voc_tree(root: str, config: ShapesConfig) -> None:
  """Writes the dataset under `root` in the Pascal VOC 2012 layout."""
  for folder in ("JPEGImages", "SegmentationClass", fs.join("ImageSets", "Segmentation")):
    fs.makedirs(fs.join(root, folder))
  palette = voc_palette().flatten().tolist()
  for split_index, (split, count) in enumerate((("train", config.num_train),
                                                ("val", config.num_val))):
    ids = []
    for index in range(count):
      image_id = f"{split}_{index:06d}"
      rng = np.random.default_rng([config.seed, split_index, index])
      image, label = render(rng, config)
      atomic.write_bytes(fs.join(root, "JPEGImages", f"{image_id}.jpg"),
                         _encoded(Image.fromarray(image), format="JPEG", quality=92))
      label_png = Image.fromarray(label, mode="P")
      label_png.putpalette(palette)
      atomic.write_bytes(fs.join(root, "SegmentationClass", f"{image_id}.png"),
                         _encoded(label_png, format="PNG"))
      ids.append(image_id)
    atomic.write_text(fs.join(root, "ImageSets", "Segmentation", f"{split}.txt"),
                      "".join(f"{i}\n" for i in ids))


STALE_STAGING_SECONDS = 3600.0   # a generation takes seconds to minutes


def ensure_shapes(cache_dir: str, config: ShapesConfig) -> str:
  """Returns the dataset root for `config`, generating it on first use (atomically)."""
  root = fs.join(fs.absolute(cache_dir), "shapes", config.key())
  marker = fs.join(root, "shapes_config.json")
  if fs.isfile(marker):
    return root
  fs.makedirs(fs.dirname(root))
  if fs.is_url(root):
    # Object stores (and ram://) cannot rename a folder: write in place, the marker last. Every
    # file is written whole and the same by any writer, so concurrent writers agree.
    write_voc_tree(root, config)
    atomic.write_json(marker, dataclasses.asdict(config))
    return root
  for stale in fs.glob(fs.join(fs.dirname(root), ".staging-*")):
    # Left by a generation killed outright (SIGKILL; Ctrl-C and SIGTERM remove their own).
    if time.time() - os.stat(stale).st_mtime > STALE_STAGING_SECONDS:
      fs.rmtree(stale)
  staging = fs.join(fs.dirname(root), f".staging-{uuid.uuid4().hex[:12]}")
  try:
    write_voc_tree(staging, config)
    atomic.write_json(fs.join(staging, "shapes_config.json"), dataclasses.asdict(config))
    if fs.isfile(marker):  # another process (e.g. a second worker) finished first
      return root
    if fs.isdir(root):  # an incomplete earlier attempt without its marker
      fs.rmtree(root)
    try:
      fs.rename(staging, root, overwrite=False)
    except (OSError, tf.errors.OpError):
      if not fs.isfile(marker):  # not a concurrent writer's complete tree: a real error
        raise
  finally:
    fs.rmtree(staging)
  return root


def load_shapes(cache_dir: str, config: ShapesConfig) -> SegmentationSource:
  return read_voc_layout(ensure_shapes(cache_dir, config), class_names=CLASS_NAMES,
                         name="shapes")
