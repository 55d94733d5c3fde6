r"""Which certainty-curve rule finds the box best? Replays the rule on saved rotation-loss curves.

  python -m ssl_ct.main --config=configs/rotation_xenopus.py:demo --workdir=W   # writes W/localization/latest/curves/*.npz
  python experiments/analyze_curves.py --workdir=W

Needs ground truth (the synthetic sets have it) and curves on the input grid (no
`data.downscale_to`). Prints box metrics, means over volumes, for each (level,
cut_noise_factor, max_gap, fill_percentile) of `curves.interval_from_curve` (lists with
--levels, --cut-noise, --max-gaps, --fill-percentiles), with how far the box
edges sit inside the truth on average (negative = outside); the run's own rule is marked. No
network is run.
"""

import argparse
import itertools

import numpy as np

from ssl_ct import crop, evaluate, localize_rotation, run_localization


def _floats(text):
  return tuple(float(v) for v in text.split(","))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--levels", type=_floats, default=(0.0, 0.02, 0.05, 0.1), help="comma-separated localize.level values")
  parser.add_argument("--cut-noise", type=_floats, default=(1.0, 2.0, 3.0), help="localize.cut_noise_factor values")
  parser.add_argument("--max-gaps", type=_floats, default=(0.0, 0.02, 0.05), help="localize.max_gap values")
  parser.add_argument("--smooths", type=_floats, default=None, help="localize.smooth values (default: the run's)")
  parser.add_argument(
    "--smooth-percentiles", type=_floats, default=None, help="localize.smooth_percentile values (default: the run's)"
  )
  parser.add_argument(
    "--fill-percentiles", type=_floats, default=None, help="localize.fill_percentile values (default: the run's)"
  )
  args = parser.parse_args()
  config, known, saved = run_localization.load_saved(args.workdir, "curves")
  volumes = []
  for name, arrays, mask in saved:
    curves = {axis: arrays[f"axis{axis}"] for axis in range(3)}
    if tuple(len(curves[axis]) for axis in range(3)) != mask.shape:
      raise SystemExit(f"{name}: curves are not on the input grid (data.downscale_to?); this script needs them to be")
    ideal = evaluate.box_metrics(known[name]["box"], known[name]["box"], mask.shape)["kept_fraction"]
    volumes.append((name, curves, mask, ideal))
  if not volumes:
    raise SystemExit(f"no curves in {args.workdir}/localization/latest/curves; run the localizer first")

  loc = config.localize
  # Runs from before a key existed used its default then.
  current = (
    loc.level,
    loc.get("cut_noise_factor", 3.0),
    loc.max_gap,
    loc.get("fill_percentile", 10.0),
    loc.smooth,
    loc.get("smooth_percentile", 50.0),
  )
  fixed = {"min_contrast": loc.min_contrast, "floor": 1 / len(config.data.angles_deg)}
  if "fill_margin" in loc:
    fixed["fill_margin"] = loc.fill_margin
  fills = args.fill_percentiles or (current[3],)
  smooths, ranks = args.smooths or (current[4],), args.smooth_percentiles or (current[5],)
  print(
    f"{len(volumes)} volumes; config rule: level {current[0]}, cut_noise_factor {current[1]}, max_gap {current[2]},"
    f" fill_percentile {current[3]}, smooth {current[4]}, smooth_percentile {current[5]}"
  )
  print("mean over volumes of the box metrics per rule (* = the config's); relative error in % of the side:")
  for level, noise, gap, fill, smooth, rank in itertools.product(
    args.levels, args.cut_noise, args.max_gaps, fills, smooths, ranks
  ):
    rule = dict(
      fixed, level=level, cut_noise_factor=noise, max_gap=gap, fill_percentile=fill, smooth=smooth, smooth_percentile=rank
    )
    rows, inside, filled, crops = [], [], 0, []
    for name, curves, mask, ideal in volumes:
      box = localize_rotation.box_from_curves(curves, **rule)
      metrics = evaluate.box_metrics(box, known[name]["box"], mask.shape, mask)
      cropped = evaluate.box_metrics(crop.margin_box(box, mask.shape, config.crop.margin), known[name]["box"], mask.shape, mask)
      rows.append((metrics["mae_voxels"], metrics["relative_error_pct"], metrics["iou"], metrics["recall"], box is None))
      crops.append((cropped["recall"], cropped["kept_fraction"] / ideal))
      filled += box == {"start": [0, 0, 0], "stop": list(mask.shape)}
      if box is not None:
        inside.append(
          np.concatenate(
            [np.subtract(box["start"], known[name]["box"]["start"]), np.subtract(known[name]["box"]["stop"], box["stop"])]
          )
        )
    mae, rel, iou, recall, nulls = np.nanmean(np.array(rows, float), axis=0)
    worst = np.min([r[3] for r in rows])
    bias = np.mean(inside) if inside else float("nan")
    mark = "*" if (level, noise, gap, fill, smooth, rank) == tuple(current) else " "
    print(
      f" {mark} level {level:.2f} cut_noise {noise:.0f} gap {gap:.2f} fill_pct {fill:4.1f} smooth {smooth:.2f} rank {rank:4.1f}:"
      f" MAE {mae:5.2f} ({rel:5.2f}%)"
      f"  IoU {iou:.3f}  recall {recall:.4f} (worst {worst:.4f})  null {int(round(nulls * len(volumes)))}"
      f"  fills {filled}  edges inside by {bias:+.2f}  | cropped at {config.crop.margin}: sample kept worst"
      f" {min(c[0] for c in crops):.4f}, volume kept {np.mean([c[1] for c in crops]):.2f}x ideal"
    )


if __name__ == "__main__":
  main()
