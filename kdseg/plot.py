"""PNG plots of a run: mIoU after each step, one line per method (matplotlib, no display)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the file-only backend)

from kdseg import atomic  # noqa: E402
from kdseg.report import final_columns  # noqa: E402


def plot_miou_per_step(records_by_method: dict[str, list[dict]], path: str,
                       title: str = "") -> str:
  """Two panels: mIoU of step 0's classes (what is forgotten) and of all classes seen so far.

  records_by_method: method -> its step records (report.load_records). A method evaluated at
  one step only (joint) is drawn as a marker at that step. Returns `path`.
  """
  figure, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
  for method, records in records_by_method.items():
    if not records:
      continue
    steps = [record["step"] for record in records]
    base = [_percent(record["miou_per_step"]["step 0"]) for record in records]
    everything = [_percent(record["miou_all"]) for record in records]
    style = {"marker": "o", "linestyle": "-" if len(records) > 1 else "none"}
    axes[0].plot(steps, base, label=method, **style)
    axes[1].plot(steps, everything, label=method, **style)
  finals = [records[-1] for records in records_by_method.values() if records]
  base_label = final_columns(max(finals, key=lambda r: r["step"]))[0] if finals else "step 0"
  axes[0].set_title(f"classes {base_label} (learned at step 0)")
  axes[1].set_title("all classes seen so far")
  for axis in axes:
    axis.set_xlabel("step")
    axis.grid(alpha=0.3)
    axis.xaxis.get_major_locator().set_params(integer=True)
  axes[0].set_ylabel("mIoU (%)")
  axes[1].legend(loc="best", fontsize="small")
  if title:
    figure.suptitle(title)
  figure.tight_layout()
  atomic.write_png(path, lambda out: figure.savefig(out, format="png", dpi=100))
  plt.close(figure)
  return path


def _percent(value: float | None) -> float:
  return float("nan") if value is None else 100 * value
