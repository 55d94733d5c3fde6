"""Certainty-curve rule on synthetic curves, threshold baseline, box metrics by hand."""

import numpy as np
from absl.testing import absltest

from ssl_ct import baseline, curves, evaluate, localize_rotation
from ssl_ct.data import volume
from tests import helpers


def _curve(n=100, start=30, stop=70, low=0.2, high=0.8, noise=0.05, seed=0):
  rng = np.random.default_rng(seed)
  curve = np.full(n, low) + noise * rng.standard_normal(n)
  curve[start:stop] += high - low
  return np.clip(curve, 0, 1).astype(np.float32)


class CurveRuleTest(absltest.TestCase):
  def test_step_curve(self):
    self.assertEqual(curves.interval_from_curve(_curve()), (30, 70))

  def test_noisy_step_with_unscored_rim(self):
    curve = _curve(noise=0.12, seed=3)
    curve[:8] = np.nan  # rim slices without a field-of-view window
    start, stop = curves.interval_from_curve(curve)
    self.assertLessEqual(abs(start - 30), 2)
    self.assertLessEqual(abs(stop - 70), 2)

  def test_flat_curve_is_no_sample(self):
    # A rise smaller than min_contrast (0.1) over the background is no sample.
    self.assertIsNone(curves.interval_from_curve(_curve(high=0.26, noise=0.02)))
    self.assertIsNone(curves.interval_from_curve(_curve(high=0.2, noise=0.05)))
    self.assertIsNone(curves.interval_from_curve(np.full(50, 0.5, np.float32)))

  def test_levels_above_the_floor_everywhere_fill_the_axis(self):
    chance = 1 / 7
    everywhere = _curve(start=0, stop=100, low=0.5, high=0.5, noise=0.05)  # certain on every slice: no contrast
    self.assertIsNone(curves.interval_from_curve(everywhere))  # without a floor: no sample, as before
    self.assertEqual(curves.interval_from_curve(everywhere, floor=chance), (0, 100))
    uneven = _curve(start=40, stop=80, low=0.45, high=0.9, noise=0.03)  # sample everywhere, some slices more certain
    self.assertEqual(curves.interval_from_curve(uneven, floor=chance), (0, 100))
    self.assertEqual(
      curves.interval_from_curve(_curve(low=chance, noise=0.03), floor=chance),
      curves.interval_from_curve(_curve(low=chance, noise=0.03)),
    )
    self.assertIsNone(curves.interval_from_curve(np.full(50, chance, np.float32), floor=chance))  # at chance: no sample

  def test_fill_level_tells_a_background_the_model_reads_from_sample(self):
    chance = 1 / 7
    # Empty slices 0.33 above chance (the medium has an orientation the model reads), the sample
    # at 0.98: above the fill margin everywhere, but nearer chance than the sample on the empty ones.
    curve = _curve(start=30, stop=70, low=0.47, high=0.98, noise=0.02)
    self.assertEqual(curves.interval_from_curve(curve, floor=chance), (0, 100))
    start, stop = curves.interval_from_curve(curve, floor=chance, fill_level=0.5)
    self.assertLessEqual(abs(start - 30), 1)
    self.assertLessEqual(abs(stop - 70), 1)
    # A stretch inside the sample as uncertain as the read background (0.55 between plateaus at
    # 0.98; the larger one alone would be the run) does not split it.
    dip = _curve(start=30, stop=70, low=0.6, high=0.98, noise=0.02)
    dip[42:50] = 0.55
    start, stop = curves.interval_from_curve(dip, floor=chance, fill_level=0.5)
    self.assertLessEqual(abs(start - 30), 1)
    self.assertLessEqual(abs(stop - 70), 1)
    # A sample on every slice, more certain on some: the least certain still past the midpoint.
    uneven = _curve(start=40, stop=80, low=0.65, high=0.95, noise=0.02)
    self.assertEqual(curves.interval_from_curve(uneven, floor=chance, fill_level=0.5), (0, 100))

  def test_a_short_empty_stretch_is_not_a_filled_axis(self):
    chance = 1 / 7
    # The sample ends 8 slices before the axis does (as a head whose packing continues past it):
    # below the 10th percentile, but a stretch at chance the median smoothing keeps.
    curve = _curve(start=0, stop=92, low=chance, high=0.95, noise=0.02)
    self.assertEqual(curves.interval_from_curve(curve, floor=chance, fill_percentile=10.0), (0, 100))
    start, stop = curves.interval_from_curve(curve, floor=chance, fill_percentile=0.0)
    self.assertEqual(start, 0)
    self.assertLessEqual(abs(stop - 92), 1)
    # Two isolated low slices are noise, not an empty stretch: the smoothed curve stays high.
    dips = _curve(start=0, stop=100, low=0.9, high=0.9, noise=0.02)
    dips[[30, 60]] = chance
    self.assertEqual(curves.interval_from_curve(dips, floor=chance, fill_percentile=0.0), (0, 100))

  def test_keeps_the_run_with_the_largest_area(self):
    curve = _curve(start=50, stop=90, noise=0.02)
    curve[10:14] = 0.8  # a short spike, e.g. debris
    start, stop = curves.interval_from_curve(curve)
    # The sample's run, not the spike's; the cut sits 2x the noise above the background, so a
    # noise excursion next to an edge may join the run (here 3 slices before 50).
    self.assertLessEqual(abs(start - 50), 3)
    self.assertLessEqual(abs(stop - 90), 3)

  def test_fill_level_applies_only_where_some_axis_reaches_chance(self):
    chance = 1 / 7
    read_background = _curve(start=30, stop=70, low=0.47, high=0.98, noise=0.02)  # the axial medium read
    bounded = {0: read_background, 1: _curve(low=chance, high=0.98, noise=0.02, seed=1), 2: _curve(low=chance, high=0.98, seed=2)}
    rule = {"floor": chance, "fill_level": 0.5}
    self.assertEqual(localize_rotation.axis_intervals(bounded, floor=chance)[0][0], (0, 100))  # the margin alone: whole
    start, stop = localize_rotation.axis_intervals(bounded, **rule)[0][0]
    self.assertLessEqual(abs(start - 30), 1)
    self.assertLessEqual(abs(stop - 70), 1)
    # No slice at chance on any axis (a sample that fills the field, less certain on some slices): left whole.
    filled = {axis: _curve(start=5, stop=95, low=0.41, high=0.98, noise=0.02, seed=axis) for axis in range(3)}
    self.assertFalse(any(curves.reaches_chance(filled[axis], floor=chance) for axis in range(3)))
    self.assertEqual(localize_rotation.axis_intervals(filled, **rule), ([(0, 100)] * 3, []))

  def test_an_axis_without_evidence_is_kept_whole_when_another_bounds_the_sample(self):
    # Moderate noise: this test is about assembling intervals; edges under heavy noise have their own test.
    by_axis = {0: _curve(noise=0.02), 1: _curve(start=10, stop=40, noise=0.02), 2: _curve(high=0.2, noise=0.02)}
    intervals, blind = localize_rotation.axis_intervals(by_axis)
    self.assertEqual(blind, [2])  # x shows no sample, z and y bound one: x kept whole, not the volume called empty
    self.assertEqual(intervals[2], (0, 100))
    self.assertEqual(localize_rotation.box_from_curves(by_axis)["stop"][2], 100)
    self.assertIn("along x", localize_rotation.blind_note(blind))
    # No axis bounds a sample (flat, or high everywhere as a tube's wall can be): no sample.
    chance = 1 / 7
    flat = {axis: _curve(low=chance, high=chance, noise=0.02, seed=axis) for axis in range(3)}
    flat[1] = _curve(start=0, stop=100, low=chance, high=0.9, noise=0.02)
    self.assertEqual(curves.interval_from_curve(flat[1], floor=chance), (0, 100))
    self.assertEqual(localize_rotation.axis_intervals(flat, floor=chance), (None, []))
    self.assertIsNone(localize_rotation.box_from_curves(flat, floor=chance))
    by_axis[2] = _curve(start=5, stop=95, noise=0.02)
    intervals = [curves.interval_from_curve(by_axis[axis]) for axis in range(3)]
    box = localize_rotation.box_from_curves(by_axis)
    self.assertEqual(box, {"start": [i[0] for i in intervals], "stop": [i[1] for i in intervals]})
    self.assertEqual(localize_rotation.axis_intervals(by_axis)[1], [])
    np.testing.assert_allclose(box["start"] + box["stop"], [30, 10, 5, 70, 40, 95], atol=2)


class TrimTest(absltest.TestCase):
  def test_packing_beside_the_sample_is_trimmed_and_a_lone_sample_is_not(self):
    chance = 1 / 7
    rule = {"floor": chance}
    core_rule = dict(rule, level=0.75, smooth_percentile=25.0)
    data = np.zeros((100, 100, 100), np.float32)
    data[30:70, 30:70, 30:70] = 1.0  # the sample; the packing is below the threshold's reach
    by_axis = {axis: _curve(low=chance, high=0.95, noise=0.02, seed=axis) for axis in range(3)}
    packing = np.where(np.arange(20) % 6 < 3, 0.95, 0.3)  # unsteady: the packing's certainty
    by_axis[1][70:90] = packing
    grid = volume.ArrayVolume(data)
    untrimmed, _ = localize_rotation.box_and_extras(by_axis, grid, None, rule)
    self.assertGreaterEqual(untrimmed["stop"][1], 85)  # the certainty box takes the packing in
    box, extras = localize_rotation.box_and_extras(by_axis, grid, None, rule, core_rule)
    np.testing.assert_allclose(box["start"] + box["stop"], [30, 30, 30, 70, 70, 70], atol=2)
    self.assertEqual(extras["untrimmed_box"], untrimmed)
    self.assertIn("y+ by", extras["trim"])
    by_axis[1] = _curve(low=chance, high=0.95, noise=0.02, seed=1)  # no packing: nothing to trim
    plain, _ = localize_rotation.box_and_extras(by_axis, grid, None, rule)
    box, extras = localize_rotation.box_and_extras(by_axis, grid, None, rule, core_rule)
    self.assertEqual(box, plain)
    self.assertEqual(extras["trim"], "")


class SharedEncodingTest(absltest.TestCase):
  def test_each_input_encoded_once_gives_the_pair_by_pair_curves(self):
    import jax

    from ssl_ct import tasks
    from ssl_ct.configs import rotation_xenopus
    from ssl_ct.data import fov

    config = rotation_xenopus.get_config("tiny")
    task = tasks.get_task(config)
    model = task.make_model()
    batch = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), task.example_batch(2))
    params = helpers.init_variables(model, {"params": jax.random.key(1)}, batch, deterministic=True)["params"]
    rng = np.random.default_rng(0)
    array = rng.normal(0.0, 0.1, (30, 26, 26)).astype(np.float32)
    array[8:20, 6:18, 9:21] += 1.0
    vol = volume.ArrayVolume(array, name="v")
    vol_fov = fov.estimate_fov(vol)
    kw = {"size": config.data.slice_size, "offsets": (1, 2), "seed": 3}
    zero = list(config.data.angles_deg).index(0)
    pairwise = localize_rotation.certainty_curves_pairwise(
      vol, vol_fov, (0.0, 1.0), p0_fn=localize_rotation.make_p0_fn(model, zero), params=params, batch_size=16, **kw
    )
    shared = localize_rotation.certainty_curves(
      vol, vol_fov, (0.0, 1.0), scorer=localize_rotation.make_pair_scorer(model, zero), params=params, batch_size=12, **kw
    )
    for axis in range(3):
      np.testing.assert_array_equal(np.isnan(shared[axis]), np.isnan(pairwise[axis]))
      np.testing.assert_allclose(shared[axis], pairwise[axis], atol=1e-5)
      self.assertGreater(np.nanstd(pairwise[axis]), 1e-4)  # the curves vary: the comparison means something

  def test_slices_prepared_once_give_the_same_inputs_bit_for_bit(self):
    from ssl_ct.data import fov

    rng = np.random.default_rng(1)
    array = rng.normal(0.0, 0.1, (40, 150, 150)).astype(np.float32)  # y, x > 2x the input: block means too
    array[10:30, 40:100, 50:120] += 1.0
    vol = volume.ArrayVolume(array, name="v")
    vol_fov = fov.estimate_fov(vol)
    kw = {"size": 32, "offsets": (1, 2), "seed": 5}
    for axis in range(3):
      shared = list(localize_rotation._pairs_along(vol, vol_fov, (0.0, 1.0), axis, **kw))
      each = list(localize_rotation._pairs_along(vol, vol_fov, (0.0, 1.0), axis, **kw, shared=False))
      self.assertEqual([p[:2] for p in shared], [p[:2] for p in each])
      for a, b in zip(shared, each):
        np.testing.assert_array_equal(a[2], b[2])
        np.testing.assert_array_equal(a[3], b[3])


class BaselineTest(absltest.TestCase):
  def test_bright_block_in_noise(self):
    rng = np.random.default_rng(0)
    array = rng.normal(0, 0.1, (40, 48, 56)).astype(np.float32)
    array[10:30, 5:20, 30:50] += 1.0
    box = baseline.threshold_box(volume.ArrayVolume(array), max_side=64)
    self.assertEqual(box, {"start": [10, 5, 30], "stop": [30, 20, 50]})

  def test_downsampled_box_maps_back_to_input_voxels(self):
    array = np.zeros((64, 64, 64), np.float32)
    array[16:48, 8:40, 24:56] = 1.0
    box = baseline.threshold_box(volume.ArrayVolume(array), max_side=16)  # factor 4
    self.assertEqual(box, {"start": [16, 8, 24], "stop": [48, 40, 56]})


class MetricsTest(absltest.TestCase):
  def test_by_hand(self):
    truth = {"start": [0, 0, 0], "stop": [10, 10, 10]}
    exact = evaluate.box_metrics(truth, truth, (20, 20, 20))
    self.assertEqual((exact["mae_voxels"], exact["iou"], exact["recall"], exact["kept_fraction"]), (0.0, 1.0, 1.0, 0.125))
    shifted = evaluate.box_metrics({"start": [2, 0, 0], "stop": [12, 10, 10]}, truth, (20, 20, 20))
    self.assertAlmostEqual(shifted["mae_voxels"], 4 / 6)
    self.assertAlmostEqual(shifted["relative_error_pct"], 100 * (4 / 6) / 20)
    self.assertAlmostEqual(shifted["iou"], 800 / 1200)
    self.assertAlmostEqual(shifted["recall"], 0.8)

  def test_recall_counts_mask_voxels_and_null_keeps_everything(self):
    mask = np.zeros((10, 10, 10), bool)
    mask[2:4, 2:4, 2:4] = True
    mask[8, 8, 8] = True
    got = evaluate.box_metrics(
      {"start": [0, 0, 0], "stop": [5, 5, 5]}, {"start": [2, 2, 2], "stop": [9, 9, 9]}, (10, 10, 10), mask
    )
    self.assertAlmostEqual(got["recall"], 8 / 9)
    null = evaluate.box_metrics(None, {"start": [2, 2, 2], "stop": [9, 9, 9]}, (10, 10, 10), mask)
    self.assertEqual((null["recall"], null["kept_fraction"]), (1.0, 1.0))


if __name__ == "__main__":
  absltest.main()
