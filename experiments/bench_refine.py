r"""Box refinement (ssl_ct/refine.py) on one large volume: seconds and peak memory against a full
read of the same volume in the same run.

  python experiments/bench_refine.py                  # a demo medaka volume resampled to 768x256x256
  python experiments/bench_refine.py --scale=2        # quicker: 384x128x128

The volume is a demo synthetic medaka volume (192x64x64, fish in a tube) resampled by --scale, the
coarse box its truth box shrunk by 10% on every face (what a localizer that misses the faint parts
returns), the refinement the sorting config's (and, for their cost, the same without the coverage
rule, with the rotation config's cut over 2 x 2 pieces of each background run, and with that and its
filter of foreground components). Memory: the peak of what numpy allocates during
one refinement (tracemalloc sees numpy's buffers), against the volume's own size.
"""

import argparse
import tempfile
import time
import tracemalloc

import numpy as np
import scipy.ndimage

from ssl_ct import refine
from ssl_ct.configs import rotation_xenopus, sorting_medaka
from ssl_ct.data import prepare
from ssl_ct.data.volume import ArrayVolume


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--scale", type=float, default=4.0)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()
  config = sorting_medaka.get_config("demo")
  config.data.synthetic.num_volumes = 1
  dataset = prepare.load_dataset(config.data, tempfile.mkdtemp(), progress=False)
  small = dataset.volumes[0]
  truth_box = dataset.truth[small.name]["box"]
  big = scipy.ndimage.zoom(small.read(), args.scale, order=1).astype(np.float32)
  volume = ArrayVolume(big, name="medaka_big")
  start = [int(a * args.scale + 0.1 * (b - a) * args.scale) for a, b in zip(truth_box["start"], truth_box["stop"])]
  stop = [int(b * args.scale - 0.1 * (b - a) * args.scale) for a, b in zip(truth_box["start"], truth_box["stop"])]
  coarse = {"start": start, "stop": stop}
  settings = {
    "band": config.localize.refine_band,
    "false_positive": config.localize.refine_false_positive,
    "min_fraction": config.localize.refine_min_fraction,
    "min_coverage": config.localize.refine_min_coverage,
  }
  print(f"{volume.shape} float32 volume ({volume.nbytes / 2**20:.0f} MiB), coarse box {coarse['start']}..{coarse['stop']}")
  tracemalloc.start()
  refine.refine_box(volume, coarse, 0, **settings)
  refine_peak = tracemalloc.get_traced_memory()[1] / 2**20
  tracemalloc.stop()
  times, box, note = [], None, ""
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    box, note = refine.refine_box(volume, coarse, 0, **settings)
    times.append(time.perf_counter() - t0)
  local = []  # the same without the coverage rule's two wider passes
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    refine.refine_box(volume, coarse, 0, **{**settings, "min_coverage": 0.0})
    local.append(time.perf_counter() - t0)
  reads = []
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    np.asarray(volume.read()).sum()
    reads.append(time.perf_counter() - t0)
  refine_s, read_s = np.median(times), np.median(reads)
  scaled = [[int(round(v * args.scale)) for v in truth_box[k]] for k in ("start", "stop")]
  print(f"refined box {box['start']}..{box['stop']} ({note}); truth box scaled {scaled[0]}..{scaled[1]}")
  print(
    f"refinement: {refine_s:.2f} s (median of {args.repeats}), peak allocation {refine_peak:.0f} MiB ({refine_peak / (volume.nbytes / 2**20):.2f}x the volume)"
  )
  print(f"  without the coverage rule (min_coverage 0): {np.median(local):.2f} s")
  tiled = []  # the rotation config's foreground cut: each background run in 2 x 2 pieces
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    tiled_box, _ = refine.refine_box(volume, coarse, 0, **{**settings, "cut_tiles": 2})
    tiled.append(time.perf_counter() - t0)
  print(f"  with the cut over 2 x 2 pieces of each background run (cut_tiles 2): {np.median(tiled):.2f} s", end="")
  print(f" (its box {tiled_box['start']}..{tiled_box['stop']}: a lower cut can take more growth steps)")
  rotation = {**settings, "cut_tiles": 2, "min_component": rotation_xenopus.get_config("demo").localize.refine_min_component}
  tracemalloc.start()
  refine.refine_box(volume, coarse, 0, **rotation)
  component_peak = tracemalloc.get_traced_memory()[1] / 2**20
  tracemalloc.stop()
  kept = []  # and the rotation config's component filter: each growth pass labels its foreground first
  for _ in range(args.repeats):
    t0 = time.perf_counter()
    refine.refine_box(volume, coarse, 0, **rotation)
    kept.append(time.perf_counter() - t0)
  print(f"  and counting only components past {rotation['min_component']:g} of the largest: {np.median(kept):.2f} s,", end="")
  print(f" peak allocation {component_peak:.0f} MiB")
  print(f"full read + sum of the volume: {read_s:.2f} s; refinement / read = {refine_s / read_s:.1f}x")


if __name__ == "__main__":
  main()
