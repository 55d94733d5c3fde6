"""The Colab notebooks run top to bottom (tiny sizes), so they cannot rot."""

import os

import nbformat
from absl.testing import absltest, parameterized
from nbclient import NotebookClient

COLAB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "colab")


class NotebooksTest(parameterized.TestCase):
  @parameterized.parameters(("explore_volumes.ipynb",), ("rotation_localization.ipynb",), ("sorting_localization.ipynb",))
  def test_runs_without_error(self, name):
    with open(os.path.join(COLAB, name)) as f:
      notebook = nbformat.read(f, as_version=4)
    env = {"SSL_CT_NOTEBOOK_TINY": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}  # inline, as in Colab
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
      NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": COLAB}}).execute()
    finally:
      for k, v in saved.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    self.assertTrue(any(o.get("output_type") == "display_data" for o in outputs))  # the figures were drawn
    self.assertFalse(any(o.get("output_type") == "error" for o in outputs))


if __name__ == "__main__":
  absltest.main()
