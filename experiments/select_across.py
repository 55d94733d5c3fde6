r"""How far may a growth across a filled axis place a face (`localize.refine_across_band`)?

  python experiments/select_across.py --sets=packed_head:4,packed_head:5,packed_head:7,xenopus:4,xenopus:5
      [--bands=0,0.05,0.1,0.25] [--min-kept=0.995] [--cache=workdir/synthetic]

A box that leaves no empty slice along the refinement's axis (a packed head that fills z) cannot
be refined along it, and the crop keeps the uniform margin on all six faces. With
`refine_across_band` > 0 its faces in the plane are measured by growths along y and along x
(ssl_ct/refine.py `_measure_across`), each within that fraction of the sides. This replays that
without a network: on each synthetic set (12 volumes of 112^3 of the given kind and seed, uint8
for packed heads as the packed-head runs use, synthesized into `--cache` once), every volume's
coarse box is (a) the threshold baseline's box (Otsu, largest component: the trim's evidence, and
the box a certainty curve that read the packing keeps along z), (b) the true box grown by 5% of
each side (a coarse box past the sample on every face) and (c) the true box along the whole z
axis, grown by 3% of each side (a certainty curve that read the medium on every z slice: an
embryo of xenopus seed 4 got such a box); each is refined with the packaged
rotation config's settings (its threshold box as the axis seed, as a run does) and each
candidate band, cropped with the config's margins (`select_margin.score`), and scored against the
truth: relative box error, the worst sample kept after the crop, the volume kept over the ideal.
The rule it prints: the candidate with the least mean volume over the sets among those keeping
at least `--min-kept` of every sample (or, on a set where no candidate does, no less than the
best candidate keeps there). Choose on sets you do not report on.
"""

import argparse
import os

import numpy as np
import select_fusion
import select_margin

from ssl_ct import baseline, crop, evaluate, refine
from ssl_ct.configs import rotation_xenopus
from ssl_ct.data import formats, fov, synthetic, truth

_SIDE = 112
_VOLUMES = 12


def _volumes(cache, kind, seed):
  """Yields (volume, truth box, mask) per volume of one synthetic set."""
  dtype = "uint8" if kind == "packed_head" else "float32"
  folder = synthetic.cached_set(
    cache, kind=kind, num_volumes=_VOLUMES, shape=(_SIDE,) * 3, seed=seed, dtype=dtype, progress=False
  )
  entries = truth.read_truth(folder)
  for name in sorted(entries):
    volume = formats.open_volume(os.path.join(folder, f"{name}.zarr"))
    yield volume, entries[name]["box"], truth.read_mask(folder, entries[name])


def _grown(box, shape, fraction):
  """`box` grown by `fraction` of each side (rounded down) on every face, clipped to the volume."""
  return crop.margin_box(box, shape, 0, face_pads=[[int(fraction * n)] * 2 for n in shape])


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--sets", required=True, help="comma-separated kind:seed, e.g. packed_head:4,xenopus:5")
  parser.add_argument(
    "--bands", type=select_margin._floats, default=(0.0, 0.05, 0.1, 0.25), help="localize.refine_across_band candidates"
  )
  parser.add_argument("--min-kept", type=float, default=0.995, help="every sample keeps at least this after the crop")
  parser.add_argument("--cache", default=os.path.join("workdir", "synthetic"), help="where the synthetic sets are kept")
  args = parser.parse_args()
  config = rotation_xenopus.get_config("demo")
  _, settings = select_fusion.rules(config)
  settings.pop("from_threshold")  # refine.Refined's: the threshold box seeds the axis, as below
  axis = config.localize.refine_axis
  scores = {}  # set -> band -> (worst sample kept, mean volume over the ideal, mean relative error %)
  for item in args.sets.split(","):
    kind, seed = item.split(":")
    found, truths = {band: {} for band in args.bands}, {}  # select_margin.score's, per (volume, coarse box)
    for index, (volume, truth_box, mask) in enumerate(_volumes(args.cache, kind, int(seed))):
      seed_box = baseline.threshold_box(volume, fov.estimate_fov(volume))
      along_z = {"start": [0, *truth_box["start"][1:]], "stop": [volume.shape[0], *truth_box["stop"][1:]]}
      for coarse_index, coarse in enumerate(
        (seed_box, _grown(truth_box, volume.shape, 0.05), _grown(along_z, volume.shape, 0.03))
      ):
        truths[index, coarse_index] = (truth_box, mask)
        for band in args.bands:
          run = dict(settings, across_band=band)
          box, _, measured, _ = refine.refine_box_faces(volume, coarse, axis, axis_seed=seed_box, **run)
          found[band][index, coarse_index] = (box, measured, None)
    scores[item] = {}
    for band in args.bands:
      worst, ratio = select_margin.score(found[band], truths, config.crop.margin, config.crop.measured_margin)
      errors = [evaluate.box_metrics(found[band][k][0], t, m.shape, m)["relative_error_pct"] for k, (t, m) in truths.items()]
      scores[item][band] = (worst, ratio, float(np.mean(errors)))
      print(f"{item} band {band:g}: error {np.mean(errors):.2f}%, sample kept worst {worst:.4f}, volume {ratio:.2f}x ideal")
  bars = {item: min(args.min_kept, max(worst for worst, _, _ in s.values())) for item, s in scores.items()}
  passing = [b for b in args.bands if all(scores[i][b][0] >= bars[i] for i in scores)]
  volume = {b: np.mean([scores[i][b][1] for i in scores]) for b in args.bands}
  chosen = min(passing, key=lambda b: (volume[b], b)) if passing else None
  print(f"the least mean volume keeping >= {args.min_kept} of every sample: band {chosen}")


if __name__ == "__main__":
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  main()
