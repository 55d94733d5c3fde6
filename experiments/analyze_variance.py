r"""How well do the saved MC-dropout variance grids separate the sample, and which region rule works?

  python -m ssl_ct.main --config=configs/sorting_medaka.py:demo --workdir=W    # writes W/localization/variance/*.npz
  python experiments/analyze_variance.py --workdir=W

Needs ground-truth masks (the synthetic sets have them). Prints, per volume, the ROC AUC of the
variance as a sample-vs-background score over grid cells (a cell is "sample" when >20% of its
voxels are), then box metrics of the region rule over a grid of (top percent, smoothing, gap),
with the sample recall after a 5% crop margin, computed on the saved grids (no network needed).
To compare variance measures, localize again with --config.localize.variance_of=embedding
(--mode=localize) into another workdir and run this on it.
"""

import argparse
import itertools
import json
import os

import numpy as np

from ssl_ct import crop, evaluate, localize, run_localization
from ssl_ct import main as main_module


def cell_fractions(mask_DxHxW, axis, cell, grid_shape):
  """Fraction of sample voxels in each grid cell (slices along `axis` x cells of the slice plane)."""
  plane = np.moveaxis(mask_DxHxW, axis, 0).astype(np.float32)
  rows = np.minimum((np.arange(plane.shape[1]) // cell).astype(int), grid_shape[1] - 1)
  cols = np.minimum((np.arange(plane.shape[2]) // cell).astype(int), grid_shape[2] - 1)
  sums = np.zeros(grid_shape, np.float32)
  counts = np.zeros(grid_shape[1:], np.float32)
  np.add.at(counts, (rows[:, None], cols[None, :]), 1.0)
  for index in range(plane.shape[0]):
    np.add.at(sums[index], (rows[:, None], cols[None, :]), plane[index])
  return sums / np.maximum(counts, 1)[None]


def roc_auc(score, positive):
  """Mann-Whitney estimate of P(score of a positive > score of a negative)."""
  ranks = np.argsort(np.argsort(score)) + 1.0
  n_pos, n_neg = positive.sum(), (~positive).sum()
  return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / max(n_pos * n_neg, 1))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  args = parser.parse_args()
  config = main_module.read_config(args.workdir)
  known, saved = run_localization.load_saved(args.workdir, "variance", config.data)
  volumes = [(name, arrays["variance"], float(arrays["cell"]), int(arrays["axis"]), mask) for name, arrays, mask in saved]
  print("per-volume ROC AUC of the variance (sample cells vs the rest):")
  for name, grid, cell, axis, mask in volumes:
    inside = cell_fractions(mask, axis, cell, grid.shape) > 0.2
    valid = np.isfinite(grid)
    print(f"  {name}: {roc_auc(grid[valid], inside[valid]):.3f}")
  boxes_path = os.path.join(args.workdir, "localization", "boxes.json")
  with open(boxes_path) as f:
    boxes = json.load(f)
  found = [n for n, _, _, _, _ in volumes if boxes.get(n)]
  if found:
    inside_start = np.mean([np.subtract(boxes[n]["start"], known[n]["box"]["start"]) for n in found], axis=0)
    inside_stop = np.mean([np.subtract(known[n]["box"]["stop"], boxes[n]["stop"]) for n in found], axis=0)
    print(f"boxes.json edges inside the truth (voxels, z y x; negative = outside): start {inside_start}, stop {inside_stop}")
  print("region rule on the saved grids (means over volumes):")
  for top, smooth, gap in itertools.product((3, 5, 10, 15), (0.0, 0.02, 0.05), (0.0, 0.05)):
    rows = []
    for name, grid, cell, axis, mask in volumes:
      length = grid.shape[0]
      region = localize.region_from_grid(grid, top, smooth_slices=smooth * length, gap_slices=int(round(gap * length)))
      box = None if region is None else localize.box_of_region(region, axis, cell, mask.shape)
      metrics = evaluate.box_metrics(box, known[name]["box"], mask.shape, mask)
      cropped = evaluate.box_metrics(crop.margin_box(box, mask.shape, 0.05), known[name]["box"], mask.shape, mask)
      rows.append((metrics["iou"], metrics["recall"], cropped["recall"], cropped["kept_fraction"]))
    iou, recall, crop_recall, kept = np.mean(rows, axis=0)
    print(
      f"  top {top:>2}% smooth {smooth:.2f} gap {gap:.2f}: IoU {iou:.3f}  recall {recall:.3f}"
      f"  after 5% margin: recall {crop_recall:.3f}, kept {kept:.3f}"
    )


if __name__ == "__main__":
  main()
