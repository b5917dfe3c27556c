"""The README's first lines are the two commands of the brief, and CI runs the second one."""
import os

import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ReadmeTest(tf.test.TestCase):

  def test_first_lines_are_the_demo_and_test_commands(self):
    with open(os.path.join(ROOT, "README.md")) as handle:
      lines = handle.read().splitlines()
    demo, tests = lines[0].strip(), lines[1].strip()
    self.assertIn("pip install -e .", demo)
    self.assertTrue(demo.endswith("python -m kdseg.train --flagfile=flags/shapes_15_1.cfg"))
    self.assertIn('pip install -e ".[test]"', tests)
    self.assertIn("pytest", tests)
    self.assertTrue(os.path.isfile(os.path.join(ROOT, "flags", "shapes_15_1.cfg")))
    with open(os.path.join(ROOT, ".ci", "run")) as handle:
      self.assertIn("sed -n '2p' README.md", handle.read())


if __name__ == "__main__":
  tf.test.main()
