"""Robust intensity range of a volume and normalization to [0, 1].

The range comes from percentiles of a strided subsample (a few million voxels read
slice by slice), so it is cheap for a 24 GB volume and insensitive to a few hot pixels.
"""

import numpy as np

from ssl_ct.errors import InputError

_MAX_SAMPLES = 2_000_000


def _sample_grid(volume, max_samples):
  """(samples_ZxYxX, y_Y, x_X): about `max_samples` voxels on a regular grid, and their y, x coordinates."""
  stride = max(1, int(np.ceil((np.prod(volume.shape) / max_samples) ** (1 / 3))))
  offset = stride // 2
  planes = np.stack([volume.slice(0, z)[offset::stride, offset::stride] for z in range(offset, volume.shape[0], stride)])
  return planes.astype(np.float64), *(np.arange(offset, n, stride) for n in volume.shape[1:])


def _in_disk(y_Y, x_X, disk):
  return (y_Y[:, None] - disk[0]) ** 2 + (x_X[None, :] - disk[1]) ** 2 <= disk[2] ** 2


def subsample(volume, max_samples=_MAX_SAMPLES, disk=None):
  """About `max_samples` voxels on a regular grid through the volume (float64).

  `disk` = (center_y, center_x, radius) keeps only voxels inside that axial disk.
  """
  samples, y, x = _sample_grid(volume, max_samples)
  return (samples if disk is None else samples[:, _in_disk(y, x, disk)]).ravel()


def intensity_range(volume, *, low_percentile=0.5, high_percentile=99.5, max_samples=_MAX_SAMPLES, fov=None):
  """(low, high) percentiles of a strided subsample; rejects NaN/Inf and constant volumes.

  With a field of view (ssl_ct/data/fov.py) only voxels within 0.9 of its radius count: the
  fill outside it and the rim (holder walls, air gaps, edge artifacts) would otherwise set
  the range and squeeze the sample's contrast.
  """
  if not 0 <= low_percentile < high_percentile <= 100:
    raise InputError(
      f"percentiles {low_percentile}, {high_percentile} do not satisfy 0 <= low < high <= 100; fix data.low_percentile and data.high_percentile"
    )
  samples, y, x = _sample_grid(volume, max_samples)  # read once: the check sees everything, the range the inside
  values = samples.ravel()
  if not np.all(np.isfinite(values)):
    raise InputError(f"{volume.where}: volume contains NaN or Inf voxels; replace them (e.g. np.nan_to_num) before use")
  if fov is not None:
    inner = samples[:, _in_disk(y, x, (*fov.center_yx, 0.9 * fov.radius))].ravel()
    values = inner if inner.size and np.ptp(inner) > 0 else values
  low, high = np.percentile(values, [low_percentile, high_percentile])
  if high <= low:
    low, high = values.min(), values.max()
  if high <= low:
    raise InputError(
      f"{volume.where}: volume is constant (every sampled voxel is {low:g}); nothing to localize in it: check the file, or leave it out of data.path"
    )
  return float(low), float(high)


def normalize(x, low, high):
  """Maps [low, high] to [0, 1] as float32, clipping outliers."""
  return np.clip((np.asarray(x, np.float32) - low) / (high - low), 0.0, 1.0)


def otsu_threshold(values, bins=256):
  """Otsu's threshold: the cut that maximizes the between-class variance of a 1D sample."""
  values = np.asarray(values, np.float64).ravel()
  counts, edges = np.histogram(values, bins=bins)
  centers = (edges[:-1] + edges[1:]) / 2
  weight_low = np.cumsum(counts)
  weight_high = weight_low[-1] - weight_low
  sum_low = np.cumsum(counts * centers)
  mean_low = sum_low / np.maximum(weight_low, 1)
  mean_high = (sum_low[-1] - sum_low) / np.maximum(weight_high, 1)
  between = weight_low * weight_high * (mean_low - mean_high) ** 2
  return float(edges[np.argmax(between) + 1])
