r"""Which certainty-curve rule finds the box best? Replays the rule on saved rotation-loss curves.

  python -m ssl_ct.main --config=configs/rotation_xenopus.py:demo --workdir=W   # writes W/localization/latest/curves/*.npz
  python experiments/analyze_curves.py --workdir=W

Needs ground truth (the synthetic sets have it) and curves on the input grid (no
`data.downscale_to`). Prints box metrics, means over volumes, for each (level,
cut_noise_factor, max_gap) of `curves.interval_from_curve`, with how far the box
edges sit inside the truth on average (negative = outside); the run's own rule is marked. No
network is run.
"""

import argparse
import itertools

import numpy as np

from ssl_ct import evaluate, localize_rotation, run_localization


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  args = parser.parse_args()
  config, known, saved = run_localization.load_saved(args.workdir, "curves")
  volumes = []
  for name, arrays, mask in saved:
    curves = {axis: arrays[f"axis{axis}"] for axis in range(3)}
    if tuple(len(curves[axis]) for axis in range(3)) != mask.shape:
      raise SystemExit(f"{name}: curves are not on the input grid (data.downscale_to?); this script needs them to be")
    volumes.append((name, curves, mask))
  if not volumes:
    raise SystemExit(f"no curves in {args.workdir}/localization/latest/curves; run the localizer first")

  loc = config.localize
  current = (loc.level, loc.get("cut_noise_factor", 3.0), loc.max_gap)  # runs before it was a config key: the default
  print(f"{len(volumes)} volumes; config rule: level {current[0]}, cut_noise_factor {current[1]}, max_gap {current[2]}")
  print("mean over volumes of the box metrics per rule (* = the config's):")
  for level, noise, gap in itertools.product((0.0, 0.02, 0.05, 0.1), (1.0, 2.0, 3.0), (0.0, 0.02, 0.05)):
    rule = {"smooth": loc.smooth, "min_contrast": loc.min_contrast, "level": level, "cut_noise_factor": noise, "max_gap": gap}
    rows, inside = [], []
    for name, curves, mask in volumes:
      box = localize_rotation.box_from_curves(curves, **rule)
      metrics = evaluate.box_metrics(box, known[name]["box"], mask.shape, mask)
      rows.append((metrics["mae_voxels"], metrics["iou"], metrics["recall"], box is None))
      if box is not None:
        inside.append(
          np.concatenate(
            [np.subtract(box["start"], known[name]["box"]["start"]), np.subtract(known[name]["box"]["stop"], box["stop"])]
          )
        )
    mae, iou, recall, nulls = np.mean(rows, axis=0)
    bias = np.mean(inside) if inside else float("nan")
    mark = "*" if (level, noise, gap) == tuple(current) else " "
    print(
      f" {mark} level {level:.2f} cut_noise {noise:.0f} max_gap {gap:.2f}: MAE {mae:5.2f}  IoU {iou:.3f}  recall {recall:.3f}"
      f"  null {int(round(nulls * len(volumes)))}  edges inside by {bias:+.2f}"
    )


if __name__ == "__main__":
  main()
