r"""Both localizers and the threshold baseline on the real micro-CT scans, scored against reviewed references.

  python experiments/real_data_benchmark.py --workdir=W [--data=../shared/data, or $SSL_CT_REAL_DATA] [--tasks=rotation,sorting] [--steps=N]

Trains each task's demo config on every scan of DATA (the real scans of the developers'
shared/data; none of its rules were chosen on them), localizes and scores the boxes against
`DATA/reference/truth.json` and its masks (the volumes without a reference are trained on and
localized, not scored). Writes W/real_benchmark.md and .json with, per method: boxes found / null,
relative box error where a box came back, IoU (null counted as 0), and after cropping with the
config's margin (per face where boxes.json records face_margins; null keeps the whole volume) the fraction of the sample kept (mean, worst) and
of the volume kept (mean), beside the reference boxes' own kept fraction. A run whose model the
trust gate refused (every box null, the whole volumes kept) gets one more row: that model's own
boxes (boxes.json `model_boxes`) scored as if they had been cropped at the uniform margin, what
the gate withheld.
"""

import argparse
import json
import os
import sys

import numpy as np
from absl import logging

from ssl_ct import crop, evaluate, outputs, report, results, run_localization, train
from ssl_ct.configs import rotation_xenopus, sorting_medaka
from ssl_ct.data import prepare, sources

CONFIGS = {"rotation": rotation_xenopus, "sorting": sorting_medaka}
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def data_view(data, reference, folder):
  """A folder of links to every scan in `data`, with a truth.json of the reviewed references (masks as .npz)."""
  os.makedirs(folder, exist_ok=True)
  for spec in sources.resolve_specs(data):
    link = os.path.join(folder, os.path.basename(os.path.normpath(spec)))
    if not os.path.lexists(link):
      os.symlink(os.path.abspath(spec), link)
  with open(os.path.join(reference, "truth.json")) as f:
    known = json.load(f)
  entries = {
    name: {"box": e["box"], "mask": os.path.join(os.path.abspath(reference), "masks", f"{name}.npz")} for name, e in known.items()
  }
  outputs.write_json(os.path.join(folder, "truth.json"), entries)
  return folder


def score(boxes, dataset, margin, face_margins=None):
  """The issue's measures over the volumes with a reference; per volume too (cropped with `face_margins`,
  boxes.json's per-face margins, where it has them)."""
  rows = {}
  for name, entry in dataset.truth.items():
    shape = dataset.input_shape(name)
    mask = np.load(entry["mask"])["mask"]
    box = boxes[name]
    found = evaluate.box_metrics(box, entry["box"], shape, mask)
    pads = (face_margins or {}).get(name)
    cropped = evaluate.box_metrics(crop.margin_box(box, shape, margin, face_pads=pads), entry["box"], shape, mask)
    ideal = evaluate.box_metrics(entry["box"], entry["box"], shape, mask)
    rows[name] = {
      "found": box is not None,
      "relative_error_pct": found["relative_error_pct"] if box is not None else None,
      "iou": found["iou"] if box is not None else 0.0,
      "crop_sample_kept": cropped["recall"],
      "crop_volume_kept": cropped["kept_fraction"],
      "ideal_volume_kept": ideal["kept_fraction"],
    }
  found = [r for r in rows.values() if r["found"]]
  summary = {
    "volumes": len(rows),
    "boxes": len(found),
    "null": len(rows) - len(found),
    "relative_error_pct": float(np.mean([r["relative_error_pct"] for r in found])) if found else None,
    "iou": float(np.mean([r["iou"] for r in rows.values()])),
    "crop_sample_kept_mean": float(np.mean([r["crop_sample_kept"] for r in rows.values()])),
    "crop_sample_kept_worst": float(np.min([r["crop_sample_kept"] for r in rows.values()])),
    "crop_volume_kept_mean": float(np.mean([r["crop_volume_kept"] for r in rows.values()])),
    "ideal_volume_kept_mean": float(np.mean([r["ideal_volume_kept"] for r in rows.values()])),
  }
  return summary, rows


def _markdown(scored):
  lines = ["# Real scans: localizers against the threshold baseline", ""]
  lines += [
    "| method | boxes / null | relative error (% of side, boxes only) | IoU (null = 0) | crop: sample kept mean (worst) | crop: volume kept | ideal volume kept |",
    "|---|---|---|---|---|---|---|",
  ]
  for method, (s, _) in scored.items():
    error = f"{s['relative_error_pct']:.2f}" if s["relative_error_pct"] is not None else "-"
    lines.append(
      f"| {method} | {s['boxes']} / {s['null']} | {error} | {s['iou']:.3f} | {s['crop_sample_kept_mean']:.4f} ({s['crop_sample_kept_worst']:.4f})"
      f" | {s['crop_volume_kept_mean']:.3f} | {s['ideal_volume_kept_mean']:.3f} |"
    )
  lines += [
    "",
    "Per volume:",
    "",
    "| method | volume | box | relative error | IoU | crop: sample kept | crop: volume kept |",
    "|---|---|---|---|---|---|---|",
  ]
  for method, (_, rows) in scored.items():
    for name, r in rows.items():
      error = f"{r['relative_error_pct']:.2f}" if r["relative_error_pct"] is not None else "-"
      lines.append(
        f"| {method} | {name} | {'box' if r['found'] else 'null'} | {error} | {r['iou']:.3f} | {r['crop_sample_kept']:.4f} | {r['crop_volume_kept']:.3f} |"
      )
  return "\n".join(lines) + "\n"


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--data", default=os.environ.get("SSL_CT_REAL_DATA", os.path.join(REPO, "..", "shared", "data")))
  parser.add_argument("--tasks", default="rotation,sorting")
  parser.add_argument("--steps", type=int, default=0, help="training steps (0 = each demo config's)")
  args = parser.parse_args()
  logging.set_verbosity(logging.WARNING)
  if not os.path.exists(os.path.join(args.data, "reference", "truth.json")):
    print(f"error: --data={args.data} has no reference/truth.json; pass the developers' shared data folder", file=sys.stderr)
    sys.exit(2)
  view = data_view(args.data, os.path.join(args.data, "reference"), os.path.join(args.workdir, "scans"))
  found = {}
  for task in args.tasks.split(","):
    config = CONFIGS[task].get_config("demo")
    config.data.path = view
    if args.steps:
      config.train.steps = args.steps
    workdir = os.path.join(args.workdir, task)
    dataset = prepare.load_dataset(config.data, workdir)
    state = train.train_and_evaluate(config, workdir, dataset=dataset)
    run_localization.localize_workdir(config, workdir, dataset=dataset, params=train.host_params(state.params))
    run = results.latest(workdir)
    boxes, meta = report.read_boxes(os.path.join(run, "boxes.json"))
    baseline, _ = report.read_boxes(os.path.join(run, "baseline_boxes.json"))
    found[meta["method"]] = score(boxes, dataset, config.crop.margin, meta.get("face_margins"))
    if meta.get("distrust") and meta.get("model_boxes"):  # what the trust gate withheld, scored as if cropped
      found[f"{meta['method']}: the distrusted model's own boxes"] = score(meta["model_boxes"], dataset, config.crop.margin)
    found[f"threshold baseline (margin {config.crop.margin:g})"] = score(baseline, dataset, config.crop.margin)
  text = _markdown(found)
  print(text)
  outputs.write_text(os.path.join(args.workdir, "real_benchmark.md"), text)
  outputs.write_json(
    os.path.join(args.workdir, "real_benchmark.json"), {m: {"summary": s, "per_volume": r} for m, (s, r) in found.items()}
  )


if __name__ == "__main__":
  main()
