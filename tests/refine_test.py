"""Box refinement by background subtraction (ssl_ct/refine.py) on planted volumes: a tube with
a bright core and a faint extension, a bright wall that must not pull the box, no empty slices."""

from unittest import mock

import numpy as np
from absl.testing import absltest

from ssl_ct import crop, refine, run_localization
from ssl_ct.data import phantoms, truth
from ssl_ct.data.volume import ArrayVolume


def _tube(seed=0, shape=(120, 48, 48)):
  """Noise with a per-pixel pattern that repeats on every slice (tube wall, medium), plus a bright wall."""
  rng = np.random.default_rng(seed)
  pattern = rng.normal(100.0, 20.0, shape[1:]).astype(np.float32)
  pattern[:, :4] += 400.0  # a bright wall along the whole axis
  return pattern[None] + rng.normal(0.0, 5.0, shape).astype(np.float32)


class RefineTest(absltest.TestCase):
  def test_grows_to_a_faint_extension(self):
    data = _tube()
    data[30:70, 16:32, 16:32] += 60.0  # the core the coarse box sits on
    data[70:78, 20:28, 20:28] += 12.0  # a faint tail along the axis (2.4 x the voxel noise)
    data[40:60, 32:36, 18:30] += 12.0  # a faint fin in the plane
    coarse = {"start": [30, 16, 16], "stop": [70, 32, 32]}
    box, note = refine.refine_box(ArrayVolume(data), coarse, axis=0)
    self.assertEqual(box["start"], [30, 16, 16])
    self.assertEqual(box["stop"], [78, 36, 32])
    self.assertIn("z+ by 8", note)
    self.assertIn("y+ by 4", note)

  def test_a_lower_cut_rank_outvotes_runs_tainted_by_faint_ends_and_debris(self):
    data = _tube(seed=1)
    data[40:80, 16:32, 16:32] += 60.0  # the core the coarse box sits on
    data[28:40, 18:30, 18:30] += 12.0  # faint ends on both sides, reaching into the background runs
    data[80:92, 18:30, 18:30] += 12.0
    data[0:8, 36:44, 6:14] += 30.0  # debris at the volume's end, outside the band
    coarse = {"start": [40, 16, 16], "stop": [80, 32, 32]}
    stalled, _ = refine.refine_box(ArrayVolume(data), coarse, axis=0)  # most runs tainted: the median is one of them
    self.assertEqual(stalled, coarse)
    box, note = refine.refine_box(ArrayVolume(data), coarse, axis=0, cut_slices=8, cut_rank=25.0)
    self.assertEqual(box, {"start": [28, 16, 16], "stop": [92, 32, 32]})
    self.assertIn("z- by 12, z+ by 12", note)

  def test_tiles_outvote_debris_in_every_run_of_a_short_background(self):
    data = _tube(seed=4)
    data[10:110, 16:32, 16:32] += 60.0  # a sample along most of the axis: two runs of background left
    data[40:80, 32:36, 18:30] += 12.0  # its faint fin past y+
    data[2:5, 6:9, 6:9] += 400.0  # a bright particle in each run, apart from the sample in the plane
    data[114:117, 40:43, 40:43] += 400.0
    coarse = {"start": [10, 16, 16], "stop": [110, 32, 32]}
    settings = {"cut_slices": 8, "min_sample_slices": 0.0}
    blind, _ = refine.refine_box(ArrayVolume(data), coarse, axis=0, **settings)  # the cut at the particles' z-scores
    self.assertEqual(blind, coarse)
    self.assertIsNone(refine.refine_box(ArrayVolume(data), coarse, axis=0, cut_slices=8)[0])  # the sample itself unseen
    box, note = refine.refine_box(ArrayVolume(data), coarse, axis=0, cut_tiles=2, **settings)
    self.assertEqual(box["stop"], [110, 36, 32])  # 2 x 2 pieces per run: 2 of 8 hold a particle, outvoted
    self.assertIn("y+ by 4", note)

  def test_a_growth_along_the_axis_that_takes_the_background_is_undone(self):
    data = _tube(seed=5)
    data[6:100, 16:32, 16:32] += 60.0  # the sample, 6 empty slices below it
    data[40:80, 32:36, 18:30] += 12.0  # its faint fin past y+
    data[100:120:2, 38:44, 8:40] += 100.0  # past z+ a packing that changes from slice to slice
    coarse = {"start": [6, 16, 16], "stop": [100, 32, 32]}
    box, note, measured, _ = refine.refine_box_faces(ArrayVolume(data), coarse, axis=0, min_sample_slices=0.0, cut_tiles=2)
    # Grown over the packing along z, the box would leave 4 empty slices: too few to refine the
    # plane against. The growth is undone, the plane refined against the background before it.
    self.assertEqual((box["start"][0], box["stop"][0]), (6, 100))
    self.assertGreaterEqual(box["stop"][1], 36)  # over the fin
    self.assertIn("the growth along z undone", note)
    self.assertEqual(measured[0], [False, False])  # z's faces not placed: the uniform margin there
    self.assertIn(True, measured[1] + measured[2])

  def test_never_shrinks_and_ignores_what_every_slice_has(self):
    data = _tube(seed=1)
    data[30:70, 10:38, 10:38] += 60.0
    coarse = {"start": [25, 6, 8], "stop": [75, 40, 40]}  # loose already; the wall at x < 4 is on every slice
    box, note = refine.refine_box(ArrayVolume(data), coarse, axis=0)
    self.assertEqual(box, coarse)
    self.assertEqual(note, "")

  def test_fit_moves_the_plane_faces_in_to_the_sample_and_out_to_its_fin(self):
    data = _tube(seed=1)
    data[30:70, 10:38, 10:38] += 60.0
    data[40:60, 38:42, 18:30] += 12.0  # a faint fin past the box's y+ face
    coarse = {"start": [25, 6, 12], "stop": [75, 38, 44]}  # loose on y- and x+, tight on x-, short of the fin
    box, note = refine.refine_box(ArrayVolume(data), coarse, axis=0, plane="fit")
    # In the plane: y- and x+ in to the sample, y+ out over the fin, x- out to the sample; z never moves in.
    self.assertEqual(box, {"start": [25, 10, 10], "stop": [75, 42, 38]})
    self.assertIn("grown to the faint sample: y+ by 4, x- by 2 voxels", note)
    self.assertIn("moved in to the sample: y- by 4, x+ by 6 voxels", note)
    summary = run_localization._refinement_note({"a": note, "b": "moved in to the sample: x+ by 1 voxels", "c": ""})
    self.assertIn("1 of 3 boxes grown", summary)
    self.assertIn("2 with faces moved in to where the sample ends", summary)
    self.assertNotIn("too faint", summary)  # "grown to the faint sample" is not a faint box
    grown, _ = refine.refine_box(ArrayVolume(data), coarse, axis=0)  # the default only grows
    self.assertEqual(grown, {"start": [25, 6, 10], "stop": [75, 42, 44]})

  def test_a_lower_fit_fraction_keeps_a_faint_part_the_fit_would_cut(self):
    data = _tube(seed=1)
    data[30:70, 10:38, 10:38] += 60.0
    data[48:52, 6:10, 22:25] += 12.0  # a small faint part of the sample inside the loose y- face
    coarse = {"start": [25, 6, 12], "stop": [75, 38, 44]}
    cut, _ = refine.refine_box(ArrayVolume(data), coarse, axis=0, plane="fit")
    self.assertEqual(cut["start"][1], 10)  # in to the bright part: the faint one cut away
    kept, _ = refine.refine_box(ArrayVolume(data), coarse, axis=0, plane="fit", fit_fraction=0.001)
    self.assertEqual(kept["start"][1], 6)  # its weak foreground holds the face
    self.assertEqual(kept["stop"], cut["stop"])  # where nothing faint lies, the same fit (x+ in to 38)
    self.assertEqual(kept["start"][2], cut["start"][2])  # and outward the same (x- out to 10)

  def test_debris_apart_from_the_sample_does_not_hold_or_pull_a_face(self):
    data = _tube(seed=2)
    data[30:70, 10:38, 10:38] += 60.0  # the sample
    data[50:54, 40:44, 20:24] += 150.0  # a bright particle 2 voxels past its y+ face
    data[72:75, 20:24, 30:34] += 150.0  # and one 2 slices past its z+ end
    coarse = {"start": [30, 10, 10], "stop": [70, 46, 38]}  # loose on y+, over the particle
    fooled, _ = refine.refine_box(ArrayVolume(data), coarse, axis=0, plane="fit")
    self.assertEqual(fooled, {"start": [30, 10, 10], "stop": [75, 44, 38]})  # both particles taken for sample
    box, _ = refine.refine_box(ArrayVolume(data), coarse, axis=0, plane="fit", min_component=0.1)
    self.assertEqual(box, {"start": [30, 10, 10], "stop": [70, 38, 38]})
    with mock.patch.object(refine, "_CACHED_BYTES", 0):  # the foreground computed again rather than kept: the same
      self.assertEqual(refine.refine_box(ArrayVolume(data), coarse, axis=0, plane="fit", min_component=0.1)[0], box)
    # Labelled on pooled cells (a large region) the gaps close: the particles join the sample again.
    with mock.patch.object(refine, "_COMPONENT_CELLS", 4096):
      pooled, _ = refine.refine_box(ArrayVolume(data), coarse, axis=0, plane="fit", min_component=0.1)
    self.assertEqual(pooled, fooled)
    # A part of the sample apart from the rest but past a tenth of its size stays.
    data[30:70, 5:8, 10:38] += 60.0
    apart, _ = refine.refine_box(ArrayVolume(data), coarse, axis=0, plane="fit", min_component=0.1)
    self.assertEqual(apart, {"start": [30, 5, 10], "stop": [70, 38, 38]})

  def test_fit_axis_moves_the_faces_along_the_axis_in_to_the_sample(self):
    data = _tube(seed=3)
    data[40:70, 10:38, 10:38] += 60.0
    coarse = {"start": [28, 10, 10], "stop": [76, 38, 38]}  # 12 and 6 empty slices inside along z
    grown, _ = refine.refine_box(ArrayVolume(data), coarse, axis=0, plane="fit")
    self.assertEqual(grown, coarse)  # along the axis the faces only grow
    fitted, note = refine.refine_box(ArrayVolume(data), coarse, axis=0, plane="fit", fit_axis=True)
    self.assertEqual(fitted, {"start": [40, 10, 10], "stop": [70, 38, 38]})
    self.assertIn("moved in to the sample: z- by 12, z+ by 6 voxels", note)

  def test_a_faint_sample_keeps_its_faces_and_none_is_measured(self):
    data = _tube(seed=2)
    data[30:70, 10:38, 10:38] += 2.0  # a sample nearly as dense as its medium: its z-scores stay under the cut
    data[45:55, 20:28, 20:28] += 60.0  # all the z-scores see: a small dense core
    coarse = {"start": [25, 6, 6], "stop": [75, 42, 42]}  # loose around the faint sample
    volume, settings = ArrayVolume(data), {"plane": "fit", "min_sample_slices": 0.0}  # never null: the core holds few slices
    cut, _, measured, _ = refine.refine_box_faces(volume, coarse, axis=0, **settings)
    self.assertEqual((cut["start"][1:], cut["stop"][1:]), ([20, 20], [28, 28]))  # in to the core: the sample cut away
    self.assertIn([True, True], measured)
    box, note, measured, _ = refine.refine_box_faces(volume, coarse, axis=0, faint_fraction=0.05, **settings)
    self.assertEqual(box, coarse)  # faces only grow, and nothing faint past them to grow over
    self.assertEqual(measured, [[False, False]] * 3)  # the crop keeps the uniform margin on every face
    self.assertIn(f"{refine.FAINT}: ", note)
    self.assertIn("(needs 5%)", note)
    bright = _tube(seed=2)
    bright[30:70, 10:38, 10:38] += 60.0
    box, note, measured, _ = refine.refine_box_faces(ArrayVolume(bright), coarse, axis=0, faint_fraction=0.05, **settings)
    self.assertEqual((box["start"][1:], box["stop"][1:]), ([10, 10], [38, 38]))  # a sample it sees: fit as before
    self.assertNotIn(refine.FAINT, note)
    summary = run_localization._refinement_note({"a": f"{refine.FAINT}: 1.0% ...", "b": ""})
    self.assertIn("1 too faint for their faces to be measured", summary)

  def test_tails_reach_over_the_faint_foreground_past_a_face_and_not_past_a_sharp_one(self):
    data = _tube(seed=3)
    data[30:70, 16:32, 16:32] += 60.0  # the sample: sharp faces
    # Past z+ a trickle of sample: 4 slices whose foreground is a 3 x 3 speck (smoothed: a few more
    # voxels) each, under the growth's min_fraction (0.02 of the band's 40 x 40 cross-section: 32
    # voxels) but over the tails' (0.002: 4 voxels).
    data[70:74, 23:26, 23:26] += 60.0
    coarse = {"start": [30, 16, 16], "stop": [70, 32, 32]}
    settings = {"min_fraction": 0.02, "tail_fraction": 0.002}
    box, _, measured, tails = refine.refine_box_faces(ArrayVolume(data), coarse, axis=0, **settings)
    self.assertEqual(box, coarse)  # the trickle is too thin to grow the box
    self.assertEqual(measured, [[True, True]] * 3)
    self.assertEqual(tails[0], [0, 4])  # 4 slices of faint foreground past z+, none past z-
    self.assertEqual(tails[1:], [[0, 0], [0, 0]])  # sharp in the plane
    self.assertIsNone(refine.refine_box_faces(ArrayVolume(data), coarse, axis=0, min_fraction=0.02)[3])  # off by default
    pads = crop.face_pads(measured, data.shape, 0.05, 0.0, tails=tails)
    self.assertEqual(pads, [[0, 4], [0, 0], [0, 0]])  # the tail as the margin, 0 where the sample ends sharply
    self.assertEqual(crop.face_pads(measured, data.shape, 0.02, 0.0, tails=[[0, 9], [0, 0], [0, 0]])[0], [0, 3])  # <= uniform

  def test_band_caps_the_growth(self):
    data = _tube(seed=2)
    data[30:70, 16:32, 16:32] += 60.0
    coarse = {"start": [30, 16, 16], "stop": [50, 32, 32]}  # the sample goes on past the band
    box, _ = refine.refine_box(ArrayVolume(data), coarse, axis=0, band=0.1)
    self.assertEqual(box["stop"][0], 62)  # 50 + 0.1 * 120

  def test_measured_faces_are_those_the_growth_stopped_short_of_its_band(self):
    data = _tube(seed=2)
    data[30:70, 16:32, 16:32] += 60.0
    coarse = {"start": [30, 16, 16], "stop": [50, 32, 32]}  # the sample goes on past the band along z
    box, _, measured, _ = refine.refine_box_faces(ArrayVolume(data), coarse, axis=0, band=0.1)
    self.assertEqual(box["stop"][0], 62)  # at the band's limit: more sample may lie past it
    self.assertEqual(measured, [[True, False], [True, True], [True, True]])
    whole = refine.refine_box_faces(ArrayVolume(data), {"start": [30, 16, 16], "stop": [70, 32, 32]}, axis=0)
    self.assertEqual(whole[2], [[True, True]] * 3)  # the sample's ends found inside the band on every face
    plane = refine.refine_box_faces(ArrayVolume(data), {"start": [30, 16, 16], "stop": [70, 32, 32]}, axis=0, measure="plane")
    self.assertEqual(plane[:2], whole[:2])  # the same box; only the faces in the plane across the axis count
    self.assertEqual(plane[2], [[False, False], [True, True], [True, True]])
    # Too few empty slices to compare against: nothing measured.
    _, note, measured, tails = refine.refine_box_faces(
      ArrayVolume(data), {"start": [4, 16, 16], "stop": [116, 32, 32]}, axis=0, tail_fraction=0.001
    )
    self.assertIn("not refined", note)
    self.assertEqual(measured, [[False, False]] * 3)
    self.assertIsNone(tails)  # nor any tail
    # A face on the volume's boundary has nothing past it to lose; one at its band's limit (10 +- 10 here) may.
    faces = refine._measured_faces((40, 40, 40), [10, 10, 10], [20, 20, 20], [0, 8, 0], [30, 20, 40], band=0.25)
    self.assertEqual(faces, [[True, False], [True, True], [True, True]])

  def test_a_box_around_nothing_is_no_sample(self):
    data = _tube(seed=4)
    data[10:14, 30:33, 30:33] += 60.0  # a speck of debris: a few slices, not the box
    box, note = refine.refine_box(ArrayVolume(data), {"start": [10, 16, 16], "stop": [70, 40, 40]}, axis=0)
    self.assertIsNone(box)
    self.assertIn("no sample", note)
    self.assertIsNone(
      refine.refine_box(ArrayVolume(data), {"start": [10, 16, 16], "stop": [70, 40, 40]}, axis=0, min_coverage=0.9)[0]
    )

  def test_a_box_off_the_sample_along_the_axis_is_grown_not_null(self):
    data = _tube(seed=8)
    data[60:110, 16:32, 16:32] += 60.0
    coarse = {"start": [10, 16, 16], "stop": [50, 32, 32]}  # tube only: its slices are like those outside it
    self.assertIsNone(refine.refine_box(ArrayVolume(data), coarse, axis=0)[0])
    box, note = refine.refine_box(ArrayVolume(data), coarse, axis=0, min_coverage=0.9)
    self.assertEqual(box, {"start": [10, 16, 16], "stop": [110, 32, 32]})
    self.assertIn("held 0% of the volume's foreground along z", note)

  def test_a_box_beside_the_sample_grows_to_its_slices_foreground(self):
    data = _tube(seed=6)
    data[30:70, 24:40, 24:40] += 60.0  # the sample
    coarse = {"start": [30, 4, 4], "stop": [70, 16, 16]}  # beside it, by the wall: the band reaches only its edge
    local, _ = refine.refine_box(ArrayVolume(data), coarse, axis=0)
    self.assertEqual(local["stop"][1:], [16, 16])  # the band's growth stops at the medium between them
    box, note = refine.refine_box(ArrayVolume(data), coarse, axis=0, min_coverage=0.9)
    self.assertEqual(box["start"], [30, 4, 4])  # a union: never inward
    self.assertEqual(box["stop"], [70, 40, 40])
    self.assertIn("held 0% of its slices' foreground along y", note)
    inside = {"start": [30, 24, 24], "stop": [70, 40, 40]}
    self.assertEqual(refine.refine_box(ArrayVolume(data), inside, axis=0, min_coverage=0.9), (inside, ""))

  def test_a_box_the_coverage_rule_moved_is_grown_again_along_the_axis(self):
    data = _tube(seed=6)
    data[30:70, 24:40, 24:40] += 60.0
    data[70:78, 28:36, 28:36] += 12.0  # a faint tail, which the band beside the sample never saw
    coarse = {"start": [30, 4, 4], "stop": [70, 16, 16]}
    box, note, measured, _ = refine.refine_box_faces(ArrayVolume(data), coarse, axis=0, min_coverage=0.9)
    self.assertEqual(box, {"start": [30, 4, 4], "stop": [78, 40, 40]})
    self.assertIn("z+ by 8", note)
    self.assertEqual(measured[0], [True, True])  # z+ measured where the tail ends, not where the core did

  def test_a_box_beside_the_sample_is_grown_to_it_rather_than_null(self):
    data = _tube(seed=9)
    data[30:70, 28:44, 16:32] += 60.0
    coarse = {"start": [30, 0, 16], "stop": [70, 8, 32]}  # its band holds none of the sample
    self.assertIsNone(refine.refine_box(ArrayVolume(data), coarse, axis=0)[0])
    box, note = refine.refine_box(ArrayVolume(data), coarse, axis=0, min_coverage=0.9)
    self.assertEqual(box, {"start": [30, 0, 16], "stop": [70, 44, 32]})
    self.assertIn("held 0% of its slices' foreground along y", note)
    summary = run_localization._refinement_note({"a": note, "b": "grown to the faint sample: z+ by 1 voxels", "c": ""})
    self.assertIn("2 of 3 boxes grown", summary)
    self.assertIn("1 of the model's boxes missed much of the foreground", summary)  # the report flags the weak model

  def test_a_box_ending_halfway_along_the_sample_grows_to_the_volumes_foreground(self):
    data = _tube(seed=7)
    data[30:100, 16:32, 16:32] += 60.0
    coarse = {"start": [0, 16, 16], "stop": [60, 32, 32]}  # most slices outside it hold the sample: its background
    local, _ = refine.refine_box(ArrayVolume(data), coarse, axis=0)
    self.assertLess(local["stop"][0], 100)
    box, note = refine.refine_box(ArrayVolume(data), coarse, axis=0, min_coverage=0.9)
    self.assertEqual(box, {"start": [0, 16, 16], "stop": [100, 32, 32]})  # against the end slices
    self.assertIn("of the volume's foreground along z", note)

  def test_without_empty_slices_the_box_stays(self):
    data = _tube(seed=3, shape=(40, 32, 32))
    data[2:38, 8:24, 8:24] += 60.0
    coarse = {"start": [2, 8, 8], "stop": [38, 24, 24]}
    box, note = refine.refine_box(ArrayVolume(data), coarse, axis=0)
    self.assertEqual(box, coarse)
    self.assertIn("not refined", note)
    self.assertEqual(refine.refine_box(ArrayVolume(data), None, axis=0), (None, ""))

  def test_a_box_without_empty_slices_is_refined_from_the_threshold_box(self):
    data = _tube(seed=7)
    data[40:80, 12:36, 12:36] += 60.0
    data[80:86, 18:30, 18:30] += 12.0  # a faint end the threshold box misses
    coarse = {"start": [0, 10, 10], "stop": [120, 38, 38]}  # the whole axis: a curve that read the medium
    seed = {"start": [42, 12, 12], "stop": [78, 36, 36]}  # tighter than the sample along z
    volume, settings = ArrayVolume(data), {"plane": "fit", "fit_axis": True}
    self.assertEqual(refine.refine_box(volume, coarse, axis=0, **settings)[0], coarse)  # no empty slice to refine against
    box, note, measured, _ = refine.refine_box_faces(volume, coarse, axis=0, axis_seed=seed, **settings)
    self.assertEqual(box, {"start": [40, 12, 12], "stop": [86, 36, 36]})  # the growth took back what the seed missed
    self.assertIn(f"{refine.SEEDED} along z", note)
    self.assertEqual(measured, [[True, True]] * 3)
    summary = run_localization._refinement_note({"a": note, "b": ""})
    self.assertIn("1 refined from the threshold box's extent along the axis", summary)  # the report counts them

  def test_a_threshold_box_within_a_sample_that_fills_the_axis_leaves_the_box(self):
    data = _tube(seed=8)
    data[3:117, 12:36, 12:36] += 60.0  # a sample along nearly all of the axis
    coarse = {"start": [0, 10, 10], "stop": [120, 38, 38]}
    volume, settings = ArrayVolume(data), {"plane": "fit", "fit_axis": True}
    for seed in ({"start": [40, 12, 12], "stop": [80, 36, 36]}, {"start": [2, 12, 12], "stop": [118, 36, 36]}):
      box, note, measured, _ = refine.refine_box_faces(volume, coarse, axis=0, axis_seed=seed, **settings)
      self.assertEqual(box, coarse)  # the growth from the cut went back to the ends (undone), or no cut left room
      self.assertIn("not refined further", note)
      self.assertEqual(measured, [[False, False]] * 3)

  def test_faces_across_a_filled_axis_are_measured_by_growths_along_the_plane(self):
    rng = np.random.default_rng(10)
    data = rng.normal(100.0, 5.0, (40, 48, 48)).astype(np.float32)
    data[:, 14:30, 16:34] += 60.0  # a sample along the whole axis: no empty slice along it
    data[:, 30:44, 16:34] += 40.0  # packing against its y+ face, as far along y as the band and past it
    coarse = {"start": [0, 16, 18], "stop": [40, 30, 32]}  # inside the sample in the plane
    volume, settings = ArrayVolume(data), {"plane": "fit", "fit_axis": True}
    box, note, measured, _ = refine.refine_box_faces(volume, coarse, axis=0, **settings)
    self.assertEqual((box, measured), (coarse, [[False, False]] * 3))  # off: the crop keeps its margin on every face
    box, note, measured, _ = refine.refine_box_faces(volume, coarse, axis=0, across_band=0.05, **settings)
    self.assertEqual(box, {"start": [0, 14, 16], "stop": [40, 30, 34]})  # y+ stays: the packing runs past the band
    self.assertEqual(measured, [[False, False], [True, False], [True, True]])
    self.assertIn(f"{refine.ACROSS} z measured by growths along y and x: y-, x-, x+", note)
    summary = run_localization._refinement_note({"a": note, "b": ""})
    self.assertIn("1 with faces across the axis measured by growths along the other two", summary)

  def test_growths_across_a_filled_axis_never_cut_an_embryo_in_its_round_tube(self):
    # A certainty curve that read the medium on every z slice: the box takes all of z. Along y
    # and x the tube's chords of medium differ from slice to slice and score as sample; a fit in
    # to that foreground once moved faces in past the embryo (volume 1: x+ by 8 voxels).
    settings = {"plane": "fit", "fit_axis": True, "fit_fraction": 0.0025, "min_fraction": 0.01, "min_component": 0.03}
    for index in (1, 4, 5):
      recon, phantom, _ = phantoms.synthesize("xenopus", (64, 64, 64), 4, index)
      true_box = truth.box_of_mask(phantom.mask_DxHxW)
      coarse = {"start": [0, *(a - 1 for a in true_box["start"][1:])], "stop": [64, *(b + 1 for b in true_box["stop"][1:])]}
      box, note, _, _ = refine.refine_box_faces(ArrayVolume(recon), coarse, axis=0, across_band=0.05, **settings)
      self.assertIn("fewer than 8 empty slices along z", note)
      for d in (1, 2):
        self.assertLessEqual(box["start"][d], true_box["start"][d], (index, note))
        self.assertGreaterEqual(box["stop"][d], true_box["stop"][d], (index, note))

  def test_a_threshold_box_on_the_same_object_past_the_box_overrules_no_sample(self):
    data = _tube(seed=9)
    data[:, 12:36, 12:36] += 60.0  # a sample along the whole axis, alike on every slice
    coarse = {"start": [30, 12, 12], "stop": [120, 36, 36]}  # its slices look like those outside it
    volume = ArrayVolume(data)
    self.assertIsNone(refine.refine_box(volume, coarse, axis=0)[0])
    tube = {"start": [0, 2, 2], "stop": [120, 46, 46]}  # a holder around the box: says nothing of it
    self.assertIsNone(refine.refine_box(volume, coarse, axis=0, axis_seed=tube)[0])
    same = {"start": [0, 12, 12], "stop": [120, 36, 36]}
    box, note, measured, _ = refine.refine_box_faces(volume, coarse, axis=0, axis_seed=same)
    self.assertEqual(box, {"start": [0, 12, 12], "stop": [120, 36, 36]})  # the seed's extent along the axis, unrefined
    self.assertIn(refine.SEED_PAST, note)
    self.assertEqual(measured, [[False, False]] * 3)
    summary = run_localization._refinement_note({"a": note})
    self.assertIn("0 of 1 boxes grown to faint parts", summary)
    self.assertIn("1 grown to the threshold box's extent along the axis instead of null", summary)


class _FixedLocalizer:
  method_name = "fixed"

  def __init__(self, box, outcome="sample box"):
    self.box, self.outcome = box, outcome

  def localize(self, volume, volume_fov, value_range):
    return self.box, {"outcome": self.outcome}


class RefinedLocalizerTest(absltest.TestCase):
  def test_wraps_any_localizer(self):
    data = _tube(seed=5)
    data[30:70, 16:32, 16:32] += 60.0
    data[70:76, 20:28, 20:28] += 12.0
    coarse = {"start": [30, 16, 16], "stop": [70, 32, 32]}
    box, extras = refine.Refined(_FixedLocalizer(coarse), lambda shape: 0).localize(ArrayVolume(data), None, None)
    self.assertEqual(extras["coarse_box"], coarse)
    self.assertEqual(box["stop"][0], 76)
    self.assertIn("z+ by 6", extras["refinement"])
    self.assertEqual(extras["outcome"], "sample box")
    empty = refine.Refined(_FixedLocalizer(coarse), lambda shape: 0).localize(ArrayVolume(_tube(seed=6)), None, None)
    self.assertEqual((empty[0], empty[1]["outcome"]), (None, "no sample"))
    whole = {"start": [0, 0, 0], "stop": [120, 48, 48]}
    kept = refine.Refined(_FixedLocalizer(whole, "fills the field"), lambda shape: 0).localize(ArrayVolume(data), None, None)
    self.assertEqual(kept, (whole, {"outcome": "fills the field"}))

  def test_from_threshold_seeds_the_refinement_with_the_localizer_threshold_box(self):
    data = _tube(seed=7)
    data[40:80, 12:36, 12:36] += 60.0
    coarse = {"start": [0, 12, 12], "stop": [120, 36, 36]}
    inner = _FixedLocalizer(coarse)
    inner.localize = lambda *args: (
      coarse,
      {"outcome": "sample box", "threshold_box": {"start": [40, 12, 12], "stop": [80, 36, 36]}},
    )
    for seeded, stop in ((False, 120), (True, 80)):
      box, _ = refine.Refined(inner, lambda shape: 0, from_threshold=seeded, fit_axis=True).localize(
        ArrayVolume(data), None, None
      )
      self.assertEqual(box["stop"][0], stop)


if __name__ == "__main__":
  absltest.main()
