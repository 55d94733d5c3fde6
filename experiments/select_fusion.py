r"""Does the threshold baseline's box trim what the certainty box takes in beside the sample (packing, holders)?

  python -m ssl_ct.main --config=configs/rotation_xenopus.py:demo --workdir=W      # trains, localizes
  python experiments/select_fusion.py --workdirs=W4,W5 [--core-levels=0.25,0.5] [--core-ranks=50,25]

Replays each workdir's latest rotation localization on its saved certainty curves (no network
run): the run's own box B (its curve rule), a strict "core" box C of the same curves (a higher
`level`, a lower smoothing rank: only the steady plateau), the run's threshold-baseline box O
(baseline_boxes.json) and the trimmed box B ∩ (C ∪ O): each face of B moves in to the outer of
C's and O's faces, never out. Each candidate is then refined as the run was (ssl_ct/refine.py),
when it was, and scored after cropping at the run's margin: relative box error, IoU, the worst
sample recall, the volume kept over the ideal (the truth boxes'). Needs ground truth (the
synthetic sets have it). Choose on sets you do not report on.
"""

import argparse
import itertools
import os

import numpy as np

from ssl_ct import crop, evaluate, fusion, localize_rotation, refine, report, results, run_localization, tasks
from ssl_ct.data import prepare


def _floats(text):
  return tuple(float(v) for v in text.split(","))


def _load(workdir):
  """(config, {name: volume}, {name: curves}, {name: baseline box}, {name: (truth box, mask)}) of the latest run."""
  config, known, saved = run_localization.load_saved(workdir, "curves")
  if config.task != "rotation":
    raise SystemExit(f"error: {workdir} is a {config.task} run; this script replays rotation certainty curves")
  dataset = prepare.load_dataset(config.data, workdir, progress=False)
  volumes = {v.name: v for v in dataset.volumes}
  baseline, _ = report.read_boxes(os.path.join(results.latest(workdir), "baseline_boxes.json"))
  curves, truths = {}, {}
  for name, arrays, mask in saved:
    curves[name] = {axis: arrays[f"axis{axis}"] for axis in range(3)}
    truths[name] = (known[name]["box"], mask)
  return config, volumes, curves, baseline, truths


def _score(boxes, truths, margin):
  rows = []
  for name, (truth_box, mask) in truths.items():
    found = evaluate.box_metrics(boxes[name], truth_box, mask.shape, mask)
    cropped = evaluate.box_metrics(crop.margin_box(boxes[name], mask.shape, margin), truth_box, mask.shape, mask)
    ideal = evaluate.box_metrics(truth_box, truth_box, mask.shape)["kept_fraction"]
    rows.append(
      (found["relative_error_pct"], found["iou"], cropped["recall"], cropped["kept_fraction"], ideal, boxes[name] is None)
    )
  rel, iou, recall, kept, ideal, nulls = np.nanmean(np.array(rows, float), axis=0)
  return rel, iou, min(r[2] for r in rows), kept / ideal, int(round(nulls * len(rows)))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdirs", required=True, help="comma-separated rotation workdirs with a localization run")
  parser.add_argument("--core-levels", type=_floats, default=(0.25, 0.5, 0.75), help="the core rule's localize.level values")
  parser.add_argument("--core-ranks", type=_floats, default=(50.0, 25.0), help="the core rule's smooth_percentile values")
  args = parser.parse_args()
  for workdir in args.workdirs.split(","):
    _replay(workdir, args.core_levels, args.core_ranks)


def rules(config):
  """(the run's curve rule, its refinement's settings) from its config, as the localizer got them."""
  rule = tasks._rule(config.localize, "min_accuracy_over_chance", "model", "twin_offsets", "batch_size", *fusion.KEYS)
  rule["floor"] = 1 / len(config.data.angles_deg)
  settings = {name: config.localize[key] for key, name in tasks._REFINE_KEYS.items() if name and key in config.localize}
  return rule, settings


def _replay(workdir, core_levels, core_ranks):
  config, volumes, curves, baseline, truths = _load(workdir)
  rule, settings = rules(config)
  seeded = settings.pop("from_threshold", False)  # refine.Refined's: the threshold box seeds the axis
  refines = config.localize.get("refine", False)

  def refined(box, name):
    whole = {"start": [0, 0, 0], "stop": list(volumes[name].shape)}
    if box is None or box == whole:
      return box
    seed = baseline[name] if seeded else None
    return refine.refine_box(volumes[name], box, config.localize.get("refine_axis", 0), axis_seed=seed, **settings)[0]

  own = {n: localize_rotation.box_from_curves(c, **rule) for n, c in curves.items()}
  print(f"{workdir} ({results.latest(workdir)}), {len(truths)} volumes, margin {config.crop.margin}:")
  candidates = [("certainty box B (the run's rule)", own), ("threshold baseline O", baseline)]
  for level, rank in itertools.product(core_levels, core_ranks):
    core_rule = dict(rule, level=level, smooth_percentile=rank)
    trimmed = {
      n: fusion.trim_box(own[n], localize_rotation.box_from_curves(c, **core_rule), baseline[n], volumes[n].shape)
      for n, c in curves.items()
    }
    candidates.append((f"B ∩ (C ∪ O), core level {level:g} rank {rank:g}", trimmed))
  for text, boxes in candidates:
    stages = [("", boxes)] + ([(", refined", {n: refined(boxes[n], n) for n in truths})] if refines else [])
    for stage, chosen in stages:
      rel, iou, worst, kept, nulls = _score(chosen, truths, config.crop.margin)
      print(
        f"  {text}{stage}: error {rel:5.2f}%  IoU {iou:.3f}  after crop: sample kept worst {worst:.4f},"
        f" volume kept {kept:.2f}x ideal  null {nulls}"
      )
  print(flush=True)


if __name__ == "__main__":
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  main()
