"""Figures: orthogonal slices with boxes, intensity histograms, previews of a synthetic set."""

import os

import matplotlib.lines
import matplotlib.patches
import matplotlib.pyplot as plt
import numpy as np
import scipy.spatial

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
        ax.add_patch(_box_rectangle(box, axis, linewidth=1.5, **{k: v for k, v in style.items() if k != "label"}))
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


def plot_certainty_curves(name, curves, smoothed, pred_box, truth_box, path):
  """Paper Fig. 5 for all three axes: p0 per slice, predicted bounds (solid), truth (dashed)."""
  fig, axes = plt.subplots(1, 3, figsize=(14, 3.2))
  for axis, ax in enumerate(axes):
    ax.plot(curves[axis], color="0.6", linewidth=0.8, label="p0 per slice")
    ax.plot(smoothed[axis], color="tab:blue", linewidth=1.5, label="smoothed")
    for box, style, label in (
      (pred_box, {"color": "tab:orange"}, "predicted"),
      (truth_box, {"color": "tab:red", "linestyle": "--"}, "truth"),
    ):
      if box is not None:
        for i, edge in enumerate((box["start"][axis], box["stop"][axis] - 1)):
          ax.axvline(edge, linewidth=1.2, label=label if i == 0 else None, **style)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"slice index along {AXIS_NAMES[axis]}")
    ax.set_ylabel("certainty p0")
  axes[0].legend(fontsize=7, loc="upper right")
  fig.suptitle(f"{name}: certainty of the unrotated pair", fontsize=10)
  fig.tight_layout()
  save_figure(fig, path)


def plot_box_overlay(volume, boxes, path, value_range=None):
  """Paper Fig. 4: three orthogonal slices through the box centre, one outline per method."""
  reference = next((b for b, _ in boxes if b is not None), None)
  center = None if reference is None else [(a + b) // 2 for a, b in zip(reference["start"], reference["stop"])]
  fig, axes = plt.subplots(1, 3, figsize=(12, 4.2))
  plot_orthogonal(volume, axes, boxes=boxes, center=center, value_range=value_range)
  handles = [
    matplotlib.patches.Patch(fill=False, label=style.pop("label"), **style) for _, style in [(b, dict(s)) for b, s in boxes]
  ]
  fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8)
  fig.tight_layout(rect=(0, 0.06, 1, 1))
  save_figure(fig, path)


def plot_label_overlay(slice_HxW, pred_HxW, true_HxW, value_range, path):
  """One slice with the predicted (filled) and true (outlined) foreground labels."""
  fig, axes = plt.subplots(1, 2, figsize=(9, 4.4))
  for ax, labels, title in ((axes[0], true_HxW, "truth"), (axes[1], pred_HxW, "predicted")):
    ax.imshow(slice_HxW, cmap="gray", vmin=value_range[0], vmax=value_range[1])
    ax.imshow(np.ma.masked_equal(labels, 0), cmap="autumn", alpha=0.45, interpolation="nearest")
    if labels is pred_HxW and true_HxW.any():
      ax.contour(true_HxW > 0, levels=[0.5], colors="lime", linewidths=0.8)
    ax.set_title(title)
    ax.axis("off")
  fig.tight_layout()
  save_figure(fig, path)


def _hull_outline(points_Px2):
  """Closed outline (rows, cols) of the convex hull of 2D points, or None when degenerate."""
  unique = np.unique(np.round(points_Px2, 3), axis=0)
  if len(unique) < 3:
    return None
  try:
    hull = scipy.spatial.ConvexHull(unique)
  except scipy.spatial.QhullError:  # collinear points
    return None
  loop = unique[np.append(hull.vertices, hull.vertices[0])]
  return loop[:, 0], loop[:, 1]


def plot_variance_views(volume, boxes, region_points_Px3, variance_SxRxC, sort_axis, path, value_range=None, scores_S=None):
  """Paper Fig. 3: a slice through the box with the boxes; a projection with the predicted region's hull.

  Top-left: the slice along the sort axis through the region's centre; top-right: the mean
  projection across the sort axis's neighbour (the long side in view) with the convex hull
  of the predicted region (orange) and the boxes; bottom: the variance grid's maximum over
  each slice plane, per slice along the sort axis, and the position score per slice (grey).
  """
  low, high = value_range or intensity.intensity_range(volume)
  center = region_points_Px3.mean(axis=0).astype(int) if len(region_points_Px3) else [n // 2 for n in volume.shape]
  side_axis = 2 if sort_axis != 2 else 1  # project along this axis: the sort axis stays in view
  fig = plt.figure(figsize=(12, 7))
  grid = fig.add_gridspec(2, 2, height_ratios=(3, 1))
  slice_ax, projection_ax, curve_ax = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, :])
  slice_ax.imshow(volume.slice(sort_axis, int(center[sort_axis])), cmap="gray", vmin=low, vmax=high)
  slice_ax.set_title(f"{AXIS_NAMES[sort_axis]} slice {int(center[sort_axis])}", fontsize=9)
  projection = volume.downsample(1).mean(axis=side_axis) if volume.nbytes < 2**30 else None
  if projection is not None:
    projection_ax.imshow(projection, cmap="gray", aspect="auto")
  in_view = [a for a in range(3) if a != side_axis]
  if len(region_points_Px3):
    outline = _hull_outline(region_points_Px3[:, in_view])
    if outline is not None:
      projection_ax.plot(outline[1], outline[0], color="tab:orange", linewidth=1.5)
  projection_ax.set_title(f"mean projection along {AXIS_NAMES[side_axis]}; hull of the top-variance region", fontsize=9)
  for ax, axis in ((slice_ax, sort_axis), (projection_ax, side_axis)):
    for box, style in boxes:
      if box is not None:
        ax.add_patch(_box_rectangle(box, axis, linewidth=1.2, **{k: v for k, v in style.items() if k != "label"}))
    ax.set_xticks([])
    ax.set_yticks([])
  with np.errstate(all="ignore"):
    profile = np.nanmax(variance_SxRxC.reshape(len(variance_SxRxC), -1), axis=1) if variance_SxRxC.size else []
  curve_ax.plot(profile, color="tab:blue", linewidth=1)
  for box, style in boxes:
    if box is not None:
      for edge in (box["start"][sort_axis], box["stop"][sort_axis] - 1):
        curve_ax.axvline(edge, color=style["edgecolor"], linestyle=style.get("linestyle", "-"), linewidth=1)
  curve_ax.set_xlabel(f"slice index along {AXIS_NAMES[sort_axis]}")
  curve_ax.set_ylabel("max embedding variance")
  if scores_S is not None:
    score_ax = curve_ax.twinx()
    score_ax.plot(scores_S, color="0.4", linewidth=1)
    score_ax.set_ylabel("position score z", color="0.4")
  handles = [
    matplotlib.patches.Patch(fill=False, edgecolor=s["edgecolor"], linestyle=s.get("linestyle", "-"), label=s["label"])
    for _, s in boxes
  ]
  handles.append(matplotlib.lines.Line2D([], [], color="tab:orange", label="hull of predicted region"))
  fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8)
  fig.suptitle(f"{volume.name}: MC-dropout localization", fontsize=10)
  fig.tight_layout(rect=(0, 0.05, 1, 1))
  save_figure(fig, path)
