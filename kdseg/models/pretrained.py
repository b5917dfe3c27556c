"""ImageNet weights for the backbones, from a local file: keras.applications' or a converted one.

kdseg never downloads. The files keras.applications itself uses are

  resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5
  resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5

from https://storage.googleapis.com/tensorflow/keras-applications/resnet/ (the "_notop" files;
the files with the 1000-class top load too). Any file `model.save_weights()` / `model.save()`
wrote for `keras.applications.ResNet50` / `ResNet101` also works (.weights.h5, legacy .h5 or
.keras). Keras reads the file into a keras.applications model, and every weighted layer is copied
by name into kdseg's dilated backbone, which uses the same layer names and shapes; dilation adds
no variables, so the weights are exactly those of the ImageNet network.

These weights were trained on Caffe-style input (BGR, mean subtracted, no scaling): build the model
with ModelConfig(input_convention="caffe"), which --backbone_weights selects by default.

The PyTorch-layout backbones (resnet*_tv, resnet*_iabn, resnext101_*: kdseg.models.resnet) load
the file tools/convert_torch_weights.py writes from torchvision's or the In-place ABN release's
ImageNet checkpoint: the backbone's own Keras weights (.weights.h5). Those networks were trained
on RGB input normalised with the ImageNet mean and std, kdseg's default input convention.

resnet101_deeplab (the KD paper's DeepLab-v2) loads the TF1 checkpoint its code starts from,
deeplab_resnet_init.ckpt (DeepLab-v2 ResNet-101 pretrained on MS-COCO, converted from Caffe by
DrSleep/tensorflow-deeplab-resnet), by its variable names (kdseg/models/tf1_weights.py): the
backbone only, as that code restores it (its classifier there is randomly initialised). Those
weights were trained on Caffe's BGR input minus DeepLab's mean (input convention "deeplab"); the
KD code feeds them RGB minus that mean ("deeplab-rgb", flags/recipe_kd.cfg).
"""
from __future__ import annotations

import warnings

import keras
import numpy as np

from kdseg import fs
from kdseg.models import tf1_weights
from kdseg.models.conversion import ConversionError
from kdseg.models.resnet import TF1_BACKBONES, TORCH_BACKBONES, build_resnet

WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
APPLICATIONS = {
    "resnet50": keras.applications.ResNet50,
    "resnet101": keras.applications.ResNet101,
}


class PretrainedWeightsError(FileNotFoundError):
  """The weight file is missing, unreadable, or does not describe the chosen backbone."""


def expected_file(depth: str) -> str:
  return f"{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5"


TORCH_RELEASES = {
    "resnet50_tv": "torchvision's resnet50 ImageNet weights (resnet50-*.pth) with --source="
                   "torchvision",
    "resnet101_tv": "torchvision's resnet101 ImageNet weights (resnet101-*.pth) with --source="
                    "torchvision",
    "resnext101_tv": "torchvision's resnext101_32x8d ImageNet weights (resnext101_32x8d-*.pth) "
                     "with --source=torchvision",
    "resnet50_iabn": "the In-place ABN release's resnet50_iabn_sync.pth.tar (the file the MiB "
                     "reference reads from pretrained/) with --source=iabn",
    "resnet101_iabn": "the In-place ABN release's resnet101_iabn_sync.pth.tar (the file the MiB "
                      "reference reads from pretrained/) with --source=iabn",
    "resnext101_iabn": "the In-place ABN release's resnext101_ipabn_lr_512.pth.tar / "
                       "resnext101_iabn_sync.pth.tar with --source=iabn",
}


DEEPLAB_INIT = "deeplab_resnet_init.ckpt"
DEEPLAB_INIT_SOURCE = ("https://drive.google.com/drive/folders/0B_rootXHuswsZ0E4Mjh1ZU5xZVU (the "
                       "link of DrSleep/tensorflow-deeplab-resnet's README and of "
                       "LTTM/IL-SemSegm's pretrained/README.md)")
# Backbones with released weights: a run on a real dataset needs them (or --backbone_weights=none).
RELEASED = tuple(APPLICATIONS) + TORCH_BACKBONES + TF1_BACKBONES


def starting_point(depth: str) -> str:
  """What the papers' recipes start `depth` from, in one sentence."""
  if depth in TF1_BACKBONES:
    return ("the KD paper starts from DeepLab-v2 ResNet-101 pretrained on MS-COCO "
            f"({DEEPLAB_INIT}).")
  return "the papers start from ImageNet weights."


def how_to_get(depth: str) -> str:
  if depth in TF1_BACKBONES:
    return (f"Download {DEEPLAB_INIT} (its .index and .data-* files, or the one V1 file) from "
            f"{DEEPLAB_INIT_SOURCE}, and pass its path (without .index) as "
            "--backbone_weights=PATH.")
  if depth in TORCH_BACKBONES:
    return (f"Convert {TORCH_RELEASES[depth]}: python tools/convert_torch_weights.py "
            f"--backbone={depth} --torch_file=<that file> --weights_output=<{depth}.weights.h5>, then "
            f"pass --backbone_weights=<{depth}.weights.h5> (docs/WEIGHTS.md, 'Starting from PyTorch "
            "weights').")
  return (f"Download {WEIGHTS_URL}{expected_file(depth)} (the ImageNet weights "
          f"keras.applications.{APPLICATIONS[depth].__name__} uses) and pass its path as "
          "--backbone_weights=PATH.")


def check_weights_file(depth: str, path: str) -> str:
  """The absolute path of an existing weight file for `depth`, or a PretrainedWeightsError."""
  if depth not in RELEASED:
    raise PretrainedWeightsError(
        f"--backbone_weights is given, but --backbone={depth} has no released weights; use one "
        f"of {', '.join(APPLICATIONS)} (keras.applications files), "
        f"{', '.join(TORCH_BACKBONES)} (converted PyTorch files) or {', '.join(TF1_BACKBONES)} "
        "(the KD paper's TF1 checkpoint).")
  path = fs.absolute(path)
  if depth in TF1_BACKBONES:
    if not tf1_weights.exists(path):
      raise PretrainedWeightsError(f"--backbone_weights={path}: no such checkpoint (neither the "
                                   f"file nor {path}.index). {how_to_get(depth)}")
    return path
  if not fs.isfile(path):
    raise PretrainedWeightsError(f"--backbone_weights={path} does not exist. {how_to_get(depth)}")
  return path


def _reference_model(depth: str, path: str) -> keras.Model:
  """keras.applications model holding the file's weights (with or without the top)."""
  errors = []
  for include_top in (False, True):
    model = APPLICATIONS[depth](include_top=include_top, weights=None,
                                input_shape=None if not include_top else (224, 224, 3))
    try:
      with warnings.catch_warnings():  # a wrong file also warns per layer; the error says it
        warnings.simplefilter("ignore")
        with fs.local_copy(path) as local:   # h5py reads local files
          model.load_weights(local)
      return model
    except (ValueError, KeyError, OSError) as error:
      errors.append(f"include_top={include_top}: {str(error).splitlines()[0][:300]}")
  raise PretrainedWeightsError(
      f"{path} could not be read as keras.applications {APPLICATIONS[depth].__name__} weights "
      f"({'; '.join(errors)}). Is it the file for --backbone={depth}? {how_to_get(depth)}")


def _converted_backbone(depth: str, path: str) -> keras.Model:
  """kdseg's `depth` backbone holding a file tools/convert_torch_weights.py wrote."""
  backbone = build_resnet(depth)
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      with fs.local_copy(path) as local:
        backbone.load_weights(local)
  except (ValueError, KeyError, OSError) as error:
    raise PretrainedWeightsError(
        f"{path} could not be read as converted --backbone={depth} weights "
        f"({str(error).splitlines()[0][:300]}). {how_to_get(depth)}") from error
  return backbone


def _tf1_backbone(depth: str, path: str) -> keras.Model:
  """kdseg's `depth` backbone holding the backbone weights of a TF1 checkpoint."""
  backbone = build_resnet(depth)
  try:
    tf1_weights.load_backbone(backbone, path)
  except (ConversionError, tf1_weights.Tf1CheckpointError) as error:
    raise PretrainedWeightsError(f"{error} {how_to_get(depth)}") from None
  return backbone


def read_weights(depth: str, path: str) -> dict[str, list[np.ndarray]]:
  """The weights in `path` per backbone layer name (weighted layers only)."""
  path = check_weights_file(depth, path)
  if depth in TF1_BACKBONES:
    model = _tf1_backbone(depth, path)
  elif depth in TORCH_BACKBONES:
    model = _converted_backbone(depth, path)
  else:
    model = _reference_model(depth, path)
  return {layer.name: layer.get_weights() for layer in model.layers if layer.weights}


def assign_weights(backbone: keras.Model, weights: dict[str, list[np.ndarray]],
                   source: str) -> int:
  """Copies `weights` (from read_weights) into `backbone` by layer name.

  Returns the number of layers assigned. Every weighted backbone layer must get its weights.
  """
  missing, assigned = [], 0
  for layer in backbone.layers:
    if not layer.weights:
      continue
    values = weights.get(layer.name)
    if values is None:
      missing.append(layer.name)
      continue
    shapes = [tuple(v.shape) for v in layer.weights]
    if [tuple(v.shape) for v in values] != shapes:
      raise PretrainedWeightsError(
          f"{source}: layer {layer.name} has weights of shapes {[v.shape for v in values]}, the "
          f"backbone expects {shapes}. Is it the file for this --backbone?")
    layer.set_weights(values)
    assigned += 1
  if missing:
    raise PretrainedWeightsError(f"{source} has no weights for backbone layers {missing[:5]} "
                                 f"({len(missing)} in all); is it the file for this --backbone?")
  return assigned


def load_backbone_weights(backbone: keras.Model, depth: str, path: str) -> int:
  """read_weights + assign_weights: the ImageNet weights in `path` into `backbone`."""
  return assign_weights(backbone, read_weights(depth, path), path)
