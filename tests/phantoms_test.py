"""Synthetic CT: reconstruction physics, determinism, and ground truth consistent with the phantom."""

import json
import os
import tempfile

import numpy as np
from absl.testing import absltest, parameterized

from ssl_ct.data import formats, phantoms, synthetic, tomography, truth

SHAPES = {"xenopus": (40, 40, 40), "medaka": (72, 24, 24), "packed_head": (40, 40, 40)}


class TomographyTest(absltest.TestCase):
  def test_fbp_recovers_attenuation_of_a_disk(self):
    n = 64
    c = np.arange(n) - (n - 1) / 2
    disk_NxN = ((c[:, None] - 6) ** 2 + c[None, :] ** 2 < 15**2).astype(np.float32) * 0.03
    recon = tomography.fbp(tomography.project(disk_NxN[None], num_angles=n))[0]
    inside = (c[:, None] - 6) ** 2 + c[None, :] ** 2 < 10**2
    outside = ((c[:, None] - 6) ** 2 + c[None, :] ** 2 > 20**2) & tomography.field_of_view(n)
    self.assertAlmostEqual(float(recon[inside].mean()), 0.03, delta=0.03 * 0.02)
    self.assertLess(float(np.abs(recon[outside]).mean()), 0.03 * 0.02)
    self.assertTrue(np.all(recon[~tomography.field_of_view(n)] == 0))

  def test_noise_and_rings_show_in_reconstruction(self):
    n = 48
    flat = np.full((4, n, n), 0.01, np.float32) * tomography.field_of_view(n)
    clean = tomography.fbp(tomography.project(flat, n))
    noisy = tomography.scan(flat, np.random.default_rng(0), num_angles=n)
    ringed = tomography.scan(flat, np.random.default_rng(0), num_angles=n, ring_strength=0.02)
    fov = tomography.field_of_view(n)
    self.assertGreater((noisy - clean)[:, fov].std(), 1e-4)
    self.assertGreater((ringed - clean)[:, fov].std(), 1.5 * (noisy - clean)[:, fov].std())


class PhantomTest(parameterized.TestCase):
  @parameterized.parameters("xenopus", "medaka", "packed_head")
  def test_deterministic_by_seed(self, kind):
    a = phantoms.synthesize(kind, SHAPES[kind], seed=3, index=1)
    b = phantoms.synthesize(kind, SHAPES[kind], seed=3, index=1)
    c = phantoms.synthesize(kind, SHAPES[kind], seed=4, index=1)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1].mask_DxHxW, b[1].mask_DxHxW)
    self.assertFalse(np.array_equal(a[1].mask_DxHxW, c[1].mask_DxHxW))

  @parameterized.parameters("xenopus", "medaka", "packed_head")
  def test_labels_inside_mask_inside_field_of_view(self, kind):
    for index in range(4):
      _, ph, _ = phantoms.synthesize(kind, SHAPES[kind], seed=0, index=index)
      self.assertTrue(ph.mask_DxHxW.any())
      self.assertFalse(np.any((ph.labels_DxHxW > 0) & ~ph.mask_DxHxW))
      fov = tomography.field_of_view(SHAPES[kind][1])
      self.assertFalse(np.any(ph.mask_DxHxW[:, ~fov]))

  def test_xenopus_box_fills_part_of_the_volume(self):
    fractions = []
    for index in range(12):
      _, ph, _ = phantoms.synthesize("xenopus", (48, 48, 48), seed=0, index=index)
      box = truth.box_of_mask(ph.mask_DxHxW)
      fractions.append(np.prod(np.subtract(box["stop"], box["start"])) / 48**3)
    self.assertGreaterEqual(min(fractions), 0.05)
    self.assertLessEqual(max(fractions), 0.40)
    self.assertGreater(np.ptp(fractions), 0.05)  # sizes vary between volumes

  def test_medaka_container_is_bright_and_not_sample(self):
    for index in range(3):
      recon, ph, _ = phantoms.synthesize("medaka", SHAPES["medaka"], seed=0, index=index)
      wall = ph.mu_DxHxW > 2.9 * phantoms.MEDIUM_MU_128 * 128 / SHAPES["medaka"][1]
      self.assertGreater(wall.sum(), 0)
      self.assertFalse(np.any(wall & ph.mask_DxHxW))
      # The wall is brighter than the fish in the reconstruction: a threshold picks it up first.
      self.assertGreater(np.median(recon[wall]), np.median(recon[ph.mask_DxHxW]))

  def test_packed_head_packing_is_structure_outside_the_sample(self):
    for index in range(3):
      _, ph, _ = phantoms.synthesize("packed_head", (48, 48, 48), seed=0, index=index)
      tissue = np.median(ph.mu_DxHxW[ph.mask_DxHxW])
      # Packing and holder wall: matter outside the sample, at levels close to soft tissue.
      matter = (ph.mu_DxHxW > 0.5 * tissue) & ~ph.mask_DxHxW
      self.assertGreater(matter.sum(), 0.01 * ph.mask_DxHxW.sum())
      low, high = ph.window_mu
      self.assertLess(low, tissue)  # soft tissue survives the uint8 window ...
      self.assertLess(tissue - low, 0.2 * (high - low))  # ... a few grey levels above its floor, as in atlas scans


class SyntheticSetTest(absltest.TestCase):
  def test_uint8_set_is_windowed(self):
    folder = synthetic.write_set(
      os.path.join(tempfile.mkdtemp(), "set"),
      kind="packed_head",
      num_volumes=1,
      shape=(32, 32, 32),
      seed=0,
      dtype="uint8",
      progress=False,
    )
    name = "packed_head_000"
    volume = formats.open_volume(os.path.join(folder, f"{name}.zarr")).read()
    mask = formats.open_volume(os.path.join(folder, "truth", f"{name}_mask.zarr")).read().astype(bool)
    self.assertEqual(volume.dtype, np.uint8)
    self.assertEqual(np.median(volume[~mask]), 0)  # air and most of the packing under the window's floor
    self.assertGreater(np.median(volume[mask]), 0)

  def test_written_set_matches_phantoms_and_is_cached(self):
    cache = tempfile.mkdtemp()
    folder = synthetic.cached_set(cache, kind="medaka", num_volumes=2, shape=(48, 24, 24), seed=1, z_jitter=0.1, progress=False)
    stamp = os.path.getmtime(os.path.join(folder, "truth.json"))
    self.assertEqual(synthetic.cached_set(cache, kind="medaka", num_volumes=2, shape=(48, 24, 24), seed=1, z_jitter=0.1), folder)
    self.assertEqual(os.path.getmtime(os.path.join(folder, "truth.json")), stamp)
    self.assertLen(os.listdir(cache), 1)
    gt = truth.read_truth(folder)
    self.assertEqual(sorted(gt), ["medaka_000", "medaka_001"])
    for name, entry in gt.items():
      volume = formats.open_volume(os.path.join(folder, f"{name}.zarr"))
      mask = formats.open_volume(os.path.join(folder, entry["mask"])).read().astype(bool)
      self.assertEqual(volume.shape, mask.shape)
      self.assertEqual(list(volume.shape), entry["shape"])
      self.assertEqual(truth.box_of_mask(mask), entry["box"])
      recon, ph, _ = phantoms.synthesize("medaka", volume.shape, seed=1, index=int(name[-3:]))
      np.testing.assert_array_equal(volume.read(), recon)
      np.testing.assert_array_equal(mask, ph.mask_DxHxW)
    with open(os.path.join(folder, "phantoms.json")) as f:
      self.assertEqual(json.load(f)["seed"], 1)


if __name__ == "__main__":
  absltest.main()
