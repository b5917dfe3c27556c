"""Metrics against hand-computed confusion matrices (spec §5)."""
import numpy as np
import tensorflow as tf

from kdseg.metrics import confusion_update, scores


class ConfusionTest(tf.test.TestCase):

  def test_counts_and_ignore(self):
    labels = tf.constant([[0, 1, 255], [2, 2, 1]])
    predictions = tf.constant([[0, 2, 1], [2, 0, 1]])
    self.assertAllEqual(confusion_update(labels, predictions, 3),
                        [[1, 0, 0], [0, 1, 1], [1, 0, 1]])


class ScoresTest(tf.test.TestCase):

  def test_hand_computed(self):
    # rows = ground truth. Class 2 is never in the ground truth but is predicted once.
    confusion = np.array([[3, 1, 1],
                          [1, 2, 0],
                          [0, 0, 0]])
    result = scores(confusion)
    self.assertAllClose(result.overall_accuracy, 5 / 8)
    # IoU: bg 3 / (5 + 4 - 3) = 1/2; class 1: 2 / (3 + 3 - 2) = 1/2; class 2 absent.
    self.assertAllClose(result.class_iou[:2], [0.5, 0.5], atol=1e-5)
    self.assertIsNone(result.class_iou[2])
    self.assertAllClose(result.mean_iou, 0.5, atol=1e-5)  # over present classes only
    self.assertAllClose(result.mean_accuracy, (3 / 5 + 2 / 3) / 2, atol=1e-5)
    self.assertAllClose(result.mean_iou_of([1, 2]), 0.5, atol=1e-5)
    self.assertIsNone(result.mean_iou_of([2]))


if __name__ == "__main__":
  tf.test.main()
