r"""Which `localize.refine_min_sample_slices` calls an empty holder empty and no sample?

  python -m ssl_ct.main --config=configs/rotation_xenopus.py:demo --workdir=W      # trains, localizes
  python experiments/select_empty.py --workdirs=W4,W5 [--min-sample-slices=0,0.25,0.5,0.75,0.9]
      [--empty-holders=4] [--fill-level=0.75]

The refinement declares a box empty ("no sample", `null`) when fewer than `min_sample_slices` of
its slices along the refinement's axis hold foreground against the empty slices outside it
(ssl_ct/refine.py). Replays each rotation workdir's latest localization up to the refinement on
its saved curves and baseline boxes (`select_margin.coarse_boxes`: the box rule, the trim; no
network run), then refines every box with the packaged rotation config's refinement settings
(`configs/rotation_xenopus.py`, not the run's) and each candidate; and refines the same boxes of
the first `--empty-holders` volumes on empty holders: the xenopus phantom of that volume's shape
with the embryo replaced by the medium (holder, debris, rings and beam hardening kept), scanned
as the synthetic sets are (`select_refine.empty_volume`); with the packaged
`localize.refine_from_threshold`, each volume's threshold box seeds the refinement as in a run
(the run's for samples, the holder's own for empty holders). Prints per workdir and candidate how many samples and how many empty
holders come back null. The rule it prints: the candidate nulling the most empty holders among
those that null no sample on any workdir (ties: the smallest). Choose on sets you do not report on.
"""

import argparse
import os

import select_fusion
import select_margin
import select_refine

from ssl_ct import baseline, refine
from ssl_ct.configs import rotation_xenopus
from ssl_ct.data import fov, phantoms


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdirs", required=True, help="comma-separated rotation workdirs with a localization run")
  parser.add_argument("--min-sample-slices", type=select_margin._floats, default=(0.0, 0.25, 0.5, 0.75, 0.9))
  parser.add_argument("--empty-holders", type=int, default=4, help="empty holders per workdir, given its first boxes")
  parser.add_argument("--fill-level", type=float, help="localize.fill_level for every replay (default: each run's own)")
  args = parser.parse_args()
  _, settings = select_fusion.rules(rotation_xenopus.get_config("demo"))
  seeded = settings.pop("from_threshold", False)  # refine.Refined's: each volume's threshold box seeds the axis
  rule_changes = {} if args.fill_level is None else {"fill_level": args.fill_level}
  nulls = {c: [0, 0] for c in args.min_sample_slices}  # candidate -> [samples null, empty holders null]
  totals = [0, 0]
  for index, workdir in enumerate(args.workdirs.split(",")):
    loaded = select_fusion._load(workdir)
    config, _, boxes = select_margin.coarse_boxes(loaded, **rule_changes)
    volumes, axis = loaded[1], config.localize.get("refine_axis", 0)
    refined = [name for name in sorted(boxes) if boxes[name][1]]
    holders = {
      name: select_refine.empty_volume(volumes[name].shape, 100 * index + i, phantoms.xenopus, True)
      for i, name in enumerate(refined[: args.empty_holders])
    }
    seeds = {name: loaded[3][name] if seeded else None for name in refined}
    holder_seeds = {name: baseline.threshold_box(v, fov.estimate_fov(v)) if seeded else None for name, v in holders.items()}
    here = {}
    for candidate in args.min_sample_slices:
      run = dict(settings, min_sample_slices=candidate)
      samples = sum(refine.refine_box(volumes[n], boxes[n][0], axis, axis_seed=seeds[n], **run)[0] is None for n in refined)
      empties = sum(
        refine.refine_box(v, boxes[n][0], axis, axis_seed=holder_seeds[n], **run)[0] is None for n, v in holders.items()
      )
      here[candidate] = (samples, empties)
      nulls[candidate][0] += samples
      nulls[candidate][1] += empties
    totals[0] += len(refined)
    totals[1] += len(holders)
    print(f"{workdir}: {len(refined)} refined boxes, {len(holders)} empty holders", flush=True)
    for candidate, (samples, empties) in here.items():
      print(f"  min sample slices {candidate:g}: {samples} samples null, {empties} of {len(holders)} empty holders null")
  print(f"all: {totals[0]} samples, {totals[1]} empty holders")
  for candidate, (samples, empties) in nulls.items():
    print(f"  min sample slices {candidate:g}: {samples} samples null, {empties} empty holders null")
  safe = [c for c in args.min_sample_slices if nulls[c][0] == 0]
  chosen = max(safe, key=lambda c: (nulls[c][1], -c)) if safe else None
  print(f"the most empty holders null with no sample null (min sample slices): {chosen}")


if __name__ == "__main__":
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  main()
