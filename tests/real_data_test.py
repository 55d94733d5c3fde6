"""The real micro-CT scans of shared/data: every format opens, converts losslessly, stays untouched.

Skipped with the reason when the folder is absent (a user's clone does not have it).
"""

import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np
from absl.testing import absltest, parameterized

from ssl_ct import convert
from ssl_ct.data import formats, intensity, sources
from tests import helpers

SCANS = {  # file -> (format, shape) as documented in shared/data/README.md
  "fly_150x256x256.tif": ("tiff", (150, 256, 256)),
  "mouse_MRL_MPJ_slices": ("tiff-stack", (167, 136, 136)),
  "mouse_B6129PF1_J_dxchange.h5": ("hdf5", (166, 250, 250)),
  "mouse_NZO_HlLtJ.zarr": ("tensorstore", (166, 250, 250)),
  "mouse_C57BL6_J_nexus.nxs": ("hdf5", (147, 170, 170)),
  "embryo_256x256x256.npy": ("npy", (256, 256, 256)),
}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@unittest.skipUnless(os.path.isdir(helpers.REAL_DATA), helpers.REAL_DATA_MISSING)
class RealDataTest(parameterized.TestCase):
  @parameterized.parameters(*SCANS)
  def test_opens_and_converts_losslessly(self, name):
    path = os.path.join(helpers.REAL_DATA, name)
    before = helpers.tree_digest(path)
    volume = formats.open_volume(path)
    self.assertEqual((volume.format_name, volume.shape, volume.dtype), (*SCANS[name], np.uint8))
    low, high = intensity.intensity_range(volume)
    self.assertLess(low, high)
    out = os.path.join(tempfile.mkdtemp(), "scan.zarr")
    _, _, out_bytes = convert.convert(path, out, progress=False)
    self.assertGreater(out_bytes, 0)
    converted = formats.open_volume(out)
    np.testing.assert_array_equal(converted.read(), volume.read())
    for axis in range(3):
      np.testing.assert_array_equal(converted.slice(axis, volume.shape[axis] // 3), volume.slice(axis, volume.shape[axis] // 3))
    self.assertEqual(helpers.tree_digest(path), before)

  def test_folder_of_real_scans_is_one_dataset(self):
    names = sorted(v.name for v in sources.open_volumes(helpers.REAL_DATA))
    self.assertEqual(names, sorted(formats.volume_name(n) for n in SCANS))

  def test_main_prepares_the_real_folder(self):
    workdir = tempfile.mkdtemp()
    result = subprocess.run(
      [
        sys.executable,
        "-m",
        "ssl_ct.main",
        "--config=configs/rotation_xenopus.py:tiny",
        f"--workdir={workdir}",
        "--mode=prepare",
        f"--config.data.path={helpers.REAL_DATA}",
      ],
      capture_output=True,
      text=True,
      cwd=REPO,
      timeout=300,
    )
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertIn("prepared 6 volumes (0 with ground truth)", result.stdout)
    self.assertFalse(os.path.exists(os.path.join(workdir, "data")))  # no synthetic set when data.path is given


if __name__ == "__main__":
  absltest.main()
