"""Every shipped flagfile parses (known flags, valid values) and names known methods."""
import glob
import os

from absl import flags
import tensorflow as tf

from kdseg import train  # noqa: F401  (defines the flags)
from kdseg.methods import METHODS

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FlagfileTest(tf.test.TestCase):

  def test_every_flagfile_parses_and_its_methods_resolve(self):
    paths = sorted(glob.glob(os.path.join(ROOT, "flags", "*.cfg")))
    self.assertNotEmpty(paths)
    self.addCleanup(os.chdir, os.getcwd())
    os.chdir(ROOT)  # nested --flagfile paths are relative to the repository root
    for path in paths:
      FLAGS.unparse_flags()
      FLAGS(["kdseg.train", f"--flagfile={path}"])
      methods = train.resolve_methods()
      self.assertNotEmpty(methods, msg=path)
      if path.endswith("_methods.cfg"):   # the table: every named method, the demo's budget
        self.assertLen(methods, len(METHODS))
        self.assertEqual((FLAGS.epochs_incremental, FLAGS.task), (20, "15-1"))
      if os.path.basename(path).startswith("kd_"):
        self.assertEqual((FLAGS.head, FLAGS.iterations_per_class), ("v2", 1000), msg=path)
    FLAGS.unparse_flags()


if __name__ == "__main__":
  tf.test.main()
