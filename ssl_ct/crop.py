r"""Crops volumes to their localized sample (box plus a safety margin) as new zarr v3 stores.

  python -m ssl_ct.crop --boxes=W/localization/boxes.json --data=DATA --out=CROPPED [--margin=0.05]

Each volume named in boxes.json is read from DATA (a folder, glob or volume, as
`config.data.path`) and streamed chunk by chunk into CROPPED/<name>.zarr, which records the
box, the margin and the source in its attributes. A `null` box (no sample found) keeps the
whole volume and says so. Inputs are only read; an output appears only once it is complete,
and an existing one is replaced only with --overwrite. `crop_report.json` and `crop.md` in
CROPPED list bytes before and after and the storage reduction (and, with ground truth, the
fraction of sample voxels the crop keeps).
"""

import argparse
import json
import os
import sys

import numpy as np

from ssl_ct import evaluate, report
from ssl_ct.data import formats, prepare, sources, truth, zarr_writer
from ssl_ct.errors import InputError, exit_on_input_error


def margin_box(box, shape, margin):
  """`box` grown by `margin` x side on every face, clipped to the volume; the whole volume for None."""
  if box is None:
    return {"start": [0, 0, 0], "stop": list(shape)}
  pad = [int(np.ceil(margin * n)) for n in shape]
  return {
    "start": [max(0, int(a) - p) for a, p in zip(box["start"], pad)],
    "stop": [min(n, int(b) + p) for b, p, n in zip(box["stop"], pad, shape)],
  }


def crop_volume(volume, box, out_path, *, margin, overwrite=False, progress=True):
  """Writes the crop of `volume` to `out_path`; returns its record for the crop report."""
  crop = margin_box(box, volume.shape, margin)
  attributes = {
    "ssl_ct": {
      "source": str(volume.source),
      "source_shape": list(volume.shape),
      "sample_found": box is not None,
      "box": box,
      "margin": margin,
      "crop": crop,
    }
  }
  out_bytes = zarr_writer.write_zarr3(
    volume, out_path, overwrite=overwrite, attributes=attributes, progress=progress, box=(crop["start"], crop["stop"])
  )
  in_bytes = formats.stored_bytes(volume)
  kept_voxels = float(np.prod(np.subtract(crop["stop"], crop["start"])) / np.prod(volume.shape))
  return {
    "output": out_path,
    "sample_found": box is not None,
    "crop": crop,
    "bytes_before": int(in_bytes),
    "bytes_after": int(out_bytes),
    "storage_reduction": 1.0 - out_bytes / max(in_bytes, 1),
    "voxel_reduction": 1.0 - kept_voxels,
  }


def _read_boxes(path):
  if not os.path.exists(path):
    raise InputError(f"{path} does not exist; localize first (python -m ssl_ct.main --mode=localize)")
  try:
    with open(path) as f:
      boxes = json.load(f)
  except json.JSONDecodeError as e:
    raise InputError(f"{path} is not valid JSON ({e.msg} at line {e.lineno}); localize again to rewrite it") from e
  if not isinstance(boxes, dict):
    raise InputError(f"{path} must map volume names to boxes or null")
  return boxes


def _recall(volume, crop, truth_entry, root):
  """Fraction of the sample's voxels inside the crop, with ground truth (else None)."""
  if not truth_entry or truth_entry.get("box") is None:
    return None
  mask = None
  if "mask" in truth_entry and root:
    mask = formats.open_volume(os.path.join(root, truth_entry["mask"])).read().astype(bool)
  return evaluate.box_metrics(crop, truth_entry["box"], volume.shape, mask)["recall"]


def crop_all(boxes, volumes, out_dir, *, margin, overwrite=False, truth=None, root="", progress=True):
  """Crops every volume with an entry in `boxes`; writes crop_report.json and crop.md; returns the report."""
  missing = sorted(set(boxes) - {v.name for v in volumes})
  if missing:
    raise InputError(f"boxes.json names volumes not found in the data: {', '.join(missing)}; check --data")
  chosen = [v for v in volumes if v.name in boxes]
  outputs = {v.name: os.path.join(out_dir, f"{v.name}.zarr") for v in chosen}
  for v in chosen:  # every check before any work
    zarr_writer.check_writable(outputs[v.name], overwrite)
    if os.path.abspath(outputs[v.name]) == os.path.abspath(str(v.source)):
      raise InputError(f"output {outputs[v.name]} is the input itself; choose another --out")
  records = {}
  for v in chosen:
    records[v.name] = crop_volume(v, boxes[v.name], outputs[v.name], margin=margin, overwrite=overwrite, progress=progress)
    recall = _recall(v, records[v.name]["crop"], (truth or {}).get(v.name), root)
    if recall is not None:
      records[v.name]["sample_recall"] = recall
  before = sum(r["bytes_before"] for r in records.values())
  after = sum(r["bytes_after"] for r in records.values())
  summary = {
    "volumes": len(records),
    "bytes_before": before,
    "bytes_after": after,
    "storage_reduction": 1 - after / max(before, 1),
  }
  if records:
    summary["voxel_reduction"] = float(np.mean([r["voxel_reduction"] for r in records.values()]))
  recalls = [r["sample_recall"] for r in records.values() if "sample_recall" in r]
  if recalls:
    summary["sample_recall_mean"], summary["sample_recall_min"] = float(np.mean(recalls)), float(np.min(recalls))
  result = {"margin": margin, "summary": summary, "per_volume": records}
  os.makedirs(out_dir, exist_ok=True)
  report.write_json(os.path.join(out_dir, "crop_report.json"), result)
  _write_markdown(os.path.join(out_dir, "crop.md"), result)
  return result


def _write_markdown(path, result):
  mib = 2**20
  lines = [f"# Crop report (margin {result['margin']:.3g} of each side)", ""]
  lines += [
    "| volume | crop [start, stop) | MiB before | MiB after | storage reduction | sample recall |",
    "|---|---|---|---|---|---|",
  ]
  for name, r in result["per_volume"].items():
    where = f"{r['crop']['start']}..{r['crop']['stop']}" if r["sample_found"] else "whole volume (no sample found)"
    recall = f"{r['sample_recall']:.4f}" if "sample_recall" in r else "-"
    lines.append(
      f"| {name} | {where} | {r['bytes_before'] / mib:.2f} | {r['bytes_after'] / mib:.2f} | {100 * r['storage_reduction']:.1f}% | {recall} |"
    )
  s = result["summary"]
  lines += [
    "",
    f"Total: {s['bytes_before'] / mib:.2f} MiB -> {s['bytes_after'] / mib:.2f} MiB ({100 * s['storage_reduction']:.1f}% less).",
  ]
  with open(path + ".partial", "w") as f:
    f.write("\n".join(lines) + "\n")
  os.replace(path + ".partial", path)


def summary_line(result, out_dir):
  """One line for the terminal: volumes, bytes before and after, reduction, sample recall if known."""
  s = result["summary"]
  recall = (
    f", sample recall mean {s['sample_recall_mean']:.4f} min {s['sample_recall_min']:.4f}" if "sample_recall_mean" in s else ""
  )
  return (
    f"cropped {s['volumes']} volumes into {out_dir}: {s['bytes_before'] / 2**20:.1f} MiB -> {s['bytes_after'] / 2**20:.1f} MiB"
    f" ({100 * s['storage_reduction']:.1f}% storage reduction{recall}); details in {os.path.join(out_dir, 'crop.md')}"
  )


def crop_from_workdir(config, workdir, dataset, *, overwrite=False, progress=True):
  """`main --mode=crop`: crops the input volumes by <workdir>/localization/boxes.json."""
  boxes = _read_boxes(os.path.join(workdir, "localization", "boxes.json"))
  inputs = sources.open_volumes(prepare.data_root(config.data, workdir, progress))
  out_dir = config.crop.out_dir or os.path.join(workdir, "cropped")
  result = crop_all(
    boxes,
    inputs,
    out_dir,
    margin=config.crop.margin,
    overwrite=overwrite,
    truth=dataset.truth,
    root=dataset.root,
    progress=progress,
  )
  print(summary_line(result, out_dir))
  return result


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m ssl_ct.crop", description=__doc__.split("\n")[0])
  parser.add_argument("--boxes", required=True, help="boxes.json written by localization")
  parser.add_argument("--data", required=True, help="folder, glob or volume the boxes refer to (config.data.path)")
  parser.add_argument("--out", required=True, help="folder for the cropped <name>.zarr stores and the crop report")
  parser.add_argument("--margin", type=float, default=0.05, help="safety margin, fraction of each side (default 0.05)")
  parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
  parser.add_argument("--quiet", action="store_true", help="no progress bars")
  args = parser.parse_args(argv)
  if not 0 <= args.margin <= 0.5:
    parser.error(f"--margin={args.margin} is outside [0, 0.5]; give a fraction of each side such as 0.05")

  def run():
    boxes = _read_boxes(args.boxes)
    folder = args.data if os.path.isdir(args.data) and not formats.detect_format(args.data) else ""
    known = truth.read_truth(folder) if folder else {}  # sample recall when the data has a truth.json
    return crop_all(
      boxes,
      sources.open_volumes(args.data),
      args.out,
      margin=args.margin,
      overwrite=args.overwrite,
      truth=known,
      root=folder,
      progress=not args.quiet,
    )

  print(summary_line(exit_on_input_error(run), args.out))


if __name__ == "__main__":
  sys.exit(main())
