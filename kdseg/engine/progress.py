"""Progress lines with an ETA for non-terminal logs."""
from __future__ import annotations

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
