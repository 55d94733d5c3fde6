"""Sorting-loss localization by MC dropout over superpixel embeddings (paper 2.2, 3.1).

Every slice along the sort axis goes through the encoder T times with train-time dropout;
the feature map before global pooling holds one embedding per superpixel, and the variance
of that embedding across the T samples (averaged over channels) measures how much the
position estimate leans on that superpixel. The T samples are ONE `jax.vmap` over dropout
keys inside jit: only what depends on the key (dropout and the 1x1 "embed" convolution
after it) is batched, the ResNet stages before it run once per slice.

The per-slice variance maps are pasted into a 3D grid (slices x superpixel cells of the
slice plane); the top `top_percent` % of the grid's cells, their largest connected region
(26-connectivity) and its bounding box give the sample (the paper's rule, `extent="variance"`).

The same T samples also give each slice's position score z (their mean: everything after
the dropout is linear, so it is the deterministic score up to sampling noise). The network
cannot order empty slices, and maps them all to one level; along the sample the score moves
away from it. With `extent="score"` (default) the sample's extent along the sort axis is the
run of slices whose score departs from that level (`extent_from_scores`), and the in-plane
box is the variance region's, sought among those slices only: the variance fades with the
sample's cross-section, and loses a thin faint end that the score still orders.

Slices are processed in fixed-size batches, so memory holds one batch, the small grid and
the score per slice, whatever the volume size. `SortingLocalizer` is the localizer of the
sorting task (ssl_ct/tasks.py): the config's `localize` section goes to it whole.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import scipy.ndimage

from ssl_ct import curves, plots
from ssl_ct.data import fov, pipeline, slices

_FULL_CONNECTIVITY = np.ones((3, 3, 3), bool)


def mc_samples(model, params, images_BxNxNx1, key, num_samples):
  """(scores_TxB, maps_TxBxhxwxC): position scores and superpixel embeddings under T dropout keys.

  One vmap over the keys: the layers before the dropout run once.
  """

  def sample(dropout_key):
    z_B, out = model.apply({"params": params}, {"image": images_BxNxNx1}, deterministic=False, rngs={"dropout": dropout_key})
    return z_B, out["feature_map"]

  return jax.vmap(sample)(jax.random.split(key, num_samples))


def make_variance_fn(model, num_samples, variance_of="position"):
  """jit-compiled (params, images_BxNxNx1, key) -> (variance_Bxhxw, score_B) across T dropout samples.

  variance_Bxhxw: per superpixel; score_B: the mean of the T position scores z.

  variance_of="embedding": the paper's literal measure, the embedding's variance averaged over
  channels. "position": the variance of each superpixel's contribution to the position score
  (its embedding projected on the sorting head's weights; the score is the mean of these
  contributions over superpixels), i.e. how uncertain that superpixel makes the predicted
  position. Channels the position ignores add no noise to it, so the sample stands out
  more clearly (README: measured on the synthetic medaka set).
  """

  @jax.jit
  def variance(params, images_BxNxNx1, key):
    score_TxB, maps_TxBxhxwxC = mc_samples(model, params, images_BxNxNx1, key, num_samples)
    if variance_of == "position":
      variance_Bxhxw = jnp.var(maps_TxBxhxwxC @ params["encoder"]["head"]["kernel"][:, 0], axis=0)
    else:
      variance_Bxhxw = jnp.mean(jnp.var(maps_TxBxhxwxC, axis=0), axis=-1)
    return variance_Bxhxw, jnp.mean(score_TxB, axis=0)

  return variance


def make_exact_variance_fn(model, dropout_rate, variance_of="position"):
  """jit-compiled (params, images_BxNxNx1, key) -> (variance_Bxhxw, score_B), exact: one deterministic pass.

  Everything after the dropout is linear (1x1 embed convolution, spatial mean, sorting head),
  so the variance over dropout masks has a closed form. With keep-probability 1-p and inverted
  scaling, each dropped activation x_c has variance x_c^2 p/(1-p), independently per channel:
  - "position": the superpixel's contribution to the score is sum_c x_c u_c with u = W_embed a_head,
    variance p/(1-p) sum_c u_c^2 x_c^2;
  - "embedding": channel k of the embedding is sum_c x_c W_ck, variance p/(1-p) sum_c W_ck^2 x_c^2,
    averaged over k.
  The score is the deterministic one, the dropout's expectation. `key` is unused (the same
  signature as make_variance_fn).
  """
  scale = dropout_rate / (1.0 - dropout_rate)

  @jax.jit
  def variance(params, images_BxNxNx1, key):
    del key
    score_B, out = model.apply({"params": params}, {"image": images_BxNxNx1}, deterministic=True)
    x_BxhxwxC = out["trunk_map"]
    w_CxK = params["encoder"]["embed"]["kernel"][0, 0]
    if variance_of == "position":
      u_C = w_CxK @ params["encoder"]["head"]["kernel"][:, 0]
      variance_Bxhxw = scale * (jnp.square(x_BxhxwxC) @ jnp.square(u_C))
    else:
      variance_Bxhxw = scale * jnp.mean(jnp.square(x_BxhxwxC) @ jnp.square(w_CxK), axis=-1)
    return variance_Bxhxw, score_B

  return variance


def make_feature_fn(model):
  """jit-compiled deterministic (params, images) -> feature map: the one-pass reference cost."""

  @jax.jit
  def features(params, images_BxNxNx1):
    return model.apply({"params": params}, {"image": images_BxNxNx1}, deterministic=True)[1]["feature_map"]

  return features


def _plane(shape, axis):
  return [(shape[1], shape[2]), (shape[0], shape[2]), (shape[0], shape[1])][axis]


def _cell_size(shape, volume_fov, axis, first, stop, grid_side):
  """Voxels per grid cell in the slice plane: the largest window's side over the feature-map side."""
  sides = [
    w[1] - w[0] for i in range(first, stop, max(1, (stop - first) // 16)) for w in fov.slice_windows(shape, volume_fov, axis, i)
  ]
  return max(1.0, max(sides) / grid_side)


def _paste(canvas_RxC, map_hxw, window, cell):
  """Writes a window's superpixel map onto the slice's cell canvas (max where windows overlap)."""
  h = map_hxw.shape[0]
  map_hxw = np.where(slices.disk_mask(h) > 0, map_hxw, np.nan)  # cells outside the input's disk saw no data
  side = window[1] - window[0]
  r0, r1 = int(window[0] // cell), int(np.ceil(window[1] / cell))
  c0, c1 = int(window[2] // cell), int(np.ceil(window[3] / cell))
  rows = np.clip(((np.arange(r0, r1) + 0.5) * cell - window[0]) / side * h, 0, h - 1).astype(int)
  cols = np.clip(((np.arange(c0, c1) + 0.5) * cell - window[2]) / side * h, 0, h - 1).astype(int)
  region = canvas_RxC[r0:r1, c0:c1]
  np.fmax(region, map_hxw[np.ix_(rows, cols)][: region.shape[0], : region.shape[1]], out=region)


def variance_grid(volume, volume_fov, value_range, *, variance_fn, params, size, axis, grid_side, batch_size=32, seed=0):
  """(grid_SxRxC, cell, scores_S): variance per slice along `axis` and cell of `cell` voxels, score per slice.

  NaN where a slice or cell saw no data; a slice with several windows gets their mean score.
  """
  first, stop = fov.valid_indices(volume.shape, volume_fov, axis)
  plane = _plane(volume.shape, axis)
  cell = _cell_size(volume.shape, volume_fov, axis, first, stop, grid_side) if stop > first else 1.0
  grid = np.full((volume.shape[axis], *(int(np.ceil(n / cell)) for n in plane)), np.nan, np.float32)
  score_sums, score_counts = np.zeros(volume.shape[axis]), np.zeros(volume.shape[axis])
  key = jax.random.key(seed)
  pending = []

  def flush():
    images = np.stack([p[2] for p in pending] + [pending[0][2]] * (batch_size - len(pending)))
    maps, scores = variance_fn(params, jnp.asarray(images), jax.random.fold_in(key, pending[0][0]))
    for (index, window, _), map_hxw, score in zip(pending, np.asarray(maps), np.asarray(scores)):
      _paste(grid[index], map_hxw, window, cell)
      score_sums[index] += score
      score_counts[index] += 1
    pending.clear()

  for index in range(first, stop):
    raw = volume.slice(axis, index)
    for window in fov.slice_windows(volume.shape, volume_fov, axis, index):
      pending.append((index, window, slices.model_input(raw, value_range, size, 0.0, window)))
      if len(pending) == batch_size:
        flush()
  if pending:
    flush()
  with np.errstate(invalid="ignore"):
    scores = np.where(score_counts > 0, score_sums / score_counts, np.nan).astype(np.float32)
  return grid, cell, scores


def _flat_level(scores, fraction):
  """The score the network gives empty slices: the centre of the tightest `fraction` of the scores."""
  ordered = np.sort(scores[np.isfinite(scores)])
  n = max(2, int(round(fraction * len(ordered))))
  if len(ordered) <= n:
    return float(np.median(ordered))
  first = int(np.argmin(ordered[n - 1 :] - ordered[: len(ordered) - n + 1]))
  return float(np.median(ordered[first : first + n]))


def extent_from_scores(scores_S, *, flat_fraction=0.1, smooth=0.02, cut_noise_factor=2.0, max_gap=0.02):
  """Half-open (start, stop) along the sort axis where the score departs from the empty-slice level, or None.

  The level is the tightest cluster of `flat_fraction` of the slices' scores (needs that many
  empty slices); the curve |score - level| then goes through `curves.interval_from_curve`
  (median smoothing over `smooth` of the axis, a cut at `cut_noise_factor` times the noise of
  the empty slices, dips up to `max_gap` closed). None: no departure above the noise.
  """
  finite = np.isfinite(scores_S)
  if finite.sum() < 4:
    return None
  departure = np.abs(scores_S - _flat_level(scores_S, flat_fraction))
  return curves.interval_from_curve(
    departure, smooth=smooth, min_contrast=0.0, max_gap=max_gap, cut_noise_factor=cut_noise_factor
  )


def smooth_along_axis(grid_SxRxC, sigma_slices):
  """Gaussian smoothing along the sort axis (cells without data stay NaN and do not bleed in)."""
  if sigma_slices <= 0:
    return grid_SxRxC
  valid = np.isfinite(grid_SxRxC)
  weight = scipy.ndimage.gaussian_filter1d(valid.astype(np.float32), sigma_slices, axis=0, mode="nearest")
  total = scipy.ndimage.gaussian_filter1d(np.where(valid, grid_SxRxC, 0.0), sigma_slices, axis=0, mode="nearest")
  with np.errstate(invalid="ignore", divide="ignore"):
    return np.where(valid, total / weight, np.nan).astype(np.float32)


def region_from_grid(grid_SxRxC, top_percent, *, smooth_slices=0.0, gap_slices=0):
  """Bool mask of the largest connected region among the top `top_percent` % cells, or None when flat.

  The grid is first smoothed along the sort axis (`smooth_slices`, a Gaussian sigma), and
  the selected cells closed over gaps of up to `gap_slices` along it, so one sample split
  by a few quiet slices stays one region.
  """
  valid = np.isfinite(grid_SxRxC)
  if not valid.any() or np.ptp(grid_SxRxC[valid]) <= 1e-12 * max(1.0, float(np.abs(grid_SxRxC[valid]).max())):
    return None
  grid_SxRxC = smooth_along_axis(grid_SxRxC, smooth_slices)
  threshold = np.percentile(grid_SxRxC[valid], 100.0 - top_percent)
  top = valid & (np.where(valid, grid_SxRxC, -np.inf) >= threshold)
  if gap_slices > 0:
    pad = ((gap_slices, gap_slices), (0, 0), (0, 0))
    closed = scipy.ndimage.binary_closing(np.pad(top, pad), structure=np.ones((gap_slices + 1, 1, 1), bool))
    top = closed[gap_slices:-gap_slices] & valid
  labels, count = scipy.ndimage.label(top, structure=_FULL_CONNECTIVITY)
  if count == 0:
    return None
  return labels == np.argmax(np.bincount(labels.ravel())[1:]) + 1


def _to_volume_order(axis, along, rows, cols):
  """Per-dimension values given (sort axis, plane rows, plane cols) -> (z, y, x) order."""
  return [[along, rows, cols], [rows, along, cols], [rows, cols, along]][axis]


def box_of_region(region_SxRxC, axis, cell, shape):
  """Half-open {"start", "stop"} in volume voxels covering every cell of the region."""
  nonzero = np.nonzero(region_SxRxC)
  lo = [int(n.min()) for n in nonzero]
  hi = [int(n.max()) + 1 for n in nonzero]
  plane = _plane(shape, axis)
  starts = [lo[0], int(np.floor(lo[1] * cell)), int(np.floor(lo[2] * cell))]
  stops = [hi[0], min(plane[0], int(np.ceil(hi[1] * cell))), min(plane[1], int(np.ceil(hi[2] * cell)))]
  return {"start": _to_volume_order(axis, *starts), "stop": _to_volume_order(axis, *stops)}


def region_points(region_SxRxC, axis, cell):
  """Centres of the region's cells in volume voxel coordinates, P x 3 (z, y, x): for figures."""
  along, rows, cols = np.nonzero(region_SxRxC)
  rows, cols = (rows + 0.5) * cell, (cols + 0.5) * cell
  return np.stack(_to_volume_order(axis, along + 0.5, rows, cols), axis=1).astype(np.float32)


def box_from_grid(
  grid_SxRxC,
  scores_S,
  cell,
  axis,
  shape,
  *,
  top_percent,
  smooth=0.0,
  max_gap=0.0,
  extent="score",
  flat_fraction=0.1,
  cut_noise_factor=2.0,
):
  """(box or None, region or None) from a variance grid and the slices' scores: the region rule without the network.

  `smooth` and `max_gap` are fractions of the sort axis (see region_from_grid). `extent`:
  "score" (sort-axis extent from the scores, in-plane box from the variance region among
  those slices) or "variance" (the paper's rule: the variance region's box).
  """
  length = grid_SxRxC.shape[0]
  interval = None
  if extent == "score":
    interval = extent_from_scores(
      scores_S, flat_fraction=flat_fraction, smooth=smooth, cut_noise_factor=cut_noise_factor, max_gap=max_gap
    )
    if interval is None:
      return None, None
    within = grid_SxRxC.copy()  # the region is sought among the sample's slices only
    within[: interval[0]] = np.nan
    within[interval[1] :] = np.nan
    grid_SxRxC = within
  region = region_from_grid(grid_SxRxC, top_percent, smooth_slices=smooth * length, gap_slices=int(round(max_gap * length)))
  if region is None and interval is None:
    return None, None
  if region is None:  # a sample along the axis, but no variance structure across it: keep the whole plane
    region = np.zeros(grid_SxRxC.shape, bool)
    region[interval[0] : interval[1]] = True
  box = box_of_region(region, axis, cell, shape)
  if interval is not None:
    box["start"][axis], box["stop"][axis] = interval
  return box, region


def localize_volume(
  volume, volume_fov, value_range, *, variance_fn, params, size, axis, grid_side, batch_size=32, seed=0, **rule
):
  """(box or None, extras) on the grid the volume is given on; extras hold the grid, scores and region.

  `rule`: the keyword arguments of box_from_grid.
  """
  grid, cell, scores = variance_grid(
    volume,
    volume_fov,
    value_range,
    variance_fn=variance_fn,
    params=params,
    size=size,
    axis=axis,
    grid_side=grid_side,
    batch_size=batch_size,
    seed=seed,
  )
  box, region = box_from_grid(grid, scores, cell, axis, volume.shape, **rule)
  extras = {
    "variance": grid,
    "cell": cell,
    "axis": axis,
    "scores": scores,
    "outcome": "no sample" if box is None else "sample box",
  }
  if region is not None:
    extras["region_points"] = region_points(region, axis, cell)
  return box, extras


class SortingLocalizer:
  """localize(volume, fov, value_range) -> (box or None, {"variance", "cell", "axis", "scores", ...}), on the volume's grid.

  `rule`: the keyword arguments of `box_from_grid` (config.localize minus the sampling settings).
  """

  method_name = "sorting loss (MC dropout)"

  def __init__(self, model, params, *, size, sort_axis, seed, variance, num_samples, variance_of, batch_size, **rule):
    if variance == "exact":
      self.variance_fn = make_exact_variance_fn(model, model.encoder.dropout_rate, variance_of)
    else:
      self.variance_fn = make_variance_fn(model, num_samples, variance_of)
    example = {"image": jax.ShapeDtypeStruct((1, size, size, 1), np.float32)}
    feature_map = jax.eval_shape(lambda p, b: model.apply({"params": p}, b)[1]["feature_map"], params, example)
    self.grid_side = feature_map.shape[1]
    self.params, self.size, self.sort_axis, self.seed, self.batch_size, self.rule = (
      params,
      size,
      sort_axis,
      seed,
      batch_size,
      rule,
    )

  def localize(self, volume, volume_fov, value_range):
    return localize_volume(
      volume,
      volume_fov,
      value_range,
      variance_fn=self.variance_fn,
      params=self.params,
      size=self.size,
      axis=pipeline.sort_axis(volume.shape, self.sort_axis),
      grid_side=self.grid_side,
      batch_size=self.batch_size,
      seed=self.seed,
      **self.rule,
    )

  def save(self, out_dir, name, diagnostics, *, volume, value_range, shown):
    """variance/<name>.npz (grid, cell, axis, scores) and variance/<name>.png (paper Fig. 3 views)."""
    folder = os.path.join(out_dir, "variance")
    os.makedirs(folder, exist_ok=True)
    saved = {k: diagnostics[k] for k in ("variance", "cell", "axis", "scores")}
    np.savez_compressed(os.path.join(folder, f"{name}.npz"), **saved)
    points = diagnostics.get("region_points", np.zeros((0, 3), np.float32))
    plots.plot_variance_views(
      volume,
      shown,
      points,
      diagnostics["variance"],
      diagnostics["axis"],
      os.path.join(folder, f"{name}.png"),
      value_range,
      scores_S=diagnostics["scores"],
    )
