"""Sorting loss end to end: grouped ranking loss by hand, the k-slice pipeline, MC-dropout
samples, top-q region rule on planted grids, cropping round trip, and a tiny main run."""

import json
import os
import subprocess
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import tensorstore as ts
from absl.testing import absltest

from ssl_ct import checkpoint, crop, localize_sorting, losses, report, results
from ssl_ct.configs import sorting_medaka
from ssl_ct.data import pipeline, prepare, zarr_writer
from ssl_ct.data.volume import ArrayVolume
from ssl_ct.errors import InputError
from ssl_ct.models import heads
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class GroupedRankingTest(absltest.TestCase):
  def test_pairs_across_groups_are_ignored(self):
    # Group 0 in perfect order with margin, group 1 reversed: only group 1's 3 pairs cost.
    z = jnp.array([0.0, 0.2, 0.4, 0.4, 0.2, 0.0])
    position = jnp.array([0.0, 1.0, 2.0, 0.0, 1.0, 2.0])
    group = jnp.array([0, 0, 0, 1, 1, 1])
    loss, metrics = losses.pairwise_ranking(z, position, group_B=group)
    np.testing.assert_allclose(loss, 1.4 / 6, rtol=1e-6)  # (0.4 + 0.6 + 0.4) over the 6 within-group pairs
    # Per group: 0 and (2 + 0 + 2) / 3; mean over all 6 slices = 4 / 6.
    np.testing.assert_allclose(metrics["mean_displacement"], 4 / 6, rtol=1e-6)

  def test_single_group_matches_ungrouped(self):
    z, position = jnp.array([0.3, -0.1, 0.5, 0.2]), jnp.array([2.0, 0.0, 3.0, 1.0])
    for a, b in zip(losses.pairwise_ranking(z, position), losses.pairwise_ranking(z, position, group_B=jnp.zeros(4, int))):
      np.testing.assert_allclose(jax.tree.leaves(a), jax.tree.leaves(b), rtol=1e-6)


class SortingPipelineTest(absltest.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.config = sorting_medaka.get_config("tiny")
    rng = np.random.default_rng(0)
    # Slice z holds the value z everywhere: a slice's content reveals its index.
    cls.dataset = helpers.array_dataset(
      [np.broadcast_to(np.arange(40.0)[:, None, None], (40, 16, 16)).astype(np.float32) + rng.uniform() for _ in range(4)]
    )

  def test_a_group_is_k_distinct_slices_of_one_volume(self):
    it = iter(pipeline.make_sorting_loader(self.dataset, self.config.data, [0, 2], seed=0, batch_size=8))
    batch = next(it)
    self.assertEqual(batch["image"].shape, (8, 24, 24, 1))
    for g in np.unique(batch["group"]):
      rows = batch["group"] == g
      self.assertLen(set(batch["volume"][rows].tolist()), 1)
      self.assertIn(int(batch["volume"][rows][0]), (0, 2))
      self.assertLen(set(batch["position"][rows].tolist()), 4)

  def test_gennorm_draws_fewer_end_slices(self):
    rng = np.random.default_rng(0)
    uniform = np.concatenate([pipeline.draw_positions(rng, 0, 100, 12, "uniform") for _ in range(300)])
    gennorm = np.concatenate([pipeline.draw_positions(rng, 0, 100, 12, "gennorm", beta=4.0, scale=0.25) for _ in range(300)])
    ends = lambda p: np.mean((p < 15) | (p >= 85))  # noqa: E731
    self.assertGreater(ends(uniform), 0.25)
    self.assertLess(ends(gennorm), 0.5 * ends(uniform))
    self.assertTrue(np.all((gennorm >= 0) & (gennorm < 100)))

  def test_resumes_exactly(self):
    loader = pipeline.make_sorting_loader(self.dataset, self.config.data, [0, 1, 2, 3], seed=3, batch_size=4)
    it = iter(loader)
    next(it)
    state = it.get_state()
    expected = next(it)
    resumed = iter(loader)
    resumed.set_state(state)
    actual = next(resumed)
    for key in expected:
      np.testing.assert_array_equal(expected[key], actual[key])

  def test_worker_processes_give_the_same_stream(self):
    data_config = sorting_medaka.get_config("tiny").data  # a copy: the class config stays in-process
    batches = {}
    for workers in (0, 1):
      data_config.num_workers = workers
      it = iter(pipeline.make_sorting_loader(self.dataset, data_config, [0, 1, 3], seed=5, batch_size=8))
      batches[workers] = [next(it) for _ in range(2)]
    for a, b in zip(batches[0], batches[1]):
      for key in a:
        np.testing.assert_array_equal(a[key], b[key])

  def test_split_is_disjoint_three_to_one(self):
    train_ids, val_ids = pipeline.split_volumes([f"v{i}" for i in range(12)], 0.25, seed=0)
    self.assertLen(val_ids, 3)
    self.assertEqual(sorted(train_ids + val_ids), list(range(12)))

  def test_batch_not_whole_groups_is_an_input_error(self):
    with self.assertRaisesRegex(InputError, "whole number of groups"):
      pipeline.make_sorting_loader(self.dataset, self.config.data, [0], seed=0, batch_size=6)


class McDropoutTest(absltest.TestCase):
  def _model_and_params(self, dropout):
    config = sorting_medaka.get_config("tiny").model
    config.dropout = dropout
    model = heads.make_model(config)
    images = jax.random.uniform(jax.random.key(0), (3, 24, 24, 1))
    params = helpers.init_variables(model, {"params": jax.random.key(1)}, {"image": images})["params"]
    return model, params, images

  def test_samples_differ_with_dropout_and_coincide_without(self):
    for dropout, differ in ((0.3, True), (0.0, False)):
      model, params, images = self._model_and_params(dropout)
      _, maps = localize_sorting.mc_samples(model, params, images, jax.random.key(2), 5)
      self.assertEqual(maps.shape[:2], (5, 3))
      spread = float(jnp.max(jnp.abs(maps - maps[:1])))
      self.assertEqual(spread > 1e-6, differ, (dropout, spread))
      z_det, _ = model.apply({"params": params}, {"image": images})
      for variance_of in ("position", "embedding"):
        variance, score = localize_sorting.make_variance_fn(model, 5, variance_of)(params, images, jax.random.key(2))
        self.assertEqual(variance.shape, maps.shape[1:4])
        self.assertEqual(float(jnp.max(variance)) > 1e-9, differ)
        # The mean of the T scores is the position score z: exactly without dropout, nearly with it.
        np.testing.assert_allclose(score, z_det, rtol=1e-5, atol=1e-5 if not differ else 0.5 * float(jnp.std(z_det)) + 1e-3)

  def test_sampled_variance_converges_to_the_exact_one(self):
    model, params, images = self._model_and_params(0.3)
    z_det, _ = model.apply({"params": params}, {"image": images})
    head_K = params["encoder"]["head"]["kernel"][:, 0]
    sampled = {"position": [], "embedding": []}
    for samples in (16, 128, 1024):
      _, maps_TxBxhxwxK = localize_sorting.mc_samples(model, params, images, jax.random.key(5), samples)
      sampled["position"].append(jnp.var(maps_TxBxhxwxK @ head_K, axis=0))
      sampled["embedding"].append(jnp.mean(jnp.var(maps_TxBxhxwxK, axis=0), axis=-1))
    for variance_of, estimates in sampled.items():
      exact, score = localize_sorting.make_exact_variance_fn(model, 0.3, variance_of)(params, images, None)
      np.testing.assert_allclose(score, z_det, rtol=1e-6, atol=1e-7)  # the dropout's expectation
      errors = [float(jnp.mean(jnp.abs(e - exact)) / jnp.mean(exact)) for e in estimates]
      # The relative error of a variance estimate from T samples shrinks like sqrt(2 / T).
      self.assertLess(errors[2], errors[1], (variance_of, errors))
      self.assertLess(errors[1], errors[0], (variance_of, errors))
      self.assertLess(errors[2], 0.08, (variance_of, errors))

  def test_vmapped_samples_equal_one_pass_per_key(self):
    model, params, images = self._model_and_params(0.3)
    keys = jax.random.split(jax.random.key(4), 3)
    scores, maps = localize_sorting.mc_samples(model, params, images, jax.random.key(4), 3)
    for t, key in enumerate(keys):
      z, out = model.apply({"params": params}, {"image": images}, deterministic=False, rngs={"dropout": key})
      np.testing.assert_allclose(maps[t], out["feature_map"], rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(scores[t], z, rtol=1e-5, atol=1e-6)


class RegionRuleTest(absltest.TestCase):
  def test_top_percent_keeps_the_largest_planted_region(self):
    rng = np.random.default_rng(0)
    grid = rng.uniform(0, 1, (40, 10, 10)).astype(np.float32)
    grid[10:30, 2:6, 3:7] += 5.0  # 320 cells = 8% of the grid
    grid[35, 8, 8] += 6.0  # a lone hot cell elsewhere
    region = localize_sorting.region_from_grid(grid, top_percent=100 * 321.2 / grid.size)  # the planted cells and the lone one
    self.assertEqual(localize_sorting.box_of_region(region, 0, 1.0, (40, 10, 10)), {"start": [10, 2, 3], "stop": [30, 6, 7]})

  def test_gap_closing_keeps_a_split_sample_whole(self):
    grid = np.random.default_rng(0).uniform(0, 0.1, (60, 4, 4)).astype(np.float32)
    grid[10:25, 1:3, 1:3] = 1.0
    grid[28:40, 1:3, 1:3] = 1.0  # a 3-slice quiet gap
    top = 100 * 108.2 / grid.size  # the 108 planted cells
    whole = localize_sorting.region_from_grid(grid, top_percent=top, gap_slices=4)
    split = localize_sorting.region_from_grid(grid, top_percent=top)
    self.assertEqual(localize_sorting.box_of_region(whole, 0, 1.0, (60, 4, 4))["start"][0], 10)
    self.assertEqual(localize_sorting.box_of_region(whole, 0, 1.0, (60, 4, 4))["stop"][0], 40)
    self.assertEqual(localize_sorting.box_of_region(split, 0, 1.0, (60, 4, 4))["stop"][0], 25)

  def test_flat_grid_is_no_sample(self):
    self.assertIsNone(localize_sorting.region_from_grid(np.full((5, 4, 4), 0.3, np.float32), 3.0))
    self.assertIsNone(localize_sorting.region_from_grid(np.full((5, 4, 4), np.nan, np.float32), 3.0))

  def test_cells_and_sort_axis_map_back_to_volume_voxels(self):
    region = np.zeros((30, 5, 4), bool)
    region[7:9, 1:3, 2] = True  # sort axis 1 (y): grid is (y, z-cells, x-cells), 4 voxels per cell
    box = localize_sorting.box_of_region(region, axis=1, cell=4.0, shape=(20, 30, 16))
    self.assertEqual(box, {"start": [4, 7, 8], "stop": [12, 9, 12]})


def _scores(n=150, start=40, stop=110, level=0.3, noise=0.002, seed=0):
  """Position scores as the trained network gives them: one level for empty slices, a dip and climb through the sample."""
  rng = np.random.default_rng(seed)
  scores = np.full(n, level) + noise * rng.standard_normal(n)
  ramp = np.linspace(0.0, 1.0, stop - start)
  scores[start:stop] += np.where(ramp < 0.15, -ramp / 0.15, -1.0 + (ramp - 0.15) / 0.85 * 0.95)  # ends 0.05 below the level
  return scores.astype(np.float32)


class ScoreExtentTest(absltest.TestCase):
  def test_sample_is_where_the_score_leaves_the_empty_level(self):
    start, stop = localize_sorting.extent_from_scores(_scores())
    self.assertLessEqual(abs(start - 40), 2)
    self.assertLessEqual(abs(stop - 110), 2)

  def test_sample_at_an_end_of_the_axis(self):
    start, stop = localize_sorting.extent_from_scores(_scores(start=0, stop=90))
    self.assertLessEqual(start, 1)  # the synthetic dip starts at the level, so slice 0 barely departs
    self.assertLessEqual(abs(stop - 90), 2)

  def test_box_takes_the_extent_from_scores_and_the_plane_from_the_variance_among_those_slices(self):
    rng = np.random.default_rng(0)
    grid = rng.uniform(0, 1, (150, 8, 8)).astype(np.float32)
    grid[40:80, 2:5, 3:6] += 5.0  # the bright part of the sample (its head)
    grid[130, 7, 7] += 50.0  # a hot cell on an empty slice: outside the extent, so never the region
    box, region = localize_sorting.box_from_grid(grid, _scores(), 4.0, 0, (150, 32, 32), top_percent=3.0)
    self.assertLessEqual(abs(box["start"][0] - 40), 2)
    self.assertLessEqual(abs(box["stop"][0] - 110), 2)  # the faint end the variance does not show
    self.assertEqual((box["start"][1:], box["stop"][1:]), ([8, 12], [20, 24]))
    self.assertFalse(region[130].any())
    flat_box, _ = localize_sorting.box_from_grid(np.ones_like(grid), _scores(), 4.0, 0, (150, 32, 32), top_percent=3.0)
    self.assertEqual((flat_box["start"][1:], flat_box["stop"][1:]), ([0, 0], [32, 32]))  # no structure: the whole plane
    paper_box, _ = localize_sorting.box_from_grid(grid, None, 4.0, 0, (150, 32, 32), top_percent=3.0, extent="variance")
    self.assertEqual(paper_box["stop"][0], 80)

  def test_flat_scores_are_no_sample(self):
    flat = _scores(start=0, stop=0)
    self.assertIsNone(localize_sorting.extent_from_scores(flat))
    self.assertIsNone(localize_sorting.extent_from_scores(np.full(50, np.nan, np.float32)))


class CropTest(absltest.TestCase):
  def test_round_trip_margin_attributes_and_untouched_input(self):
    tmp = tempfile.mkdtemp()
    source_DxHxW = np.random.default_rng(0).integers(0, 60000, (30, 20, 24)).astype(np.uint16)
    spec = helpers.write_in_format(source_DxHxW, tmp, "hdf5-dxchange")
    before = helpers.tree_digest(spec)
    volume = prepare.formats.open_volume(spec, name="scan")
    box = {"start": [5, 4, 6], "stop": [20, 15, 18]}
    out = os.path.join(tmp, "out", "scan.zarr")
    result = crop.crop_all({"scan": box}, [volume], os.path.dirname(out), margin=0.1)
    self.assertEqual(helpers.tree_digest(spec), before)
    store = ts.open(
      {"driver": "zarr3", "kvstore": {"driver": "file", "path": os.path.join(out, "0")}}
    ).result()  # OME-Zarr level 0
    grown = {"start": [2, 2, 3], "stop": [23, 17, 21]}  # ceil(0.1 * side) = 3, 2, 3 voxels more per face
    np.testing.assert_array_equal(store.read().result(), source_DxHxW[2:23, 2:17, 3:21])
    with open(os.path.join(out, "zarr.json")) as f:
      attributes = json.load(f)["attributes"]["ssl_ct"]
    self.assertEqual(attributes["box"], box)
    self.assertEqual(attributes["crop"], grown)
    self.assertIn("vol_hdf5-dxchange.h5", attributes["source"])
    record = result["per_volume"]["scan"]
    self.assertEqual(record["bytes_before"], os.path.getsize(spec))
    self.assertAlmostEqual(record["voxel_reduction"], 1 - (21 * 15 * 18) / (30 * 20 * 24))
    self.assertTrue(os.path.exists(os.path.join(tmp, "out", "crop.md")))
    again = crop.crop_all({"scan": box}, [volume], os.path.dirname(out), margin=0.1)  # the same crop: kept, not redone
    self.assertTrue(again["per_volume"]["scan"]["reused"])
    with self.assertRaisesRegex(InputError, "cropped differently"):
      crop.crop_all({"scan": box}, [volume], os.path.dirname(out), margin=0.2)

  def test_face_margins_replace_the_uniform_margin_where_given(self):
    tmp = tempfile.mkdtemp()
    volume = ArrayVolume(np.arange(30 * 20 * 24, dtype=np.float32).reshape(30, 20, 24), name="scan")
    other = ArrayVolume(np.ones((30, 20, 24), np.float32), name="other")
    box = {"start": [5, 4, 6], "stop": [20, 15, 18]}
    pads = [[1, 2], [0, 3], [4, 0]]
    result = crop.crop_all({"scan": box, "other": box}, [volume, other], tmp, margin=0.1, face_margins={"scan": pads})
    self.assertEqual(result["per_volume"]["scan"]["crop"], {"start": [4, 4, 2], "stop": [22, 18, 18]})
    self.assertEqual(result["per_volume"]["other"]["crop"], {"start": [2, 2, 3], "stop": [23, 17, 21]})  # uniform 0.1
    self.assertEqual(result["face_margins"], ["scan"])
    with open(os.path.join(tmp, "crop.md")) as f:
      self.assertIn("less on the faces the localizer measured", f.read())
    with self.assertRaisesRegex(InputError, "cropped differently"):  # other face margins: another crop
      crop.crop_all({"scan": box}, [volume], tmp, margin=0.1, face_margins={"scan": [[0, 0]] * 3})
    with self.assertRaisesRegex(InputError, r"face_margins\['scan'\].*before, after"):
      crop.crop_all({"scan": box}, [volume], tempfile.mkdtemp(), margin=0.1, face_margins={"scan": [[1, -2], [0, 0], [0, 0]]})

  def test_bytes_before_are_the_inputs_bytes_on_disk(self):
    tmp = tempfile.mkdtemp()
    source_DxHxW = np.zeros((32, 32, 32), np.uint16)  # compresses to a fraction of its 64 KiB
    source_DxHxW[8:24, 8:24, 8:24] = 1000
    spec = helpers.write_in_format(source_DxHxW, tmp, "zarr3")
    volume = prepare.formats.open_volume(spec, name="scan")
    record = crop.crop_all({"scan": None}, [volume], os.path.join(tmp, "out"), margin=0.0)["per_volume"]["scan"]
    self.assertEqual(record["bytes_before"], zarr_writer.directory_bytes(spec))
    self.assertLess(record["bytes_before"], source_DxHxW.nbytes)

  def test_null_box_keeps_the_whole_volume(self):
    tmp = tempfile.mkdtemp()
    volume = ArrayVolume(np.arange(8 * 9 * 10, dtype=np.float32).reshape(8, 9, 10), name="empty")
    result = crop.crop_all({"empty": None}, [volume], tmp, margin=0.05)
    record = result["per_volume"]["empty"]
    self.assertFalse(record["sample_found"])
    self.assertEqual(record["crop"], {"start": [0, 0, 0], "stop": [8, 9, 10]})
    with open(os.path.join(tmp, "crop.md")) as f:
      self.assertIn("no sample found", f.read())

  def test_cli_reports_missing_boxes_in_one_line(self):
    tmp = tempfile.mkdtemp()
    result = subprocess.run(
      [sys.executable, "-m", "ssl_ct.crop", f"--boxes={tmp}/none.json", f"--data={tmp}", f"--out={tmp}/o"],
      cwd=REPO,
      capture_output=True,
      text=True,
    )
    self.assertEqual(result.returncode, 2, result.stderr)
    self.assertEqual(len(result.stderr.strip().splitlines()), 1, result.stderr)
    self.assertIn("none.json does not exist", result.stderr)


class EndToEndTest(absltest.TestCase):
  def test_main_trains_validates_localizes_and_crops(self):
    workdir = tempfile.mkdtemp()
    result = subprocess.run(
      [
        sys.executable,
        "-m",
        "ssl_ct.main",
        "--config=configs/sorting_medaka.py:tiny",
        f"--workdir={workdir}",
        "--config.train.keep_best=True",
      ],
      cwd=REPO,
      capture_output=True,
      text=True,
      timeout=600,
    )
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    boxes, _ = report.read_boxes(os.path.join(results.latest(workdir), "boxes.json"))
    self.assertLen(boxes, 4)
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      records = [json.loads(line) for line in f]
    validated = [r for r in records if "val_mean_displacement" in r]
    self.assertTrue(validated)
    best = min(validated, key=lambda r: r["val_mean_displacement"])["step"]  # the first of any ties
    self.assertEqual(checkpoint.best_step(workdir), best)  # keep_best: the held-out best step localizes
    with open(os.path.join(results.latest(workdir), "report.md")) as f:
      self.assertIn(f"at the checkpoint of step {best} ", f.read())
    for name in boxes:
      self.assertTrue(os.path.exists(os.path.join(results.latest(workdir), "variance", f"{name}.png")))
      self.assertTrue(os.path.isdir(os.path.join(workdir, "cropped", f"{name}.zarr")))
    with open(os.path.join(workdir, "cropped", "crop_report.json")) as f:
      self.assertIn("sample_recall_mean", json.load(f)["summary"])
    self.assertIn("storage reduction", result.stdout)


if __name__ == "__main__":
  absltest.main()
