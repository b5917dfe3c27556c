"""ImageNet weights for the ResNet backbones, from a local keras.applications weight file.

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
"""
from __future__ import annotations

import os
import warnings

import keras
import numpy as np

WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
APPLICATIONS = {
    "resnet50": keras.applications.ResNet50,
    "resnet101": keras.applications.ResNet101,
}


class PretrainedWeightsError(FileNotFoundError):
  """The weight file is missing, unreadable, or does not describe the chosen backbone."""


def expected_file(depth: str) -> str:
  return f"{depth}_weights_tf_dim_ordering_tf_kernels_notop.h5"


def how_to_get(depth: str) -> str:
  return (f"Download {WEIGHTS_URL}{expected_file(depth)} (the ImageNet weights "
          f"keras.applications.{APPLICATIONS[depth].__name__} uses) and pass its path as "
          "--backbone_weights=PATH.")


def check_weights_file(depth: str, path: str) -> str:
  """The absolute path of an existing weight file for `depth`, or a PretrainedWeightsError."""
  if depth not in APPLICATIONS:
    raise PretrainedWeightsError(
        f"--backbone_weights is given, but --backbone={depth} has no ImageNet counterpart in "
        f"keras.applications; use one of {', '.join(APPLICATIONS)}.")
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.isfile(path):
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
        model.load_weights(path)
      return model
    except (ValueError, KeyError, OSError) as error:
      errors.append(f"include_top={include_top}: {str(error).splitlines()[0][:300]}")
  raise PretrainedWeightsError(
      f"{path} could not be read as keras.applications {APPLICATIONS[depth].__name__} weights "
      f"({'; '.join(errors)}). Is it the file for --backbone={depth}? {how_to_get(depth)}")


def read_weights(depth: str, path: str) -> dict[str, list[np.ndarray]]:
  """The weights in `path` per keras.applications layer name (weighted layers only)."""
  path = check_weights_file(depth, path)
  return {layer.name: layer.get_weights() for layer in _reference_model(depth, path).layers
          if layer.weights}


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
