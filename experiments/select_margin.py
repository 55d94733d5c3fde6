r"""How small can the crop margin be on the faces the refinement measured?

  python -m ssl_ct.main --config=configs/rotation_xenopus.py:demo --workdir=W      # trains, localizes
  python experiments/select_margin.py --workdirs=W4,W4P [--measured-margins=0,0.005,0.01,0.02,0.03,0.05] [--min-kept=0.995] [--faces=all|plane]

Replays each workdir's latest rotation localization on its saved certainty curves and baseline
boxes (no network run): the run's box rule, the trim, then the refinement
(`refine.refine_box_faces`), which says which faces it measured: the growth stopped short of its
band, so the slices past the face looked empty. Each candidate margin goes on those faces, the
run's uniform `crop.margin` on the rest (`crop.face_pads`), and the crop is scored against the
ground truth: per workdir the worst sample kept and the volume kept over the ideal (the truth
boxes'), and the faces' distance to the truth by kind. `--faces` overrides the run's
`localize.refine_measure`: `plane` counts only the faces in the refinement's plane as measured (those along its axis keep the uniform margin: on the xenopus
seed-5 demo two measured z faces sat 7 and 9 voxels inside faint embryos). The rule it prints: the smallest
candidate keeping at least `--min-kept` of every sample of every workdir, or, in a workdir where
the uniform margin itself keeps less (a face it did not measure is inside the sample), no less
than the uniform margin keeps there. Choose on sets you do not report on.
"""

import argparse
import os

import numpy as np
import select_fusion

from ssl_ct import crop, evaluate, fusion, localize_rotation, refine


def _floats(text):
  return tuple(float(v) for v in text.split(","))


def coarse_boxes(loaded, **rule_changes):
  """(config, refinement settings, {name: (box before the refinement or None, whether the refinement
  runs on it)}) of a run's pipeline up to the refinement: the box rule (with `rule_changes`,
  `curves.interval_from_curve`'s keywords), then the trim; a null box or one that fills the field is
  not refined. `loaded`: `select_fusion._load(workdir)`."""
  config, volumes, curves, baseline, _ = loaded
  rule, settings = select_fusion.rules(config)
  rule.update(rule_changes)
  core_rule = dict(rule, level=config.localize.trim_level, smooth_percentile=config.localize.trim_smooth_percentile)
  boxes = {}
  for name, by_axis in curves.items():
    shape = volumes[name].shape
    box = localize_rotation.box_from_curves(by_axis, **rule)
    if box is None or box == {"start": [0, 0, 0], "stop": list(shape)}:
      boxes[name] = (box, False)
      continue
    if config.localize.get("trim", False):
      box = fusion.trim_box(box, localize_rotation.box_from_curves(by_axis, **core_rule), baseline[name], shape)
    boxes[name] = (box, config.localize.get("refine", False))
  return config, settings, boxes


def replay(workdir, faces=None, loaded=None, refine_changes=None, **rule_changes):
  """(config, truths, {name: (refined box or None, measured faces or None, face tails or None)}) of the run's pipeline;
  `faces`: the refinement's `measure` ("all" or "plane") instead of the run's; `refine_changes`:
  the refinement's settings (`refine.refine_box_faces`' keywords) instead of the run's;
  `rule_changes`: curve-rule settings (`curves.interval_from_curve`'s keywords) instead of the
  run's; `loaded`: `select_fusion._load(workdir)`, read once by a caller that replays a workdir
  several times."""
  loaded = loaded or select_fusion._load(workdir)
  config, settings, boxes = coarse_boxes(loaded, **rule_changes)
  volumes, truths = loaded[1], loaded[4]
  settings = dict(settings, **(refine_changes or {}), **({"measure": faces} if faces else {}))
  seeded = settings.pop("from_threshold", False)  # refine.Refined's: the run's threshold box seeds the axis
  axis, found = config.localize.get("refine_axis", 0), {}
  for name, (box, refined) in boxes.items():
    if refined:
      seed = loaded[3][name] if seeded else None
      box, _, measured, tails = refine.refine_box_faces(volumes[name], box, axis, axis_seed=seed, **settings)
      found[name] = (box, measured, tails)
    else:
      found[name] = (box, None, None)
  return config, truths, found


def _face_errors(found, truths):
  """{"measured": [...], "not measured": [...]}: each face's distance past the truth's (voxels; < 0 cuts into it)."""
  errors = {"measured": [], "not measured": []}
  for name, (truth_box, _) in truths.items():
    box, measured, _ = found[name]
    if box is None or truth_box is None:
      continue
    for axis in range(3):
      for side, sign in ((0, -1), (1, 1)):
        key = "start" if side == 0 else "stop"
        kind = "measured" if measured and measured[axis][side] else "not measured"
        errors[kind].append(sign * (box[key][axis] - truth_box[key][axis]))
  return errors


def score(found, truths, margin, measured_margin):
  """(worst sample kept, mean volume kept over the ideal) after cropping with per-face margins."""
  kept, ratios = [], []
  for name, (truth_box, mask) in truths.items():
    box, measured, tails = found[name]
    pads = crop.measured_pads(measured, mask.shape, margin, measured_margin, tails=tails) if box is not None else None
    cropped = evaluate.box_metrics(crop.margin_box(box, mask.shape, margin, face_pads=pads), truth_box, mask.shape, mask)
    ideal = evaluate.box_metrics(truth_box, truth_box, mask.shape)["kept_fraction"]
    kept.append(cropped["recall"])
    ratios.append(cropped["kept_fraction"] / ideal)
  return min(kept), float(np.mean(ratios))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdirs", required=True, help="comma-separated rotation workdirs with a localization run")
  parser.add_argument("--measured-margins", type=_floats, default=(0.0, 0.005, 0.01, 0.02, 0.03, 0.05))
  parser.add_argument(
    "--min-kept", type=float, default=0.995, help="the rule: every sample keeps at least this (or what the uniform margin keeps)"
  )
  parser.add_argument(
    "--faces",
    choices=("all", "plane"),
    help="which measured faces get the smaller margin (default: the run's localize.refine_measure)",
  )
  args = parser.parse_args()
  passing = set(args.measured_margins)
  for workdir in args.workdirs.split(","):
    config, truths, found = replay(workdir, args.faces)
    errors = _face_errors(found, truths)
    print(f"{workdir}: {len(truths)} volumes, uniform margin {config.crop.margin}")
    for kind, values in errors.items():
      if values:
        print(f"  {kind} faces: {len(values)}, past the truth by min {min(values)}, median {np.median(values):g} voxels")
    scores = {m: score(found, truths, config.crop.margin, m) for m in {*args.measured_margins, config.crop.margin}}
    # A crop with per-face margins must lose no more than the uniform one where that already loses some.
    bar = min(args.min_kept, scores[config.crop.margin][0])
    for candidate in args.measured_margins:
      worst, ratio = scores[candidate]
      print(f"  measured margin {candidate:g}: sample kept worst {worst:.4f}, volume kept {ratio:.2f}x ideal")
      if worst < bar:
        passing.discard(candidate)
  chosen = min(passing) if passing else None
  print(f"the smallest measured margin keeping >= {args.min_kept} of every sample (or the uniform margin's worst): {chosen}")


if __name__ == "__main__":
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  main()
