"""Methods are data: a record says which loss terms a step trains with and how new heads start.

The training loop reads these records and never tests a method's name. Adding a method is adding a
record here (and, if it needs one, a loss class in kdseg/losses/ and an entry in LOSS_TERMS).
Weights and defaults follow the MiB reference (spec §4).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import keras

from kdseg.losses.distillation import (FeatureDistillation, KnowledgeDistillation,
                                       UnbiasedKnowledgeDistillation)
from kdseg.losses.segmentation import CrossEntropy, UnbiasedCrossEntropy


@dataclasses.dataclass(frozen=True)
class Term:
  """A weighted distillation term comparing one endpoint of the old and new models."""
  loss: str
  weight: float
  endpoint: str = "logits"


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  description: str
  classification: str                    # key of CLASSIFICATION_LOSSES
  distillation: tuple[Term, ...] = ()
  init: str = "random"                    # "random" | "background" (MiB Eq. 10-11)
  # Step 0 has no old model, so methods whose step-0 training is plain CE can share one step-0
  # checkpoint (as the reference scripts do); a method that accumulates state at step 0 cannot.
  shares_step0: bool = True


# name -> factory(old_classes, pixel_mean) for the supervised term of a step.
CLASSIFICATION_LOSSES: dict[str, Callable[[int, str], keras.losses.Loss]] = {
    "ce": lambda old_classes, pixel_mean: CrossEntropy(pixel_mean=pixel_mean, name="ce"),
    # With only background known (step 0), the unbiased CE is the plain CE.
    "unce": lambda old_classes, pixel_mean: (
        UnbiasedCrossEntropy(old_classes, pixel_mean=pixel_mean, name="unce")
        if old_classes > 1 else CrossEntropy(pixel_mean=pixel_mean, name="ce")),
}

# name -> factory() for distillation terms (y_true = old endpoint, y_pred = new endpoint).
LOSS_TERMS: dict[str, Callable[[], keras.losses.Loss]] = {
    "kd": lambda: KnowledgeDistillation(name="kd"),
    "ukd": lambda: UnbiasedKnowledgeDistillation(name="ukd"),
    "feature_mse": lambda: FeatureDistillation(name="feature_mse"),
}

INITS = ("random", "background")

METHODS = {m.name: m for m in (
    Method("ft", "fine-tuning: plain cross-entropy on the current step's labels", "ce"),
    Method("lwf", "LwF: CE + output distillation re-normalised over old classes (x100)",
           "ce", (Term("kd", 100.0),)),
    Method("ilt", "ILT: CE + output distillation (x100) + encoder-feature MSE (x100)",
           "ce", (Term("kd", 100.0), Term("feature_mse", 100.0, endpoint="encoder"))),
    Method("mib", "MiB: unbiased CE + unbiased KD (x10) + background-based init of new heads",
           "unce", (Term("ukd", 10.0),), init="background"),
)}


class MethodError(ValueError):
  """An unknown method or an inconsistent method record."""


def get_method(name: str) -> Method:
  if name not in METHODS:
    raise MethodError(f"--method={name!r} is unknown; choose from: {', '.join(sorted(METHODS))}.")
  return METHODS[name]


@dataclasses.dataclass(frozen=True)
class Objective:
  """The loss terms of one step, ready to call: supervised + weighted distillation terms."""
  classification: keras.losses.Loss
  distillation: tuple[tuple[Term, keras.losses.Loss], ...]


def build_objective(method: Method, old_classes: int, pixel_mean: str = "all") -> Objective:
  """Objective of a step whose model already knew `old_classes` classes (0 at step 0).

  Distillation needs an old model, so step 0 gets none of the method's distillation terms.
  """
  if method.classification not in CLASSIFICATION_LOSSES:
    raise MethodError(f"method {method.name}: unknown classification loss "
                      f"{method.classification!r}")
  unknown = [t.loss for t in method.distillation if t.loss not in LOSS_TERMS]
  if unknown or method.init not in INITS:
    raise MethodError(f"method {method.name}: unknown terms {unknown} or init {method.init!r}")
  distillation = () if old_classes == 0 else tuple(
      (term, LOSS_TERMS[term.loss]()) for term in method.distillation)
  return Objective(CLASSIFICATION_LOSSES[method.classification](old_classes, pixel_mean),
                   distillation)
