"""The one training loop, for every method: a tf.function iteration under a tf.distribute strategy.

Words: a *step* is a learning step (the classes it adds); an *iteration* is one optimizer update;
an *epoch* is one pass over a step's images. StepTrainer trains one learning step.

The loop reads an Objective (kdseg.methods) and never a method's name. Losses come from Keras
Loss objects, which already divide by the number of replicas, so per-replica values are summed.
Weight decay is the references' coupled L2 (PyTorch SGD weight_decay; the KD code's explicit
1e-4 * tf.nn.l2_loss): 0.5 * wd * ||theta||^2 added to the loss over the decayed trainable
variables (every one, or the convolution kernels only as the KD code), i.e. wd * theta added to
each gradient. The optimizer is kdseg.engine.optimizer.ReferenceSGD (the references' momentum
buffer of raw gradients; Nesterov for the MiB recipe).
"""
from __future__ import annotations

import dataclasses
import math
import sys
import time

import keras
import tensorflow as tf

from kdseg.engine.optimizer import ReferenceSGD
from kdseg.engine.progress import Eta
from kdseg.losses import pseudo
from kdseg.losses.distillation import pixel_selection
from kdseg.losses.regularizers import ImportanceRegularizer
from kdseg.methods import Objective


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Length and learning rate of one step.

  By default the step runs `epochs` passes over its images (MiB). With `iterations` > 0 it runs
  exactly that many iterations instead (KD paper: |classes of the step| x 1000), the last pass
  cut short. The learning rate decays polynomially to `end_learning_rate` over the step, or over
  `decay_iterations` if > 0 (the KD code's FT / L_cls / EF steps >= 1 decay over step 0's 20000
  iterations while running 1000: their rate stays near its start).
  """
  learning_rate: float
  epochs: int
  iterations_per_epoch: int
  momentum: float = 0.9
  weight_decay: float = 1e-4
  poly_power: float = 0.9
  end_learning_rate: float = 0.0
  iterations: int = 0
  nesterov: bool = True
  decay_iterations: int = 0
  weight_decay_on: str = "all"     # "all" trainable variables or the convolution "kernels"

  @property
  def total_iterations(self) -> int:
    return self.iterations if self.iterations > 0 else self.epochs * self.iterations_per_epoch

  @property
  def num_epochs(self) -> int:
    """Passes over the data, the last possibly partial."""
    if self.iterations > 0:
      return -(-self.iterations // max(1, self.iterations_per_epoch))
    return self.epochs


def learning_rate_schedule(schedule: Schedule) -> keras.optimizers.schedules.LearningRateSchedule:
  """Polynomial decay over the step (MiB/DeepLab 'poly' policy)."""
  horizon = schedule.decay_iterations or schedule.total_iterations
  return keras.optimizers.schedules.PolynomialDecay(
      schedule.learning_rate, decay_steps=max(1, horizon),
      end_learning_rate=schedule.end_learning_rate, power=schedule.poly_power)


def make_optimizer(schedule: Schedule, loss_scaling: bool = False) -> keras.optimizers.Optimizer:
  """The references' SGD with momentum (Nesterov or not) on the step's poly schedule; with
  dynamic loss scaling for float16."""
  optimizer = ReferenceSGD(learning_rate=learning_rate_schedule(schedule),
                           momentum=schedule.momentum, nesterov=schedule.nesterov)
  return keras.optimizers.LossScaleOptimizer(optimizer) if loss_scaling else optimizer


WEIGHT_DECAY_ON = ("all", "kernels")


def decayed_variables(variables, on: str) -> list:
  """The variables weight decay applies to: all, or the convolution kernels only (the KD code
  decays the variables named 'weights': every convolution, the classifier's too; not biases nor
  BN's gamma / beta: LTTM/IL-SemSegm codes/LD1/network.py:53-55)."""
  if on not in WEIGHT_DECAY_ON:
    raise ValueError(f"--weight_decay_on={on!r}; choose one of {', '.join(WEIGHT_DECAY_ON)}.")
  return list(variables) if on == "all" else [v for v in variables if v.name == "kernel"]


class TrainingDivergedError(ArithmeticError):
  """The loss of a step became NaN or infinite."""


class StepTrainer:
  """Trains `model` for one learning step; `old_model` (frozen, inference mode) or None.

  Per iteration: the loss terms of the Objective give the gradient g; a parameter regulariser
  (EWC/PI/RW) updates its statistics from g summed over replicas; weight decay and the
  regulariser's penalty add their own gradients; the optimizer applies the sum.
  """

  def __init__(self, strategy: tf.distribute.Strategy, model, old_model, objective: Objective,
               optimizer: keras.optimizers.Optimizer, weight_decay: float,
               jit_compile: bool = False, regularizer: ImportanceRegularizer | None = None,
               weight_decay_on: str = "all"):
    self.strategy = strategy
    self.model = model
    self.old_model = old_model
    self.objective = objective
    self.optimizer = optimizer
    self.weight_decay = weight_decay
    self.regularizer = regularizer
    self.variables = model.trainable_variables
    self.decayed = decayed_variables(self.variables, weight_decay_on)
    if not optimizer.built:
      # Slots created inside the first tf.function call are initialised under a tf.cond that
      # MirroredStrategy cannot run ("You must feed a value for placeholder tensor"): create
      # them now, in the strategy's scope.
      with strategy.scope():
        optimizer.build(self.variables)
    self.term_names = ([objective.classification.name] +
                       [term.name for term in objective.distillation] + ["weight_decay"] +
                       ([objective.regularizer] if regularizer is not None else []))
    self._compute = (tf.function(self._losses_and_gradients, jit_compile=True) if jit_compile
                     else self._losses_and_gradients)
    self._iteration = tf.function(self._distributed_iteration)

  def _losses_and_gradients(self, images, labels):
    """The loss terms of the Objective and the gradients of their (loss-scaled) sum.

    The part of an iteration that XLA compiles (--jit_compile): forward of both models, losses,
    backward. Cross-replica work and the optimizer stay outside the compiled function.
    """
    objective = self.objective
    # Weak supervision: {"labels": sparse map, "classes": U_x}, all of it for the weak loss.
    targets = labels
    labels = labels["labels"] if isinstance(labels, dict) else labels
    old_outputs = None if self.old_model is None else self.old_model(images, training=False)
    with tf.GradientTape() as tape:
      outputs = self.model(images, training=True)
      ce_weight = (None if objective.classification_pixels is None else pixel_selection(
          labels, objective.classification_pixels, objective.old_classes))
      if objective.pseudo_thresholds is not None:   # PLOP (kdseg.losses.pseudo)
        targets, factor = pseudo.relabel(
            labels, tf.stop_gradient(old_outputs["logits"]),
            tf.constant(objective.pseudo_thresholds, tf.float32),
            outputs["logits"].shape[-1], objective.old_classes)
        if objective.adaptive_factor:
          ce_weight = tf.broadcast_to(factor[:, None, None], tf.shape(targets))
      if objective.classification_with_old_logits:
        targets = {"labels": labels, "old": tf.stop_gradient(old_outputs["logits"])}
      terms = {objective.classification.name: objective.classification(
          targets, outputs["logits"], sample_weight=ce_weight)}
      for term in objective.distillation:
        sample_weight = (None if term.pixels is None else
                         pixel_selection(labels, term.pixels, objective.old_classes))
        terms[term.name] = term.weight * term.loss(
            tf.nest.map_structure(tf.stop_gradient, old_outputs[term.endpoint]),
            outputs[term.endpoint],
            sample_weight=sample_weight)
      # mixed_float16: LossScaleOptimizer scales the loss (other optimizers return it as is).
      scaled_loss = self.optimizer.scale_loss(tf.add_n(list(terms.values())))
    gradients = [tf.zeros_like(v) if g is None else g
                 for g, v in zip(tape.gradient(scaled_loss, self.variables), self.variables)]
    return terms, gradients

  def _replica_iteration(self, images, labels):
    objective = self.objective
    replicas = self.strategy.num_replicas_in_sync
    terms, scaled_gradients = self._compute(images, labels)
    scale = self.optimizer.scale_loss(tf.constant(1.0))
    if self.regularizer is not None:  # statistics from the loss gradient of the whole batch
      gradients = [g / scale for g in scaled_gradients]
      if replicas > 1:
        gradients = tf.distribute.get_replica_context().all_reduce(
            tf.distribute.ReduceOp.SUM, gradients)
      if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
        # An overflowing float16 iteration is skipped by the optimizer: skip its statistics too.
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in gradients])
        tf.cond(finite, lambda: self.regularizer.update(gradients) or tf.constant(True),
                lambda: tf.constant(False))
      else:
        self.regularizer.update(gradients)
    with tf.GradientTape() as penalty_tape:
      squared_norm = tf.add_n([tf.constant(0.0)] +
                              [tf.reduce_sum(tf.square(v)) for v in self.decayed])
      terms["weight_decay"] = 0.5 * self.weight_decay * squared_norm / replicas
      penalty = terms["weight_decay"]
      if self.regularizer is not None:
        terms[objective.regularizer] = (objective.regularizer_weight *
                                        self.regularizer.penalty() / replicas)
        penalty = penalty + terms[objective.regularizer]
    penalty_gradients = penalty_tape.gradient(penalty, self.variables)
    self.optimizer.apply_gradients(zip(
        [g if p is None else g + scale * p   # None: a variable weight decay leaves out
         for g, p in zip(scaled_gradients, penalty_gradients)], self.variables))
    return terms

  def _distributed_iteration(self, batch):
    per_replica = self.strategy.run(self._replica_iteration, args=batch)
    terms = {name: self.strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None)
             for name, value in per_replica.items()}
    terms["total"] = tf.add_n(list(terms.values()))
    return terms

  def train(self, dataset, schedule: Schedule, epoch: tf.Variable, on_epoch_end,
            writer: tf.summary.SummaryWriter | None, log_every: int, verbose: int,
            iteration_offset: int = 0, on_checkpoint=None,
            checkpoint_seconds: float = 0.0) -> dict[str, float]:
    """Runs the remaining iterations (from `epoch` and the optimizer's iteration count); returns
    the last epoch's mean loss terms.

    dataset: a tf.data.Dataset of global batches reused every epoch, or
    make(first_epoch, skip_batches, input_context) -> the data of epochs first_epoch .. the
    last, one after the other, of one input pipeline, in per-replica batches, without the first
    epoch's first skip_batches (global) batches (kdseg.data.pipeline.train_dataset), so a step
    resumed from a checkpoint saved inside an epoch goes on with the batch after it; each worker
    of a cluster builds its own shard. It is built once per call: epoch ends are counted here.
    on_checkpoint: called every `checkpoint_seconds` (> 0) between epoch ends; the saved state
    (epoch, optimizer iterations) says where to resume.
    """
    # Counted on the host from here on: batches consumed. (Under float16 loss scaling an update
    # skipped for a non-finite gradient counts here but not in optimizer.iterations.)
    iteration = int(self.optimizer.iterations.numpy())
    first_epoch = int(epoch.numpy())
    first_skip = max(0, iteration - first_epoch * schedule.iterations_per_epoch)
    if callable(dataset):
      batches = iter(self.strategy.distribute_datasets_from_function(
          lambda context: dataset(first_epoch, first_skip, context)))

      def epoch_batches(epoch_index, skip):
        for _, batch in zip(range(schedule.iterations_per_epoch - skip), batches):
          yield batch
    else:
      def epoch_batches(epoch_index, skip):
        yield from self.strategy.experimental_distribute_dataset(dataset.skip(skip))
    means = {}
    log = _IterationLog(writer, log_every, iteration_offset, verbose, schedule, self.optimizer)
    saves = _CheckpointTimer(on_checkpoint, checkpoint_seconds)
    for epoch_index in range(first_epoch, schedule.num_epochs):
      skip = max(0, iteration - epoch_index * schedule.iterations_per_epoch)
      log.start_epoch()
      sums, count, start = {}, 0, time.time()
      for batch in epoch_batches(epoch_index, skip):
        if iteration >= schedule.total_iterations:
          break  # an iteration budget (Schedule.iterations) ends inside the last pass
        terms = self._iteration(batch)
        iteration += 1
        # The one host read every iteration: a NaN must stop the step before a save can write
        # NaN weights as its checkpoint (a scalar the iteration computed anyway). The other
        # values are read only when logged.
        total = float(terms["total"])
        if not math.isfinite(total):
          raise TrainingDivergedError(
              f"the loss became {total} at iteration {iteration} "
              f"(terms: {', '.join(f'{k}={float(v):.4g}' for k, v in terms.items())}). The "
              "step was not saved as finished; earlier steps are untouched. Lower the learning "
              "rate (--lr / --lr_incremental, in a new --run_dir: this one records the current "
              "flags) or the weight of the exploding term (--distill / --regularizer, which "
              "trains under a new method name).")
        count += 1
        for name, value in terms.items():
          sums[name] = sums.get(name, 0.0) + value
        log.iteration(iteration, count, epoch_index, terms, total)
        saves.maybe_save()   # inside the epoch: `epoch` still names it
      means = {name: float(value) / max(count, 1) for name, value in sums.items()}
      epoch.assign(epoch_index + 1)
      on_epoch_end()
      saves.saved()
      if verbose:
        print(f"  epoch {epoch_index + 1}/{schedule.num_epochs}: " +
              " ".join(f"{k}={v:.4f}" for k, v in means.items()) +
              f" ({time.time() - start:.1f}s)", flush=True)
    return means


class _IterationLog:
  """TensorBoard scalars every `log_every` iterations (1, 1 + N, ...: even a step shorter than N
  iterations is logged); on a terminal a live bar, in a log file (nohup, Slurm) a line with the
  iteration and an ETA every PROGRESS_SECONDS. Reads the learning rate only when it writes."""

  def __init__(self, writer, log_every: int, offset: int, verbose: int, schedule: Schedule,
               optimizer):
    self.writer, self.log_every, self.offset, self.verbose = writer, log_every, offset, verbose
    self.schedule, self.optimizer = schedule, optimizer
    self.show_bar = bool(verbose) and sys.stdout.isatty()
    self.eta = Eta(schedule.total_iterations, int(optimizer.iterations.numpy()))
    self.progress = None

  def start_epoch(self):
    self.progress = keras.utils.Progbar(self.schedule.iterations_per_epoch,
                                        verbose=int(self.show_bar), stateful_metrics=["lr"])

  def iteration(self, iteration: int, count: int, epoch_index: int, terms: dict, total: float):
    if self.writer is not None and (iteration - 1) % self.log_every == 0:
      with self.writer.as_default(step=self.offset + iteration):
        for name, value in terms.items():
          tf.summary.scalar(f"train/{name}", value)
        tf.summary.scalar("train/learning_rate", self._learning_rate())
    if self.show_bar:
      self.progress.update(count, [(name, float(value)) for name, value in terms.items()] +
                           [("lr", self._learning_rate())])
    elif self.verbose and self.eta.due(iteration):
      print(f"  {self.eta.line(iteration)}, epoch {epoch_index + 1}/{self.schedule.num_epochs}, "
            f"total={total:.4f}", flush=True)

  def _learning_rate(self) -> float:
    return float(self.optimizer.learning_rate.numpy())


class _CheckpointTimer:
  """Calls `save` when `seconds` (> 0) have passed since the last save (epoch ends count)."""

  def __init__(self, save, seconds: float):
    self.save, self.seconds, self.last = save, seconds, time.time()

  def maybe_save(self):
    if self.save is not None and self.seconds > 0 and time.time() - self.last >= self.seconds:
      self.save()
      self.saved()

  def saved(self):
    self.last = time.time()
