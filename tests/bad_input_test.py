"""Each bad input gets one clear line, a non-zero exit from the CLIs, and an untouched input."""

import glob
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np
from absl.testing import absltest, parameterized

from ssl_ct.data import formats, intensity, sources, zarr_writer
from ssl_ct.errors import InputError
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(*args):
  return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO, timeout=120)


class BadInputTest(parameterized.TestCase):
  def setUp(self):
    super().setUp()
    self.tmp = tempfile.mkdtemp()

  def _open_error(self, spec):
    with self.assertRaises(InputError) as ctx:
      vol = formats.open_volume(spec)
      intensity.intensity_range(vol)
      vol.read()
    message = str(ctx.exception)
    self.assertNotIn("\n", message)
    return message

  def test_missing_file(self):
    self.assertIn("no volume at", self._open_error(os.path.join(self.tmp, "nope.zarr")))

  @parameterized.named_parameters(
    ("2d", np.zeros((4, 5), np.uint8), "expected a 3D volume"),
    ("4d", np.zeros((2, 3, 4, 5), np.uint8), "expected a 3D volume"),
    ("empty", np.zeros((0, 5, 5), np.uint8), "empty"),
    ("bool", np.zeros((3, 4, 5), bool), "unsupported dtype"),
    ("complex", np.zeros((3, 4, 5), np.complex64), "unsupported dtype"),
    ("nan", np.where(np.arange(60).reshape(3, 4, 5) == 7, np.nan, 1.0).astype(np.float32), "NaN"),
    ("constant", np.full((6, 7, 8), 42, np.uint16), "constant"),
  )
  def test_bad_array(self, array, expected):
    path = os.path.join(self.tmp, "bad.npy")
    np.save(path, array)
    before = helpers.tree_digest(path)
    self.assertIn(expected, self._open_error(path))
    self.assertEqual(helpers.tree_digest(path), before)

  def test_corrupt_zarr_chunk(self):
    spec = helpers.write_in_format(np.arange(17 * 23 * 29, dtype=np.uint16).reshape(17, 23, 29), self.tmp, "zarr2")
    chunk = sorted(glob.glob(os.path.join(spec, "1.*")))[0]
    with open(chunk, "wb") as f:
      f.write(b"garbage, not a blosc chunk")
    before = helpers.tree_digest(spec)
    message = self._open_error(spec)
    self.assertIn("corrupt", message)
    self.assertEqual(helpers.tree_digest(spec), before)

  def test_truncated_hdf5(self):
    spec = helpers.write_in_format(np.ones((8, 8, 8), np.uint8), self.tmp, "hdf5-dxchange")
    with open(spec, "r+b") as f:
      f.truncate(300)
    self.assertIn("cannot open", self._open_error(spec))

  def test_ambiguous_hdf5(self):
    path = os.path.join(self.tmp, "two.h5")
    with h5py.File(path, "w") as f:
      f["a"] = np.zeros((3, 3, 3))
      f["b"] = np.zeros((3, 3, 3))
    message = self._open_error(path)
    self.assertIn("/a, /b", message)
    self.assertIn(f"{path}:/path/to/dataset", message)

  def test_unknown_format_and_empty_folder(self):
    path = os.path.join(self.tmp, "scan.raw")
    open(path, "wb").close()
    self.assertIn("not a volume format", self._open_error(path))
    empty = os.path.join(self.tmp, "empty")
    os.makedirs(empty)
    with self.assertRaisesRegex(InputError, "holds no volumes"):
      sources.open_volumes(empty)
    with self.assertRaisesRegex(InputError, "matches no files"):
      sources.open_volumes(os.path.join(self.tmp, "*.zarr"))

  def test_writer_refuses_to_overwrite_and_leaves_no_partial_output(self):
    out = os.path.join(self.tmp, "out.zarr")
    zarr_writer.write_zarr3(np.ones((4, 4, 4), np.uint8), out)
    before = helpers.tree_digest(out)
    with self.assertRaisesRegex(InputError, "already exists"):
      zarr_writer.write_zarr3(np.zeros((4, 4, 4), np.uint8), out)
    self.assertEqual(helpers.tree_digest(out), before)
    with self.assertRaises(InputError):  # fails mid-write: the source is corrupt
      bad = helpers.write_in_format(np.ones((8, 8, 8), np.uint8), self.tmp, "zarr2")
      for chunk in glob.glob(os.path.join(bad, "0.*")):
        with open(chunk, "wb") as f:
          f.write(b"x")
      zarr_writer.write_zarr3(formats.open_volume(bad), os.path.join(self.tmp, "never.zarr"))
    self.assertEqual(sorted(os.listdir(self.tmp)), ["out.zarr", "vol_zarr2.zarr"])

  def test_convert_cli_errors_in_one_line(self):
    missing = run_cli("ssl_ct.convert", os.path.join(self.tmp, "missing.h5"), os.path.join(self.tmp, "o.zarr"))
    self.assertEqual(missing.returncode, 2)
    self.assertRegex(missing.stderr, r"^error: no volume at .*missing\.h5.*\n$")
    spec = helpers.write_in_format(np.arange(512, dtype=np.uint8).reshape(8, 8, 8), self.tmp, "npy")
    out = os.path.join(self.tmp, "o.zarr")
    self.assertEqual(run_cli("ssl_ct.convert", "--quiet", spec, out).returncode, 0)
    again = run_cli("ssl_ct.convert", "--quiet", spec, out)
    self.assertEqual(again.returncode, 2)
    self.assertIn("already exists", again.stderr)
    self.assertEqual(run_cli("ssl_ct.convert", "--quiet", "--overwrite", spec, out).returncode, 0)
    np.testing.assert_array_equal(formats.open_volume(out).read(), np.load(spec))


if __name__ == "__main__":
  absltest.main()
