"""Is a loss term's weight stable at a learning rate? The largest curvature of each term of a step.

  python tools/curvature.py --run_dir=runs/shapes_15_1 --method=kd-enc --step=1

Builds the model at the start of --step as training would (chained from the finished step
--step - 1, which is also the old model), takes a training batch of that step, and estimates, for
each weighted term of the method's objective, the largest eigenvalue h of its Hessian with
respect to the trainable weights (power iteration on Hessian-vector products). SGD with momentum
beta on a quadratic of curvature h is stable only while lr * h < 2 (1 + beta): a term above that
bound makes the weights oscillate with growing amplitude in its stiffest direction. The prior-
focused penalties need no estimate: EWC/PI/RW's curvature is 2 x weight x the largest normalised
importance (1 per tensor, 2 for RW's Fisher + score).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import json  # noqa: E402

from absl import app, flags  # noqa: E402
import tensorflow as tf  # noqa: E402

from kdseg.config import EvaluationConfig  # noqa: E402
from kdseg.data import pipeline  # noqa: E402
from kdseg.losses.distillation import pixel_selection  # noqa: E402
from kdseg.methods import build_objective  # noqa: E402
from kdseg.run.experiment import open_experiment, step_images, train_labels  # noqa: E402
from kdseg.run.stepping import initial_model  # noqa: E402
from kdseg.rundir import RunDir  # noqa: E402

flags.DEFINE_string("run_dir", None, "A run directory with the finished step --step - 1.")
flags.DEFINE_string("method", None, "The method (its folder name in the run directory).")
flags.DEFINE_integer("step", 1, "The step whose start is examined (>= 1).", lower_bound=1)
flags.DEFINE_integer("iterations", 30, "Power iterations.", lower_bound=1)
flags.DEFINE_integer("seed", 0, "Seed of the batch and the start vector.")
FLAGS = flags.FLAGS


def largest_eigenvalue(loss_fn, variables, iterations: int, seed: int) -> float:
  """Power iteration on v -> H v, H the Hessian of loss_fn() w.r.t. `variables`."""
  vector = [tf.random.stateless_normal(v.shape, seed=[seed, i]) for i, v in enumerate(variables)]

  def normalised(parts):
    norm = tf.sqrt(tf.add_n([tf.reduce_sum(p * p) for p in parts]))
    return [p / norm for p in parts], norm

  vector, _ = normalised(vector)
  value = 0.0
  for _ in range(iterations):
    with tf.GradientTape() as outer:
      with tf.GradientTape() as inner:
        loss = loss_fn()
      gradients = inner.gradient(loss, variables, unconnected_gradients="zero")
      projection = tf.add_n([tf.reduce_sum(g * v) for g, v in zip(gradients, vector)])
    product = outer.gradient(projection, variables, unconnected_gradients="zero")
    value = float(tf.add_n([tf.reduce_sum(p * v) for p, v in zip(product, vector)]))
    vector, _ = normalised(product)
  return value


def main(argv):
  del argv
  run_dir = RunDir(FLAGS.run_dir)
  recorded = run_dir.require_run()
  method = run_dir.load_method(FLAGS.method)
  with open(run_dir.method_json(method.name)) as handle:
    record = json.load(handle)
  learning_rate, momentum = record["lr_incremental"], record["momentum"]
  experiment = open_experiment(run_dir, recorded, method, EvaluationConfig(), verbose=0)
  plan, step = recorded.plan, FLAGS.step
  ids = step_images(experiment, plan, step)["train"]
  dataset = pipeline.train_dataset(
      experiment.source, experiment.source.split("train").select(ids),
      train_labels(experiment, plan, step), record["batch_size"], record["crop_size"],
      record["min_scale"], record["max_scale"], FLAGS.seed, record.get("augment", "scale_crop"))
  images, labels = next(iter(dataset))
  model, old_model = initial_model(experiment, method, step)
  objective = build_objective(method, plan.num_classes(step - 1))
  old_outputs = old_model(images, training=False)
  variables = model.trainable_variables

  def classification():
    return objective.classification(labels, model(images, training=True)["logits"])

  terms = {objective.classification.name: classification}
  for term in objective.distillation:
    def distillation(term=term):
      weight = (None if term.pixels is None else
                pixel_selection(labels, term.pixels, objective.old_classes))
      return term.weight * term.loss(old_outputs[term.endpoint],
                                     model(images, training=True)[term.endpoint],
                                     sample_weight=weight)
    terms[f"{term.weight:g} x {term.name}"] = distillation
  bound = 2 * (1 + momentum)
  print(f"{method.name}, start of step {step}, lr {learning_rate:g}, momentum {momentum:g}: "
        f"stable while lr x h < {bound:g}")
  for name, loss_fn in terms.items():
    curvature = largest_eigenvalue(loss_fn, variables, FLAGS.iterations, FLAGS.seed)
    product = learning_rate * curvature
    print(f"  {name:24s} h = {curvature:12.4g}   lr x h = {product:10.4g}   "
          f"{'stable' if product < bound else 'UNSTABLE'}")
  if method.regularizer:
    peak = 2.0 if method.regularizer == "rw" else 1.0
    curvature = 2 * method.regularizer_weight * peak
    print(f"  {method.regularizer_weight:g} x {method.regularizer:17s} h = {curvature:12.4g}   "
          f"lr x h = {learning_rate * curvature:10.4g}   "
          f"{'stable' if learning_rate * curvature < bound else 'UNSTABLE'} (2 x weight x "
          "the largest normalised importance)")


if __name__ == "__main__":
  flags.mark_flags_as_required(["run_dir", "method"])
  app.run(main)
