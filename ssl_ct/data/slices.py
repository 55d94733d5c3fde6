"""Turning a raw 2D slice into model input: normalize, square, rotate+resize once, cut to a disk.

Training and localization call the same functions, so the model sees the same kind of input.
Shapes: H x W = raw slice, N = model input side.
"""

import functools

import numpy as np
import scipy.ndimage

from ssl_ct.data import intensity


def pad_to_square(slice_HxW):
  """Centres the slice in a zero-padded square (non-cubic volumes give non-square slices)."""
  h, w = slice_HxW.shape
  n = max(h, w)
  out = np.zeros((n, n), np.float32)
  out[(n - h) // 2 : (n - h) // 2 + h, (n - w) // 2 : (n - w) // 2 + w] = slice_HxW
  return out


@functools.lru_cache(maxsize=8)
def disk_mask(size):
  """N x N float mask of the inscribed disk: corners never reveal a rotation."""
  c = np.arange(size) - (size - 1) / 2
  return ((c[:, None] ** 2 + c[None, :] ** 2) <= (size / 2) ** 2).astype(np.float32)


def _block_mean(square_SxS, factor):
  """Mean over factor x factor blocks (the edge rows and columns that do not fill a block are dropped)."""
  n = square_SxS.shape[0] // factor * factor
  return square_SxS[:n, :n].reshape(n // factor, factor, n // factor, factor).mean(axis=(1, 3))


def antialiased(square_SxS, size):
  """The angle-independent half of `rotate_resize`: the square smoothed (and block-averaged) for
  resampling to size x size, whatever the angle. A slice more than twice the output side is
  first block-averaged by the whole factor that keeps it at least 1.5x the output (cheap
  anti-aliasing); a stronger downscale left after that is smoothed by a centred Gaussian (an
  even box filter would shift by half a pixel)."""
  factor = int(square_SxS.shape[0] / (1.5 * size))
  if factor >= 2:
    square_SxS = _block_mean(square_SxS, factor)
  scale = square_SxS.shape[0] / size
  if scale > 1.5:
    square_SxS = scipy.ndimage.gaussian_filter(square_SxS, sigma=0.5 * scale, mode="nearest")
  return square_SxS


def resampled(smooth_SxS, size, angle_deg):
  """The angle's half of `rotate_resize`: `antialiased`'s square rotated by `angle_deg`
  (counter-clockwise) and resized to size x size in one bilinear resampling."""
  s = smooth_SxS.shape[0]
  theta = np.deg2rad(angle_deg)
  scale = s / size
  # Output pixel o maps to input  c_in + scale * R(theta) (o - c_out).
  matrix = scale * np.array([[np.cos(theta), np.sin(theta)], [-np.sin(theta), np.cos(theta)]])
  c_in, c_out = (s - 1) / 2, (size - 1) / 2
  offset = c_in - matrix @ np.array([c_out, c_out])
  return scipy.ndimage.affine_transform(smooth_SxS, matrix, offset, output_shape=(size, size), order=1, mode="nearest")


def rotate_resize(square_SxS, size, angle_deg):
  """Rotates by `angle_deg` (counter-clockwise) and resizes to size x size in one bilinear
  resampling, anti-aliased (`antialiased`, then `resampled`)."""
  return resampled(antialiased(square_SxS, size), size, angle_deg)


def input_square(slice_HxW, value_range, size, window=None):
  """The angle-independent part of `model_input`: the slice cut to `window` (row0, row1, col0,
  col1), normalized, centred in a square and anti-aliased for size x size. A slice that several
  inputs rotate differently (a localizer's reference and twins) is prepared once."""
  if window is not None:
    slice_HxW = slice_HxW[window[0] : window[1], window[2] : window[3]]
  return antialiased(pad_to_square(intensity.normalize(slice_HxW, *value_range)), size)


def rotated_input(square_SxS, size, angle_deg=0.0):
  """Float32 N x N x 1 model input from `input_square`'s square, rotated by `angle_deg`, cut to the disk."""
  return (resampled(square_SxS, size, angle_deg) * disk_mask(size))[..., None]


def model_input(slice_HxW, value_range, size, angle_deg=0.0, window=None):
  """Float32 N x N x 1 model input from a raw slice, cut to `window` (row0, row1, col0, col1) first."""
  return rotated_input(input_square(slice_HxW, value_range, size, window), size, angle_deg)
