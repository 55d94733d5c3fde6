"""Box quality against ground truth: MAE, relative error, IoU, sample-voxel recall, kept fraction.

A `None` prediction (no sample found) keeps the whole volume, and is scored as that box.
"""

import numpy as np


def _as_box(box, shape):
  return box if box is not None else {"start": [0, 0, 0], "stop": list(shape)}


def _volume(start, stop):
  return float(np.prod(np.maximum(np.subtract(stop, start), 0)))


def box_metrics(pred, truth_box, shape, mask_DxHxW=None):
  """Dict of metrics for one volume; `mask` gives recall in sample voxels, else in truth-box voxels."""
  pred = _as_box(pred, shape)
  p0, p1 = np.array(pred["start"]), np.array(pred["stop"])
  t0, t1 = np.array(truth_box["start"]), np.array(truth_box["stop"])
  errors = np.abs(np.concatenate([p0 - t0, p1 - t1])).astype(float)
  sides = np.array(list(shape) * 2, float)
  inter = _volume(np.maximum(p0, t0), np.minimum(p1, t1))
  union = _volume(p0, p1) + _volume(t0, t1) - inter
  if mask_DxHxW is not None:
    inside = mask_DxHxW[p0[0] : p1[0], p0[1] : p1[1], p0[2] : p1[2]].sum()
    recall = float(inside / max(mask_DxHxW.sum(), 1))
  else:
    recall = inter / max(_volume(t0, t1), 1)
  return {
    "mae_voxels": float(errors.mean()),
    "relative_error_pct": float(100 * (errors / sides).mean()),
    "iou": inter / union if union else 0.0,
    "recall": recall,
    "kept_fraction": _volume(p0, p1) / float(np.prod(shape)),
  }


def summarize(per_volume):
  """Mean of each metric over volumes ({name: metrics} -> metrics)."""
  if not per_volume:
    return {}
  keys = next(iter(per_volume.values())).keys()
  return {k: float(np.mean([m[k] for m in per_volume.values()])) for k in keys}
