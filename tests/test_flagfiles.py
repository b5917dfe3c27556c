"""Every shipped flagfile parses (known flags, valid values) and names known methods."""
import glob
import os

from absl import flags
import numpy as np
import tensorflow as tf

from kdseg import config
from kdseg.data import ade20k, msrc, voc
from kdseg.data.datasets import TABLES
from kdseg.data.orders import task_plan
from kdseg.methods import METHODS

FLAGS = flags.FLAGS
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class FlagfileTest(tf.test.TestCase):

  def test_every_flagfile_parses_and_its_methods_resolve(self):
    paths = sorted(glob.glob(os.path.join(ROOT, "flags", "*.cfg")))
    self.assertNotEmpty(paths)
    self.addCleanup(os.chdir, os.getcwd())
    os.chdir(ROOT)  # nested --flagfile paths are relative to the repository root
    plans = {}
    for path in paths:
      FLAGS.unparse_flags()
      FLAGS(["kdseg.train", f"--flagfile={path}"])
      methods = config.resolve_methods()
      self.assertNotEmpty(methods, msg=path)
      if path.endswith("_methods.cfg"):   # the table: every named method, the demo's budget
        self.assertLen(methods, len(METHODS))
        self.assertEqual((FLAGS.epochs_incremental, FLAGS.task), (20, "15-1"))
      if os.path.basename(path).startswith("kd_"):
        self.assertEqual((FLAGS.head, FLAGS.iterations_per_class), ("v2", 1000), msg=path)
      names, scenarios, orders = TABLES[FLAGS.dataset]
      counts = np.arange(256, 0, -1)[None]  # frequency order = dataset order (boat last on MSRC)
      plans[os.path.basename(path)] = task_plan(FLAGS.task, FLAGS.class_order, names, scenarios,
                                                counts, orders)
    FLAGS.unparse_flags()
    # The papers' scenarios: steps and classes per step.
    self.assertEqual([len(s) for s in plans["kd_voc_10_5_5.cfg"].steps], [11, 5, 5])
    self.assertEqual(plans["kd_voc_10_1.cfg"].num_steps, 11)
    self.assertEqual([len(s) for s in plans["ade_100_10.cfg"].steps], [101] + [10] * 5)
    self.assertEqual(plans["ade_100_5.cfg"].num_steps, 11)
    self.assertEqual(plans["kd_msrc_20_1.cfg"].new_classes(1), (msrc.MSRC_CLASSES.index("boat"),))
    self.assertEqual([len(s) for s in plans["cityscapes_11_2.cfg"].steps], [12, 2, 2, 2, 2])
    self.assertEqual(plans["voc_15_1_disjoint.cfg"].num_steps, 6)
    # The reference's named second orders (tasks.py "50b", "100-10b", "19-1b").
    self.assertEqual(plans["ade_50_50_b.cfg"].steps, ade20k.ADE20K_ORDERS["b"]["50-50"])
    self.assertEqual(plans["ade_100_10_b.cfg"].new_classes(1), ade20k.ADE20K_ORDERS["b"]["100-10"][1])
    self.assertEqual(plans["voc_19_1b.cfg"].new_classes(1), (voc.VOC_CLASSES.index("bottle"),))

  def test_every_flagfile_says_how_to_run_it_what_to_expect_and_how_long(self):
    for path in sorted(glob.glob(os.path.join(ROOT, "flags", "*.cfg"))):
      with open(path) as handle:
        header = "".join(line for line in handle if line.startswith("#"))
      if os.path.basename(path).startswith("recipe_"):
        self.assertIn("included by", header, path)   # a recipe is not run on its own
        continue
      for field in ("# Run:     python -m kdseg.train --flagfile=flags/", "# Expect:  ",
                    "# Runtime: "):
        self.assertIn(field, header, path)


if __name__ == "__main__":
  tf.test.main()
