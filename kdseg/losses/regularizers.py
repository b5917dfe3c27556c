"""Prior-focused regularisers EWC, PI (path integral) and RW (Riemannian walk), spec §4.

One `ImportanceRegularizer` lives for one learning step. It keeps, per trainable parameter
tensor theta, running statistics updated every iteration from the gradient g of the step's loss
(before weight decay and before the penalty's own gradient). At the end of the step `finish()`
returns the finished state, which the trainer saves beside the step's weights; the next step's
regulariser receives it as `previous`, together with the previous step's parameters theta_old,
and adds the penalty  sum_theta importance * (theta - theta_old)^2  (times the method's weight).
Parameters new at the step (the new classifier head) have no previous state and no penalty.

  EWC: F <- alpha g^2 + (1 - alpha) F, starting at ones at step 0; at step t >= 1 the old
       parameters' F continues from the previous step's un-normalised F (new parameters start
       at ones), as the reference's EWC and RW copy the loaded Fisher.
                                                            importance = norm(F_old)
  PI:  delta += g (theta_prev - theta); at the end
       omega = max(0, delta / ((theta - theta_start)^2 + 1e-20)) + omega_old.
                                                            importance = norm(omega_old)
  RW:  F as EWC; on iterations 0, score_every, 2 score_every, ...
       s += g (theta_prev - theta) / (0.5 F (theta - theta_prev)^2 + 1e-8), theta_prev <- theta,
       with F as it was BEFORE this iteration's update (the reference scores, then updates F);
       at the end s <- max(s, 0), averaged with the previous step's score.
                                                   importance = norm(F_old) + norm(s_old)
norm(M) = (M - min M) / (max M - min M + 1e-8) per tensor (on by default), alpha = 0.9.
State lives in non-trainable variables, so it is checkpointed with a step in progress.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

# Each kind's weight when --regularizer names none, and the weight of the ewc, pi and rw methods
# (docs/METHODS.md, "Why lr 0.003").
DEFAULT_WEIGHTS = {"ewc": 500.0, "pi": 500.0, "rw": 100.0}
KINDS = tuple(DEFAULT_WEIGHTS)
# Which finished statistics each kind saves and needs from the previous step.
STATE_KEYS = {"ewc": ("fisher",), "pi": ("omega",), "rw": ("fisher", "score")}


def normalise(values: np.ndarray) -> np.ndarray:
  values = np.asarray(values, np.float32)
  return (values - values.min()) / (values.max() - values.min() + 1e-8)


class ImportanceRegularizer(tf.Module):
  """State and penalty of one step for `kind` in KINDS.

  variables: (path, variable) pairs of the model's trainable parameters.
  previous:  the finished state of step t-1 ({"fisher/<path>": array, ...}) or None at step 0.
  old_parameters: path -> theta_old (the finished step t-1 weights); needed with `previous`.
  """

  def __init__(self, kind: str, variables: Sequence[tuple[str, tf.Variable]],
               previous: Mapping[str, np.ndarray] | None = None,
               old_parameters: Mapping[str, np.ndarray] | None = None, alpha: float = 0.9,
               normalize: bool = True, score_every: int = 10, name: str | None = None):
    super().__init__(name=name or kind)
    if kind not in KINDS:
      raise ValueError(f"unknown regulariser {kind!r}; choose one of {KINDS}")
    self.kind, self.alpha, self.score_every = kind, float(alpha), int(score_every)
    self.paths = [path for path, _ in variables]
    self.parameters = [variable for _, variable in variables]

    def state(initial):
      return [tf.Variable(initial(path, v), trainable=False,
                          aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
              for path, v in variables]

    def running_fisher(path, variable):
      carried = (previous or {}).get(f"fisher/{path}")
      return tf.ones(variable.shape, variable.dtype) if carried is None else np.asarray(carried)

    if kind in ("ewc", "rw"):
      self.fisher = state(running_fisher)
    if kind in ("pi", "rw"):
      self.accumulated = state(lambda _, v: tf.zeros(v.shape, v.dtype))  # delta (PI) or s (RW)
      self.previous_values = state(lambda _, v: tf.identity(v))         # theta_prev
    if kind == "pi":
      self.start_values = state(lambda _, v: tf.identity(v))            # theta_start
    self.count = tf.Variable(0, dtype=tf.int64, trainable=False,
                             aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)

    # Penalty constants: importance and theta_old of the parameters the previous step had.
    self.previous = dict(previous or {})
    self.penalised_paths, self._importance, self._old = [], [], []
    if previous is not None:
      for path, variable in variables:
        if path not in (old_parameters or {}):
          continue  # new at this step
        missing = [f"{key}/{path}" for key in STATE_KEYS[kind]
                   if f"{key}/{path}" not in previous]
        if missing:
          raise ValueError(f"the previous step's {kind} state lacks {missing[0]}; it was saved "
                           "by another method or model.")
        importance = sum((normalise(previous[f"{key}/{path}"]) if normalize
                          else np.asarray(previous[f"{key}/{path}"], np.float32))
                         for key in STATE_KEYS[kind])
        self.penalised_paths.append(path)
        # Variables, not constants: ResNet-101 would embed twice its 170 MB in the graph.
        self._importance.append(tf.Variable(importance, trainable=False, dtype=variable.dtype))
        self._old.append(tf.Variable(np.asarray(old_parameters[path]), trainable=False,
                                     dtype=variable.dtype))
    self._penalised = [self.parameters[self.paths.index(p)] for p in self.penalised_paths]

  def penalty(self) -> tf.Tensor:
    """sum over previous parameters of importance * (theta - theta_old)^2 (0 at step 0)."""
    if not self._penalised:
      return tf.constant(0.0)
    return tf.add_n([tf.reduce_sum(importance * tf.square(variable - old))
                     for variable, importance, old in zip(self._penalised, self._importance,
                                                           self._old)])

  def update(self, gradients: Sequence[tf.Tensor]) -> None:
    """One iteration's statistics update from the loss gradients (one per variable)."""
    score_now = tf.equal(self.count % self.score_every, 0)
    for index, (variable, gradient) in enumerate(zip(self.parameters, gradients)):
      gradient = tf.zeros_like(variable) if gradient is None else tf.convert_to_tensor(gradient)
      value = tf.convert_to_tensor(variable)
      if self.kind == "pi":
        previous = self.previous_values[index]
        self.accumulated[index].assign_add(gradient * (previous - value))
        previous.assign(value)
      if self.kind == "rw":  # the score first, with the Fisher of the previous iteration
        previous = self.previous_values[index]
        step = previous - value
        score = gradient * step / (0.5 * self.fisher[index] * tf.square(step) + 1e-8)
        self.accumulated[index].assign_add(tf.where(score_now, score, tf.zeros_like(score)))
        previous.assign(tf.where(score_now, value, previous))
      if self.kind in ("ewc", "rw"):
        fisher = self.fisher[index]
        fisher.assign(self.alpha * tf.square(gradient) + (1 - self.alpha) * fisher)
    self.count.assign_add(1)

  def finish(self) -> dict[str, np.ndarray]:
    """The finished state of this step, to be saved and handed to the next step."""
    state = {}
    for index, path in enumerate(self.paths):
      if self.kind in ("ewc", "rw"):
        state[f"fisher/{path}"] = self.fisher[index].numpy()
      if self.kind == "pi":
        moved = np.square(self.parameters[index].numpy() - self.start_values[index].numpy())
        omega = np.maximum(0.0, self.accumulated[index].numpy() / (moved + 1e-20))
        if f"omega/{path}" in self.previous:
          omega = omega + self.previous[f"omega/{path}"]
        state[f"omega/{path}"] = omega.astype(np.float32)
      if self.kind == "rw":
        score = np.maximum(self.accumulated[index].numpy(), 0.0)
        if f"score/{path}" in self.previous:
          score = 0.5 * (score + self.previous[f"score/{path}"])
        state[f"score/{path}"] = score.astype(np.float32)
    return state
