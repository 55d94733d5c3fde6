r"""Can the faces along the refinement's axis be measured too, and with what crop margin?

  python -m ssl_ct.main --config=configs/rotation_xenopus.py:demo --workdir=W      # trains, localizes
  python experiments/select_axis_margin.py --workdirs=W7,W7P [--axis-margins=0.005,0.01,0.02,0.03,0.05]
      [--cut-slices=16,8] [--cut-ranks=50,25] [--planes=grow,fit] [--plane-margins=0.005,0.01]
      [--fill-level=0.75] [--min-kept=0.995] [--tail-fractions=0,0.0025] [--min-components=0,0.1] [--fit-axis=False,True]
      [--from-threshold=False,True]

The rotation config measures only the faces across the refinement's axis (z, the scan axis;
`localize.refine_measure = "plane"`): its z faces keep the uniform 5%, because on the xenopus
seed-5 demo two z faces the growth stopped at sat 7 and 9 voxels inside faint embryos. Such a
growth stalls where the background the faces are scored against still holds the sample's faint
ends or debris: the foreground cut, the median over runs of `localize.refine_cut_slices`
background slices of a high quantile of |z|, rises to their level when most runs hold some
(`ssl_ct/refine.py`; `localize.refine_cut_rank` takes a lower percentile over the runs). Each
candidate (run length, percentile, plane-face rule `localize.refine_plane`) is replayed on each run's saved curves (`select_margin.replay`: the curve
rule, trim, refinement with every face measurable; no network run), and each candidate margin on
the measured faces along the axis (the faces across it keep the run's `crop.measured_margin`, the
rest the uniform `crop.margin`) is scored against the ground truth: box error, how far the axis's
faces sit inside the truth at most, the worst sample kept after the crop and the volume kept over
the ideal. `--fit-fractions` (`localize.refine_fit_fraction`): how far a face fit may move in
(to the end of the runs holding that fraction of the cross-section). With `--tail-fractions` (`localize.refine_tail_fraction`) each measured face's margin
is also at least the refinement's tail past it (the indices still holding that fraction of the
cross-section as foreground: `refine._tails`, `crop.face_pads`). `--min-components`
(`localize.refine_min_component`): the growth and fit count only the foreground components holding
that fraction of the largest one's voxels (debris apart from the sample). `--fit-axis`
(`localize.refine_fit_axis`): the faces along the axis fit too, inward as well. `--from-threshold`
(`localize.refine_from_threshold`): a box leaving too few empty slices along the axis is refined
from the threshold box's extent along it. `--across-bands` (`localize.refine_across_band`): a box
left with no empty slices along the axis has its plane faces measured by growths along y and x
within that fraction of the sides (0: off). The first line per workdir is
the run's own setting (plane faces only). The rule it
prints: the candidate with the least mean volume kept over the workdirs among those keeping at
least `--min-kept` of every sample (or, on a workdir where no candidate does, no less than the best
candidate keeps there). Until 2026-12-07 that clause read "no less than the run's own setting
keeps": a run whose own setting had cut half an embryo (xenopus seed 13: 0.4878) then held no
candidate to more than that.
Choose on sets you do not report on.
"""

import argparse
import itertools
import os

import numpy as np
import select_fusion
import select_margin

from ssl_ct import evaluate


def _ints(text):
  return tuple(int(v) for v in text.split(","))


def _inside(found, truths, axis):
  """The most voxels any face along `axis` sits inside its truth box (0: none inside)."""
  depths = [0]
  for name, (truth_box, _) in truths.items():
    box = found[name][0]
    if box is not None and truth_box is not None:
      depths += [box["start"][axis] - truth_box["start"][axis], truth_box["stop"][axis] - box["stop"][axis]]
  return max(depths)


def _error(found, truths):
  return float(np.mean([evaluate.box_metrics(found[n][0], t, m.shape, m)["relative_error_pct"] for n, (t, m) in truths.items()]))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdirs", required=True, help="comma-separated rotation workdirs with a localization run")
  parser.add_argument("--axis-margins", type=select_margin._floats, default=(0.005, 0.01, 0.02, 0.03, 0.04, 0.05))
  parser.add_argument("--cut-slices", type=_ints, default=(16, 8), help="localize.refine_cut_slices candidates")
  parser.add_argument("--cut-tiles", type=_ints, default=(1,), help="localize.refine_cut_tiles candidates")
  parser.add_argument("--cut-ranks", type=select_margin._floats, default=(50.0, 25.0), help="localize.refine_cut_rank candidates")
  parser.add_argument("--planes", default="grow", help="localize.refine_plane candidates: grow, fit or grow,fit")
  parser.add_argument(
    "--plane-margins",
    type=select_margin._floats,
    help="crop.measured_margin candidates across the axis (default: each run's own)",
  )
  parser.add_argument("--fill-level", type=float, help="localize.fill_level for every replay (default: each run's own)")
  parser.add_argument("--min-kept", type=float, default=0.995, help="every sample keeps at least this after the crop")
  for flag, key, zero in (  # fraction settings of the refinement, 0 as the default candidate
    ("--fit-fractions", "refine_fit_fraction", "min_fraction"),
    ("--tail-fractions", "refine_tail_fraction", "none"),
    ("--faint-fractions", "refine_faint_fraction", "off"),
    ("--min-components", "refine_min_component", "every foreground component counts"),
    ("--across-bands", "refine_across_band", "off"),
  ):
    parser.add_argument(flag, type=select_margin._floats, default=(0.0,), help=f"localize.{key} candidates (0: {zero})")
  for flag, key in (("--fit-axis", "refine_fit_axis"), ("--from-threshold", "refine_from_threshold")):
    parser.add_argument(
      flag,
      type=lambda text: tuple(v == "True" for v in text.split(",")),
      default=(False,),
      help=f"localize.{key} candidates: False, True or False,True",
    )
  args = parser.parse_args()
  planes = tuple(args.planes.split(","))
  plane_margins = args.plane_margins or (None,)  # None: the run's own
  planes = [(p, f) for p in planes for f in (args.fit_fractions if p == "fit" else (0.0,))]  # (rule, fit fraction)
  settings = (  # the refinement's candidate settings, each a list
    args.cut_slices,
    args.cut_ranks,
    args.cut_tiles,
    planes,
    args.tail_fractions,
    args.faint_fractions,
    args.min_components,
    args.fit_axis,
    args.from_threshold,
    args.across_bands,
  )
  candidates = list(itertools.product(*settings, plane_margins, args.axis_margins))
  volume, worst_kept = dict.fromkeys(candidates, 0.0), {}  # worst_kept[workdir][candidate]
  rule_changes = {} if args.fill_level is None else {"fill_level": args.fill_level}
  for workdir in args.workdirs.split(","):
    loaded = select_fusion._load(workdir)
    config = loaded[0]
    axis, margin, own_margin = config.localize.refine_axis, config.crop.margin, config.crop.measured_margin
    _, truths, found = select_margin.replay(workdir, loaded=loaded, **rule_changes)
    own = select_margin.score(found, truths, margin, own_margin)
    print(f"{workdir}: the run's own faces ({config.localize.refine_measure}): box error {_error(found, truths):.2f}%,", end="")
    print(f" sample kept worst {own[0]:.4f}, volume kept {own[1]:.2f}x ideal")
    worst_kept[workdir] = {}
    for cut_slices, cut_rank, tiles, plane, tail, faint, component, fit_axis, seeded, across in itertools.product(*settings):
      changes = {
        "cut_slices": cut_slices,
        "cut_rank": cut_rank,
        "cut_tiles": tiles,
        "plane": plane[0],
        "fit_fraction": plane[1],
        "tail_fraction": tail,
        "faint_fraction": faint,
        "min_component": component,
        "fit_axis": fit_axis,
        "from_threshold": seeded,
        "across_band": across,
      }
      _, truths, found = select_margin.replay(workdir, faces="all", loaded=loaded, refine_changes=changes, **rule_changes)
      print(
        f"  cut runs of {cut_slices} slices in {tiles}x{tiles} pieces, percentile {cut_rank:g}, plane faces {plane[0]}", end=""
      )
      print(f" (fit fraction {plane[1]:g})" if plane[0] == "fit" else "", end="")
      print(f", tails {tail:g}, faint below {faint:g}, components from {component:g}, axis faces fit {fit_axis}", end="")
      print(f", from the threshold box {seeded}, across band {across:g}: box error", end="")
      print(f" {_error(found, truths):.2f}%,", end="")
      print(f" faces along {'zyx'[axis]} inside the truth by at most {_inside(found, truths, axis)} voxels")
      for plane_margin, axis_margin in itertools.product(plane_margins, args.axis_margins):
        margins = [own_margin if plane_margin is None else plane_margin] * 3
        margins[axis] = axis_margin
        worst, ratio = select_margin.score(found, truths, margin, tuple(margins))
        print(f"    margin across {'zyx'[axis]} {margins[axis - 1]:g}, along {'zyx'[axis]} {axis_margin:g}:", end="")
        print(f" sample kept worst {worst:.4f}, volume kept {ratio:.2f}x ideal")
        key = (cut_slices, cut_rank, tiles, plane, tail, faint, component, fit_axis, seeded, across, plane_margin, axis_margin)
        volume[key] += ratio
        worst_kept[workdir][key] = worst
  bars = {w: min(args.min_kept, max(kept.values())) for w, kept in worst_kept.items()}
  passing = [c for c in candidates if all(worst_kept[w][c] >= bars[w] for w in bars)]
  chosen = min(passing, key=lambda c: (volume[c], c)) if passing else None
  what = "run slices, percentile, tiles, (plane faces, fit fraction), tail fraction, faint fraction, min component, axis faces fit, from the threshold box, across band, margin across the axis (None: the run's), margin along it"
  print(f"the least volume keeping >= {args.min_kept} of every sample ({what}): {chosen}")


if __name__ == "__main__":
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  main()
