r"""Where does an axis count as filled by the sample? Replays the rotation localizer with candidate `fill_level`s.

  python -m ssl_ct.main --config=configs/rotation_xenopus.py:demo --workdir=W      # trains, localizes
  python experiments/select_fill.py --workdirs=W7,W7P [--fill-levels=0,0.25,0.5,0.75]

An axis fills (its interval is the whole axis) when even its least certain slices sit
`localize.fill_margin` above chance; with `localize.fill_level` they must also sit that fraction
of the way from chance to the sample's certainty (`ssl_ct/curves.py`). On some volumes the model
reads the background along one axis (certainty 0.4-0.6 on every empty axial slice, chance 0.14,
the sample 0.98), and the fill margin alone takes that axis whole. Each candidate is replayed on
the saved curves as the run's localizer would have used it (box rule, trim, refinement:
`select_margin.replay`, no network run) and scored against the ground truth: relative box error,
IoU, boxes taking an axis whole that the truth does not fill, and, cropped with the run's
margins (per face where the refinement measured: `crop.measured_pads`), the worst sample kept and
the volume kept over the ideal. The rule it prints: the candidate with the least mean box error
over the workdirs among those keeping at least `--min-kept` of every sample (or, where the
run's own setting keeps less, no less than it); of equals, the smaller. Choose on sets you do
not report on.
"""

import argparse
import os

import numpy as np
import select_fusion
import select_margin

from ssl_ct import evaluate


def _whole_axes(box, truth_box, shape):
  """Axes the box takes whole while the truth does not reach both ends."""
  if box is None or truth_box is None:
    return 0
  return sum(
    box["start"][a] == 0 and box["stop"][a] == n and not (truth_box["start"][a] == 0 and truth_box["stop"][a] == n)
    for a, n in enumerate(shape)
  )


def evaluate_level(workdir, loaded, fill_level):
  """(the run's own fill level, (mean relative error %, mean IoU, axes taken whole wrongly, worst
  sample kept, volume kept / ideal)) of one replay with `fill_level`; `loaded`:
  `select_fusion._load(workdir)`, the volumes, curves and truths read once for every candidate."""
  config, truths, found = select_margin.replay(workdir, loaded=loaded, fill_level=fill_level)
  errors, ious, whole = [], [], 0
  for name, (truth_box, mask) in truths.items():
    box = found[name][0]
    metrics = evaluate.box_metrics(box, truth_box, mask.shape, mask)
    errors.append(metrics["relative_error_pct"])
    ious.append(metrics["iou"])
    whole += _whole_axes(box, truth_box, mask.shape)
  worst, ratio = select_margin.score(found, truths, config.crop.margin, config.crop.get("measured_margin"))
  return config.localize.get("fill_level", 0.0), (float(np.mean(errors)), float(np.mean(ious)), whole, worst, ratio)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdirs", required=True, help="comma-separated rotation workdirs with a localization run")
  parser.add_argument("--fill-levels", type=select_margin._floats, default=(0.0, 0.25, 0.5, 0.75))
  parser.add_argument("--min-kept", type=float, default=0.995, help="every sample keeps at least this after the crop")
  args = parser.parse_args()
  passing, total_error = set(args.fill_levels), dict.fromkeys(args.fill_levels, 0.0)
  for workdir in args.workdirs.split(","):
    loaded, scores = select_fusion._load(workdir), {}
    for level in args.fill_levels:
      own_level, scores[level] = evaluate_level(workdir, loaded, level)
    own = scores[own_level] if own_level in scores else evaluate_level(workdir, loaded, own_level)[1]
    bar = min(args.min_kept, own[3])  # a run whose own crops already cut a sample sets a lower bar
    print(f"{workdir} (the run's fill_level: {own_level}):")
    for level, (error, iou, whole, worst, ratio) in scores.items():
      print(
        f"  fill_level {level:g}: box error {error:.2f}%, IoU {iou:.3f}, axes taken whole wrongly {whole};"
        f" cropped: sample kept worst {worst:.4f}, volume kept {ratio:.2f}x ideal"
      )
      total_error[level] += error
      if worst < bar:
        passing.discard(level)
  chosen = min(passing, key=lambda level: (total_error[level], level)) if passing else None  # ties: the smaller level
  print(f"the least mean box error keeping >= {args.min_kept} of every sample (or the run's own worst): {chosen}")


if __name__ == "__main__":
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  main()
