"""Every format round-trips: same voxels, slices along every axis, boxes, downsampled views."""

import os
import tempfile

import numpy as np
from absl.testing import absltest, parameterized

from ssl_ct.data import formats, sources, volume
from tests import helpers

SHAPE = (17, 23, 29)  # not cubic, not a multiple of any chunk size


def _reference_downsample(array, factor):
  """Block means by explicit loops over blocks (partial edge blocks average what they hold)."""
  out = np.zeros([-(-n // factor) for n in array.shape])
  for idx in np.ndindex(*out.shape):
    block = array[tuple(slice(i * factor, (i + 1) * factor) for i in idx)]
    out[idx] = block.astype(np.float64).mean()
  return out


class FormatsTest(parameterized.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.tmp = tempfile.mkdtemp()
    rng = np.random.default_rng(0)
    cls.arrays = {
      "uint8": rng.integers(0, 255, SHAPE, dtype=np.uint8),
      "uint16": rng.integers(0, 65535, SHAPE, dtype=np.uint16),
      "float32": rng.normal(size=SHAPE).astype(np.float32),
    }

  @parameterized.product(fmt=helpers.FORMATS, dtype=("uint8", "uint16", "float32"))
  def test_round_trip(self, fmt, dtype):
    array = self.arrays[dtype]
    folder = os.path.join(self.tmp, f"{fmt}_{dtype}")
    os.makedirs(folder)
    spec = helpers.write_in_format(array, folder, fmt)
    vol = formats.open_volume(spec)
    self.assertEqual(vol.shape, SHAPE)
    self.assertEqual(vol.dtype, array.dtype)
    np.testing.assert_array_equal(vol.read(), array)
    for axis in range(3):
      for index in (0, SHAPE[axis] // 2, SHAPE[axis] - 1):
        np.testing.assert_array_equal(vol.slice(axis, index), np.take(array, index, axis=axis))
    np.testing.assert_array_equal(vol.read((3, 5, 7), (11, 20, 28)), array[3:11, 5:20, 7:28])
    np.testing.assert_allclose(vol.downsample(4), _reference_downsample(array, 4), rtol=1e-5, atol=1e-5)

  def test_volume_name_is_stem(self):
    self.assertEqual(formats.volume_name("/a/b/scan_01.ome.tif"), "scan_01")
    self.assertEqual(formats.volume_name("/a/fish.zarr/"), "fish")
    self.assertEqual(formats.volume_name("/a/embryo.nxs"), "embryo")

  def test_downsample_streams_in_slabs(self):
    vol = volume.ArrayVolume(self.arrays["float32"])
    whole = vol.downsample(3)
    volume_module_slab = volume._SLAB_BYTES
    try:
      volume._SLAB_BYTES = 1  # forces one aligned slab per 3 planes
      self.assertLen(list(vol.slabs(align=3)), 6)
      np.testing.assert_allclose(vol.downsample(3), whole, rtol=1e-6)
    finally:
      volume._SLAB_BYTES = volume_module_slab

  def test_folder_glob_and_list_sources(self):
    folder = os.path.join(self.tmp, "mixed")
    os.makedirs(folder)
    for fmt in ("npy", "zarr3", "hdf5-nexus", "tiff"):
      helpers.write_in_format(self.arrays["uint8"], folder, fmt)
    with open(os.path.join(folder, "notes.txt"), "w") as f:
      f.write("not a volume")
    names = sorted(v.name for v in sources.open_volumes(folder))
    self.assertEqual(names, ["vol_hdf5-nexus", "vol_npy", "vol_tiff", "vol_zarr3"])
    self.assertLen(sources.open_volumes(os.path.join(folder, "*.npy")), 1)
    listed = sources.open_volumes([os.path.join(folder, "vol_npy.npy"), os.path.join(folder, "vol_zarr3.zarr")])
    self.assertEqual([v.name for v in listed], ["vol_npy", "vol_zarr3"])

  def test_volume_pickles_without_open_handle(self):
    import pickle

    spec = helpers.write_in_format(self.arrays["uint16"], self._folder("pickle"), "hdf5-dxchange")
    vol = formats.open_volume(spec)
    clone = pickle.loads(pickle.dumps(vol))
    np.testing.assert_array_equal(clone.slice(2, 4), vol.slice(2, 4))

  def test_held_volume_reads_its_file_once_and_pickles_without_the_array(self):
    import pickle

    array = self.arrays["uint16"]
    inner = formats.open_volume(helpers.write_in_format(array, self._folder("held"), "zarr3"))
    reads = []
    read_box = inner._read_box
    inner._read_box = lambda *a: reads.append(a[1:]) or read_box(*a)
    vol = volume.HeldVolume(inner)
    self.assertEqual((vol.shape, vol.dtype, vol.name, vol.where), (inner.shape, inner.dtype, inner.name, inner.where))
    self.assertEmpty(reads)  # nothing read until asked
    for axis in range(3):
      for index in (0, SHAPE[axis] - 1):
        np.testing.assert_array_equal(vol.slice(axis, index), np.take(array, index, axis=axis))
    np.testing.assert_array_equal(vol.read((3, 5, 7), (11, 20, 28)), array[3:11, 5:20, 7:28])
    self.assertEqual(reads, [((0, 0, 0), SHAPE)])  # the whole volume, once
    del inner._read_box  # the counting wrapper does not pickle
    state = pickle.dumps(vol)
    self.assertLess(len(state), array.nbytes // 4)
    np.testing.assert_array_equal(pickle.loads(state).slice(1, 4), array[:, 4])

  def test_held_keeps_volumes_on_disk_past_the_budget(self):
    vols = [volume.ArrayVolume(self.arrays["uint8"], name=f"v{i}") for i in range(3)]
    nbytes = self.arrays["uint8"].nbytes
    self.assertEqual([type(v).__name__ for v in volume.held(vols, 2 * nbytes)], ["HeldVolume", "HeldVolume", "ArrayVolume"])
    self.assertEqual([type(v).__name__ for v in volume.held(vols, 0)], ["ArrayVolume"] * 3)

  def test_zarr_v2_and_v3_behind_a_url(self):
    for fmt in ("zarr2", "zarr3"):
      path = helpers.write_in_format(self.arrays["uint16"], self._folder(f"url_{fmt}"), fmt)
      vol = formats.open_volume("file://" + os.path.abspath(path))
      np.testing.assert_array_equal(vol.read(), self.arrays["uint16"])

  def test_dxchange_projections_are_named_in_a_warning(self):
    import h5py

    path = os.path.join(self._folder("projections"), "raw.h5")
    with h5py.File(path, "w") as f:
      f["exchange/data"] = self.arrays["uint16"]
      f["exchange/theta"] = np.linspace(0, 180, SHAPE[0])
    with self.assertLogs(level="WARNING") as logs:
      formats.open_volume(path)
    self.assertIn("looks like projections", "\n".join(logs.output))

  def _folder(self, name):
    path = os.path.join(self.tmp, name)
    os.makedirs(path, exist_ok=True)
    return path


if __name__ == "__main__":
  absltest.main()
