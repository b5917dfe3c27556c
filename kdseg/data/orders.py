"""Class orders: which object classes come first. The task plan takes the classes in this order.

  dataset        the dataset's own id order (VOC's is alphabetical: the KD paper's "alphabetical
                 order"; ADE20K's is the benchmark's, the MiB paper's first order)
  alphabetical   sorted by class name
  frequency      most pixels in the training labels first (KD paper Tables 2, 6, 10; MSRC-v2)
  random[:SEED]  a seeded permutation (MiB paper's second ADE20K order), seed 0 by default
  a,b,c          an explicit order: every object class once, by name or id
  @FILE          the same, one class per line, or numpy's print of an id array ("[ 74  19 ...]")
  b, c           a dataset's named orders, defined per task: the MiB reference's second and third
                 ADE20K orders (100-50, 100-10, 50-50) and VOC's 19-1b (bottle last)
A dataset's named scenario (Cityscapes 'vehicles', 'non-driving') brings its own order.
"""
from __future__ import annotations


import numpy as np

from kdseg import fs
from kdseg.data.tasks import TaskError, TaskPlan, make_plan

NAMED_ORDERS = ("dataset", "alphabetical", "frequency", "random")


def class_order(spec: str, class_names: tuple[str, ...],
                train_pixel_counts: np.ndarray | None = None) -> tuple[int, ...]:
  """Object class ids (background excluded) in the order `spec` names (see the module doc).

  train_pixel_counts: [num_images, 256] pixels per class id of the training split (for
  'frequency').
  """
  spec = spec.strip()
  objects = list(range(1, len(class_names)))
  if spec == "dataset":
    return tuple(objects)
  if spec == "alphabetical":
    return tuple(sorted(objects, key=lambda c: (class_names[c].lower(), c)))
  if spec == "frequency":
    totals = np.asarray(train_pixel_counts).sum(axis=0)[objects]
    # Stable sort on -pixels: equal counts keep the dataset's order.
    return tuple(np.asarray(objects)[np.argsort(-totals, kind="stable")].tolist())
  if spec == "random" or spec.startswith("random:"):
    seed = spec.partition(":")[2] or "0"
    if not seed.isdigit():
      raise TaskError(f"--class_order={spec!r}: the seed after 'random:' must be an integer.")
    return tuple(np.random.default_rng(int(seed)).permutation(objects).tolist())
  if spec.startswith("@"):
    path = fs.absolute(spec[1:])
    if not fs.isfile(path):
      raise TaskError(f"--class_order={spec!r}: no such file {path} (one class per line).")
    with fs.open(path) as handle:
      text = handle.read()
    if text.lstrip().startswith("["):   # numpy's print of an id array
      entries = text.replace("[", " ").replace("]", " ").replace(",", " ").split()
    else:
      entries = [line.strip() for line in text.splitlines() if line.strip()]
  else:
    entries = [entry.strip() for entry in spec.split(",") if entry.strip()]
  return explicit_order(entries, class_names, f"--class_order={spec!r}")


def explicit_order(entries, class_names: tuple[str, ...], where: str) -> tuple[int, ...]:
  """Class names or ids -> ids; every object class exactly once."""
  by_name = {name: index for index, name in enumerate(class_names)}
  order = []
  for entry in entries:
    if entry.isdigit() and 0 < int(entry) < len(class_names):
      order.append(int(entry))
    elif entry in by_name and by_name[entry] != 0:
      order.append(by_name[entry])
    else:
      raise TaskError(f"{where}: {entry!r} is not an object class of this dataset; use "
                      f"one of {', '.join(NAMED_ORDERS)} or list the classes "
                      f"({', '.join(class_names[1:6])}, ...) by name or id 1..{len(class_names) - 1}.")
  missing = sorted(set(range(1, len(class_names))) - set(order))
  repeated = sorted({c for c in order if order.count(c) > 1})
  if missing or repeated:
    raise TaskError(f"{where} must list every object class once: missing "
                    f"{[class_names[c] for c in missing]}, repeated "
                    f"{[class_names[c] for c in repeated]}.")
  return tuple(order)


def task_plan(task: str, order_spec: str, class_names: tuple[str, ...],
              scenarios: dict[str, tuple[str, tuple[str, ...]]],
              train_pixel_counts: np.ndarray | None = None,
              named_orders: dict[str, dict[str, tuple[tuple[int, ...], ...]]] | None = None
              ) -> TaskPlan:
  """The plan of --task under --class_order; a dataset scenario name brings its own order, and
  a dataset's named order (`named_orders`, e.g. ADE20K's "b") its own classes per step."""
  if task in scenarios:
    if order_spec != "dataset":
      raise TaskError(f"--task={task} fixes its own class order; drop --class_order={order_spec}.")
    sizes, names = scenarios[task]
    return make_plan(sizes, explicit_order(names, class_names, f"scenario {task}"), name=task)
  named_orders = named_orders or {}
  if order_spec in named_orders:
    by_task = named_orders[order_spec]
    if task not in by_task:
      raise TaskError(f"--class_order={order_spec} is defined for tasks {', '.join(by_task)} of "
                      f"this dataset (the MiB reference's tasks.py), not for --task={task}.")
    steps = by_task[task]
    order = explicit_order([str(c) for step in steps for c in step if c != 0], class_names,
                           f"--class_order={order_spec}")
    plan = make_plan(task, order, name=f"{task}{order_spec}")
    if [set(s) for s in plan.steps] != [set(s) for s in steps]:
      raise TaskError(f"--class_order={order_spec}: its steps do not have the sizes of --task="
                      f"{task}.")
    return plan
  return make_plan(task, class_order(order_spec, class_names, train_pixel_counts))
