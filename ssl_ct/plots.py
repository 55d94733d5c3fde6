"""Figures: orthogonal slices with boxes, intensity histograms, previews of a synthetic set."""

import os

import matplotlib.patches
import matplotlib.pyplot as plt

from ssl_ct.data import intensity, sources, truth

AXIS_NAMES = ("z (axial)", "y (coronal)", "x (sagittal)")


def _box_rectangle(box, axis, **style):
  """The box's outline in the slice plane perpendicular to `axis` (imshow coordinates)."""
  other = [a for a in range(3) if a != axis]
  (r0, c0), (r1, c1) = [box["start"][a] for a in other], [box["stop"][a] for a in other]
  return matplotlib.patches.Rectangle((c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, **style)


def plot_orthogonal(volume, axes_3, *, boxes=(), center=None, value_range=None):
  """Three orthogonal slices through `center` (default: volume centre) with box outlines.

  `boxes` is a sequence of (box, style) pairs, e.g. (truth_box, {"edgecolor": "lime", "linestyle": "--"}).
  """
  center = [n // 2 for n in volume.shape] if center is None else center
  low, high = value_range or intensity.intensity_range(volume)
  for axis, ax in enumerate(axes_3):
    ax.imshow(volume.slice(axis, center[axis]), cmap="gray", vmin=low, vmax=high, aspect="equal")
    for box, style in boxes:
      if box is not None:
        ax.add_patch(_box_rectangle(box, axis, linewidth=1.5, **style))
    ax.set_title(f"{volume.name}: {AXIS_NAMES[axis]} {center[axis]}", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_histogram(volume, ax, bins=128):
  """Intensity histogram of a strided subsample, with the normalization range marked."""
  values = intensity.subsample(volume)
  low, high = intensity.intensity_range(volume)
  ax.hist(values, bins=bins, color="0.3", log=True)
  for v in (low, high):
    ax.axvline(v, color="tab:orange", linestyle="--", linewidth=1)
  ax.set_title(f"{volume.name}: intensities ({volume.dtype})", fontsize=8)
  ax.set_xlabel("voxel value")


def save_set_preview(folder, png_path, max_volumes=6):
  """One row per volume: three orthogonal slices through the true box centre, box dashed."""
  volumes = sources.open_volumes(folder)[:max_volumes]
  gt = truth.read_truth(folder)
  fig, axes = plt.subplots(len(volumes), 3, figsize=(9, 3 * len(volumes)), squeeze=False)
  for volume, row in zip(volumes, axes):
    box = gt.get(volume.name, {}).get("box")
    center = None if box is None else [(a + b) // 2 for a, b in zip(box["start"], box["stop"])]
    plot_orthogonal(volume, row, boxes=[(box, {"edgecolor": "lime", "linestyle": "--"})], center=center)
  fig.tight_layout()
  save_figure(fig, png_path)


def save_figure(fig, path):
  """Saves atomically (a reader never sees a half-written PNG) and closes the figure."""
  tmp = f"{path}.partial.png"
  fig.savefig(tmp, dpi=100)
  plt.close(fig)
  os.replace(tmp, path)
