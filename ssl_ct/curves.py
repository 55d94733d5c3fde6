"""One-dimensional profile rule: where along an axis does a per-slice curve rise above its background?

Shared by the rotation localizer (certainty p0 per slice) and the sorting localizer (how far
the position score departs from its empty-slice level). Curve rule: median-smooth the curve
(or a lower rank filter, `smooth_percentile`: a background with structure, such as packing,
scores high on average but unsteadily; a sample steadily);
take the background and sample levels from its 10th and 90th percentiles (the sample fills
part of the axis, never all of it; the background level is then the median of the slices near
the 10th percentile; with a `floor`, when the sample fills more than nine tenths of the axis,
the median of the slices at the floor); call the axis empty when they differ by less than `min_contrast` or than
`noise_factor` times the curve's own slice-to-slice noise; otherwise cut at `cut_noise_factor`
times the background slices' noise above the background (and at least `level` of the way from
background to sample), close dips shorter than `max_gap` (fraction of the axis) and keep the run
above the cut with the largest area: the sample's interval.

When the curve has an absolute scale (`floor`: what a slice without sample scores, e.g. the
rotation certainty at chance, 1/angle classes) a third outcome is read from the levels, not
the contrast: if even the least certain `fill_percentile` % of the scored slices (of the
smoothed curve: a run of empty slices shorter than half the smoothing window does not count)
sits `fill_margin` above the floor, there is no sample-free slice on the axis, and the sample
fills it (the whole axis). With `fill_level`, those slices must also sit that fraction of the way
from the floor to the sample's certainty (the 90th percentile): a background that the model reads
somewhat (certainty well above chance, but far below the sample's, on every empty slice: an axis
along which the medium or the holder has an orientation) is not taken for sample; the interval
found on such an axis then takes in every slice past halfway from that level to the sample's
certainty, so that a less certain stretch inside the sample does not split it.
"""

import numpy as np
import scipy.ndimage


def smooth_curve(curve, window_fraction, percentile=50.0):
  """Rank filter over about `window_fraction` of the axis (the median at 50; lower: a slice must be
  steadily high, not only on average, to stay high); slices without a score count as background."""
  filled = np.where(np.isnan(curve), np.nanmin(curve) if np.any(~np.isnan(curve)) else 0.0, curve)
  window = max(3, int(round(window_fraction * len(curve))) | 1)
  return scipy.ndimage.percentile_filter(filled, percentile, size=window, mode="nearest")


def curve_noise(curve, keep=None):
  """Robust std of the slice-to-slice jitter (MAD of first differences), over slices where `keep`."""
  keep = ~np.isnan(curve) if keep is None else keep & ~np.isnan(curve)
  diffs = np.diff(curve)[keep[1:] & keep[:-1]]
  return float(1.4826 * np.median(np.abs(diffs - np.median(diffs))) / np.sqrt(2)) if len(diffs) else 0.0


def _least_certain(values, scored, fill_percentile):
  """The smoothed certainty of the least certain `fill_percentile` % of the scored slices (None
  with fewer than two scored: no level to read)."""
  return float(np.percentile(values[scored], fill_percentile)) if scored.sum() >= 2 else None


def reaches_chance(curve, *, floor, fill_margin=0.2, fill_percentile=0.0, smooth=0.03, smooth_percentile=50.0, **_):
  """True when the least certain `fill_percentile` % of the smoothed curve's scored slices sit within
  `fill_margin` of `floor`: the axis has slices the model reads no better than chance (empty ones)."""
  low = _least_certain(smooth_curve(curve, smooth, smooth_percentile), ~np.isnan(curve), fill_percentile)
  return low is None or low <= floor + fill_margin


def interval_from_curve(
  curve,
  *,
  smooth=0.03,
  level=0.0,
  min_contrast=0.1,
  max_gap=0.02,
  noise_factor=4.0,
  cut_noise_factor=2.0,
  floor=None,
  fill_margin=0.2,
  fill_level=0.0,
  fill_percentile=0.0,
  smooth_percentile=50.0,
):
  """Half-open (start, stop) of the sample along one axis, or None when the curve shows no sample.

  With `floor` (the score of a slice without sample), (0, len) when the sample fills the axis.
  """
  values, scored = smooth_curve(curve, smooth, smooth_percentile), ~np.isnan(curve)
  empty_level = -np.inf if floor is None else floor + fill_margin  # at or below: a slice without sample
  low = None if floor is None else _least_certain(values, scored, fill_percentile)
  if low is not None:
    top = float(np.percentile(values[scored], 90))  # the sample's certainty
    fill_cut = max(empty_level, floor + fill_level * (top - floor))
    if low > fill_cut:
      return 0, len(curve)
  # Past the fill margin everywhere but not the fill level: a background the model reads, or a
  # sample less certain on some slices (a dip inside it), which must not split it (below).
  read_background = low is not None and low > empty_level
  background, sample = np.percentile(values, [10, 90])
  near_floor = values <= empty_level
  if background > empty_level and near_floor.any():
    # The sample fills more than nine tenths of the axis: its empty slices are those at the floor.
    background = float(np.median(values[near_floor]))
  if sample - background < max(min_contrast, noise_factor * curve_noise(curve)):
    return None
  in_background = values <= background + 0.25 * (sample - background)
  background = float(np.median(values[in_background]))  # the level itself, not its lower tail
  threshold = background + max(level * (sample - background), cut_noise_factor * curve_noise(curve, keep=in_background))
  gap = max(1, int(round(max_gap * len(values))))
  above = scipy.ndimage.binary_closing(np.pad(values > threshold, gap), structure=np.ones(gap + 1, bool))[gap:-gap]
  labels, count = scipy.ndimage.label(above)
  if count == 0:
    return None
  areas = scipy.ndimage.sum(values - threshold, labels, index=np.arange(1, count + 1))
  run = np.nonzero(labels == np.argmax(areas) + 1)[0]
  start, stop = int(run[0]), int(run[-1]) + 1
  if read_background:
    # A slice nearly as certain as the sample (past halfway from the fill level to the sample's
    # certainty; the read background's noisy slices reach the fill level itself) is sample,
    # whatever dips between it and the run: a less certain stretch inside does not split it.
    past = np.flatnonzero(scored & (values > (fill_cut + top) / 2))
    if past.size:
      start, stop = min(start, int(past[0])), max(stop, int(past[-1]) + 1)
  return start, stop
