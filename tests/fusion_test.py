"""Trimming a certainty box with its strict core and the threshold box (ssl_ct/fusion.py)."""

from absl.testing import absltest

from ssl_ct import fusion

SHAPE = (100, 100, 100)


def _box(start, stop):
  return {"start": list(start), "stop": list(stop)}


class TrimBoxTest(absltest.TestCase):
  def test_each_face_moves_in_to_the_outer_of_core_and_threshold(self):
    box = _box((10, 10, 10), (90, 90, 90))  # took in packing on every side
    core = _box((30, 40, 20), (70, 60, 85))
    threshold = _box((25, 45, 15), (75, 55, 95))  # past the box at x+: the box's face stays
    trimmed = fusion.trim_box(box, core, threshold, SHAPE)
    self.assertEqual(trimmed, _box((25, 40, 15), (75, 60, 90)))

  def test_never_grows(self):
    box = _box((40, 40, 40), (60, 60, 60))
    wide = _box((0, 0, 0), (100, 100, 100))
    self.assertEqual(fusion.trim_box(box, wide, wide, SHAPE), box)
    self.assertEqual(fusion.trim_box(box, _box((45, 45, 45), (55, 55, 55)), wide, SHAPE), box)

  def test_a_face_stays_where_either_reaches_it(self):
    box = _box((10, 10, 10), (90, 90, 90))
    core = _box((10, 30, 30), (70, 70, 70))  # the steady plateau reaches z-
    threshold = _box((40, 30, 30), (70, 70, 70))
    self.assertEqual(fusion.trim_box(box, core, threshold, SHAPE), _box((10, 30, 30), (70, 70, 70)))

  def test_unchanged_without_evidence_or_when_the_box_fills_the_field(self):
    box = _box((10, 10, 10), (90, 90, 90))
    core = _box((30, 30, 30), (70, 70, 70))
    self.assertEqual(fusion.trim_box(box, None, core, SHAPE), box)
    self.assertEqual(fusion.trim_box(box, core, None, SHAPE), box)
    self.assertIsNone(fusion.trim_box(None, core, core, SHAPE))
    whole = _box((0, 0, 0), SHAPE)
    self.assertEqual(fusion.trim_box(whole, core, core, SHAPE), whole)

  def test_disjoint_evidence_leaves_the_box(self):
    box = _box((10, 10, 10), (50, 50, 50))
    far = _box((60, 60, 60), (90, 90, 90))  # both outside the box: nothing of it to keep
    self.assertEqual(fusion.trim_box(box, far, far, SHAPE), box)


if __name__ == "__main__":
  absltest.main()
