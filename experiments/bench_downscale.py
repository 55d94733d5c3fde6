r"""Downscaling a large volume (prepare's block-mean copy): time and peak memory against one
sequential read of the same volume, and against the earlier materializing implementation.

  python experiments/bench_downscale.py                            # 1536x1024x1024 uint16 (1.6 G voxels)
  python experiments/bench_downscale.py --shape=4096,1024,1024     # 4.3 G voxels, about 8 GiB raw
  python experiments/bench_downscale.py --folder=/big/disk         # where the generated zarr goes

Generates a uint16 zarr v3 input (CT-like planes with noise, so it compresses as scans do) once
in --folder, then runs each step in its own process and reports its wall time and peak RSS:
- read: every voxel read once, in z order (the floor);
- before: the earlier downsample (a float32 copy of each 256 MiB slab, the whole result in
  memory, then written);
- now: `prepare.downscaled` (reads of about 8 MiB of whole chunks summed in their own dtype into
  the factor grid's cells, the next read ahead, the result streamed to the zarr a shard row at
  a time).
A 6100x2000x2000 scan (24 GB at uint16) downscaled to 504 voxels a side (factor 13) holds two
8 MiB reads, the output planes of one slab (4 of 154x154) and one 128-plane shard row of the
470x154x154 result (12 MiB): the same memory as the measured runs, whatever the input's size.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np


def _make(path, shape):
  from ssl_ct.data import phantoms, zarr_writer

  recon, _, _ = phantoms.synthesize("xenopus", (128, 128, 128), seed=0, index=0)
  plane = np.clip(recon[64] * 2e6 + 1000, 0, 65535).astype(np.float32)
  tile = np.tile(plane, (-(-shape[1] // 128), -(-shape[2] // 128)))[: shape[1], : shape[2]]

  def slabs(rows=64):
    rng = np.random.default_rng(0)
    for z0 in range(0, shape[0], rows):
      z1 = min(z0 + rows, shape[0])
      noise = rng.normal(0, 40, (z1 - z0, *shape[1:])).astype(np.float32)
      yield z0, np.clip(tile[None] + noise, 0, 65535).astype(np.uint16)

  zarr_writer.write_slabs(slabs(), path, shape, np.uint16)


def _block_mean_before(x, factor):
  """The earlier block mean: np.add.reduceat along each axis."""
  for axis in range(x.ndim):
    starts = np.arange(0, x.shape[axis], factor)
    counts = np.diff(np.append(starts, x.shape[axis])).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = len(starts)
    x = np.add.reduceat(x, starts, axis=axis) / counts.reshape(shape)
  return x


def _step(step, path, factor):
  from ssl_ct.data import formats, prepare, zarr_writer

  vol = formats.open_volume(path, name="input")
  out = tempfile.mkdtemp(dir=os.path.dirname(path))
  start = time.perf_counter()
  if step == "read":
    for z0, z1 in vol.slabs(rows=max(1, (64 << 20) // (vol.shape[1] * vol.shape[2] * 2))):
      vol.read((z0, 0, 0), (z1, *vol.shape[1:]))
  elif step == "before":  # the implementation this benchmark replaced, kept here as its baseline
    out_shape = tuple(-(-n // factor) for n in vol.shape)
    result = np.zeros(out_shape, np.float32)
    for z0, z1 in vol.slabs(align=factor):
      slab = vol.read((z0, 0, 0), (z1, *vol.shape[1:])).astype(np.float32)
      result[z0 // factor : -(-z1 // factor)] = _block_mean_before(slab, factor)
    zarr_writer.write_zarr3(result, os.path.join(out, "before.zarr"))
  else:
    prepare.downscaled(vol, -(-max(vol.shape) // factor), out, progress=False)
  seconds = time.perf_counter() - start
  shutil.rmtree(out)
  with open("/proc/self/status") as f:  # VmHWM: this process image's peak (ru_maxrss carries the parent's over exec)
    peak_mib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024
  print(json.dumps({"step": step, "seconds": seconds, "peak_rss_mib": peak_mib}))


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--shape", default="1536,1024,1024")
  parser.add_argument("--factor", type=int, default=3)
  parser.add_argument("--folder", default="")
  parser.add_argument("--steps", default="read,before,now", help="which steps to run (read is the baseline of the ratios)")
  parser.add_argument("--step", default="", help=argparse.SUPPRESS)
  parser.add_argument("--path", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.step:
    return _step(args.step, args.path, args.factor)
  shape = tuple(int(n) for n in args.shape.split(","))
  folder = args.folder or tempfile.mkdtemp(prefix="ssl_ct_bench_downscale_")
  path = os.path.join(folder, f"input_{'x'.join(map(str, shape))}.zarr")
  if not os.path.exists(path):
    start = time.perf_counter()
    _make(path, shape)
    print(f"generated {path} in {time.perf_counter() - start:.0f} s")
  from ssl_ct.data import zarr_writer

  voxels = int(np.prod(shape))
  print(
    f"{shape} uint16, {voxels / 1e9:.2f} G voxels, {voxels * 2 / 2**30:.2f} GiB raw, "
    f"{zarr_writer.directory_bytes(path) / 2**30:.2f} GiB on disk; downscale factor {args.factor}"
  )
  rows = {}
  for step in ["read", *[s for s in args.steps.split(",") if s != "read"]]:
    run = subprocess.run(
      [sys.executable, __file__, f"--step={step}", f"--path={path}", f"--factor={args.factor}"],
      capture_output=True,
      text=True,
      check=True,
    )
    rows[step] = json.loads(run.stdout.strip().splitlines()[-1])
  read = rows["read"]
  for step, row in rows.items():
    print(
      f"{step:7s} {row['seconds']:7.1f} s ({row['seconds'] / read['seconds']:.2f}x one read)   "
      f"peak RSS {row['peak_rss_mib']:7.0f} MiB"
    )


if __name__ == "__main__":
  main()
