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
import re

import numpy as np
from absl import flags

from ssl_ct import evaluate, outputs, report, results
from ssl_ct.data import formats, prepare, sources, truth, voxel_size, zarr_writer
from ssl_ct.errors import InputError, exit_on_input_error, parse_flags, run_cli, usage_error

DEFAULT_MARGIN = 0.05  # for boxes.json files that record none (written before ssl_ct recorded it)


def parse_margin(margin):
  """(kind, value) of a margin: a fraction of each side (0.05 or "0.05"), voxels ("40vox") or a
  length ("50um", "0.2mm"); ValueError with the forms it takes."""
  if isinstance(margin, (int, float)) and not isinstance(margin, bool):
    kind, value = "fraction", float(margin)
  else:
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([a-zA-Zµμ]*)\s*", str(margin))
    unit = match.group(2).lower() if match else ""
    if not match or (unit and unit not in ("vox", "voxel", "voxels") and voxel_size.um_per_unit(unit) is None):
      raise ValueError(f"margin {margin!r} is not a fraction of each side (0.05), voxels (40vox) or a length (50um, 0.2mm)")
    value = float(match.group(1))
    if not unit:
      kind = "fraction"
    elif unit.startswith("vox"):
      kind = "voxels"
    else:
      kind, value = "um", value * voxel_size.um_per_unit(unit)
  if kind == "fraction" and not 0 <= value <= 0.5:
    raise ValueError(f"margin {margin!r} is outside [0, 0.5] of each side; give e.g. 0.05, 40vox or 50um")
  return kind, value


def margin_voxels(margin, shape, voxel_size_um=None):
  """Voxels added on each face per axis for `margin` (parse_margin's forms)."""
  kind, value = parse_margin(margin)
  if kind == "fraction":
    return [int(np.ceil(value * n)) for n in shape]
  if kind == "voxels":
    return [int(np.ceil(value))] * 3
  if voxel_size_um is None:
    raise InputError(
      f"a margin of {margin} needs the voxel size, which the volume's file does not record; "
      "give it (config data.voxel_size_um, --voxel_size_um) or a margin in voxels or as a fraction"
    )
  return [int(np.ceil(value / v)) for v in voxel_size_um]


def margin_text(margin, face_margins=()):
  """'0.05 of each side', '40vox', '50um' for reports; with `face_margins` (the volumes cropped with
  per-face margins), what replaced it there."""
  text = f"{margin:.3g} of each side" if isinstance(margin, (int, float)) else str(margin)
  if face_margins:
    text += f" (less on the faces the localizer measured, in {len(face_margins)} volumes: boxes.json's face_margins)"
  return text


def margin_box(box, shape, margin, voxel_size_um=None, face_pads=None):
  """`box` grown by `margin` on every face (or by `face_pads`, [[before, after] voxels per axis],
  when given), clipped to the volume; the whole volume for None."""
  if box is None:
    return {"start": [0, 0, 0], "stop": list(shape)}
  pads = face_pads or [[p, p] for p in margin_voxels(margin, shape, voxel_size_um)]
  return {
    "start": [max(0, int(a) - int(p[0])) for a, p in zip(box["start"], pads)],
    "stop": [min(n, int(b) + int(p[1])) for b, p, n in zip(box["stop"], pads, shape)],
  }


def _pair_of_counts(pair):
  return (
    isinstance(pair, list) and len(pair) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in pair)
  )


def face_pads(measured, shape, margin, measured_margin, factor=1, tails=None):
  """[[before, after] voxels per axis] of a box whose faces the localizer measured (`measured`,
  ssl_ct/refine.py: where the growth found the sample's end): `measured_margin` of the side on
  those (one fraction, or one per axis in volume order; at least `factor` voxels, one voxel of
  the grid it was measured on, when above 0 or when that grid is coarser), or the face's tail
  where more (`tails`: refine's faint foreground past it, [[before, after]] grid voxels, times
  `factor`); the uniform `margin` (a fraction or voxels) on the rest, and never more than it."""
  uniform = margin_voxels(margin, shape)
  fractions = np.broadcast_to(np.asarray(measured_margin, float), (3,))
  floor = [factor if f > 0 or factor > 1 else 0 for f in fractions]  # a face measured on a coarser grid: +- a grid voxel
  small = [min(u, max(int(np.ceil(f * n)), low)) for u, f, n, low in zip(uniform, fractions, shape, floor)]
  tails = tails or [[0, 0]] * 3
  return [
    [min(u, max(s, int(t) * factor)) if m else u for m, t in zip(pair, tail)]
    for pair, tail, s, u in zip(measured, tails, small, uniform)
  ]


def measured_pads(measured, shape, margin, measured_margin, factor=1, tails=None):
  """`face_pads` where they differ from the uniform margin: None without measured faces, without a
  margin, or when `measured_margin` is None or `margin` itself (the same on every face)."""
  if not measured or margin is None or measured_margin is None:
    return None
  if all(m == margin for m in np.broadcast_to(measured_margin, (3,))):
    return None
  return face_pads(measured, shape, margin, measured_margin, factor, tails)


def crop_attributes(volume, box, margin, levels=0, pads=None):
  """What a crop's OME-Zarr records about itself: source, its shape and voxel size, the box, the margin
  (and the per-face margins `pads` that replaced it, if any), the crop."""
  crop = margin_box(box, volume.shape, margin, volume.voxel_size_um, pads)
  shape = np.subtract(crop["stop"], crop["start"])
  return {
    "format": f"ome-zarr {zarr_writer.OME_VERSION}",
    "source": str(volume.source),
    "source_shape": list(volume.shape),
    "voxel_size_um": list(volume.voxel_size_um) if volume.voxel_size_um else None,
    "sample_found": box is not None,
    "box": box,
    "margin": margin,
    "face_margins": pads,
    "crop": crop,
    "levels": zarr_writer.pyramid_levels(shape, levels),
  }


# A finished crop with the same values of these is the crop asked for and is kept.
_SAME_CROP = ("format", "source", "source_shape", "voxel_size_um", "box", "margin", "face_margins", "levels")


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
  size = volume.voxel_size_um
  return {
    "output": out_path,
    "sample_found": attributes["sample_found"],
    "crop": crop,
    "voxel_size_um": list(size) if size else None,
    "crop_size_um": [float((b - a) * v) for a, b, v in zip(crop["start"], crop["stop"], size)] if size else None,
    "reused": reused,
    "bytes_before": int(in_bytes),
    "bytes_after": int(out_bytes),
    "storage_reduction": 1.0 - out_bytes / max(in_bytes, 1),
    "voxel_reduction": 1.0 - kept_voxels,
  }


def crop_volume(volume, box, out_path, *, margin, overwrite=False, progress=True, levels=0, pads=None):
  """Writes the crop of `volume` to `out_path` as OME-Zarr (voxel size, translation to the crop's
  origin in the source, a pyramid of `levels`, 0 = auto); returns its record for the crop report."""
  attributes = crop_attributes(volume, box, margin, levels, pads)
  crop = attributes["crop"]
  out_bytes = zarr_writer.write_ome_zarr(
    volume,
    out_path,
    overwrite=overwrite,
    attributes={outputs.MARKER: attributes},
    progress=progress,
    box=(crop["start"], crop["stop"]),
    voxel_size_um=volume.voxel_size_um,
    levels=attributes["levels"],
  )
  return _record(volume, attributes, out_path, out_bytes)


def _recall(volume, crop, truth_entry, root):
  """Fraction of the sample's voxels inside the crop, with ground truth (else None)."""
  if not truth_entry or truth_entry.get("box") is None:
    return None
  mask = truth.read_mask(root, truth_entry)
  return evaluate.box_metrics(crop, truth_entry["box"], volume.shape, mask)["recall"]


def _plan(chosen, boxes, out_paths, margin, overwrite, levels=0, pads=None):
  """{name: "write" | "reuse"}, decided for every volume before any is written."""
  plan = {}
  for v in chosen:
    path = out_paths[v.name]
    if not os.path.lexists(path):
      plan[v.name] = "write"
      continue
    existing = _existing_crop(path)
    wanted = json.loads(json.dumps(crop_attributes(v, boxes[v.name], margin, levels, (pads or {}).get(v.name))))
    if existing is not None and all(existing.get(k) == wanted[k] for k in _SAME_CROP):
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
  levels=0,
  face_margins=None,
):
  """Crops every volume with an entry in `boxes`; writes crop_report.json and crop.md; returns the report.

  `inputs`: the user's data paths (see sources.input_paths); no output may touch them.
  `face_margins`: {name: [[before, after] voxels per axis]} (boxes.json's, from the localizer's
  measured faces) replacing `margin` for the volumes it names.
  """
  face_margins = face_margins or {}
  for name, pads in face_margins.items():
    if not (isinstance(pads, list) and len(pads) == 3 and all(_pair_of_counts(p) for p in pads)):
      raise InputError(
        f"{boxes_name}: face_margins[{name!r}] is {pads!r}, not [[before, after] voxels] for z, y and x; "
        "fix or remove it (then the uniform margin applies)"
      )
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
  for v in chosen:  # a margin in micrometres needs every volume's voxel size: refused before anything is written
    margin_box(boxes[v.name], v.shape, margin, v.voxel_size_um, face_margins.get(v.name))
  _plan(chosen, boxes, out_paths, margin, overwrite, levels, face_margins)  # every refusal before anything is created
  lock = outputs.lock_folder(out_dir, "crop folder")
  try:
    plan = _plan(chosen, boxes, out_paths, margin, overwrite, levels, face_margins)
    records = {}
    for v in chosen:
      path = out_paths[v.name]
      if plan[v.name] == "reuse":
        outputs.remove_stale_partials(path)
        attributes = crop_attributes(v, boxes[v.name], margin, levels, face_margins.get(v.name))
        records[v.name] = _record(v, attributes, path, zarr_writer.directory_bytes(path), reused=True)
      else:
        records[v.name] = crop_volume(
          v,
          boxes[v.name],
          path,
          margin=margin,
          overwrite=overwrite,
          progress=progress,
          levels=levels,
          pads=face_margins.get(v.name),
        )
      recall = _recall(v, records[v.name]["crop"], (truth_entries or {}).get(v.name), root)
      if recall is not None:
        records[v.name]["sample_recall"] = recall
    result = {outputs.MARKER: {"kind": "crop_report"}, "margin": margin, "summary": _summary(records), "per_volume": records}
    result["face_margins"] = sorted(n for n in face_margins if n in records)
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
  lines = [f"# Crop report (margin {margin_text(result['margin'], result.get('face_margins'))})", ""]
  lines += [
    "| volume | crop [start, stop) | voxel size (µm) | crop size (µm) | MiB before | MiB after | storage reduction | sample recall |",
    "|---|---|---|---|---|---|---|---|",
  ]
  for name, r in result["per_volume"].items():
    where = f"{r['crop']['start']}..{r['crop']['stop']}" if r["sample_found"] else "whole volume (no sample found)"
    recall = f"{r['sample_recall']:.4f}" if "sample_recall" in r else "-"
    size = " x ".join(f"{v:.4g}" for v in r["voxel_size_um"]) if r.get("voxel_size_um") else "unknown"
    extent = " x ".join(f"{v:.5g}" for v in r["crop_size_um"]) if r.get("crop_size_um") else "-"
    lines.append(
      f"| {name} | {where} | {size} | {extent} | {r['bytes_before'] / mib:.2f} | {r['bytes_after'] / mib:.2f} | "
      f"{100 * r['storage_reduction']:.1f}% | {recall} |"
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
    f"cropped {s['volumes']} volumes{reused} into {out_dir} at a margin of {margin_text(result['margin'], result.get('face_margins'))}: "
    f"{s['bytes_before'] / 2**20:.1f} MiB -> {s['bytes_after'] / 2**20:.1f} MiB"
    f" ({100 * s['storage_reduction']:.1f}% storage reduction{recall}); details in {os.path.join(out_dir, 'crop.md')}"
  )


def crop_from_workdir(config, workdir, dataset, *, overwrite=False, progress=True):
  """`main --mode=crop`: crops the input volumes by the workdir's latest localization boxes."""
  boxes, meta = report.read_boxes(os.path.join(results.latest(workdir), "boxes.json"))
  root = prepare.data_root(config.data, workdir, progress)
  inputs = sources.open_volumes(root, fill_missing=config.data.fill_missing, voxel_size_um=config.data.voxel_size_um)
  out_dir = config.crop.out_dir or os.path.join(workdir, "cropped")
  result = crop_all(
    boxes,
    inputs,
    out_dir,
    margin=f"{config.crop.margin_um:g}um" if config.crop.margin_um > 0 else config.crop.margin,
    face_margins=None if config.crop.margin_um > 0 else meta.get("face_margins"),
    levels=config.crop.levels,
    overwrite=overwrite,
    truth_entries=dataset.truth,
    root=dataset.root,
    progress=progress,
    inputs=sources.input_paths(root),
  )
  print(summary_line(result, out_dir))
  return result


_PROG = "python -m ssl_ct.crop"


def _flags():
  fv = flags.FlagValues()
  flags.DEFINE_string("boxes", None, "boxes.json written by localization", flag_values=fv)
  flags.DEFINE_string("data", None, "folder, glob or volume the boxes refer to (config.data.path)", flag_values=fv)
  flags.DEFINE_string("out", None, "folder for the cropped <name>.zarr stores and the crop report", flag_values=fv)
  flags.DEFINE_string(
    "margin",
    None,
    "safety margin on every face: a fraction of each side (0.05), voxels (40vox) or a length (50um, 0.2mm; needs"
    f" the voxel size); default: boxes.json's (per face where it records face_margins), else {DEFAULT_MARGIN}",
    flag_values=fv,
  )
  flags.DEFINE_string(
    "voxel_size_um",
    None,
    "voxel size in micrometres, one number or z,y,x, for volumes whose files do not record it (overrides theirs)",
    flag_values=fv,
  )
  flags.DEFINE_integer(
    "levels", 0, f"OME-Zarr pyramid levels; 0 = halve until <= {zarr_writer.PYRAMID_MIN_SIDE} a side", flag_values=fv
  )
  flags.DEFINE_bool("overwrite", False, "replace earlier crops that ssl_ct wrote differently", flag_values=fv)
  flags.DEFINE_bool("fill_missing", False, "read missing zarr/N5 chunks as the fill value", flag_values=fv)
  flags.DEFINE_bool("quiet", False, "no progress bars", flag_values=fv)
  flags.mark_flags_as_required(["boxes", "data", "out"], flag_values=fv)
  return fv


def main(argv=None):
  """`python -m ssl_ct.crop`; `argv` without the program name (tests call it in-process)."""
  args = _flags()
  parse_flags(args, argv, prog=_PROG, doc=__doc__)
  if args.margin is not None:
    try:
      parse_margin(args.margin)
    except ValueError as e:
      usage_error(f"--margin={args.margin}: {e}", _PROG)
  try:
    size = voxel_size.from_flag(args.voxel_size_um)
  except ValueError as e:
    usage_error(e, _PROG)
  if args.levels < 0:
    usage_error(f"--levels={args.levels} is negative; give 0 (auto) or a number of levels", _PROG)

  def run():
    boxes, meta = report.read_boxes(args.boxes)
    margin = args.margin if args.margin is not None else meta.get("crop_margin", DEFAULT_MARGIN)
    if args.margin is None and "crop_margin" not in meta:
      print(f"{args.boxes} records no crop margin; using {DEFAULT_MARGIN} (set --margin)")
    folder = args.data if os.path.isdir(args.data) and not formats.detect_format(args.data) else ""
    known = truth.read_truth(folder) if folder else {}  # sample recall when the data has a truth.json
    return crop_all(
      boxes,
      sources.open_volumes(args.data, fill_missing=args.fill_missing, voxel_size_um=size),
      args.out,
      margin=margin,
      levels=args.levels,
      overwrite=args.overwrite,
      truth_entries=known,
      root=folder,
      progress=not args.quiet,
      inputs=sources.input_paths(args.data),
      boxes_name=args.boxes,
      face_margins=meta.get("face_margins") if args.margin is None else None,  # --margin: the same on every face
    )

  print(summary_line(exit_on_input_error(run), args.out))


def cli():
  """The console script (setup.cfg)."""
  run_cli(main)


if __name__ == "__main__":
  cli()
