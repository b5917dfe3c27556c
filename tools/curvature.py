"""Is a loss term's weight stable at a learning rate? The largest curvature of each term of a step.

  python tools/curvature.py --run_dir=runs/shapes_15_1 --method=kd-enc --step=1

Builds the model at the start of --step as training would (chained from the finished step
--step - 1, which is also the old model), takes a training batch of that step, and estimates, for
each weighted term of the method's objective, the largest eigenvalue h of its Hessian with
respect to the trainable weights (power iteration on Hessian-vector products by central
differences of the gradient). SGD with momentum
beta on a quadratic of curvature h is stable only while lr * h < 2 (1 + beta), with Nesterov
momentum while lr * h < 2 (1 + beta) / (1 + 2 beta) (kdseg.engine.optimizer.stability_bound): a
term above that bound makes the weights oscillate with growing amplitude in its stiffest
direction. The prior-
focused penalties need no estimate: EWC/PI/RW's curvature is 2 x weight x the largest normalised
importance (1 per tensor, 2 for RW's Fisher + score).
"""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from absl import app, flags  # noqa: E402
import tensorflow as tf  # noqa: E402

from kdseg import config, fs  # noqa: E402  (config: --run_dir, --method, --step, --seed)
from kdseg.config import EvaluationConfig  # noqa: E402
from kdseg.data import pipeline  # noqa: E402
from kdseg.engine.optimizer import stability_bound  # noqa: E402
from kdseg.losses.distillation import pixel_selection  # noqa: E402
from kdseg.methods import build_objective  # noqa: E402
from kdseg.run.experiment import open_experiment, step_images, train_labels  # noqa: E402
from kdseg.run.stepping import initial_model  # noqa: E402
from kdseg.rundir import RunDir  # noqa: E402

flags.DEFINE_integer("iterations", 30, "Power iterations.", lower_bound=1)
FLAGS = config.FLAGS


def largest_eigenvalue(loss_fn, variables, iterations: int, seed: int,
                       epsilon: float = 1e-3) -> float:
  """The largest (most positive) eigenvalue of H, the Hessian of loss_fn() w.r.t. `variables`:
  power iteration on v -> H v, each product by central differences of the gradient,
  (g(theta + eps v) - g(theta - eps v)) / (2 eps) (the models' custom layers have no
  second-order gradients). Power iteration finds the eigenvalue of largest magnitude; if that
  one is negative, a second run on H - lambda I finds the most positive one."""

  @tf.function
  def gradient():
    with tf.GradientTape() as tape:
      loss = loss_fn()
    # None for weights the term does not reach (e.g. the head, for L_enc): zeros. (Keras 3
    # variables make unconnected_gradients=ZERO fail in TF 2.21.)
    return [tf.zeros_like(v) if g is None else g
            for g, v in zip(tape.gradient(loss, variables), variables)]

  def gradient_at(vector, shift):
    for variable, direction in zip(variables, vector):
      variable.assign_add(shift * direction)
    gradients = gradient()
    for variable, direction in zip(variables, vector):
      variable.assign_sub(shift * direction)
    return gradients

  def normalised(parts):
    norm = tf.sqrt(tf.add_n([tf.reduce_sum(p * p) for p in parts]))
    return [p / norm for p in parts]

  def power(offset):
    vector = normalised([tf.random.stateless_normal(v.shape, seed=[seed, i])
                         for i, v in enumerate(variables)])
    value = 0.0
    for _ in range(iterations):
      plus, minus = gradient_at(vector, epsilon), gradient_at(vector, -epsilon)
      product = [(p - m) / (2 * epsilon) - offset * v for p, m, v in zip(plus, minus, vector)]
      value = float(tf.add_n([tf.reduce_sum(p * v) for p, v in zip(product, vector)]))
      vector = normalised(product)
    return value + offset

  value = power(0.0)
  return value if value >= 0 else power(value)


def main(argv):
  del argv
  step = config.step_flag("tools/curvature.py")
  if not FLAGS.run_dir or step < 1 or len(FLAGS.method) != 1:
    raise SystemExit("tools/curvature.py needs --run_dir, one --method and --step >= 1.")
  run_dir = RunDir(FLAGS.run_dir)
  recorded = run_dir.require_run()
  method = run_dir.load_method(FLAGS.method[0])
  record = fs.read_json(run_dir.method_json(method.name))
  learning_rate, momentum = record["lr_incremental"], record["momentum"]
  if "weak" in fs.read_json(run_dir.experiment_json):
      raise SystemExit("tools/curvature.py measures runs trained on full labels; this run trained "
                       "on weak labels (--supervision), whose loss and batches it does not build.")
  experiment = open_experiment(run_dir, recorded, method, EvaluationConfig(), verbose=0)
  plan = recorded.plan
  ids = step_images(experiment, plan, step)["train"]
  dataset = pipeline.train_dataset(
      experiment.source, experiment.source.split("train").select(ids),
      train_labels(experiment, plan, step), record["batch_size"], record["crop_size"],
      record["min_scale"], record["max_scale"], FLAGS.seed, record.get("augment", "scale_crop"),
      step=step)
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
  # Run directories from before parity round 3 trained with Keras' (plain-momentum) SGD.
  nesterov = record.get("optimizer", "sgd") == "sgd-nesterov"
  bound = stability_bound(momentum, nesterov)
  print(f"{method.name}, start of step {step}, lr {learning_rate:g}, "
        f"{'Nesterov ' if nesterov else ''}momentum {momentum:g}: stable while lr x h < "
        f"{bound:.3g}")
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
  app.run(main)
