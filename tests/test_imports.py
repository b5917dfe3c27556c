"""kdseg's modules import each other without a circle, counting imports inside functions too
(a circle hidden in a function body is still one: two modules that cannot be read apart)."""
import ast
import os

import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def import_graph(package: str = "kdseg") -> dict[str, set[str]]:
  """module -> the kdseg modules it imports anywhere in its text."""
  modules = {}
  for folder, _, files in os.walk(os.path.join(ROOT, package)):
    for name in files:
      if name.endswith(".py"):
        path = os.path.join(folder, name)
        module = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
        modules[module.removesuffix(".__init__")] = path
  graph = {}
  for module, path in modules.items():
    with open(path) as handle:
      tree = ast.parse(handle.read())
    imported = set()
    for node in ast.walk(tree):
      if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(package):
        for alias in node.names:
          candidate = f"{node.module}.{alias.name}"
          imported.add(candidate if candidate in modules else node.module)
      elif isinstance(node, ast.Import):
        imported.update(a.name for a in node.names if a.name.startswith(package))
    graph[module] = {m for m in imported if m in modules and m != module}
  return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
  """The strongly connected components of more than one module (Tarjan)."""
  index, low, stack, on_stack, found = {}, {}, [], set(), []

  def visit(module):
    index[module] = low[module] = len(index)
    stack.append(module)
    on_stack.add(module)
    for other in graph[module]:
      if other not in index:
        visit(other)
        low[module] = min(low[module], low[other])
      elif other in on_stack:
        low[module] = min(low[module], index[other])
    if low[module] == index[module]:
      component = []
      while True:
        other = stack.pop()
        on_stack.discard(other)
        component.append(other)
        if other == module:
          break
      if len(component) > 1:
        found.append(sorted(component))

  for module in graph:
    if module not in index:
      visit(module)
  return found


class ImportGraphTest(tf.test.TestCase):

  def test_the_checker_finds_a_circle(self):
    self.assertEqual(circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}), [["a", "b", "c"]])

  def test_no_import_circle(self):
    graph = import_graph()
    self.assertIn("kdseg.data.builders", graph["kdseg.data.records"])   # imports are seen
    self.assertEqual(circles(graph), [])


if __name__ == "__main__":
  tf.test.main()
