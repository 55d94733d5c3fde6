"""Rotation-loss localization: certainty p0 of the unrotated pair, per slice along each axis.

Each slice is paired with twins at the given offsets (slices, both directions), all under
the same pseudo-random base rotation (as in training) and no relative rotation; p0 is the
model's probability of the 0-degree class, averaged over the twins. Near twins (the paper
uses the adjacent slice) keep the curve's edges sharp: a twin k slices away blurs the
sample's edge over k slices, since a slice just outside the sample paired with a twin
inside it is scored as neither. Slices with several field-of-view windows keep
their most certain window. A reference and its twins are scored together: each slice input is
encoded once and the head scores its pairs (5 encoder passes per slice for 4 twins, not 8),
in fixed-size batches through one jit-compiled function, so memory holds one batch and the
curves, whatever the volume size.

The box: `curves.interval_from_curve` on each axis's curve (ssl_ct/curves.py); with `trim`,
cut back to the curves' steady core and the threshold baseline's box (ssl_ct/fusion.py) where it
took in packing or a holder beside the sample.
`RotationLocalizer` is the localizer of the rotation task (ssl_ct/tasks.py): the config's
`localize` section goes to it whole.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from ssl_ct import baseline, curves, fusion, plots
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


def _pairs_along(volume, volume_fov, value_range, axis, *, size, offsets, seed, shared=True):
  """Yields (index, window number, ref, twin) for every twin of every window of every valid slice.

  `shared`: each (slice, window) is normalized and anti-aliased once (`slices.input_square`)
  and only rotated per input, instead of every input prepared from the raw slice
  (`slices.model_input`, the reference definition): the same inputs, bit for bit.
  """
  first, stop = fov.valid_indices(volume.shape, volume_fov, axis)
  steps = sorted(set(offsets))
  raw, squares = {}, {}

  def model_input(i, angle, window):
    if not shared:
      return slices.model_input(raw[i], value_range, size, angle, window)
    if (i, window) not in squares:
      squares[i, window] = slices.input_square(raw[i], value_range, size, window)
    return slices.rotated_input(squares[i, window], size, angle)

  for index in range(first, stop):
    twins = _twin_indices(index, first, stop, steps)
    for i in (index, *twins):
      if i not in raw:
        raw[i] = volume.slice(axis, i)
    base = np.random.default_rng([seed, axis, index]).uniform(0.0, 360.0)
    ref_windows = fov.slice_windows(volume.shape, volume_fov, axis, index)
    for k, window in enumerate(ref_windows):
      ref = model_input(index, base, window)
      for twin_index in twins:
        twin_windows = fov.slice_windows(volume.shape, volume_fov, axis, twin_index)
        twin_window = twin_windows[min(round(k * len(twin_windows) / len(ref_windows)), len(twin_windows) - 1)]
        yield index, k, ref, model_input(twin_index, base, twin_window)
    reach = index - max(steps) - 1  # slices the coming indices never pair with again
    raw = {i: s for i, s in raw.items() if i >= reach}
    squares = {key: s for key, s in squares.items() if key[0] >= reach}


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


def certainty_curves_pairwise(volume, volume_fov, value_range, *, p0_fn, params, size, offsets=(1, 2), batch_size=64, seed=0):
  """The reference definition of `certainty_curves`: every pair through the whole model (both
  slices encoded per pair); for tests and experiments/bench_localize.py."""
  by_axis = {}
  for axis in range(3):
    sums, counts = {}, {}
    pairs = _pairs_along(volume, volume_fov, value_range, axis, size=size, offsets=offsets, seed=seed, shared=False)
    for index, window, score in _score_batches(pairs, p0_fn, params, batch_size):
      sums[index, window] = sums.get((index, window), 0.0) + float(score)
      counts[index, window] = counts.get((index, window), 0) + 1
    curve = np.full(volume.shape[axis], np.nan, np.float32)
    for (index, window), total in sums.items():
      curve[index] = np.nanmax([curve[index], total / counts[index, window]])
    by_axis[axis] = curve
  return by_axis


def make_pair_scorer(model, zero_class):
  """jit-compiled (params, groups_GxKxNxNx1) -> p0_GxT: each group is a reference slice input and its
  T = K - 1 twin inputs; every input is encoded once, and the head scores the T pairs of its group."""

  @jax.jit
  def score(params, groups_GxKxNxNx1):
    g, k = groups_GxKxNxNx1.shape[:2]
    images = groups_GxKxNxNx1.reshape(g * k, *groups_GxKxNxNx1.shape[2:])
    maps = model.apply({"params": params}, images, method=model.encode)["feature_map"]
    maps_GxKxhxwxc = maps.reshape(g, k, *maps.shape[1:])
    ref = jnp.broadcast_to(maps_GxKxhxwxc[:, :1], (g, k - 1, *maps.shape[1:]))
    flat = lambda x: x.reshape(g * (k - 1), *maps.shape[1:])  # noqa: E731
    logits_PxA = model.apply({"params": params}, flat(ref), flat(maps_GxKxhxwxc[:, 1:]), method=model.head)
    return jax.nn.softmax(logits_PxA)[:, zero_class].reshape(g, k - 1)

  return score


def _groups_along(volume, volume_fov, value_range, axis, *, size, offsets, seed):
  """Yields (index, window number, [ref, twin, ...]) per window of every valid slice (the pairs of _pairs_along, grouped)."""
  group, key = [], None
  for index, k, ref, twin in _pairs_along(volume, volume_fov, value_range, axis, size=size, offsets=offsets, seed=seed):
    if (index, k) != key:
      if group:
        yield (*key, group)
      group, key = [ref], (index, k)
    group.append(twin)
  if group:
    yield (*key, group)


def certainty_curves(volume, volume_fov, value_range, *, scorer, params, size, offsets=(1, 2), batch_size=64, seed=0):
  """{axis: curve}: per slice, p0 averaged over twins, max over windows (NaN: no window).

  Groups of a reference and its twins go through `scorer` (make_pair_scorer) in fixed-size batches
  of about `batch_size` pairs (one compilation), each slice input encoded once.
  """
  twins = 2 * len(set(offsets))
  per_batch = max(1, batch_size // twins)
  by_axis = {}
  for axis in range(3):
    curve = np.full(volume.shape[axis], np.nan, np.float32)
    pending, in_flight = [], None
    groups = _groups_along(volume, volume_fov, value_range, axis, size=size, offsets=offsets, seed=seed)
    for item in groups:
      pending.append(item)
      if len(pending) == per_batch:
        # Dispatch is asynchronous: the next batch's slices are prepared while this one computes.
        if in_flight is not None:
          _collect(curve, *in_flight)
        in_flight = ([g[0] for g in pending], scorer(params, _stack(pending, per_batch)))
        pending = []
    if in_flight is not None:
      _collect(curve, *in_flight)
    if pending:
      _collect(curve, [g[0] for g in pending], scorer(params, _stack(pending, per_batch)))
    by_axis[axis] = curve
  return by_axis


def _collect(curve, indices, scores_GxT):
  """Each group's mean p0 over its twins into `curve`, keeping a slice's most certain window."""
  for index, scores in zip(indices, np.asarray(scores_GxT)):
    total = 0.0
    for score in scores:  # summed as the pair-by-pair scorer does
      total += float(score)
    curve[index] = np.nanmax([curve[index], total / len(scores)])


def _stack(groups, per_batch):
  """GxKxNxNx1 inputs of `groups`, padded with the first to the fixed batch (one compilation)."""
  padded = groups + [groups[0]] * (per_batch - len(groups))
  return jnp.asarray(np.stack([np.stack(g[2]) for g in padded]))


def box_from_curves(curve_by_axis, **rule):
  """{"start", "stop"} from the three axes' intervals (`axis_intervals`), or None when they show no sample."""
  return _box(axis_intervals(curve_by_axis, **rule)[0])


def _box(intervals):
  return None if intervals is None else {"start": [i[0] for i in intervals], "stop": [i[1] for i in intervals]}


def axis_intervals(curve_by_axis, **rule):
  """(intervals per axis or None, axes whose curve showed no sample but were kept whole).

  An axis whose curve shows no sample (a model that cannot read the orientation of slices cut
  that way: accuracy near chance along it) while another axis bounds the sample (an interval
  short of the whole axis) still holds that sample: it is kept whole rather than the volume
  declared empty. With no axis bounding a sample, a curve without one means no sample.

  `fill_level` (`curves.interval_from_curve`) applies only when some axis reaches chance: a
  volume with empty slices somewhere is not all sample, and a stretch of an axis certain well
  above chance but far below the sample is the background the model reads there (an axial
  medium or holder); in a volume with no slice at chance the sample may fill the field, less
  certainly on some slices than on others (a real mouse head, README), and is not cut there.
  """
  if rule.get("fill_level") and rule.get("floor") is not None:
    if not any(curves.reaches_chance(curve_by_axis[axis], **rule) for axis in range(3)):
      rule = dict(rule, fill_level=0.0)
  intervals = [curves.interval_from_curve(curve_by_axis[axis], **rule) for axis in range(3)]
  lengths = [len(curve_by_axis[axis]) for axis in range(3)]
  bounded = any(i is not None and i != (0, n) for i, n in zip(intervals, lengths))
  blind = [axis for axis, i in enumerate(intervals) if i is None]
  if not blind:
    return intervals, []
  if not bounded:
    return None, []
  return [(0, n) if i is None else i for i, n in zip(intervals, lengths)], blind


def blind_note(axes):
  """What the report says of axes kept whole for want of evidence, or ""."""
  names = ", ".join("zyx"[a] for a in axes)
  return f"no sample evidence along {names} (the model's certainty stays flat there): the whole axis kept" if axes else ""


def box_and_extras(by_axis, volume, volume_fov, rule, core_rule=None):
  """(box or None, extras) from the curves: `rule`'s box, trimmed (ssl_ct/fusion.py) with the core
  of `core_rule` and the threshold baseline's box unless `core_rule` is None or the box fills the field."""
  intervals, blind = axis_intervals(by_axis, **rule)
  box = _box(intervals)
  fills = box is not None and box == {"start": [0, 0, 0], "stop": list(volume.shape)}
  extras = {"curves": by_axis, "outcome": "no sample" if box is None else "fills the field" if fills else "sample box"}
  extras["blind_axes"] = blind_note(blind)
  if core_rule is not None and box is not None and not fills:
    core = box_from_curves(by_axis, **core_rule)
    extras["untrimmed_box"] = box
    extras["threshold_box"] = baseline.threshold_box(volume, volume_fov)  # the report's baseline too: one read
    box = fusion.trim_box(box, core, extras["threshold_box"], volume.shape)
    extras["trim"] = fusion.describe(extras["untrimmed_box"], box)
  return box, extras


class RotationLocalizer:
  """localize(volume, fov, value_range) -> (box or None, {"curves": {axis: p0 per slice}}), on the volume's grid.

  `rule`: the keyword arguments of `curves.interval_from_curve` (config.localize minus the
  twin offsets, the batch size and the trimming's settings). `trim`: cut the box back with
  `fusion.trim_box` to the outer of the core (the curves under `rule` with `trim_level` and
  `trim_smooth_percentile`) and the threshold baseline's box; the extras then say what moved
  ("trim") and keep the box before ("untrimmed_box") and the threshold box ("threshold_box").
  """

  method_name = "rotation loss (certainty p0)"

  def __init__(
    self,
    model,
    params,
    *,
    zero_class,
    size,
    seed,
    twin_offsets,
    batch_size,
    trim=False,
    trim_level=0.5,
    trim_smooth_percentile=50.0,
    **rule,
  ):
    self.scorer = make_pair_scorer(model, zero_class)
    self.params, self.size, self.seed = params, size, seed
    self.offsets, self.batch_size, self.rule = tuple(twin_offsets), batch_size, rule
    self.core_rule = dict(rule, level=trim_level, smooth_percentile=trim_smooth_percentile) if trim else None

  def localize(self, volume, volume_fov, value_range):
    by_axis = certainty_curves(
      volume,
      volume_fov,
      value_range,
      scorer=self.scorer,
      params=self.params,
      size=self.size,
      offsets=self.offsets,
      batch_size=self.batch_size,
      seed=self.seed,
    )
    return box_and_extras(by_axis, volume, volume_fov, self.rule, self.core_rule)

  def save(self, out_dir, name, diagnostics, *, volume, value_range, shown):
    """curves/<name>.npz (the raw curves) and curves/<name>.png (paper Fig. 5, all axes)."""
    del volume, value_range  # the curves are the figure
    folder = os.path.join(out_dir, "curves")
    os.makedirs(folder, exist_ok=True)
    by_axis = diagnostics["curves"]
    np.savez(os.path.join(folder, f"{name}.npz"), **{f"axis{a}": c for a, c in by_axis.items()})
    smoothed = {
      axis: curves.smooth_curve(c, self.rule["smooth"], self.rule.get("smooth_percentile", 50.0)) for axis, c in by_axis.items()
    }
    plots.plot_certainty_curves(name, by_axis, smoothed, shown[0][0], shown[1][0], os.path.join(folder, f"{name}.png"))
