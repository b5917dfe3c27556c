"""Methods are data: a record says which loss terms a step trains with and how new heads start.

The training loop reads these records and never tests a method's name. Adding a method is adding a
record here (and, if it needs one, a loss class in kdseg/losses/ and an entry in LOSS_TERMS).
Weights and defaults follow the MiB reference (spec §4) and the KD paper (spec §6). Any record can
be modified from flags (`customize`): another supervised loss, added or re-weighted distillation
terms, freezing, head init, regulariser, temperature; the result gets its own derived name.

Step 0 has no old model: every method trains it with plain cross-entropy (reduced as the method's
`pixel_mean` says), and methods with the same step-0 recipe share one step-0 checkpoint, as the
reference scripts do. Methods that accumulate state at step 0 (EWC, PI, RW) and the offline
`joint` upper bound train their own.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import keras

from kdseg.losses.distillation import (FEATURE_NORMALISATIONS, PIXEL_SELECTIONS, SPKD_DIVISORS,
                                       FeatureDistance, KnowledgeDistillation, LocalPOD,
                                       OutputDistillation, SigmoidDistillation,
                                       SimilarityPreservingDistillation,
                                       UnbiasedKnowledgeDistillation)
from kdseg.losses.pseudo import MEDIAN_RULES
from kdseg.losses.regularizers import DEFAULT_WEIGHTS as REGULARIZER_WEIGHTS
from kdseg.losses.regularizers import KINDS as REGULARIZERS
from kdseg.losses.weak import weak_loss
from kdseg.losses.segmentation import (PIXEL_MEANS, BinaryCrossEntropy, CrossEntropy,
                                       OldTargetBinaryCrossEntropy, UnbiasedCrossEntropy)
from kdseg.models.freezing import FREEZE_MODES


@dataclasses.dataclass(frozen=True)
class Term:
  """A weighted distillation term comparing one endpoint of the old and new models.

  endpoint None = the loss's own (LOSS_TERMS); pixels = which pixels an output term averages
  over (see kdseg.losses.distillation.pixel_selection), for terms that take a selection.
  """
  loss: str
  weight: float
  endpoint: str | None = None
  pixels: str | None = None


@dataclasses.dataclass(frozen=True)
class Method:
  name: str
  description: str
  classification: str = "ce"              # supervised loss of steps >= 1 (CLASSIFICATION_LOSSES)
  distillation: tuple[Term, ...] = ()
  init: str = "random"                     # "random" | "background" (MiB Eq. 10-11)
  freeze: str = "none"                     # from step 1 on: "none" | "encoder" (EF) | "first-two"
  regularizer: str | None = None           # "ewc" | "pi" | "rw" (spec §4)
  regularizer_weight: float = 0.0
  pixel_mean: str = "all"                  # CE reduction: "all" (MiB) or "valid" (KD paper)
  ce_pixels: str | None = None             # steps >= 1: CE only over "new" or "objects" pixels
  temperature: float = 1.0                 # T of the KD paper's L_cls-T
  kd_alpha: float = 1.0                    # alpha of MiB's (unbiased) KD targets
  spkd_divide_by: str = "batch"            # SPKD: "batch" (Eq. 8 as printed) | "batch_squared"
  feature_normalisation: str = "mean"      # L_enc/L_dec: "mean" (KD code) | "frobenius" (Eq. 6-7)
  offline: bool = False                    # joint training on all classes at once
  incremental_decay: str = "step"          # steps >= 1 decay over: the "step" | "first_step"
  # PLOP (kdseg.losses.pseudo): steps >= 1 relabel background pixels with the old model's
  # confident predictions ("entropy"), the entropy floor, the median rule, the adaptive factor.
  pseudo: str | None = None
  pseudo_threshold: float = 0.001
  pseudo_median: str = "reference"
  adaptive_factor: bool = False

  @property
  def shares_step0(self) -> bool:
    return self.regularizer is None and not self.offline

  @property
  def step0_key(self) -> str:
    """Methods with equal keys train the same step 0."""
    return "ce" if self.pixel_mean == "all" else f"ce-{self.pixel_mean}"


@dataclasses.dataclass(frozen=True)
class LossTerm:
  """How to build one distillation term, which endpoint it compares by default, and whether it
  averages over a pixel selection (and which by default)."""
  build: Callable[[Method], keras.losses.Loss]
  endpoint: str
  pixels: str | None = None


# name -> factory(old_classes, pixel_mean) for the supervised term of a step >= 1.
CLASSIFICATION_LOSSES: dict[str, Callable[[int, str], keras.losses.Loss]] = {
    "ce": lambda old_classes, pixel_mean: CrossEntropy(pixel_mean=pixel_mean, name="ce"),
    "unce": lambda old_classes, pixel_mean: UnbiasedCrossEntropy(
        old_classes, pixel_mean=pixel_mean, name="unce"),
    # LwF-MC: the mean over all pixels as the MiB trainer runs it; --pixel_mean=valid gives the
    # loss class's own mean over labelled pixels.
    "bce": lambda old_classes, pixel_mean: BinaryCrossEntropy(pixel_mean=pixel_mean, name="bce"),
    # LwF-MC "disjoint" variant: old channels' targets are the old model's sigmoids (the method
    # then needs no bce_distill term); -bg keeps the ground-truth background channel.
    "bce-old": lambda old_classes, pixel_mean: OldTargetBinaryCrossEntropy(name="bce_old"),
    "bce-old-bg": lambda old_classes, pixel_mean: OldTargetBinaryCrossEntropy(
        keep_background=True, name="bce_old_bg"),
}
# Supervised losses whose y_true is {"labels": ..., "old": old logits}.
CLASSIFICATION_WITH_OLD_LOGITS = ("bce-old", "bce-old-bg")

LOSS_TERMS: dict[str, LossTerm] = {
    # MiB paper (spec §2): mean over all pixels.
    "kd": LossTerm(lambda m: KnowledgeDistillation(m.kd_alpha, name="kd"), "logits"),
    "ukd": LossTerm(lambda m: UnbiasedKnowledgeDistillation(m.kd_alpha, name="ukd"), "logits"),
    "bce_distill": LossTerm(lambda m: SigmoidDistillation(name="bce_distill"), "logits"),
    "feature_mse": LossTerm(lambda m: FeatureDistance(name="feature_mse"), "encoder"),
    # KD paper (spec §6). L_cls on pixels labelled background or an old class, as the paper's
    # scripts run it (--distill_loss_applied_to old_bgr).
    "cls": LossTerm(lambda m: OutputDistillation(m.temperature, name="cls"), "logits", "old+bg"),
    "enc": LossTerm(lambda m: FeatureDistance(m.feature_normalisation, name="enc"), "encoder"),
    "dec": LossTerm(lambda m: FeatureDistance(m.feature_normalisation, branch_axis=-2,
                                              name="dec"), "aspp"),
    "spkd": LossTerm(lambda m: SimilarityPreservingDistillation(
        divide_by=m.spkd_divide_by, name="spkd"), "encoder"),
    "spkd_avg": LossTerm(lambda m: SimilarityPreservingDistillation(
        spatial_sum=True, divide_by=m.spkd_divide_by, name="spkd_avg"), "encoder"),
    # PLOP: Local POD of the stage outputs and decoder features, and of the logits.
    "pod": LossTerm(lambda m: LocalPOD("features", _pod_maps(m), name="pod"), "pod"),
    "pod_logits": LossTerm(lambda m: LocalPOD("logits", _pod_maps(m), name="pod_logits"), "pod"),
}
# The feature maps POD compares (four stage outputs and the decoder features).
POD_FEATURE_MAPS = 5
PSEUDO_LABELLING = ("entropy",)


def _pod_maps(method: "Method") -> int:
  """What the reference divides POD by: its number of maps, the logits counted with pod_logits
  (a feature term weighted 0 still counts, as a pod_factor of 0 does there)."""
  return POD_FEATURE_MAPS + any(t.loss == "pod_logits" for t in method.distillation)

INITS = ("random", "background")
# Steps >= 1: the poly decay runs over the step itself (MiB; the KD paper's §5.2 and its LD2
# script) or over as many iterations as step 0 ran (the KD code's LD1 and encoderfixed_LD1
# scripts: --decay_steps 20000, the global step restored at 20000, 1000 iterations run, so the
# rate falls only from 5e-5 to 4.78e-5).
INCREMENTAL_DECAYS = ("step", "first_step")
# KD paper code options restricting the CE of steps >= 1 (spec §6): new-class pixels only, or
# old + new object classes without background.
CE_PIXEL_SELECTIONS = ("new", "objects")

# The KD paper's lambda_D (Eq. 1) is "experimentally tuned" and not reported, nor is T per
# scenario (1 to 1000). L_cls: weight 1, as its scripts (lambda_distillation 1 on the output).
# L_enc: weight 50 on the mean over elements, as the LD2 script (lambda_distillation 50 with
# tf.losses.mean_squared_error). L_dec has no released code: the same mean and weight as L_enc,
# the two being the same kind of per-element squared error. SPKD is bounded in [0, 4] whatever
# the feature size; weight 1. L_cls-T is printed without the T^2 factor, so its weight defaults
# to T^2, which keeps the soft-target gradient of the T = 1 term (Hinton et al.; the sweep in
# docs/METHODS.md).
KD_PAPER_WEIGHTS = {"cls": 1.0, "enc": 50.0, "dec": 50.0, "spkd": 1.0, "spkd_avg": 1.0}
KD_PAPER_TEMPERATURE = 2.0


def _kd(name, description, *terms, freeze="none", temperature=1.0, decay="step"):
  """A KD-paper record: CE over valid pixels (Eq. 2) + the given terms at the default weights
  (L_cls-T: T^2); `decay`: its steps' learning-rate horizon (INCREMENTAL_DECAYS) -- first_step
  for the methods the LD1 / encoderfixed_LD1 scripts run, step (the paper's text) otherwise."""
  scale = {"cls": temperature ** 2}
  return Method(name, description, "ce",
                tuple(Term(t, KD_PAPER_WEIGHTS[t] * scale.get(t, 1.0)) for t in terms),
                freeze=freeze, pixel_mean="valid", temperature=temperature,
                incremental_decay=decay)


T = KD_PAPER_TEMPERATURE
METHODS = {m.name: m for m in (
    # MiB paper: baselines and MiB (spec §4).
    Method("ft", "fine-tuning: plain cross-entropy on the current step's labels"),
    Method("joint", "offline upper bound: all classes and all training images in one step",
           offline=True),
    Method("lwf", "LwF: CE + output distillation re-normalised over old classes (x100)",
           distillation=(Term("kd", 100.0),)),
    Method("lwf-mc", "LwF-MC: multi-label BCE + sigmoid distillation to the old outputs "
           "(x C_old x 10)", "bce", (Term("bce_distill", 10.0),)),
    Method("ilt", "ILT: CE + output distillation (x100) + encoder-feature MSE (x100)",
           distillation=(Term("kd", 100.0), Term("feature_mse", 100.0))),
    Method("ewc", "EWC: CE + Fisher-weighted L2 to the previous weights (x500)",
           regularizer="ewc", regularizer_weight=REGULARIZER_WEIGHTS["ewc"]),
    Method("pi", "PI: CE + path-integral-weighted L2 to the previous weights (x500)",
           regularizer="pi", regularizer_weight=REGULARIZER_WEIGHTS["pi"]),
    Method("rw", "RW: CE + Riemannian-walk-weighted L2 to the previous weights (x100)",
           regularizer="rw", regularizer_weight=REGULARIZER_WEIGHTS["rw"]),
    Method("mib", "MiB: unbiased CE + unbiased KD (x10) + background-based init of new heads",
           "unce", (Term("ukd", 10.0),), init="background"),
    # MiB Table 2 ablation rows: LwF + unbiased CE; + unbiased KD; (+ init = mib).
    Method("mib-ce-only", "MiB ablation: unbiased CE + LwF's output distillation (x100)",
           "unce", (Term("kd", 100.0),)),
    Method("mib-ce-kd", "MiB ablation: unbiased CE + unbiased KD (x10), random init of new heads",
           "unce", (Term("ukd", 10.0),)),
    # KD paper (spec §6): CE over valid pixels + lambda_D * L_D, optional encoder freezing.
    _kd("kd-ft", "KD paper fine-tuning: CE over valid pixels only (LD1 with lambda 0)",
        decay="first_step"),
    _kd("kd-cls", "KD paper L_cls: CE + output distillation over all current classes (Eq. 3)",
        "cls", decay="first_step"),
    _kd("kd-cls-t", f"KD paper L_cls-T: L_cls with temperature (Eq. 5; T={T:g})", "cls",
        temperature=T, decay="first_step"),
    _kd("ef", "KD paper EF: encoder frozen from step 1 on, CE only", freeze="encoder",
        decay="first_step"),
    _kd("e2lf", "KD paper E2LF: first two ResNet layers (conv1, conv2_x) frozen, CE only",
        freeze="first-two"),
    _kd("ef+kd-cls", "KD paper EF + L_cls at T = 1 (the released encoderfixed_LD1 code)", "cls",
        freeze="encoder", decay="first_step"),
    _kd("ef+kd-cls-t", "KD paper EF + L_cls-T", "cls", freeze="encoder", temperature=T,
        decay="first_step"),
    _kd("e2lf+kd-cls-t", "KD paper E2LF + L_cls-T", "cls", freeze="first-two", temperature=T),
    _kd("kd-enc", "KD paper L_enc: squared Frobenius distance of encoder outputs (Eq. 6)", "enc"),
    _kd("kd-dec", "KD paper L_dec: the same on the four DeepLab-v2 ASPP branches, /4 (Eq. 7)",
        "dec"),
    _kd("ef+kd-dec", "KD paper EF + L_dec", "dec", freeze="encoder"),
    _kd("kd-spkd", "KD paper SPKD: similarity-preserving distillation of encoder outputs (Eq. 8)",
        "spkd"),
    _kd("kd-spkd-avg", "KD paper SPKD-avg: SPKD on spatially summed encoder outputs (Eq. 9)",
        "spkd_avg"),
    # PLOP (Douillard et al., CVPR 2021), the reference's --method PLOP (argparser.py:49-57):
    # CE on entropy pseudo-labels scaled by the adaptive factor, Local POD (features x0.01,
    # logits x0.0005, its VOC factors), MiB's background init. plop-ade: its ADE20K scripts'
    # factors (scripts/ade/plop_ade_100-50.sh: 0.001 and 0.00001).
    Method("plop", "PLOP: CE on entropy pseudo-labels x adaptive factor + Local POD (features "
           "x0.01, logits x0.0005) + background init", "ce",
           (Term("pod", 0.01), Term("pod_logits", 0.0005)), init="background",
           pseudo="entropy", adaptive_factor=True),
    Method("plop-ade", "PLOP with its ADE20K factors (features x0.001, logits x0.00001)", "ce",
           (Term("pod", 0.001), Term("pod_logits", 0.00001)), init="background",
           pseudo="entropy", adaptive_factor=True),
    Method("plop-pod", "PLOP ablation: Local POD and background init, plain CE (no "
           "pseudo-labels)", "ce", (Term("pod", 0.01), Term("pod_logits", 0.0005)),
           init="background"),
    Method("plop-pseudo", "PLOP ablation: entropy pseudo-labels x adaptive factor and "
           "background init, no POD", "ce", init="background", pseudo="entropy",
           adaptive_factor=True),
)}


class MethodError(ValueError):
  """An unknown method or an inconsistent method record."""


def get_method(name: str) -> Method:
  if name not in METHODS:
    raise MethodError(f"--method={name!r} is unknown; choose from: {', '.join(sorted(METHODS))}.")
  return METHODS[name]


# Fields added after run directories recorded their methods, recorded only when not at these
# defaults, so a run directory written before they existed still matches its method.
_RECORDED_IF_CHANGED = {"pseudo": None, "pseudo_threshold": 0.001, "pseudo_median": "reference",
                        "adaptive_factor": False}


def method_record(method: Method) -> dict:
  """What a run directory records of a method (method.json): its fields, those of
  _RECORDED_IF_CHANGED only when they differ from their defaults."""
  record = dataclasses.asdict(method)
  for name, default in _RECORDED_IF_CHANGED.items():
    if record[name] == default:
      del record[name]
  return record


def method_from_record(record: dict) -> Method:
  """The Method a run directory recorded (dataclasses.asdict of it) in its method.json; fields
  added since take their defaults."""
  fields = {f.name for f in dataclasses.fields(Method)}
  record = {k: v for k, v in record.items() if k in fields}
  record["distillation"] = tuple(Term(**term) for term in record.get("distillation", ()))
  return Method(**record)


def validate(method: Method) -> Method:
  """Raises MethodError naming the field (and the flag that sets it) if the record is unusable."""
  problems = []
  if method.classification not in CLASSIFICATION_LOSSES:
    problems.append(f"classification loss {method.classification!r} (--classification: "
                    f"{', '.join(CLASSIFICATION_LOSSES)})")
  for term in method.distillation:
    if term.loss not in LOSS_TERMS:
      problems.append(f"distillation term {term.loss!r} (--distill: {', '.join(LOSS_TERMS)})")
    elif term.pixels is not None and (LOSS_TERMS[term.loss].pixels is None
                                      or term.pixels not in PIXEL_SELECTIONS):
      problems.append(f"pixel selection {term.pixels!r} for {term.loss!r} (--distill_pixels "
                      f"applies to cls only: {', '.join(PIXEL_SELECTIONS)})")
  if method.init not in INITS:
    problems.append(f"init {method.init!r} (--init: {', '.join(INITS)})")
  if method.freeze not in FREEZE_MODES:
    problems.append(f"freeze {method.freeze!r} (--freeze: {', '.join(FREEZE_MODES)})")
  if method.regularizer is not None and method.regularizer not in REGULARIZERS:
    problems.append(f"regulariser {method.regularizer!r} (--regularizer: "
                    f"{', '.join(REGULARIZERS)})")
  if method.pixel_mean not in PIXEL_MEANS:
    problems.append(f"pixel_mean {method.pixel_mean!r} ({', '.join(PIXEL_MEANS)})")
  if method.ce_pixels not in (None,) + CE_PIXEL_SELECTIONS:
    problems.append(f"ce_pixels {method.ce_pixels!r} (--ce_pixels: "
                    f"{', '.join(CE_PIXEL_SELECTIONS)})")
  elif method.ce_pixels is not None and method.pixel_mean != "valid":
    problems.append("ce_pixels needs the valid-pixel mean (--pixel_mean=valid)")
  if method.temperature <= 0:
    problems.append(f"temperature {method.temperature} (must be > 0)")
  if method.feature_normalisation not in FEATURE_NORMALISATIONS:
    problems.append(f"feature_normalisation {method.feature_normalisation!r} "
                    f"({', '.join(FEATURE_NORMALISATIONS)})")
  if method.incremental_decay not in INCREMENTAL_DECAYS:
    problems.append(f"incremental_decay {method.incremental_decay!r} (--incremental_decay: "
                    f"{', '.join(INCREMENTAL_DECAYS)})")
  if method.spkd_divide_by not in SPKD_DIVISORS:
    problems.append(f"spkd_divide_by {method.spkd_divide_by!r} ({', '.join(SPKD_DIVISORS)})")
  if method.pseudo not in (None,) + PSEUDO_LABELLING:
    problems.append(f"pseudo {method.pseudo!r} (--pseudo: none, {', '.join(PSEUDO_LABELLING)})")
  if method.pseudo_median not in MEDIAN_RULES:
    problems.append(f"pseudo_median {method.pseudo_median!r} (--pseudo_median: "
                    f"{', '.join(MEDIAN_RULES)})")
  if method.adaptive_factor and method.pseudo is None:
    problems.append("adaptive_factor without pseudo-labels (--adaptive_factor needs --pseudo)")
  if method.pseudo is not None and method.ce_pixels is not None:
    problems.append("pseudo-labels with --ce_pixels (PLOP's CE covers every pixel)")
  if method.pseudo is not None and method.classification != "ce":
    problems.append(f"pseudo-labels with the {method.classification!r} loss (PLOP relabels the "
                    "targets of the plain CE: --classification=ce)")
  if problems:
    raise MethodError(f"method {method.name}: unknown or invalid " + "; ".join(problems) + ".")
  return method


def parse_weighted(entries: list[str], flag: str) -> list[tuple[str, float]]:
  """["enc:100", "kd"] -> [("enc", 100.0), ("kd", None)]; a bare name keeps its default weight."""
  parsed = []
  for entry in entries:
    name, _, weight = entry.partition(":")
    try:
      parsed.append((name.strip(), float(weight) if weight else None))
    except ValueError as error:
      raise MethodError(f"--{flag}={entry!r}: expected name:weight (e.g. enc:100).") from error
  return parsed


# Options that configure one kind of distillation term: flag -> the terms it changes.
TERM_OPTIONS = {"temperature": ("cls",), "kd_alpha": ("kd", "ukd"), "distill_pixels": ("cls",),
                "spkd_divide_by": ("spkd", "spkd_avg"), "feature_normalisation": ("enc", "dec")}


def _check_term_options(name: str, terms, **options) -> None:
  """MethodError for an option given to a method that has none of the terms it configures."""
  present = {term.loss for term in terms}
  for flag, value in options.items():
    affected = TERM_OPTIONS[flag]
    if value is None or present & set(affected):
      continue
    users = [m.name for m in METHODS.values()
             if {t.loss for t in m.distillation} & set(affected)]
    raise MethodError(
        f"--{flag} changes only the {'/'.join(affected)} term, which --method={name} does not "
        f"have (methods with it: {', '.join(users)}). Drop --{flag}, or add the term with "
        f"--distill={affected[0]}.")


# How a changed field is named in a customised method's name (the field's name otherwise).
_LABELS = {"temperature": "T", "kd_alpha": "alpha", "spkd_divide_by": "spkd",
           "feature_normalisation": "features", "incremental_decay": "decay",
           "pseudo_threshold": "threshold", "pseudo_median": "median",
           "adaptive_factor": "adaptive"}


def _regularizer_change(flag: str) -> tuple[str | None, float]:
  """--regularizer "ewc:500", "ewc" (its default weight) or "none" -> (kind, weight)."""
  (kind, weight), = parse_weighted([flag], "regularizer")
  if kind == "none":
    return None, 0.0
  return kind, REGULARIZER_WEIGHTS.get(kind, 0.0) if weight is None else weight


def _changed_terms(terms: tuple[Term, ...], distill: list[str], distill_pixels: str | None,
                   suffix: list[str]) -> list[Term]:
  """`terms` with --distill's "name:weight" entries applied (added, re-weighted, removed at 0;
  a bare name adds a term at the KD paper's weight) and --distill_pixels set on the terms that
  take it; each change named in `suffix`."""
  terms = list(terms)
  for name, weight in parse_weighted(distill, "distill"):
    position = next((i for i, t in enumerate(terms) if t.loss == name), None)
    if weight is None:
      weight = terms[position].weight if position is not None else KD_PAPER_WEIGHTS.get(name, 1.0)
    if position is None and weight:
      terms.append(Term(name, weight))
    elif position is not None and weight != terms[position].weight:
      terms[position] = dataclasses.replace(terms[position], weight=weight)
    else:
      continue
    suffix.append(f"{name}={weight:g}")
  terms = [t for t in terms if t.weight]
  if distill_pixels is not None:
    terms = [dataclasses.replace(t, pixels=distill_pixels)
             if t.loss in LOSS_TERMS and LOSS_TERMS[t.loss].pixels else t for t in terms]
    if any(t.pixels == distill_pixels for t in terms):
      suffix.append(f"pixels={distill_pixels}")
  return terms


def customize(method: Method, *, classification: str | None = None,
              distill: list[str] | None = None, freeze: str | None = None,
              init: str | None = None, regularizer: str | None = None,
              pixel_mean: str | None = None, temperature: float | None = None,
              kd_alpha: float | None = None, distill_pixels: str | None = None,
              spkd_divide_by: str | None = None, ce_pixels: str | None = None,
              feature_normalisation: str | None = None,
              incremental_decay: str | None = None, pseudo: str | None = None,
              pseudo_threshold: float | None = None, pseudo_median: str | None = None,
              adaptive_factor: bool | None = None) -> Method:
  """`method` changed by flags; the name records each change (e.g. mib+freeze=first-two+enc=100).

  distill: "name:weight" entries add a term or re-weight the method's own (weight 0 removes it;
  a bare name adds it at the KD paper's default weight). regularizer: "ewc:500", "none".
  A term option (temperature, kd_alpha, distill_pixels, spkd_divide_by, feature_normalisation)
  given for a method without the term it configures is an error (TERM_OPTIONS), not a rename.
  """
  changes: dict[str, Any] = {}
  suffix = []
  plain = {"classification": classification, "freeze": freeze, "init": init,
           "pixel_mean": pixel_mean, "ce_pixels": ce_pixels, "temperature": temperature,
           "kd_alpha": kd_alpha, "spkd_divide_by": spkd_divide_by,
           "feature_normalisation": feature_normalisation, "incremental_decay": incremental_decay,
           "pseudo_threshold": pseudo_threshold, "pseudo_median": pseudo_median,
           "adaptive_factor": adaptive_factor}
  if pseudo is not None:   # --pseudo=none removes PLOP's pseudo-labels (and their factor)
    plain["pseudo"] = None if pseudo == "none" else pseudo
    if pseudo == "none" and adaptive_factor is None:
      plain["adaptive_factor"] = False
  for field, value in plain.items():
    if field == "pseudo" and value != method.pseudo:
      changes[field] = value
      suffix.append(f"pseudo={value or 'none'}")
      continue
    if value is not None and value != getattr(method, field):
      changes[field] = value
      suffix.append(f"{_LABELS.get(field, field)}={value}")
  if regularizer is not None:
    kind, weight = _regularizer_change(regularizer)
    if (kind, weight) != (method.regularizer, method.regularizer_weight):
      changes.update(regularizer=kind, regularizer_weight=weight)
      suffix.append(f"reg={kind}:{weight:g}" if kind else "reg=none")
  terms = _changed_terms(method.distillation, distill or [], distill_pixels, suffix)
  if tuple(terms) != method.distillation:
    changes["distillation"] = tuple(terms)
  _check_term_options(method.name, terms, temperature=temperature, kd_alpha=kd_alpha,
                      distill_pixels=distill_pixels, spkd_divide_by=spkd_divide_by,
                      feature_normalisation=feature_normalisation)
  if not changes:
    return validate(method)
  return validate(dataclasses.replace(
      method, name="+".join([method.name] + suffix),
      description=f"{method.description}; changed by flags: {', '.join(suffix)}", **changes))


@dataclasses.dataclass(frozen=True)
class Distillation:
  """One ready-to-call distillation term of a step."""
  name: str
  weight: float
  endpoint: str
  pixels: str | None
  loss: keras.losses.Loss


@dataclasses.dataclass(frozen=True)
class Objective:
  """The loss terms of one step, ready to call: supervised + weighted distillation terms, the
  parameter regulariser (kind, weight) and what to freeze."""
  classification: keras.losses.Loss
  distillation: tuple[Distillation, ...]
  old_classes: int
  regularizer: str | None = None
  regularizer_weight: float = 0.0
  freeze: str = "none"
  classification_pixels: str | None = None   # pixel selection of the CE (None: the loss's own)
  classification_with_old_logits: bool = False  # y_true = {"labels", "old"} (LwF-MC disjoint)
  # PLOP: relabel with the old model where its entropy is below these per-class thresholds
  # (computed before the step, kdseg.run.stepping), and scale the CE by the adaptive factor.
  pseudo_thresholds: tuple[float, ...] | None = None
  adaptive_factor: bool = False


# Supervised losses that have a weak form (kdseg.losses.weak): CE and MiB's unbiased CE.
WEAK_FORMS = ("ce", "unce")


def check_weak(method: Method, weak: str) -> None:
  """MethodError if `method`'s supervised loss has no weak form (--weak_loss replaces it)."""
  if method.pseudo is not None:
    raise MethodError(f"--supervision with weak labels: method {method.name} relabels full "
                      "masks with the old model's pseudo-labels (PLOP), which weak labels "
                      "do not have; use it with full supervision.")
  if method.classification not in WEAK_FORMS or method.ce_pixels is not None:
    raise MethodError(
        f"--supervision with weak labels replaces the supervised loss by --weak_loss={weak}; "
        f"method {method.name} trains with {method.classification!r}"
        + (f" over --ce_pixels={method.ce_pixels}" if method.ce_pixels else "")
        + ", which has no weak form (methods whose loss has one: CE or unbiased CE).")


def build_objective(method: Method, old_classes: int, weak: str | None = None,
                    gamma: float = 1.0) -> Objective:
  """Objective of a step whose model already knew `old_classes` classes (0 at step 0).

  Step 0 (no old model) is plain CE with the method's pixel mean and no distillation or freezing;
  a regulariser still accumulates its state there (spec §4). `weak` (--weak_loss, with weak
  labels) replaces the supervised loss of every step, step 0 included; MiB's unbiased CE becomes
  the weak loss with background merged with the old classes.
  """
  validate(method)
  regularizer = (method.regularizer, method.regularizer_weight)
  if weak is not None:
    check_weak(method, weak)
    classification = weak_loss(weak, gamma, old_classes if method.classification == "unce"
                               else 0)
  if old_classes == 0:
    if weak is None:
      classification = CrossEntropy(pixel_mean=method.pixel_mean, name="ce")
    return Objective(classification, (), 0, *regularizer)
  distillation = []
  for term in method.distillation:
    spec = LOSS_TERMS[term.loss]
    distillation.append(Distillation(term.loss, term.weight, term.endpoint or spec.endpoint,
                                     (term.pixels or spec.pixels) if spec.pixels else None,
                                     spec.build(method)))
  if weak is None:
    classification = CLASSIFICATION_LOSSES[method.classification](old_classes, method.pixel_mean)
  return Objective(classification, tuple(distillation), old_classes, *regularizer,
                   freeze=method.freeze, classification_pixels=method.ce_pixels,
                   classification_with_old_logits=(method.classification in
                                                   CLASSIFICATION_WITH_OLD_LOGITS),
                   adaptive_factor=method.adaptive_factor)


def describe() -> str:
  """One line per named method: name, supervised loss, terms, freezing, regulariser, init."""
  lines = [f"{'method':15s} {'CE':5s} {'pixels':6s} {'distillation':26s} {'freeze':10s} "
           f"{'regulariser':11s} init"]
  for m in METHODS.values():
    terms = ", ".join(f"{t.loss} x{t.weight:g}" for t in m.distillation) or "-"
    if any(t.loss == "cls" for t in m.distillation) and m.temperature != 1.0:
      terms += f" (T={m.temperature:g})"
    if m.pseudo:
      terms += f" (+{m.pseudo} pseudo-labels)"
    regulariser = f"{m.regularizer} x{m.regularizer_weight:g}" if m.regularizer else "-"
    lines.append(f"{m.name:15s} {m.classification:5s} {m.pixel_mean:6s} {terms:26s} "
                 f"{m.freeze:10s} {regulariser:11s} {m.init}" + (" (offline)" if m.offline else ""))
  return "\n".join(lines)


if __name__ == "__main__":
  print(describe())
