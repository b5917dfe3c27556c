"""Lists what --dataset, --setting, --task and --class_order accept:

  python -m kdseg.data
"""
from __future__ import annotations

from kdseg.data import splits
from kdseg.data.datasets import READERS, ROOTS, TABLES
from kdseg.data.orders import NAMED_ORDERS


def describe() -> str:
  lines = ["--dataset (object classes; --data_root)"]
  for name in READERS:
    classes, scenarios, orders = TABLES[name]
    lines.append(f"  {name:11s} {len(classes) - 1:3d} classes; {ROOTS[name]}")
    for scenario, (sizes, _) in scenarios.items():
      lines.append(f"  {'':11s} --task={scenario} (steps {sizes}, its own class order)")
    for order, by_task in orders.items():
      lines.append(f"  {'':11s} --class_order={order} for --task={', '.join(by_task)}")
  lines.append("--setting (image selection; old classes in new images)")
  for setting in splits.SETTINGS.values():
    old = "keep their labels" if setting.keep_old_labels else "background"
    lines.append(f"  {setting.name:21s} {setting.selection:11s} {old}")
  lines += ["--task: A-B (19-1, 15-1, 100-10: A classes, then steps of B), A-Bs (15-5s: B steps "
            "of one class), A-B-C... (10-5-5: exact sizes), or a dataset's named scenario",
            f"--class_order: {', '.join(NAMED_ORDERS)}[:SEED], a dataset's named order (above), "
            "a comma list of classes, or @FILE",
            "--void_label: " + ", ".join(splits.VOID_LABELS)]
  return "\n".join(lines)


if __name__ == "__main__":
  print(describe())
