r"""How well do the saved MC-dropout variance grids separate the sample, and which region rule works?

  python -m ssl_ct.main --config=configs/sorting_medaka.py:demo --workdir=W    # writes W/localization/latest/variance/*.npz
  python experiments/analyze_variance.py --workdir=W

Needs ground-truth masks (the synthetic sets have them). Prints the ROC AUC of the variance as
a sample-vs-background score over grid cells (a cell is "sample" when >20% of its voxels are;
mean and range over volumes), then box metrics of `localize_sorting.box_from_grid` over a grid of rules
(extent "variance" or "score", top percent, cut, flat fraction, gap), with the sample recall
after cropping with the run's margin (`crop.margin`, or --margin), replayed on the saved grids
and scores (no network needed).
To compare variance measures, localize again with --config.localize.variance_of=embedding
(--mode=localize) into another workdir and run this on it.
"""

import argparse
import itertools
import os

import numpy as np

from ssl_ct import crop, evaluate, localize_sorting, report, results, run_localization


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
  parser.add_argument("--margin", type=float, default=None, help="crop margin (fraction of each side); default: the run's")
  args = parser.parse_args()
  config, known, saved = run_localization.load_saved(args.workdir, "variance")
  aucs = []
  for _, arrays, mask in saved:
    grid = arrays["variance"]
    inside = cell_fractions(mask, int(arrays["axis"]), float(arrays["cell"]), grid.shape) > 0.2
    valid = np.isfinite(grid)
    aucs.append(roc_auc(grid[valid], inside[valid]))
  print(f"ROC AUC of the variance, sample cells vs the rest: mean {np.mean(aucs):.3f}, range {min(aucs):.3f}-{max(aucs):.3f}")
  boxes, _ = report.read_boxes(os.path.join(results.latest(args.workdir), "boxes.json"))
  found = [name for name, _, _ in saved if boxes.get(name)]
  if found:
    inside_start = np.mean([np.subtract(boxes[n]["start"], known[n]["box"]["start"]) for n in found], axis=0)
    inside_stop = np.mean([np.subtract(known[n]["box"]["stop"], boxes[n]["stop"]) for n in found], axis=0)
    print(f"boxes.json edges inside the truth (voxels, z y x; negative = outside): start {inside_start}, stop {inside_stop}")
  print("box rule on the saved grids and scores (means over volumes; min crop recall over volumes):")
  base = {"smooth": config.localize.smooth}
  margin = config.crop.margin if args.margin is None else args.margin
  rules = [{"extent": "variance", "top_percent": top, "max_gap": config.localize.max_gap} for top in (3, 5, 10)]
  rules += [
    {"extent": "score", "top_percent": top, "cut_noise_factor": cut, "flat_fraction": flat, "max_gap": gap}
    for top, cut, flat, gap in itertools.product((3, 5, 10, 15), (2.0, 4.0, 8.0), (0.1, 0.2), (0.02, 0.05))
  ]
  for rule in rules:
    rows = []
    for name, arrays, mask in saved:
      grid, scores = arrays["variance"], arrays["scores"] if "scores" in arrays else None
      if rule["extent"] == "score" and scores is None:
        break  # saved before the scores were
      box, _ = localize_sorting.box_from_grid(
        grid, scores, float(arrays["cell"]), int(arrays["axis"]), mask.shape, **base, **rule
      )
      metrics = evaluate.box_metrics(box, known[name]["box"], mask.shape, mask)
      cropped = evaluate.box_metrics(crop.margin_box(box, mask.shape, margin), known[name]["box"], mask.shape, mask)
      rows.append((metrics["mae_voxels"], metrics["iou"], metrics["recall"], cropped["recall"], cropped["kept_fraction"]))
    if len(rows) < len(saved):
      continue
    mae, iou, recall, crop_recall, kept = np.mean(rows, axis=0)
    worst = min(r[3] for r in rows)
    text = ", ".join(f"{k} {v}" for k, v in rule.items())
    print(
      f"  {text}: MAE {mae:.2f}  IoU {iou:.3f}  recall {recall:.3f}"
      f"  after a {margin:.1%} margin: recall {crop_recall:.4f} (min {worst:.3f}), kept {kept:.3f}"
    )


if __name__ == "__main__":
  main()
