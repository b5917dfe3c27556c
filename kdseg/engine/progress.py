"""Progress lines with an ETA for non-terminal logs, and where a run's wall time went."""
from __future__ import annotations

import collections
import contextlib
import time

PROGRESS_SECONDS = 60.0


class Eta:
  """Units (iterations, batches) done of `total`, the rate since the start, and when a log line
  is due: for logs that are not a terminal (nohup, Slurm), where a live progress bar is noise."""

  def __init__(self, total: int, done: int, every: float | None = None):
    self.total, self.start_iteration = total, done
    self.every = PROGRESS_SECONDS if every is None else every
    self.start = self.last = time.time()

  def due(self, iteration: int) -> bool:
    now = time.time()
    if now - self.last < self.every or iteration >= self.total:
      return False
    self.last = now
    return True

  def line(self, iteration: int, unit: str = "iteration") -> str:
    elapsed = time.time() - self.start
    rate = elapsed / max(1, iteration - self.start_iteration)
    left = rate * (self.total - iteration)
    return (f"{unit} {iteration}/{self.total} ({rate:.2f} s/{unit}, ETA "
            f"{int(left // 60)}:{int(left % 60):02d})")


# A run's wall time by phase (kdseg.train prints and records it): "data" (reading or generating
# the dataset, presence scans, splits), "training", "evaluation", "reporting" (tables, plots).
PHASES = ("data", "training", "evaluation", "reporting")
_phase_seconds: collections.Counter = collections.Counter()
_active: list[str] = []


@contextlib.contextmanager
def phase(name: str):
  """Counts the enclosed wall time as `name` (a phase inside another counts as the inner one)."""
  start = time.time()
  outer = _active[-1] if _active else None
  _active.append(name)
  try:
    yield
  finally:
    _active.pop()
    seconds = time.time() - start
    _phase_seconds[name] += seconds
    if outer is not None:
      _phase_seconds[outer] -= seconds


def phase_seconds(reset: bool = False) -> dict[str, float]:
  """Seconds per phase since the last reset."""
  found = {name: round(_phase_seconds[name], 1) for name in PHASES if name in _phase_seconds}
  if reset:
    _phase_seconds.clear()
  return found
