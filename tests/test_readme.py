"""The README's first lines are the two commands of the brief (in its commands block), and CI
runs the second one; every flagfile's header says what it runs and what to expect."""
import glob
import os
import subprocess

import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class ReadmeTest(tf.test.TestCase):

  def test_first_lines_are_the_demo_and_test_commands(self):
    with open(os.path.join(ROOT, "README.md")) as handle:
      lines = handle.read().splitlines()
    self.assertTrue(lines[0].startswith("<!-- commands"))
    self.assertEqual(lines[3], "<!-- /commands -->")
    demo, tests = lines[1].strip(), lines[2].strip()
    self.assertIn("pip install -e .", demo)
    self.assertTrue(demo.endswith("python -m kdseg.train --flagfile=flags/shapes_15_1.cfg"))
    self.assertIn('pip install -e ".[test]"', tests)
    self.assertIn("pytest", tests)
    self.assertTrue(os.path.isfile(os.path.join(ROOT, "flags", "shapes_15_1.cfg")))
    # .ci/run extracts exactly that line from the block.
    script = open(os.path.join(ROOT, ".ci", "run")).read()
    extract = script.split("test_command=$(", 1)[1].split(")\n", 1)[0]
    found = subprocess.run(["bash", "-c", extract], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.strip()
    self.assertEqual(found, tests)

  def test_readme_is_a_front_door_and_its_links_exist(self):
    with open(os.path.join(ROOT, "README.md")) as handle:
      text = handle.read()
    self.assertLessEqual(len(text.splitlines()), 160)
    self.assertNotIn("@@", text)   # no placeholder left
    for link in ("docs/USAGE.md", "docs/METHODS.md", "docs/DATASETS.md", "docs/RELIABILITY.md",
                 "CHANGELOG.md"):
      self.assertIn(link, text)
      self.assertTrue(os.path.isfile(os.path.join(ROOT, link)), msg=link)

  def test_every_scenario_flagfile_says_its_command(self):
    for path in sorted(glob.glob(os.path.join(ROOT, "flags", "*.cfg"))):
      with open(path) as handle:
        header = [line for line in handle.read().splitlines() if line.startswith("#")]
      self.assertTrue(header, msg=f"{path}: no header comment")


if __name__ == "__main__":
  tf.test.main()
