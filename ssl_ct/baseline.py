"""Threshold baseline: Otsu on a downsampled volume, largest connected component, its box.

Voxels outside the reconstruction's field of view are left out of the threshold and the
component, so the baseline is not handed the empty border as "background" for free.
"""

import numpy as np
import scipy.ndimage

from ssl_ct.data import intensity
from ssl_ct.data import truth as truth_lib

_MAX_SIDE = 64  # voxels per side of the downsampled volume the baseline thresholds (averaging tames noise)


def threshold_box(volume, volume_fov=None, max_side=_MAX_SIDE):
  """{"start", "stop"} in input voxels of the largest above-Otsu component, or None."""
  factor = max(1, int(np.ceil(max(volume.shape) / max_side)))
  small_DxHxW = volume.downsample(factor)
  valid = np.ones(small_DxHxW.shape, bool)
  if volume_fov is not None:
    yy, xx = (np.arange(n) * factor + (factor - 1) / 2 for n in small_DxHxW.shape[1:])
    inside = (yy[:, None] - volume_fov.center_yx[0]) ** 2 + (xx[None, :] - volume_fov.center_yx[1]) ** 2 < (
      0.98 * volume_fov.radius
    ) ** 2
    valid &= inside[None]
  if np.ptp(small_DxHxW[valid]) <= 0:
    return None
  foreground = (small_DxHxW > intensity.otsu_threshold(small_DxHxW[valid])) & valid
  labels, count = scipy.ndimage.label(foreground)
  if count == 0:
    return None
  largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
  box = truth_lib.box_of_mask(labels == largest)
  return scale_box(box, factor, volume.shape)


def scale_box(box, factor, shape):
  """A box on a grid downsampled by `factor` -> input voxels, clipped to `shape`."""
  if box is None:
    return None
  return {
    "start": [min(int(a) * factor, n - 1) for a, n in zip(box["start"], shape)],
    "stop": [min(int(b) * factor, n) for b, n in zip(box["stop"], shape)],
  }


def shrink_box(box, factor):
  """An input-voxel box -> the grid downsampled by `factor` (for figures)."""
  if box is None or factor == 1:
    return box
  return {"start": [int(a) // factor for a in box["start"]], "stop": [-(-int(b) // factor) for b in box["stop"]]}
