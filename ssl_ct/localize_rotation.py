"""Rotation-loss localization: certainty p0 of the unrotated pair, per slice along each axis.

Each slice is paired with twins at the given offsets (slices, both directions), all under
the same pseudo-random base rotation (as in training) and no relative rotation; p0 is the
model's probability of the 0-degree class, averaged over the twins. Near twins (the paper
uses the adjacent slice) keep the curve's edges sharp: a twin k slices away blurs the
sample's edge over k slices, since a slice just outside the sample paired with a twin
inside it is scored as neither. Slices with several field-of-view windows keep
their most certain window. Slices are scored in fixed-size batches through one jit-compiled function, so
memory holds one batch and the curves, whatever the volume size.

Curve rule (per axis): median-smooth the curve; take the background and sample certainty
levels from its 10th and 90th percentiles (the sample fills part of the axis, never all of
it; the background level is then the median of the slices near the 10th percentile); call the axis empty when they differ by less than `min_contrast` or than
`noise_factor` times the curve's own slice-to-slice noise; otherwise cut at
`cut_noise_factor` times the background slices' noise above the background (and at least
`level` of the way from background to sample), close dips shorter than `max_gap` (fraction
of the axis) and keep the run above the cut with the largest area: the sample's interval.
"""

import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage

from ssl_ct.data import fov, slices


def make_p0_fn(model, zero_class):
  """jit-compiled (params, ref, twin) -> p0_B."""

  @jax.jit
  def p0(params, ref_BxNxNx1, twin_BxNxNx1):
    logits_BxA, _ = model.apply({"params": params}, {"ref": ref_BxNxNx1, "twin": twin_BxNxNx1}, deterministic=True)
    return jax.nn.softmax(logits_BxA)[:, zero_class]

  return p0


def _twin_indices(index, first, stop, offsets):
  """Twins at +-offset (reflected back inside [first, stop) near the ends)."""
  twins = []
  for offset in offsets:
    for signed in (offset, -offset):
      twin = index + signed
      twins.append(twin if first <= twin < stop else index - signed)
  return [int(np.clip(t, first, stop - 1)) for t in twins]


def _pairs_along(volume, volume_fov, value_range, axis, *, size, offsets, seed):
  """Yields (index, window number, ref, twin) for every twin of every window of every valid slice."""
  first, stop = fov.valid_indices(volume.shape, volume_fov, axis)
  steps = sorted(set(offsets))
  cache = {}
  for index in range(first, stop):
    twins = _twin_indices(index, first, stop, steps)
    for i in (index, *twins):
      if i not in cache:
        cache[i] = volume.slice(axis, i)
    base = np.random.default_rng([seed, axis, index]).uniform(0.0, 360.0)
    ref_windows = fov.slice_windows(volume.shape, volume_fov, axis, index)
    for k, window in enumerate(ref_windows):
      ref = slices.model_input(cache[index], value_range, size, base, window)
      for twin_index in twins:
        twin_windows = fov.slice_windows(volume.shape, volume_fov, axis, twin_index)
        twin_window = twin_windows[min(round(k * len(twin_windows) / len(ref_windows)), len(twin_windows) - 1)]
        yield index, k, ref, slices.model_input(cache[twin_index], value_range, size, base, twin_window)
    reach = index - max(steps) - 1  # slices the coming indices never pair with again
    cache = {i: s for i, s in cache.items() if i >= reach}


def _score_batches(pairs, p0_fn, params, batch_size):
  """Yields (index, window, p0) for every pair, in fixed-size batches (one compilation)."""
  pending = []
  for item in [*pairs, None]:
    if item is not None:
      pending.append(item)
    if pending and (len(pending) == batch_size or item is None):
      pad = [pending[0]] * (batch_size - len(pending))
      refs = jnp.asarray(np.stack([p[2] for p in pending + pad]))
      twins = jnp.asarray(np.stack([p[3] for p in pending + pad]))
      scores = np.asarray(p0_fn(params, refs, twins))[: len(pending)]
      yield from ((p[0], p[1], s) for p, s in zip(pending, scores))
      pending = []


def certainty_curves(volume, volume_fov, value_range, *, p0_fn, params, size, offsets=(1, 2), batch_size=64, seed=0):
  """{axis: curve}: per slice, p0 averaged over twins, max over windows (NaN: no window)."""
  curves = {}
  for axis in range(3):
    sums, counts = {}, {}
    pairs = _pairs_along(volume, volume_fov, value_range, axis, size=size, offsets=offsets, seed=seed)
    for index, window, score in _score_batches(pairs, p0_fn, params, batch_size):
      sums[index, window] = sums.get((index, window), 0.0) + float(score)
      counts[index, window] = counts.get((index, window), 0) + 1
    curve = np.full(volume.shape[axis], np.nan, np.float32)
    for (index, window), total in sums.items():
      curve[index] = np.nanmax([curve[index], total / counts[index, window]])
    curves[axis] = curve
  return curves


def smooth_curve(curve, window_fraction):
  """Median filter over about `window_fraction` of the axis; slices without a score count as background."""
  filled = np.where(np.isnan(curve), np.nanmin(curve) if np.any(~np.isnan(curve)) else 0.0, curve)
  window = max(3, int(round(window_fraction * len(curve))) | 1)
  return scipy.ndimage.median_filter(filled, size=window, mode="nearest")


def curve_noise(curve, keep=None):
  """Robust std of the slice-to-slice jitter (MAD of first differences), over slices where `keep`."""
  keep = ~np.isnan(curve) if keep is None else keep & ~np.isnan(curve)
  diffs = np.diff(curve)[keep[1:] & keep[:-1]]
  return float(1.4826 * np.median(np.abs(diffs - np.median(diffs))) / np.sqrt(2)) if len(diffs) else 0.0


def interval_from_curve(curve, *, smooth=0.03, level=0.0, min_contrast=0.1, max_gap=0.02, noise_factor=4.0, cut_noise_factor=2.0):
  """Half-open (start, stop) of the sample along one axis, or None when the curve shows no sample."""
  values = smooth_curve(curve, smooth)
  background, sample = np.percentile(values, [10, 90])
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
  return int(run[0]), int(run[-1]) + 1


def box_from_curves(curves, **rule):
  """{"start", "stop"} from the three axes' intervals, or None when any axis shows no sample."""
  intervals = [interval_from_curve(curves[axis], **rule) for axis in range(3)]
  if any(i is None for i in intervals):
    return None
  return {"start": [i[0] for i in intervals], "stop": [i[1] for i in intervals]}
