"""Data preparation: downscaled analysis copies are cached, and boxes map back to input voxels."""

import os
import tempfile

import ml_collections
import numpy as np
from absl.testing import absltest

from ssl_ct import baseline
from ssl_ct.data import prepare, zarr_writer
from tests import helpers


class PrepareTest(absltest.TestCase):
  def test_slow_formats_are_analysed_from_a_chunked_copy(self):
    folder = tempfile.mkdtemp()
    array = np.random.default_rng(0).integers(0, 255, (20, 24, 28), dtype=np.uint8)
    helpers.write_in_format(array, folder, "tiff")
    before = helpers.tree_digest(folder)
    for mode, expected in (("auto", "tensorstore"), ("never", "tiff")):
      config = ml_collections.ConfigDict(
        {
          "path": folder,
          "downscale_to": 0,
          "low_percentile": 0.5,
          "high_percentile": 99.5,
          "fill_missing": False,
          "analysis_copy": mode,
        }
      )
      workdir = tempfile.mkdtemp()
      (volume,) = prepare.load_dataset(config, workdir, progress=False).volumes
      self.assertEqual((volume.format_name, volume.name), (expected, "vol_tiff"))
      np.testing.assert_array_equal(volume.read(), array)
      self.assertEqual(
        len(os.listdir(os.path.join(workdir, "cache"))) if os.path.isdir(os.path.join(workdir, "cache")) else 0, mode == "auto"
      )
    self.assertEqual(helpers.tree_digest(folder), before)

  def test_downscaled_copy_is_cached_and_boxes_map_back(self):
    folder, workdir = tempfile.mkdtemp(), tempfile.mkdtemp()
    array = np.zeros((40, 36, 36), np.float32)
    array[8:24, 4:20, 12:32] = 1.0
    array += np.random.default_rng(0).normal(0, 0.01, array.shape).astype(np.float32)
    zarr_writer.write_zarr3(array, os.path.join(folder, "scan.zarr"))
    config = ml_collections.ConfigDict(
      {
        "path": folder,
        "downscale_to": 20,
        "low_percentile": 0.5,
        "high_percentile": 99.5,
        "fill_missing": False,
        "analysis_copy": "auto",
      }
    )
    dataset = prepare.load_dataset(config, workdir, progress=False)
    (volume,) = dataset.volumes
    self.assertEqual((dataset.factor("scan"), volume.shape, dataset.input_shape("scan")), (2, (20, 18, 18), (40, 36, 36)))
    (cached,) = os.listdir(os.path.join(workdir, "cache"))
    np.testing.assert_allclose(volume.read(), array.reshape(20, 2, 18, 2, 18, 2).mean((1, 3, 5)), rtol=1e-5, atol=1e-6)
    stamp = os.path.getmtime(os.path.join(workdir, "cache", cached))
    prepare.load_dataset(config, workdir, progress=False)
    self.assertEqual(os.path.getmtime(os.path.join(workdir, "cache", cached)), stamp)  # reused, not rewritten
    grid_box = baseline.threshold_box(volume)
    self.assertEqual(baseline.scale_box(grid_box, 2, (40, 36, 36)), {"start": [8, 4, 12], "stop": [24, 20, 32]})


if __name__ == "__main__":
  absltest.main()


def _cell_means(array, factor):
  """Mean over each factor^3 cell (the last along an axis may be short), cell by cell in float64: the reference."""
  out = np.zeros([-(-n // factor) for n in array.shape])
  for cell in np.ndindex(*out.shape):
    out[cell] = array[tuple(slice(c * factor, (c + 1) * factor) for c in cell)].astype(np.float64).mean()
  return out


class StreamedDownscaleTest(absltest.TestCase):
  def test_slab_by_slab_equals_the_whole_volume_at_once(self):
    from ssl_ct.data import formats, volume

    array = np.random.default_rng(0).integers(0, 65535, (601, 9, 11)).astype(np.uint16)
    vol = volume.ArrayVolume(array, name="v")
    whole = _cell_means(array, 4)
    np.testing.assert_allclose(volume.block_mean(array, 4), whole, rtol=1e-6)
    pieces = list(vol.downsample_slabs(4, read_bytes=8 * 9 * 11 * 2))  # 8 planes a read: many slabs
    self.assertGreater(len(pieces), 70)
    np.testing.assert_allclose(np.concatenate([b for _, b in pieces]), whole, rtol=1e-6)
    out = os.path.join(tempfile.mkdtemp(), "d.zarr")  # 151 planes out: pieces of 2 gathered into two shard rows
    zarr_writer.write_slabs(iter(pieces), out, whole.shape, np.float32)
    np.testing.assert_array_equal(formats.open_volume(out).read(), np.concatenate([b for _, b in pieces]))
    # A chunked store whose chunk rows exceed the read budget is read in y bands of whole chunks; the
    # bands (16 rows) and slabs (8 planes) do not align with the factor's cells (3), which straddle them.
    chunked = formats.open_volume(helpers.write_in_format(array[:70, :, :].repeat(5, axis=1), tempfile.mkdtemp(), "zarr2"))
    self.assertEqual(chunked.stream_chunk, (8, 8, 8))
    reference = _cell_means(chunked.read(), 3)
    banded = list(chunked.downsample_slabs(3, read_bytes=8 * 16 * 11 * 2))
    np.testing.assert_allclose(np.concatenate([b for _, b in banded]), reference, rtol=1e-6)
    self.assertEqual([z for z, _ in banded], list(np.cumsum([0] + [len(b) for _, b in banded[:-1]])))
    # A factor larger than a slab: a cell's planes come from several slabs.
    big = list(chunked.downsample_slabs(13, read_bytes=8 * 16 * 11 * 2))
    np.testing.assert_allclose(np.concatenate([b for _, b in big]), _cell_means(chunked.read(), 13), rtol=1e-6)
    with self.assertRaisesRegex(ValueError, "arrived where"):
      zarr_writer.write_slabs(iter(pieces[1:]), os.path.join(tempfile.mkdtemp(), "e.zarr"), whole.shape, np.float32)


class LocalizeOnDownscaledGridTest(absltest.TestCase):
  def test_boxes_json_is_in_input_voxels(self):
    import json

    from ssl_ct import run_localization
    from ssl_ct.data import volume as volume_lib

    analysed = volume_lib.ArrayVolume(np.random.default_rng(0).uniform(size=(20, 18, 18)).astype(np.float32), name="scan")
    dataset = prepare.Dataset(
      volumes=[analysed],
      ranges={"scan": (0.0, 1.0)},
      fovs={"scan": None},
      truth={},
      root="",
      factors={"scan": 2},
      input_shapes={"scan": (40, 36, 35)},
    )
    grid_box = {"start": [2, 3, 4], "stop": [10, 12, 18]}
    out = tempfile.mkdtemp()

    class FixedLocalizer:
      method_name = "fixed"

      def localize(self, *_):
        return grid_box, {"outcome": "sample box"}

    run_localization.localize_dataset(dataset, FixedLocalizer(), out, plot=False)
    with open(os.path.join(out, "boxes.json")) as f:
      self.assertEqual(json.load(f)["boxes"]["scan"], {"start": [4, 6, 8], "stop": [20, 24, 35]})  # x clipped to 35

    class MeasuringLocalizer(FixedLocalizer):
      def localize(self, *_):
        return grid_box, {"outcome": "sample box", "measured_faces": [[True, False], [False, True], [True, True]]}

    out = tempfile.mkdtemp()
    run_localization.localize_dataset(dataset, MeasuringLocalizer(), out, plot=False, crop_margin=0.1, measured_margin=0.01)
    with open(os.path.join(out, "boxes.json")) as f:
      meta = json.load(f)["ssl_ct"]
    # Input voxels: 10% of 40, 36, 35 is 4 on the unmeasured faces; the measured ones 1%, but at least
    # the factor (2 input voxels: one voxel of the grid they were measured on).
    self.assertEqual(meta["face_margins"]["scan"], [[2, 4], [4, 2], [2, 2]])
    out = tempfile.mkdtemp()
    run_localization.localize_dataset(dataset, MeasuringLocalizer(), out, plot=False, crop_margin=0.2, measured_margin=0.0)
    with open(os.path.join(out, "boxes.json")) as f:
      # 0 asked: still one voxel of the coarser grid the faces were measured on (2 input voxels).
      self.assertEqual(json.load(f)["ssl_ct"]["face_margins"]["scan"], [[2, 8], [8, 2], [2, 2]])
