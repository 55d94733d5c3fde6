r"""Crops volumes to their localized sample (box plus a safety margin) as new zarr v3 stores.

  python -m ssl_ct.crop --boxes=W/localization/latest/boxes.json --data=DATA --out=CROPPED [--margin=F]

Each volume named in boxes.json is read from DATA (a folder, glob or volume, as
`config.data.path`) and streamed chunk by chunk into CROPPED/<name>.zarr, which records the
source, its shape, the box and the margin in its attributes. The margin defaults to the one
boxes.json records (the one its localizer was calibrated for). A `null` box (no sample found)
keeps the whole volume and says so.

What crop promises: inputs are only read, and CROPPED may not be, contain or lie inside any
input; boxes.json is checked against every volume's shape before anything is written; an
output appears only once it is complete. A rerun skips outputs that are complete and made from
the same source, box and margin, removes partial outputs a killed run left, and writes the
rest; an output made differently is replaced only with --overwrite, and only if ssl_ct wrote
it. `crop_report.json` and `crop.md` in CROPPED list bytes before and after and the storage
reduction (and, with ground truth, the fraction of sample voxels the crop keeps).
"""

import json
import os

import numpy as np

from ssl_ct import evaluate, outputs, report, results
from ssl_ct.data import formats, prepare, sources, truth, zarr_writer
from ssl_ct.errors import CliParser, InputError, exit_on_input_error, run_cli

DEFAULT_MARGIN = 0.05  # for boxes.json files that record none (written before ssl_ct recorded it)


def margin_box(box, shape, margin):
  """`box` grown by `margin` x side on every face, clipped to the volume; the whole volume for None."""
  if box is None:
    return {"start": [0, 0, 0], "stop": list(shape)}
  pad = [int(np.ceil(margin * n)) for n in shape]
  return {
    "start": [max(0, int(a) - p) for a, p in zip(box["start"], pad)],
    "stop": [min(n, int(b) + p) for b, p, n in zip(box["stop"], pad, shape)],
  }


def crop_attributes(volume, box, margin):
  """What a crop's zarr records about itself: source, its shape, the box, the margin, the crop."""
  crop = margin_box(box, volume.shape, margin)
  return {
    "source": str(volume.source),
    "source_shape": list(volume.shape),
    "sample_found": box is not None,
    "box": box,
    "margin": margin,
    "crop": crop,
  }


def _existing_crop(out_path):
  """The ssl_ct attributes of a finished crop at `out_path`, or None."""
  try:
    with open(os.path.join(out_path, "zarr.json")) as f:
      return json.load(f).get("attributes", {}).get(outputs.MARKER)
  except (OSError, ValueError, AttributeError):
    return None


def _record(volume, attributes, out_path, out_bytes, reused=False):
  crop = attributes["crop"]
  in_bytes = formats.stored_bytes(volume)
  kept_voxels = float(np.prod(np.subtract(crop["stop"], crop["start"])) / np.prod(volume.shape))
  return {
    "output": out_path,
    "sample_found": attributes["sample_found"],
    "crop": crop,
    "reused": reused,
    "bytes_before": int(in_bytes),
    "bytes_after": int(out_bytes),
    "storage_reduction": 1.0 - out_bytes / max(in_bytes, 1),
    "voxel_reduction": 1.0 - kept_voxels,
  }


def crop_volume(volume, box, out_path, *, margin, overwrite=False, progress=True):
  """Writes the crop of `volume` to `out_path`; returns its record for the crop report."""
  attributes = crop_attributes(volume, box, margin)
  crop = attributes["crop"]
  out_bytes = zarr_writer.write_zarr3(
    volume,
    out_path,
    overwrite=overwrite,
    attributes={outputs.MARKER: attributes},
    progress=progress,
    box=(crop["start"], crop["stop"]),
  )
  return _record(volume, attributes, out_path, out_bytes)


def _recall(volume, crop, truth_entry, root):
  """Fraction of the sample's voxels inside the crop, with ground truth (else None)."""
  if not truth_entry or truth_entry.get("box") is None:
    return None
  mask = truth.read_mask(root, truth_entry)
  return evaluate.box_metrics(crop, truth_entry["box"], volume.shape, mask)["recall"]


def _plan(chosen, boxes, out_paths, margin, overwrite):
  """{name: "write" | "reuse"}, decided for every volume before any is written."""
  plan = {}
  for v in chosen:
    path = out_paths[v.name]
    if not os.path.lexists(path):
      plan[v.name] = "write"
      continue
    existing = _existing_crop(path)
    wanted = json.loads(json.dumps(crop_attributes(v, boxes[v.name], margin)))
    if existing is not None and all(existing.get(k) == wanted[k] for k in ("source", "source_shape", "box", "margin")):
      plan[v.name] = "reuse"  # a complete crop of the same source, box and margin (outputs appear only when complete)
    elif overwrite:
      outputs.check_writable(path, overwrite=True)  # ours, or refused
      plan[v.name] = "write"
    else:
      raise InputError(
        f"{path} already exists and was cropped differently (source, box or margin); pass --overwrite to replace it or choose another --out"
      )
  return plan


def crop_all(
  boxes,
  volumes,
  out_dir,
  *,
  margin,
  overwrite=False,
  truth_entries=None,
  root="",
  progress=True,
  inputs=(),
  boxes_name="boxes.json",
):
  """Crops every volume with an entry in `boxes`; writes crop_report.json and crop.md; returns the report.

  `inputs`: the user's data paths (see sources.input_paths); no output may touch them.
  """
  missing = sorted(set(boxes) - {v.name for v in volumes})
  if missing:
    raise InputError(f"{boxes_name} names volumes not found in the data: {', '.join(missing)}; check --data")
  chosen = [v for v in volumes if v.name in boxes]
  shapes = {v.name: v.shape for v in chosen}
  truth.check_boxes(boxes, shapes, boxes_name)
  truth.check_boxes({n: e.get("box") for n, e in (truth_entries or {}).items()}, shapes, "truth.json")
  out_paths = {v.name: os.path.join(out_dir, f"{v.name}.zarr") for v in chosen}
  input_list = sorted(set(inputs) | {p for v in chosen if (p := formats.local_path(v))})
  outputs.check_apart([out_dir, *out_paths.values()], input_list, fix="choose an --out folder outside the data")
  for name in ("crop_report.json", "crop.md"):
    path = os.path.join(out_dir, name)
    if os.path.lexists(path) and not outputs.is_ours(path):
      raise InputError(f"{path} exists and was not written by ssl_ct; choose another --out")
  _plan(chosen, boxes, out_paths, margin, overwrite)  # every refusal before anything is created
  lock = outputs.lock_folder(out_dir, "crop folder")
  try:
    plan = _plan(chosen, boxes, out_paths, margin, overwrite)
    records = {}
    for v in chosen:
      path = out_paths[v.name]
      if plan[v.name] == "reuse":
        outputs.remove_stale_partials(path)
        records[v.name] = _record(
          v, crop_attributes(v, boxes[v.name], margin), path, zarr_writer.directory_bytes(path), reused=True
        )
      else:
        records[v.name] = crop_volume(v, boxes[v.name], path, margin=margin, overwrite=overwrite, progress=progress)
      recall = _recall(v, records[v.name]["crop"], (truth_entries or {}).get(v.name), root)
      if recall is not None:
        records[v.name]["sample_recall"] = recall
    result = {outputs.MARKER: {"kind": "crop_report"}, "margin": margin, "summary": _summary(records), "per_volume": records}
    outputs.write_json(os.path.join(out_dir, "crop_report.json"), result)
    outputs.write_text(os.path.join(out_dir, "crop.md"), _markdown(result))
  finally:
    os.close(lock)
  return result


def _summary(records):
  before = sum(r["bytes_before"] for r in records.values())
  after = sum(r["bytes_after"] for r in records.values())
  summary = {
    "volumes": len(records),
    "reused": sum(r["reused"] for r in records.values()),
    "bytes_before": before,
    "bytes_after": after,
    "storage_reduction": 1 - after / max(before, 1),
  }
  if records:
    summary["voxel_reduction"] = float(np.mean([r["voxel_reduction"] for r in records.values()]))
  recalls = [r["sample_recall"] for r in records.values() if "sample_recall" in r]
  if recalls:
    summary["sample_recall_mean"], summary["sample_recall_min"] = float(np.mean(recalls)), float(np.min(recalls))
  return summary


def _markdown(result):
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
  return "\n".join(lines) + "\n"


def summary_line(result, out_dir):
  """One line for the terminal: volumes, bytes before and after, reduction, sample recall if known."""
  s = result["summary"]
  recall = (
    f", sample recall mean {s['sample_recall_mean']:.4f} min {s['sample_recall_min']:.4f}" if "sample_recall_mean" in s else ""
  )
  reused = f" ({s['reused']} already done)" if s.get("reused") else ""
  return (
    f"cropped {s['volumes']} volumes{reused} into {out_dir} at a {result['margin']:.3g} margin: "
    f"{s['bytes_before'] / 2**20:.1f} MiB -> {s['bytes_after'] / 2**20:.1f} MiB"
    f" ({100 * s['storage_reduction']:.1f}% storage reduction{recall}); details in {os.path.join(out_dir, 'crop.md')}"
  )


def crop_from_workdir(config, workdir, dataset, *, overwrite=False, progress=True):
  """`main --mode=crop`: crops the input volumes by the workdir's latest localization boxes."""
  boxes, _ = report.read_boxes(os.path.join(results.latest(workdir), "boxes.json"))
  root = prepare.data_root(config.data, workdir, progress)
  inputs = sources.open_volumes(root, fill_missing=config.data.fill_missing)
  out_dir = config.crop.out_dir or os.path.join(workdir, "cropped")
  result = crop_all(
    boxes,
    inputs,
    out_dir,
    margin=config.crop.margin,
    overwrite=overwrite,
    truth_entries=dataset.truth,
    root=dataset.root,
    progress=progress,
    inputs=sources.input_paths(root),
  )
  print(summary_line(result, out_dir))
  return result


def main(argv=None):
  parser = CliParser(prog="python -m ssl_ct.crop", description=__doc__.split("\n")[0])
  parser.add_argument("--boxes", required=True, help="boxes.json written by localization")
  parser.add_argument("--data", required=True, help="folder, glob or volume the boxes refer to (config.data.path)")
  parser.add_argument("--out", required=True, help="folder for the cropped <name>.zarr stores and the crop report")
  parser.add_argument(
    "--margin",
    type=float,
    default=None,
    help=f"safety margin, fraction of each side (default: boxes.json's, else {DEFAULT_MARGIN})",
  )
  parser.add_argument("--overwrite", action="store_true", help="replace earlier crops that ssl_ct wrote differently")
  parser.add_argument("--fill-missing", action="store_true", help="read missing zarr/N5 chunks as the fill value")
  parser.add_argument("--quiet", action="store_true", help="no progress bars")
  args = parser.parse_args(argv)
  if args.margin is not None and not 0 <= args.margin <= 0.5:
    parser.error(f"--margin={args.margin} is outside [0, 0.5]; give a fraction of each side such as 0.05")

  def run():
    boxes, meta = report.read_boxes(args.boxes)
    margin = args.margin if args.margin is not None else meta.get("crop_margin", DEFAULT_MARGIN)
    if args.margin is None and "crop_margin" not in meta:
      print(f"{args.boxes} records no crop margin; using {DEFAULT_MARGIN} (set --margin)")
    folder = args.data if os.path.isdir(args.data) and not formats.detect_format(args.data) else ""
    known = truth.read_truth(folder) if folder else {}  # sample recall when the data has a truth.json
    return crop_all(
      boxes,
      sources.open_volumes(args.data, fill_missing=args.fill_missing),
      args.out,
      margin=margin,
      overwrite=args.overwrite,
      truth_entries=known,
      root=folder,
      progress=not args.quiet,
      inputs=sources.input_paths(args.data),
      boxes_name=args.boxes,
    )

  print(summary_line(exit_on_input_error(run), args.out))


if __name__ == "__main__":
  run_cli(main)
