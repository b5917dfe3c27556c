"""TensorBoard events: a resumed step's repeated iterations are purged."""
import glob
import os

import tensorflow as tf

from kdseg.engine.summaries import purge_after


def _steps(directory, tag):
  steps = []
  for path in sorted(glob.glob(os.path.join(directory, "events.out.tfevents.*"))):
    for event in tf.compat.v1.train.summary_iterator(path):
      steps += [event.step for value in event.summary.value if value.tag == tag]
  return steps


class PurgeTest(tf.test.TestCase):

  def test_events_after_the_resumed_iteration_are_dropped(self):
    directory = self.get_temp_dir()
    writer = tf.summary.create_file_writer(directory)
    with writer.as_default():
      for step in range(1, 11):   # a run killed after iteration 10, last checkpoint at 6
        tf.summary.scalar("train/total", float(step), step=step)
    writer.close()
    self.assertEqual(purge_after(directory, 6), 4)
    writer = tf.summary.create_file_writer(directory)   # the resumed run logs 7..10 again
    with writer.as_default():
      for step in range(7, 11):
        tf.summary.scalar("train/total", float(step), step=step)
    writer.close()
    self.assertEqual(sorted(_steps(directory, "train/total")), list(range(1, 11)))
    self.assertEqual(purge_after(directory, 10), 0)
    self.assertEqual(glob.glob(os.path.join(directory, "*.purging")), [])

  def test_a_file_cut_short_keeps_the_events_before_the_cut(self):
    directory = os.path.join(self.get_temp_dir(), "cut")
    writer = tf.summary.create_file_writer(directory)
    with writer.as_default():
      for step in range(1, 6):
        tf.summary.scalar("train/total", float(step), step=step)
    writer.close()
    path, = glob.glob(os.path.join(directory, "events.out.tfevents.*"))
    with open(path, "rb") as handle:
      data = handle.read()
    with open(path, "wb") as handle:
      handle.write(data[:-7])   # a kill mid-flush: the last record cut
    purge_after(directory, 3)   # the resumed run: no error, the readable events up to 3 kept
    self.assertEqual(_steps(directory, "train/total"), [1, 2, 3])
    with open(path, "wb") as handle:
      handle.write(data[:-7])
    self.assertEqual(purge_after(directory, 10), 0)   # no event above 10; the cut record goes
    self.assertEqual(_steps(directory, "train/total"), [1, 2, 3, 4])


if __name__ == "__main__":
  tf.test.main()
