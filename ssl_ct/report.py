"""Localization results: boxes.json, metrics.json and report.md of one run (ssl_ct/results.py).

boxes.json: {"ssl_ct": {"kind": "boxes", "version": 2, "method": ..., "crop_margin": ...,
                        "voxel_size_um": {name: [z, y, x] | null}, ...},
             "boxes": {name: {"start": [z, y, x], "stop": [z, y, x]} | null}}, half-open voxel
ranges of the input volumes; `crop_margin` is the margin the method's boxes were calibrated to
be cropped with (ssl_ct.crop uses it by default). boxes_napari.csv holds the same boxes as a
napari shapes layer. Files from before version 2 map names to
boxes directly and are still read.
"""

import json
import os

from ssl_ct import evaluate, outputs
from ssl_ct.errors import InputError

_COLUMNS = ("mae_voxels", "relative_error_pct", "iou", "recall", "kept_fraction")
BOXES_VERSION = 2


def write_boxes(path, boxes, *, method, crop_margin, **extra):
  """boxes.json; `extra` metadata (outcomes per volume, the pretext metrics) goes beside the method."""
  meta = {"kind": "boxes", "version": BOXES_VERSION, "method": method, "crop_margin": crop_margin, **extra}
  outputs.write_json(path, {outputs.MARKER: meta, "boxes": boxes})


def read_boxes(path):
  """({name: box or None}, metadata) from a boxes.json; boxes are checked against shapes by the caller."""
  if not os.path.exists(path):
    raise InputError(f"{path} does not exist; localize first (python -m ssl_ct.main --mode=localize) or check --boxes")
  try:
    with open(path) as f:
      content = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    where = f" ({e.msg} at line {e.lineno})" if isinstance(e, json.JSONDecodeError) else ""
    raise InputError(f"{path} is not valid JSON{where}; localize again to rewrite it") from e
  if isinstance(content, dict) and outputs.MARKER in content:
    meta, boxes = content[outputs.MARKER], content.get("boxes")
  else:
    meta, boxes = {}, content  # version 1: names to boxes
  if not isinstance(boxes, dict) or not isinstance(meta, dict):
    raise InputError(f"{path} must map volume names to boxes or null; localize again to rewrite it")
  margin = meta.get("crop_margin")
  if margin is not None and not (isinstance(margin, (int, float)) and 0 <= margin <= 0.5):
    raise InputError(f"{path}: crop_margin {margin!r} is not a fraction in [0, 0.5]; fix it or pass --margin")
  return boxes, meta


def _box_text(box):
  return "null (no sample found)" if box is None else f"{box['start']}..{box['stop']}"


def _size_text(box, voxel_size_um):
  if box is None or not voxel_size_um:
    return "-"
  return " x ".join(f"{(b - a) * v:.5g}" for a, b, v in zip(box["start"], box["stop"], voxel_size_um))


def napari_faces(box):
  """The six faces of a half-open voxel box as rectangles of four (z, y, x) corners each."""
  lo, hi = [float(a) for a in box["start"]], [float(b) - 1 for b in box["stop"]]  # the first and last voxel
  faces = []
  for axis in range(3):
    u, w = [a for a in range(3) if a != axis]
    for level in (lo[axis], hi[axis]):
      corners = []
      for cu, cw in ((lo[u], lo[w]), (lo[u], hi[w]), (hi[u], hi[w]), (hi[u], lo[w])):
        point = [0.0, 0.0, 0.0]
        point[axis], point[u], point[w] = level, cu, cw
        corners.append(point)
      faces.append(corners)
  return faces


def write_napari_shapes(path, boxes):
  """napari's shapes CSV (index, shape-type, vertex-index, axis-0..2): each box as its six faces, in voxels."""
  rows, index = ["index,shape-type,vertex-index,axis-0,axis-1,axis-2"], 0
  for name in sorted(boxes):
    if boxes[name] is None:
      continue
    for face in napari_faces(boxes[name]):
      rows += [f"{index},rectangle,{k},{z:g},{y:g},{x:g}" for k, (z, y, x) in enumerate(face)]
      index += 1
  outputs.write_text(path, "\n".join(rows) + "\n")


def _table(per_volume_by_method):
  lines = ["| volume | method | " + " | ".join(_COLUMNS) + " |", "|---|---|" + "---|" * len(_COLUMNS)]
  for name in next(iter(per_volume_by_method.values())):
    for method, per_volume in per_volume_by_method.items():
      m = per_volume[name]
      lines.append(f"| {name} | {method} | " + " | ".join(f"{m[c]:.3f}" for c in _COLUMNS) + " |")
  return lines


def _pretext_text(pretext):
  if not pretext:
    return "Pretext task: no validation metrics were logged for this checkpoint."
  metrics = {k: v for k, v in pretext.items() if k != "step"}
  at = f"the checkpoint of step {pretext['step']}" if "step" in pretext else "the checkpoint"
  return f"Pretext task at {at} (fixed validation draws): " + ", ".join(f"{k} {v:.3g}" for k, v in sorted(metrics.items()))


def write_report(
  out_dir,
  *,
  method_name,
  boxes,
  baseline_boxes,
  outcomes,
  pretext=None,
  metrics=None,
  baseline_metrics=None,
  shapes=None,
  notes=(),
  crop_margin=None,
  distrust="",
  model_boxes=None,
  voxel_sizes=None,
  refinements=None,
  trims=None,
  blind_axes=None,
  face_margins=None,
):
  """boxes.json (method), baseline_boxes.json, metrics.json and report.md.

  `outcomes`: per volume "sample box", "fills the field" or "no sample"; `pretext`: the
  validation metrics of the pretext task at the checkpoint the boxes come from; `distrust`:
  why the model's own boxes (`model_boxes`, recorded, not cropped with) were replaced by null;
  `refinements`, `trims` and `blind_axes`: per volume, what the box refinement and trimming did
  and which axes were kept whole for want of evidence (recorded beside the boxes); `face_margins`:
  per volume the crop's [before, after] voxels per axis (ssl_ct/crop.py face_pads).
  """
  voxel_sizes = {n: (list(v) if v else None) for n, v in (voxel_sizes or {}).items()}
  extra = {"outcomes": outcomes, "pretext": pretext or {}, "distrust": distrust, "voxel_size_um": voxel_sizes}
  if model_boxes is not None:
    extra["model_boxes"] = model_boxes
  if refinements is not None:
    extra["refinements"] = refinements
  if trims is not None:
    extra["trims"] = trims
  if blind_axes is not None:
    extra["blind_axes"] = blind_axes
  if face_margins is not None:
    extra["face_margins"] = face_margins
  write_boxes(os.path.join(out_dir, "boxes.json"), boxes, method=method_name, crop_margin=crop_margin, **extra)
  write_boxes(os.path.join(out_dir, "baseline_boxes.json"), baseline_boxes, method="threshold baseline", crop_margin=crop_margin)
  lines = [f"# Localization report: {method_name}", "", _pretext_text(pretext), "", *notes, ""]
  lines += ["Boxes are half-open voxel ranges [start, stop) in (z, y, x) of the input volumes.", ""]
  lines += [
    "| volume | shape | outcome | predicted box | box size (µm) | threshold baseline box |",
    "|---|---|---|---|---|---|",
  ]
  lines += [
    f"| {n} | {list(shapes[n])} | {outcomes[n]} | {_box_text(boxes[n])} | {_size_text(boxes[n], voxel_sizes.get(n))} | "
    f"{_box_text(baseline_boxes[n])} |"
    for n in boxes
  ]
  write_napari_shapes(os.path.join(out_dir, "boxes_napari.csv"), boxes)
  if metrics:
    summary = {method_name: evaluate.summarize(metrics), "threshold baseline": evaluate.summarize(baseline_metrics)}
    outputs.write_json(
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
  lines += ["The boxes as a napari shapes layer, in voxels: `boxes_napari.csv` (File > Open, 3D view)."]
  outputs.write_text(os.path.join(out_dir, "report.md"), "\n".join(lines) + "\n")
  return summary if metrics else None
