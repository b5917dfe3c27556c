"""tools/curvature.py: the largest Hessian eigenvalue by power iteration on finite differences."""
import numpy as np
import tensorflow as tf

from tools.curvature import largest_eigenvalue


class LargestEigenvalueTest(tf.test.TestCase):

  def test_quadratic_with_known_curvatures(self):
    # loss = 0.5 sum a_i w_i^2 + 0.5 b v^2: Hessian diag(a, b), largest 7.
    weights = tf.Variable([1.0, -2.0, 0.5])
    other = tf.Variable(3.0)
    curvatures = tf.constant([0.5, 7.0, 2.0])

    def loss():
      return 0.5 * tf.reduce_sum(curvatures * weights ** 2) + 0.5 * 1.5 * other ** 2

    self.assertAllClose(largest_eigenvalue(loss, [weights, other], 60, 0), 7.0, rtol=1e-3)
    self.assertAllClose(weights, [1.0, -2.0, 0.5])   # the weights are left as they were

  def test_the_most_positive_eigenvalue_of_an_indefinite_hessian(self):
    weights = tf.Variable([1.0, 1.0])
    curvatures = tf.constant([-9.0, 4.0])   # the largest magnitude is negative

    def loss():
      return 0.5 * tf.reduce_sum(curvatures * weights ** 2)

    self.assertAllClose(largest_eigenvalue(loss, [weights], 80, 1), 4.0, rtol=1e-2)


if __name__ == "__main__":
  tf.test.main()
