"""Converted weights into kdseg layers, whatever framework wrote them (torch_weights,
tf1_weights): {layer path: {slot: (array in kdseg's layout, source tensor name)}} assigned with
every layer filled and every tensor placed, or a ConversionError naming what does not fit."""
from __future__ import annotations

import numpy as np


class ConversionError(ValueError):
  """A tensor without a kdseg layer, a layer without its tensors, or a shape mismatch."""


def _layer_slots(layer) -> list[str]:
  """Slot names of a Conv2D (kernel[, bias]) or BatchNormalization layer, in variable order."""
  return [v.path.rsplit("/", 1)[-1] for v in layer.weights]


def assign(layers: dict, converted: dict[str, dict[str, tuple[np.ndarray, str]]],
           path: str) -> int:
  """Assigns converted tensors into `layers` ({layer path: Keras layer}); every layer must be
  filled and every converted layer must exist. Returns the number of layers assigned."""
  missing = [name for name in layers if name not in converted]
  if missing:
    raise ConversionError(f"{path} has no tensors for {len(missing)} kdseg layers, e.g. "
                          f"{missing[:5]}: is it the checkpoint of this --backbone / task?")
  extra = [name for name in converted if name not in layers]
  if extra:
    sources = [key for _, key in converted[extra[0]].values()]
    raise ConversionError(f"{path} has tensors for layers the kdseg model lacks: {extra[:5]} "
                          f"(e.g. {sources[0]}): another backbone, head or number of steps?")
  for name, layer in layers.items():
    slots = converted[name]
    values = []
    for slot, variable in zip(_layer_slots(layer), layer.weights):
      if slot not in slots:
        raise ConversionError(f"{path}: layer {name} needs its {slot}, which the checkpoint "
                              f"lacks (it has {sorted(slots)} for that layer).")
      value, key = slots[slot]
      if tuple(value.shape) != tuple(variable.shape):
        raise ConversionError(f"{path}: {key} converts to shape {value.shape}, kdseg's {name} "
                              f"{slot} has shape {tuple(variable.shape)}.")
      values.append(value)
    left = set(slots) - set(_layer_slots(layer))
    if left:
      raise ConversionError(f"{path}: {', '.join(slots[s][1] for s in left)} has no variable in "
                            f"kdseg's {name}.")
    layer.set_weights(values)
  return len(layers)


def backbone_layers(backbone) -> dict:
  return {f"backbone/{layer.name}": layer for layer in backbone.layers if layer.weights}
