r"""Which face refinement (ssl_ct/refine.py) and crop margin keep every sample at the least volume?

  python -m ssl_ct.main --config=configs/sorting_medaka.py:demo --workdir=W       # trains, localizes
  python -m ssl_ct.main --config=configs/sorting_medaka.py:demo --mode=localize \
      --config.data.synthetic.seed=4 --config.localize.model=W --config.localize.refine=False --workdir=W4
  python experiments/select_refine.py --workdirs=W4,W5 [--empty-tubes=12]

Replays each workdir's latest localization, which ran without refinement (its boxes.json holds
the coarse boxes; rotation or sorting), with `refine.refine_box` on the analysed volumes over a
grid of false-positive rates, minimum fractions, minimum coverages, plane-face rules (`--planes=grow,fit`)
and foreground cuts over whole slices or tiles of them (`--cut-tiles=1,2`)
(and "none"), along the run's refinement axis
(sorting: the sort axis; rotation: `localize.refine_axis`), each cropped with several margins.
Prints, per setting and workdir, the box MAE, IoU, the mean and worst sample recall after
cropping, the volume kept over the ideal (the truth boxes') and how many samples came back null (with --faces, each face's mean
signed offset from the truth's face, outward positive, and its range); with --measured-margins,
each margin also with that margin on the faces the refinement measured instead (`crop.measured_pads`),
or the face's tail past it where more (--tail-fractions, `refine._tails`; never more than the margin);
with --empty-tubes=N, how many of N synthetic tubes without a fish, given the coarse boxes of N
samples, the refinement declares empty (null). Needs ground-truth masks (the synthetic sets have
them). Choose on sets you do not report on.
"""

import argparse
import itertools
import os

import numpy as np

from ssl_ct import crop, evaluate, refine, report, results
from ssl_ct.data import phantoms, pipeline, prepare, tomography, truth
from ssl_ct.data.volume import ArrayVolume


def empty_volume(shape, index, generator=phantoms.medaka, beam_hardening=False):
  """A synthetic volume of `generator` with its sample replaced by the medium (a tube or holder
  holding no sample), scanned with a drawn ring strength (and beam hardening) as the sets are."""
  rng = np.random.default_rng([99, index])
  phantom = generator(tuple(shape), rng)
  mu = phantom.mu_DxHxW
  mu[phantom.mask_DxHxW] = phantoms.MEDIUM_MU_128 * 128 / shape[1]
  artifacts = {"ring_strength": rng.choice([0.0, rng.uniform(0.004, 0.012)])}
  if beam_hardening:
    artifacts["beam_hardening"] = rng.choice([0.0, rng.uniform(0.01, 0.03)])
  recon = tomography.scan(mu, rng, num_angles=shape[1], **artifacts)
  return ArrayVolume(recon.astype(np.float32), f"empty_{index}")


def _load(workdir):
  """(config, {name: volume}, {name: coarse box}, {name: (truth box, mask)}, axis) of the latest run."""
  run = results.latest(workdir)
  config = results.read_config(run)
  if config.localize.get("refine", False):
    raise SystemExit(f"error: {run} was localized with refinement; localize again with --config.localize.refine=False")
  dataset = prepare.load_dataset(config.data, workdir, progress=False)
  if any(dataset.factor(v.name) != 1 for v in dataset.volumes):
    raise SystemExit(f"error: {workdir} was localized on a downscaled grid; replay needs data.downscale_to=0")
  boxes, meta = report.read_boxes(os.path.join(run, "boxes.json"))
  boxes = meta.get("model_boxes") or boxes
  volumes = {v.name: v for v in dataset.volumes if v.name in dataset.truth}
  truths = {n: (dataset.truth[n]["box"], truth.read_mask(dataset.root, dataset.truth[n])) for n in volumes}
  shape = next(iter(volumes.values())).shape
  axis = pipeline.sort_axis(shape, config.data.sort_axis) if config.task == "sorting" else config.localize.refine_axis
  return config, volumes, {n: boxes[n] for n in volumes}, truths, axis


def _scores(boxes, truths, margin, faces=None, measured_margin=None):
  """(MAE, IoU, mean and worst recall after the crop, volume kept over the ideal); with `faces`
  ({name: (measured, tails)}) and `measured_margin`, per-face margins (`crop.measured_pads`)."""
  rows = []
  for name, (truth_box, mask) in truths.items():
    metrics = evaluate.box_metrics(boxes[name], truth_box, mask.shape, mask)
    measured, tails = (faces or {}).get(name) or (None, None)
    pads = crop.measured_pads(measured, mask.shape, margin, measured_margin, tails=tails) if boxes[name] else None
    cropped = evaluate.box_metrics(crop.margin_box(boxes[name], mask.shape, margin, face_pads=pads), truth_box, mask.shape, mask)
    ideal = evaluate.box_metrics(truth_box, truth_box, mask.shape)["kept_fraction"]
    rows.append((metrics["mae_voxels"], metrics["iou"], cropped["recall"], cropped["kept_fraction"], ideal))
  mae, iou, recall, kept, ideal = np.mean(rows, axis=0)
  return mae, iou, recall, min(r[2] for r in rows), kept / ideal


def _face_offsets(boxes, truths):
  """Each face's mean (and range of) signed offset from the truth's, in voxels, outward positive; boxes only."""
  offsets = [
    [t0 - p0 for p0, t0 in zip(boxes[n]["start"], truth_box["start"])]
    + [p1 - t1 for p1, t1 in zip(boxes[n]["stop"], truth_box["stop"])]
    for n, (truth_box, _) in truths.items()
    if boxes[n] is not None
  ]
  offsets = np.array(offsets, float)
  names = [f"{a}{s}" for s in "-+" for a in "zyx"]
  return "  ".join(
    f"{f} {m:+.2f} [{lo:+.0f},{hi:+.0f}]" for f, m, lo, hi in zip(names, offsets.mean(0), offsets.min(0), offsets.max(0))
  )


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdirs", required=True, help="comma-separated workdirs with a localization run without refinement")
  parser.add_argument("--false-positives", default="0.001,0.0003,0.0001")
  parser.add_argument("--min-fractions", default="0.0025,0.005,0.01")
  parser.add_argument("--bands", default="0.25")
  parser.add_argument("--margins", default="0,0.01,0.025,0.05")
  parser.add_argument("--min-sample-slices", type=float, default=0.5, help="refine_box's no-sample rule; 0 turns it off")
  parser.add_argument("--min-coverages", default="0", help="refine_box's coverage rule (0: off), e.g. 0,0.25,0.5,0.75")
  parser.add_argument("--planes", default="grow", help="refine_box's plane faces: grow, fit or grow,fit")
  parser.add_argument("--faces", action="store_true", help="also print each face's mean signed offset from the truth")
  parser.add_argument(
    "--measured-margins", default="", help="crop.measured_margin candidates on the faces the refinement measured ('': none)"
  )
  parser.add_argument("--tail-fractions", default="0", help="refine_box's tail_fraction candidates (0: no tails)")
  parser.add_argument("--cut-tiles", default="1", help="refine_box's cut_tiles candidates (1: whole slices)")
  parser.add_argument("--empty-tubes", type=int, default=0, help="also refine each workdir's first N coarse boxes on empty tubes")
  args = parser.parse_args()
  floats = lambda text: [float(t) for t in text.split(",")]  # noqa: E731
  grid = itertools.product(
    floats(args.false_positives),
    floats(args.min_fractions),
    floats(args.bands),
    floats(args.min_coverages),
    args.planes.split(","),
    floats(args.tail_fractions),
    [int(t) for t in args.cut_tiles.split(",")],
  )
  settings = [None] + list(grid)
  for workdir in args.workdirs.split(","):
    _, volumes, coarse, truths, axis = _load(workdir)
    print(f"{workdir} ({results.latest(workdir)}), {len(volumes)} volumes, refined along {'zyx'[axis]}:")
    for setting in settings:
      faces = None
      if setting is None:
        boxes, text = coarse, "coarse (no refinement)"
      else:
        false_positive, min_fraction, band, min_coverage, plane, tail, tiles = setting
        kw = {
          "plane": plane,
          "band": band,
          "false_positive": false_positive,
          "min_fraction": min_fraction,
          "min_sample_slices": args.min_sample_slices,
          "min_coverage": min_coverage,
          "cut_tiles": tiles,
        }
        refined = {n: refine.refine_box_faces(volumes[n], coarse[n], axis, **kw, tail_fraction=tail) for n in volumes}
        boxes, faces = {n: r[0] for n, r in refined.items()}, {n: (r[2], r[3]) for n, r in refined.items()}
        text = f"false positive {false_positive:g}, min fraction {min_fraction:g}, band {band:g}, min coverage {min_coverage:g}"
        text += f", plane faces {plane}, tails {tail:g}, cut over {tiles}x{tiles} pieces"
        if min_coverage > 0:
          local = {n: refine.refine_box(volumes[n], coarse[n], axis, **{**kw, "min_coverage": 0.0})[0] for n in volumes}
          text += f" (grew {sum(boxes[n] != local[n] for n in volumes)} boxes)"
      nulls = sum(boxes[n] is None for n in volumes)
      if args.faces:
        print(f"  {text}: {_face_offsets(boxes, truths)}")
      measured_margins = [None] + (floats(args.measured_margins) if args.measured_margins else [])
      for margin, measured_margin in itertools.product(floats(args.margins), measured_margins):
        if measured_margin is not None and faces is None:
          continue
        mae, iou, recall, worst, kept = _scores(boxes, truths, margin, faces, measured_margin)
        on_measured = "" if measured_margin is None else f" ({measured_margin:g} on measured faces)"
        print(
          f"  {text}, margin {margin:.3f}{on_measured}: MAE {mae:.2f}  IoU {iou:.3f}  recall after crop {recall:.4f}"
          f" (worst {worst:.4f})  kept {kept:.2f}x ideal  null on {nulls} samples"
        )
      if setting is not None and args.empty_tubes:
        found = [n for n in volumes if coarse[n]][: args.empty_tubes]
        empty = [refine.refine_box(empty_volume(volumes[n].shape, i), coarse[n], axis, **kw)[0] for i, n in enumerate(found)]
        print(
          f"  {text}: empty tubes given the coarse boxes of {len(found)} samples: {sum(b is None for b in empty)} come back null"
        )
    print(flush=True)


if __name__ == "__main__":
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  main()
