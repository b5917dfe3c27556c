"""PyTorch state dicts -> kdseg layers: names, layouts and normalisation parameters.

Sources (the names their checkpoints use):
  torchvision  torchvision.models resnet50 / resnet101 / resnext101_32x8d: conv1, bn1,
               layer<L>.<i>.conv<k> / bn<k> / downsample.{0,1}, fc (dropped).
  iabn         the In-place ABN ImageNet release (mapillary/inplace_abn, the weights the MiB
               reference starts from; "module." prefixes stripped): ResNet mod1.conv1 / bn1,
               mod<m>.block<b>.convs.conv<k> / bn<k>, proj_conv / proj_bn; ResNeXt (pre-activation)
               mod1.conv1..3 / bn1..2, mod<m>.block<b>.bn1 (the block's pre-activation),
               convs.conv<k> / bn<k+1>, proj_conv, bn_out; classifier.fc (dropped).
  mib, plop    a MiB / PLOP step checkpoint: {"model_state": ...} with body.* (the iabn names),
               head.* (DeepLab-v3: map_convs.<k>, map_bn, global_pooling_conv/_bn, red_conv,
               pool_red_conv, red_bn) and cls.<t> (one 1x1 classifier per step).
Layouts: convolution weights OIHW -> HWIO (grouped ones too: [O, I/g, kh, kw] -> [kh, kw, I/g,
O]); BN weight, bias, running_mean, running_var -> gamma, beta, moving_mean, moving_variance
(num_batches_tracked dropped). In-place ABN scales by |weight| + eps, not weight (its forward,
inplace_abn/functions.py and the CUDA/CPU kernels), so with norm="iabn" gamma = |weight| + 1e-5;
norm="bn" (torchvision, or a reference run with --norm_act=abn/std) keeps weight.
Every tensor of the source must find its layer and every weighted layer of the target must be
filled; otherwise ConversionError names the tensor or layer.
"""
from __future__ import annotations

import re

import numpy as np

from kdseg.models.conversion import ConversionError, assign, backbone_layers  # noqa: F401
from kdseg.models.resnet import SPECS, TORCH_BN_EPSILON

SOURCES = ("torchvision", "iabn", "mib", "plop")
NORMS = ("iabn", "bn")
DEFAULT_NORM = {"torchvision": "bn", "iabn": "iabn", "mib": "iabn", "plop": "iabn"}
# Tensors that carry no weights kdseg uses: BN step counters and ImageNet classifiers.
DROPPED = re.compile(r"(^|\.)num_batches_tracked$|^fc\.|^classifier\.fc\.")
BN_SLOTS = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean",
            "running_var": "moving_variance"}


def _bn(target: str, slot: str):
  if slot not in BN_SLOTS:
    return None
  return target, BN_SLOTS[slot]


def _conv(target: str, slot: str):
  return (target, {"weight": "kernel", "bias": "bias"}[slot]) if slot in ("weight", "bias") \
      else None


def _torchvision(key: str):
  stem = re.fullmatch(r"(conv1|bn1)\.(\w+)", key)
  if stem:
    if stem[1] == "conv1":
      return _conv("conv1_conv", stem[2])
    return _bn("conv1_bn", stem[2])
  block = re.fullmatch(r"layer(\d)\.(\d+)\.(conv|bn|downsample\.)(\d)\.(\w+)", key)
  if not block:
    return None
  stage, index, kind, k, slot = int(block[1]) + 1, int(block[2]) + 1, block[3], block[4], block[5]
  name = f"conv{stage}_block{index}"
  if kind == "downsample.":
    return (_conv if k == "0" else _bn)(f"{name}_0_{'conv' if k == '0' else 'bn'}", slot)
  return (_conv if kind == "conv" else _bn)(f"{name}_{k}_{kind}", slot)


def _iabn_block(key: str, kinds: str):
  """(kdseg block name, kind, index, slot) of an In-place ABN block tensor mod<m>.block<b>...,
  or None."""
  block = re.fullmatch(rf"mod(\d)\.block(\d+)\.({kinds})(\d?)\.(\w+)", key)
  if not block:
    return None
  return f"conv{block[1]}_block{block[2]}", block[3], block[4], block[5]


def _iabn_resnet(key: str):
  stem = re.fullmatch(r"mod1\.(conv1|bn1)\.(\w+)", key)
  if stem:
    return (_conv if stem[1] == "conv1" else _bn)(
        "conv1_conv" if stem[1] == "conv1" else "conv1_bn", stem[2])
  parts = _iabn_block(key, r"convs\.conv|convs\.bn|proj_conv|proj_bn")
  if parts is None:
    return None
  name, kind, k, slot = parts
  if kind.startswith("proj_"):
    return (_conv if kind == "proj_conv" else _bn)(f"{name}_0_{kind[5:]}", slot)
  return (_conv if kind == "convs.conv" else _bn)(f"{name}_{k}_{kind[6:]}", slot)


def _iabn_resnext(key: str):
  stem = re.fullmatch(r"mod1\.(conv|bn)(\d)\.(\w+)", key)
  if stem:
    suffix = "" if stem[2] == "1" else f"_{stem[2]}"
    return (_conv if stem[1] == "conv" else _bn)(f"conv1{suffix}_{stem[1]}", stem[3])
  post = re.fullmatch(r"bn_out\.(\w+)", key)
  if post:
    return _bn("post_bn", post[1])
  parts = _iabn_block(key, r"bn1|convs\.conv|convs\.bn|proj_conv")
  if parts is None:
    return None
  name, kind, k, slot = parts
  if kind == "bn1":
    return _bn(f"{name}_preact_bn", slot)
  if kind == "proj_conv":
    return _conv(f"{name}_0_conv", slot)
  if kind == "convs.conv":
    return _conv(f"{name}_{k}_conv", slot)
  return _bn(f"{name}_{int(k) - 1}_bn", slot)     # bn2 follows conv1, bn3 conv2


_HEAD = {"map_bn": "map_bn", "global_pooling_conv": "pool_conv",
         "global_pooling_bn": "pool_bn", "red_conv": "red_conv",
         "pool_red_conv": "pool_red_conv", "red_bn": "red_bn"}


def _backbone_rule(backbone: str, source: str):
  spec = SPECS.get(backbone)
  if spec is None or spec.layout == "keras":
    raise ConversionError(
        f"--backbone={backbone} has keras.applications' layout; PyTorch weights need one of "
        "resnet50_tv, resnet101_tv, resnext101_tv (torchvision) or resnet50_iabn, "
        "resnet101_iabn, resnext101_iabn (In-place ABN, MiB, PLOP).")
  if source == "torchvision":
    if backbone.endswith("_iabn"):
      raise ConversionError(f"torchvision weights go with a *_tv backbone, not {backbone}.")
    return _torchvision
  if backbone.endswith("_tv"):
    raise ConversionError(f"{source} weights go with a *_iabn backbone, not {backbone}.")
  return _iabn_resnext if spec.layout == "preact" else _iabn_resnet


def target_of(key: str, backbone: str, source: str):
  """(layer path, slot) of a source tensor name ("backbone/<layer>", "head/<layer>" or
  "classifier/head_<t>"), or None if kdseg has no place for it."""
  rule = _backbone_rule(backbone, source)
  if source in ("torchvision", "iabn"):
    found = rule(key)
    return None if found is None else (f"backbone/{found[0]}", found[1])
  if key.startswith("body."):
    found = rule(key[len("body."):])
    return None if found is None else (f"backbone/{found[0]}", found[1])
  head = re.fullmatch(r"head\.(map_convs\.(\d)|\w+)\.(\w+)", key)
  if head:
    if head[2] is not None:
      return _conv(f"head/map_conv{head[2]}", head[3])
    name = _HEAD.get(head[1])
    if name is None:
      return None
    return (_bn if name.endswith("_bn") else _conv)(f"head/{name}", head[3])
  cls = re.fullmatch(r"cls\.(\d+)\.(\w+)", key)
  if cls:
    return _conv(f"classifier/head_{cls[1]}", cls[2])
  return None


def state_dict(checkpoint, source: str, path: str) -> dict[str, np.ndarray]:
  """The tensors of a loaded checkpoint, "module." prefixes stripped."""
  state = checkpoint
  # MiB/PLOP save {"model_state": ...}; the In-place ABN release {"state_dict": ...};
  # torchvision the state dict itself.
  key = "model_state" if source in ("mib", "plop") else "state_dict"
  if isinstance(state, dict) and isinstance(state.get(key), dict):
    state = state[key]
  if not isinstance(state, dict) or not state:
    raise ConversionError(f"{path} holds no state dict (a dict of tensors, or one under "
                          f"'{key}').")
  tensors = {}
  for key, value in state.items():
    if not isinstance(value, np.ndarray):
      raise ConversionError(f"{path}: entry {key!r} of the state dict is not a tensor.")
    tensors[key[len("module."):] if key.startswith("module.") else key] = value
  return tensors


def convert(tensors: dict[str, np.ndarray], backbone: str, source: str, norm: str,
            path: str) -> dict[str, dict[str, tuple[np.ndarray, str]]]:
  """{layer path: {slot: (array in kdseg's layout, source tensor name)}}; unknown tensors are
  an error naming them."""
  if norm not in NORMS:
    raise ConversionError(f"--norm={norm!r}: choose one of {', '.join(NORMS)}.")
  _backbone_rule(backbone, source)   # a backbone of another layout fails before any tensor
  converted: dict[str, dict[str, np.ndarray]] = {}
  unknown = []
  for key, value in tensors.items():
    if DROPPED.search(key):
      continue
    found = target_of(key, backbone, source)
    if found is None:
      unknown.append(key)
      continue
    layer, slot = found
    if slot == "kernel":
      if value.ndim != 4:
        raise ConversionError(f"{path}: {key} has shape {value.shape}, a convolution weight "
                              "[out, in/groups, kh, kw] was expected.")
      value = value.transpose(2, 3, 1, 0)
    elif slot == "gamma" and norm == "iabn":
      value = np.abs(value) + TORCH_BN_EPSILON
    converted.setdefault(layer, {})[slot] = (value.astype(np.float32), key)
  if unknown:
    raise ConversionError(
        f"{path}: {len(unknown)} tensors have no place in a kdseg {backbone} model from "
        f"--source={source}: {unknown[:6]}. Is it a {source} checkpoint of that network?")
  return converted


def segmenter_layers(model) -> dict:
  """Every weighted layer of a DeepLab-v3 Segmenter by its conversion path."""
  if model.config.head != "v3":
    raise ConversionError(f"MiB / PLOP checkpoints are DeepLab-v3 networks; --head="
                          f"{model.config.head} cannot hold them.")
  layers = backbone_layers(model.backbone)
  for attr in ("map_conv0", "map_conv1", "map_conv2", "map_conv3", "map_bn", "pool_conv",
               "pool_bn", "red_conv", "pool_red_conv", "red_bn"):
    layers[f"head/{attr}"] = getattr(model.head, attr)
  for step, head in enumerate(model.classifier.heads):
    layers[f"classifier/head_{step}"] = head
  return layers
