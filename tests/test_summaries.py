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


if __name__ == "__main__":
  tf.test.main()
