"""The reconstruction's circular field of view, and square slice windows that stay inside it.

Parallel-beam reconstructions are valid inside a cylinder along z; outside it scanners
write a constant fill. A coronal or sagittal slice therefore shows the cylinder's edges as
a band whose orientation gives away any rotation, in every slice, sample or not. Cutting
each slice to a square window inside the valid region (then to its inscribed disk) keeps
the background rotation-invariant on all three axes.

A window is (row0, row1, col0, col1) in the slice plane: axis 0 -> (y, x), 1 -> (z, x), 2 -> (z, y).
"""

import dataclasses
import functools

import numpy as np

_SAMPLED_PLANES = 9
_MIN_OUTSIDE_FRACTION = 0.03  # less than this constant border: no field of view to respect
_MIN_DISK_IOU = 0.9  # a constant region that is not the outside of a disk is background, not a field of view
_MIN_WINDOW_FRACTION = 0.2  # narrower valid chords (the cylinder's rim) give no window
# Windows keep this far inside the estimated rim: a sliver of the rim inside the model's disk
# is an edge that turns with the slice, and the network reads the rotation off it.
_RIM_MARGIN_FRACTION, _RIM_MARGIN_VOXELS = 0.03, 2.0


@dataclasses.dataclass(frozen=True)
class FieldOfView:
  center_yx: tuple  # voxel coordinates of the cylinder axis
  radius: float  # voxels
  fill: float  # the constant written outside


def estimate_fov(volume):
  """The axial field-of-view disk, from voxels that hold the fill value in every sampled plane; None if absent."""
  planes = [volume.slice(0, int(z)) for z in np.linspace(0, volume.shape[0] - 1, _SAMPLED_PLANES).round()]
  fill = planes[0][0, 0]
  outside = np.logical_and.reduce([p == fill for p in planes])
  if outside.mean() < _MIN_OUTSIDE_FRACTION:
    return None
  inside = ~outside
  if not inside.any():
    return None
  rows, cols = np.nonzero(inside)
  center, radius = (rows.mean(), cols.mean()), np.sqrt(inside.sum() / np.pi)
  yy, xx = np.indices(inside.shape)
  disk = (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2
  if (disk & inside).sum() / (disk | inside).sum() < _MIN_DISK_IOU:
    return None
  return FieldOfView(center_yx=(float(center[0]), float(center[1])), radius=float(radius), fill=float(fill))


def _valid_range(center, half, size):
  lo, hi = int(np.ceil(center - half)), int(np.floor(center + half)) + 1
  return max(lo, 0), min(hi, size)


def slice_windows(shape, fov, axis, index, stride_fraction=0.5):
  """Square windows inside the valid part of slice `index` along `axis` ([] if it has none).

  A slice longer than it is wide gets several windows along its long side, `stride_fraction`
  of a window apart; training draws one of them, localization scores all of them.
  """
  d, h, w = shape
  plane = [(h, w), (d, w), (d, h)][axis]
  radius = None if fov is None else fov.radius * (1 - _RIM_MARGIN_FRACTION) - _RIM_MARGIN_VOXELS
  if fov is None:
    row_range, col_range = (0, plane[0]), (0, plane[1])
  elif axis == 0:  # the square around the disk: its inscribed disk is the field of view itself
    row_range = _valid_range(fov.center_yx[0], radius, h)
    col_range = _valid_range(fov.center_yx[1], radius, w)
  else:  # the slice cuts the cylinder in a band along z, as wide as the chord at this y (or x)
    offset = index - fov.center_yx[axis - 1]
    half_chord = np.sqrt(max(radius**2 - offset**2, 0.0))
    row_range = (0, d)
    col_range = _valid_range(fov.center_yx[2 - axis], half_chord, plane[1])
  min_side = max(4, int(_MIN_WINDOW_FRACTION * min(plane)))
  return _square_tiles(row_range, col_range, stride_fraction, min_side)


@functools.lru_cache(maxsize=4096)  # called per training pair; shapes and fields of view repeat
def valid_indices(shape, fov, axis):
  """Half-open range of slice indices along `axis` that have at least one window."""
  valid = [i for i in range(shape[axis]) if slice_windows(shape, fov, axis, i)]
  return (valid[0], valid[-1] + 1) if valid else (0, 0)


def _square_tiles(row_range, col_range, stride_fraction, min_side):
  rows, cols = row_range[1] - row_range[0], col_range[1] - col_range[0]
  side = min(rows, cols)
  if side < min_side:
    return []
  long_is_rows = rows >= cols
  length, start = (rows, row_range[0]) if long_is_rows else (cols, col_range[0])
  count = max(1, int(np.ceil((length - side) / max(1, side * stride_fraction))) + 1)
  offsets = np.linspace(start, start + length - side, count).round().astype(int)
  if long_is_rows:
    return [(int(o), int(o) + side, col_range[0], col_range[0] + side) for o in offsets]
  return [(row_range[0], row_range[0] + side, int(o), int(o) + side) for o in offsets]
