"""Slice-pair pipeline: labels are real rotations, disks are disks, streams are seeded and resumable."""

import numpy as np
import scipy.ndimage
from absl.testing import absltest, parameterized

from ssl_ct.configs import rotation_xenopus
from ssl_ct.data import fov, pipeline, slices, volume
from tests import helpers

SIZE = 32


def _asymmetric_volume(depth=24, n=40):
  """Constant along z: every axial slice is the same asymmetric 'L' shape plus a dot."""
  plane = np.zeros((n, n), np.float32)
  plane[10:30, 12:16] = 1.0
  plane[26:30, 12:28] = 1.0
  plane[12:15, 24:27] = 0.6
  return np.broadcast_to(plane, (depth, n, n)).copy()


class RotationPairTest(parameterized.TestCase):
  def test_positive_angle_turns_counter_clockwise(self):
    image = np.zeros((21, 21), np.float32)
    image[2, 10] = 1.0  # a dot at the top centre
    turned = slices.rotate_resize(image, 21, 90)
    self.assertEqual(np.unravel_index(turned.argmax(), turned.shape), (10, 2))  # now at the left centre

  def test_twin_is_ref_rotated_by_its_angle_class(self):
    dataset = helpers.array_dataset([_asymmetric_volume()])
    angles = (-90, -60, -30, 0, 30, 60, 90)
    read = pipeline.ReadRotationPair(dataset, size=SIZE, twin_range=0.2, angles_deg=angles)
    rng = np.random.default_rng(0)
    for _ in range(20):
      pair = read.random_map({"volume": 0, "axis": 0, "index": 10}, rng)
      ref, twin = pair["ref"][..., 0], pair["twin"][..., 0]
      disk = slices.disk_mask(SIZE) > 0
      # Positive angles turn counter-clockwise as displayed (top -> left), as scipy.ndimage.rotate does.
      errors = [np.abs(scipy.ndimage.rotate(ref, a, reshape=False, order=1) - twin)[disk].mean() for a in angles]
      self.assertEqual(int(np.argmin(errors)), int(pair["angle"]), errors)

  def test_inputs_are_cut_to_the_inscribed_disk(self):
    dataset = helpers.array_dataset([np.random.default_rng(0).uniform(0.2, 1.0, (20, 30, 30)).astype(np.float32)])
    read = pipeline.ReadRotationPair(dataset, size=SIZE, twin_range=0.2, angles_deg=(0, 90))
    pair = read.random_map({"volume": 0, "axis": 1, "index": 7}, np.random.default_rng(1))
    outside = slices.disk_mask(SIZE) == 0
    self.assertTrue(np.all(pair["ref"][outside, 0] == 0) and np.all(pair["twin"][outside, 0] == 0))
    self.assertGreater(pair["ref"][~outside].min(), 0.0)

  def test_addresses_cover_each_valid_slice_once(self):
    dataset = helpers.array_dataset([np.ones((5, 6, 7), np.float32), np.ones((8, 4, 4), np.float32)])
    source = pipeline.make_slice_addresses(dataset)
    records = [tuple(source[i].values()) for i in range(len(source))]
    self.assertLen(set(records), len(records))
    self.assertLen(records, 5 + 6 + 7 + 8 + 4 + 4)


class FieldOfViewTest(absltest.TestCase):
  def test_windows_stay_inside_the_disk(self):
    n, radius = 40, 18.0
    yy, xx = np.indices((n, n))
    inside = (yy - 19.5) ** 2 + (xx - 19.5) ** 2 <= radius**2
    vol = volume.ArrayVolume(np.where(inside, np.random.default_rng(0).uniform(1, 2, (30, n, n)), 0.0).astype(np.float32))
    found = fov.estimate_fov(vol)
    self.assertAlmostEqual(found.radius, radius, delta=1.0)
    for axis in (1, 2):
      for index in range(n):
        for r0, r1, c0, c1 in fov.slice_windows(vol.shape, found, axis, index):
          window = vol.slice(axis, index)[r0:r1, c0:c1]
          self.assertTrue(np.all(window > 0), (axis, index))

  def test_no_field_of_view_without_a_constant_disk_border(self):
    self.assertIsNone(fov.estimate_fov(volume.ArrayVolume(np.random.default_rng(0).uniform(size=(8, 16, 16)))))
    blob = np.zeros((8, 32, 32))
    blob[:, 2:12, 5:30] = 1.0  # constant background around a bar: not a circular field of view
    self.assertIsNone(fov.estimate_fov(volume.ArrayVolume(blob)))


class LoaderTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.config = rotation_xenopus.get_config("tiny")
    rng = np.random.default_rng(0)
    cls.dataset = helpers.array_dataset([rng.uniform(size=(12, 20, 20)).astype(np.float32) for _ in range(3)])

  def _batches(self, seed, count=3, workers=0):
    self.config.data.num_workers = workers
    it = iter(pipeline.make_rotation_loader(self.dataset, self.config.data, seed=seed, batch_size=4))
    return [next(it) for _ in range(count)]

  def test_seeded_and_independent_of_workers(self):
    a, b, c = self._batches(0), self._batches(0, workers=1), self._batches(1)
    for x, y in zip(a, b):
      for key in x:
        np.testing.assert_array_equal(x[key], y[key])
    self.assertFalse(np.array_equal(a[0]["ref"], c[0]["ref"]))

  def test_batches_mix_volumes_and_resume_exactly(self):
    loader = pipeline.make_rotation_loader(self.dataset, self.config.data, seed=0, batch_size=8)
    it = iter(loader)
    seen = np.concatenate([next(it)["volume"] for _ in range(3)])
    self.assertLen(set(seen.tolist()), 3)
    state = it.get_state()
    expected = [next(it) for _ in range(2)]
    resumed = iter(loader)
    resumed.set_state(state)
    for x in expected:
      y = next(resumed)
      for key in x:
        np.testing.assert_array_equal(x[key], y[key])


if __name__ == "__main__":
  absltest.main()
