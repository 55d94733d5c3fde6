r"""Which face refinement (ssl_ct/refine.py) and crop margin keep every sample at the least volume?

  python -m ssl_ct.main --config=configs/sorting_medaka.py:demo --workdir=W       # trains, localizes
  python -m ssl_ct.main --config=configs/sorting_medaka.py:demo --mode=localize \
      --config.data.synthetic.seed=4 --config.localize.model=W --workdir=W4       # a held-out set
  python experiments/select_refine.py --workdirs=W4,W5

Replays each workdir's latest localization: the coarse boxes from its saved variance grids and
scores (`localize_sorting.box_from_grid` with the run's rule, no network), then
`refine.refine_box` on the analysed volumes over a grid of false-positive rates and minimum fractions
(and "none"), each cropped with several margins. Prints, per setting and workdir, the box MAE,
IoU, the mean and worst sample recall after cropping, and the volume kept over the ideal (the
truth boxes'); with --empty-tubes=N, how many of N synthetic tubes without a fish, given the
coarse boxes of N fish, the refinement declares empty (null). Needs ground-truth masks (the synthetic sets have them). Choose on sets you do
not report on.
"""

import argparse
import itertools
import os

import numpy as np

from ssl_ct import crop, evaluate, localize_sorting, refine, results, run_localization
from ssl_ct.data import phantoms, prepare, tomography
from ssl_ct.data.volume import ArrayVolume


def _coarse_boxes(config, saved, shapes):
  rule = {
    k: v
    for k, v in config.localize.items()
    if k in ("top_percent", "smooth", "max_gap", "extent", "flat_fraction", "cut_noise_factor")
  }
  boxes = {}
  for name, arrays, _ in saved:
    boxes[name], _ = localize_sorting.box_from_grid(
      arrays["variance"], arrays["scores"], float(arrays["cell"]), int(arrays["axis"]), shapes[name], **rule
    )
  return boxes


def _empty_tube(shape, index):
  """A synthetic medaka volume with the fish replaced by the medium: a tube holding no sample."""
  rng = np.random.default_rng([99, index])
  phantom = phantoms.medaka(tuple(shape), rng)
  mu = phantom.mu_DxHxW
  mu[phantom.mask_DxHxW] = phantoms.MEDIUM_MU_128 * 128 / shape[1]
  ring = rng.choice([0.0, rng.uniform(0.004, 0.012)])
  return ArrayVolume(tomography.scan(mu, rng, num_angles=shape[1], ring_strength=ring).astype(np.float32), f"empty_{index}")


def _scores(boxes, known, saved, margin):
  rows = []
  for name, _, mask in saved:
    truth_box = known[name]["box"]
    metrics = evaluate.box_metrics(boxes[name], truth_box, mask.shape, mask)
    cropped = evaluate.box_metrics(crop.margin_box(boxes[name], mask.shape, margin), truth_box, mask.shape, mask)
    ideal = evaluate.box_metrics(truth_box, truth_box, mask.shape)["kept_fraction"]
    rows.append((metrics["mae_voxels"], metrics["iou"], cropped["recall"], cropped["kept_fraction"], ideal))
  mae, iou, recall, kept, ideal = np.mean(rows, axis=0)
  return mae, iou, recall, min(r[2] for r in rows), kept / ideal


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--workdirs", required=True, help="comma-separated workdirs with a sorting localization")
  parser.add_argument("--false-positives", default="0.001,0.0003,0.0001")
  parser.add_argument("--min-fractions", default="0.005,0.01,0.02")
  parser.add_argument("--bands", default="0.25")
  parser.add_argument("--margins", default="0,0.01,0.025,0.05,0.075")
  parser.add_argument("--empty-tubes", type=int, default=0, help="also refine each workdir's first N coarse boxes on empty tubes")
  args = parser.parse_args()
  floats = lambda text: [float(t) for t in text.split(",")]  # noqa: E731
  settings = [None] + list(itertools.product(floats(args.false_positives), floats(args.min_fractions), floats(args.bands)))
  for workdir in args.workdirs.split(","):
    config, known, saved = run_localization.load_saved(workdir, "variance")
    dataset = prepare.load_dataset(config.data, workdir, progress=False)
    volumes = {v.name: v for v in dataset.volumes}
    if any(dataset.factor(name) != 1 for name, _, _ in saved):
      raise SystemExit(f"error: {workdir} was localized on a downscaled grid; replay needs data.downscale_to=0")
    coarse = _coarse_boxes(config, saved, {n: volumes[n].shape for n, _, _ in saved})
    print(f"{workdir} ({results.latest(workdir)}), {len(saved)} volumes:")
    for setting in settings:
      if setting is None:
        boxes, text = coarse, "coarse (no refinement)"
      else:
        false_positive, min_fraction, band = setting
        boxes = {
          n: refine.refine_box(
            volumes[n], coarse[n], int(a["axis"]), band=band, false_positive=false_positive, min_fraction=min_fraction
          )[0]
          for n, a, _ in saved
        }
        text = f"false positive {false_positive:g}, min fraction {min_fraction:g}, band {band:g}"
      for margin in floats(args.margins):
        mae, iou, recall, worst, kept = _scores(boxes, known, saved, margin)
        print(
          f"  {text}, margin {margin:.3f}: MAE {mae:.2f}  IoU {iou:.3f}  recall after crop {recall:.4f}"
          f" (worst {worst:.4f})  kept {kept:.2f}x ideal  null on {sum(boxes[n] is None for n, _, _ in saved)} fish"
        )
      if setting is not None and args.empty_tubes:
        found = [n for n, _, _ in saved if coarse[n]][: args.empty_tubes]
        kept = [
          refine.refine_box(
            _empty_tube(volumes[n].shape, i), coarse[n], 0, band=band, false_positive=false_positive, min_fraction=min_fraction
          )[0]
          for i, n in enumerate(found)
        ]
        print(f"  {text}: empty tubes given the coarse boxes of {len(found)} fish: {sum(b is None for b in kept)} come back null")
    print(flush=True)


if __name__ == "__main__":
  os.environ.setdefault("JAX_PLATFORMS", "cpu")
  main()
