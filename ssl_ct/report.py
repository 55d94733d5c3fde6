"""Writes localization results: boxes.json, metrics.json and report.md in <workdir>/localization."""

import json
import os

from ssl_ct import evaluate

_COLUMNS = ("mae_voxels", "relative_error_pct", "iou", "recall", "kept_fraction")


def write_json(path, obj):
  """Atomic JSON write."""
  with open(path + ".partial", "w") as f:
    json.dump(obj, f, indent=1)
  os.replace(path + ".partial", path)


def _box_text(box):
  return "null (no sample found)" if box is None else f"{box['start']}..{box['stop']}"


def _table(per_volume_by_method):
  lines = ["| volume | method | " + " | ".join(_COLUMNS) + " |", "|---|---|" + "---|" * len(_COLUMNS)]
  for name in next(iter(per_volume_by_method.values())):
    for method, per_volume in per_volume_by_method.items():
      m = per_volume[name]
      lines.append(f"| {name} | {method} | " + " | ".join(f"{m[c]:.3f}" for c in _COLUMNS) + " |")
  return lines


def write_report(out_dir, *, method_name, boxes, baseline_boxes, metrics=None, baseline_metrics=None, shapes=None, notes=()):
  """boxes.json (method), baseline_boxes.json, metrics.json and report.md."""
  write_json(os.path.join(out_dir, "boxes.json"), boxes)
  write_json(os.path.join(out_dir, "baseline_boxes.json"), baseline_boxes)
  lines = [f"# Localization report: {method_name}", "", *notes, ""]
  lines += ["Boxes are half-open voxel ranges [start, stop) in (z, y, x) of the input volumes.", ""]
  lines += ["| volume | shape | predicted box | threshold baseline box |", "|---|---|---|---|"]
  lines += [f"| {n} | {list(shapes[n])} | {_box_text(boxes[n])} | {_box_text(baseline_boxes[n])} |" for n in boxes]
  if metrics:
    summary = {method_name: evaluate.summarize(metrics), "threshold baseline": evaluate.summarize(baseline_metrics)}
    write_json(
      os.path.join(out_dir, "metrics.json"),
      {"summary": summary, "per_volume": {method_name: metrics, "threshold baseline": baseline_metrics}},
    )
    lines += [
      "",
      "## Against ground truth",
      "",
      "Mean over volumes:",
      "",
      "| method | " + " | ".join(_COLUMNS) + " |",
      "|---|" + "---|" * len(_COLUMNS),
    ]
    lines += [f"| {m} | " + " | ".join(f"{s[c]:.3f}" for c in _COLUMNS) + " |" for m, s in summary.items()]
    lines += ["", "Per volume:", "", *_table({method_name: metrics, "threshold baseline": baseline_metrics})]
  lines += ["", "Figures: `curves/<volume>.png` (certainty per slice and axis), `overlays/<volume>.png` (boxes on slices)."]
  with open(os.path.join(out_dir, "report.md.partial"), "w") as f:
    f.write("\n".join(lines) + "\n")
  os.replace(os.path.join(out_dir, "report.md.partial"), os.path.join(out_dir, "report.md"))
  return summary if metrics else None
