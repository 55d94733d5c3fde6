"""Localizes every volume with the trained model and with the threshold baseline; writes the report."""

import glob
import os

import numpy as np
import tqdm

from ssl_ct import baseline, evaluate, plots, report, results
from ssl_ct.data import prepare, truth

_STYLES = {
  "predicted": {"edgecolor": "tab:orange", "label": "predicted"},
  "truth": {"edgecolor": "lime", "linestyle": "--", "label": "truth"},
  "baseline": {"edgecolor": "tab:cyan", "linestyle": ":", "label": "threshold baseline"},
}


def localize_dataset(dataset, localize, out_dir, *, method_name, plot=True, crop_margin=None):
  """Runs `localize` and the baseline on every volume; returns the summary (or None without truth).

  `crop_margin`: the margin the boxes are to be cropped with, recorded in boxes.json.
  """
  os.makedirs(out_dir, exist_ok=True)  # sub-folders appear with the figures the localizer has
  boxes, baseline_boxes, metrics, baseline_metrics = {}, {}, {}, {}
  for volume in tqdm.tqdm(dataset.volumes, desc="localize", unit="vol"):
    name, volume_fov, value_range = volume.name, dataset.fovs[volume.name], dataset.ranges[volume.name]
    factor, shape = dataset.factor(name), dataset.input_shape(name)
    grid_box, extras = localize(volume, volume_fov, value_range)  # on the analysed (maybe downscaled) grid
    grid_baseline = baseline.threshold_box(volume, volume_fov)
    boxes[name] = baseline.scale_box(grid_box, factor, shape)
    baseline_boxes[name] = baseline.scale_box(grid_baseline, factor, shape)
    truth_box = dataset.truth.get(name, {}).get("box")
    if truth_box is not None:
      mask = truth.read_mask(dataset.root, dataset.truth[name])
      metrics[name] = evaluate.box_metrics(boxes[name], truth_box, shape, mask)
      baseline_metrics[name] = evaluate.box_metrics(baseline_boxes[name], truth_box, shape, mask)
    if plot:
      grid_truth = baseline.shrink_box(truth_box, factor)
      if "curves" in extras:
        os.makedirs(os.path.join(out_dir, "curves"), exist_ok=True)
        np.savez(os.path.join(out_dir, "curves", f"{name}.npz"), **{f"axis{a}": c for a, c in extras["curves"].items()})
        curves_png = os.path.join(out_dir, "curves", f"{name}.png")
        plots.plot_certainty_curves(name, extras["curves"], extras["smoothed"], grid_box, grid_truth, curves_png)
      shown = [(grid_box, _STYLES["predicted"]), (grid_truth, _STYLES["truth"]), (grid_baseline, _STYLES["baseline"])]
      if "variance" in extras:  # MC-dropout localization: the variance grid and paper Fig. 3
        os.makedirs(os.path.join(out_dir, "variance"), exist_ok=True)
        saved = {k: extras[k] for k in ("variance", "cell", "axis", "scores")}
        np.savez_compressed(os.path.join(out_dir, "variance", f"{name}.npz"), **saved)
        points = extras.get("region_points", np.zeros((0, 3), np.float32))
        views_png = os.path.join(out_dir, "variance", f"{name}.png")
        plots.plot_variance_views(
          volume, shown, points, extras["variance"], extras["axis"], views_png, value_range, scores_S=extras["scores"]
        )
      os.makedirs(os.path.join(out_dir, "overlays"), exist_ok=True)
      plots.plot_box_overlay(volume, shown, os.path.join(out_dir, "overlays", f"{name}.png"), value_range)
  complete = len(metrics) == len(boxes)
  return report.write_report(
    out_dir,
    method_name=method_name,
    boxes=boxes,
    baseline_boxes=baseline_boxes,
    metrics=metrics if complete else None,
    baseline_metrics=baseline_metrics if complete else None,
    shapes={v.name: dataset.input_shape(v.name) for v in dataset.volumes},
    crop_margin=crop_margin,
  )


def load_saved(workdir, folder):
  """(run config, truth entries, [(name, saved arrays, mask)]) of what the latest localization run saved in <folder>.

  For analysis scripts: needs the ground-truth masks of the run's data (synthetic sets have them).
  """
  run = results.latest(workdir)
  config = results.read_config(run)
  root = prepare.data_root(config.data, workdir, progress=False)
  known = truth.read_truth(root)
  saved = []
  for npz in sorted(glob.glob(os.path.join(run, folder, "*.npz"))):
    name = os.path.basename(npz)[:-4]
    saved.append((name, np.load(npz), truth.read_mask(root, known[name])))
  return config, known, saved
