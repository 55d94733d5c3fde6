r"""Measures zarr v3 chunk layouts and codecs, and every input format, for slice reads along every axis.

  python experiments/bench_io.py [--size 192]              # zarr v3 layouts and codecs
  python experiments/bench_io.py --formats [--size 256]    # each input format, as read and via its analysis copy

Layouts: bytes on disk, write time and milliseconds per slice read along z, y and x (no
decoded-chunk cache, so every read decodes) for a synthetic uint16 CT volume. The default
layout of ssl_ct/data/zarr_writer.py was chosen from these figures.

Formats: milliseconds per slice along z, y and x read from the input as ssl_ct opens it, then
from the chunked zarr copy `prepare` analyses instead (data.analysis_copy=auto; seconds to
make it, once), against a zarr v2 store of 64^3 chunks as the baseline of the same run.
"""

import argparse
import os
import tempfile
import time

import h5py
import numpy as np
import tensorstore as ts
import tifffile

from ssl_ct.data import formats, phantoms, prepare, zarr_writer

BYTES = [{"name": "bytes", "configuration": {"endian": "little"}}]


def _blosc(cname, clevel=5):
  return {
    "name": "blosc",
    "configuration": {"cname": cname, "clevel": clevel, "shuffle": "bitshuffle", "typesize": 2, "blocksize": 0},
  }


def layouts(n):
  sharded = zarr_writer.zarr3_spec("/x", (n, n, n), np.uint16)["metadata"]
  zstd_sharded = zarr_writer.zarr3_spec("/x", (n, n, n), np.uint16)["metadata"]
  zstd_sharded["codecs"][0]["configuration"]["codecs"][1] = _blosc("zstd")
  return {
    "plane chunks 1xNxN lz4": {"chunk": [1, n, n], "codecs": [*BYTES, _blosc("lz4")]},
    "64^3 lz4": {"chunk": [64, 64, 64], "codecs": [*BYTES, _blosc("lz4")]},
    "64^3 zstd": {"chunk": [64, 64, 64], "codecs": [*BYTES, _blosc("zstd")]},
    "128^3 shards of 32^3 lz4 (default)": {
      "chunk": sharded["chunk_grid"]["configuration"]["chunk_shape"],
      "codecs": sharded["codecs"],
    },
    "128^3 shards of 32^3 zstd": {
      "chunk": zstd_sharded["chunk_grid"]["configuration"]["chunk_shape"],
      "codecs": zstd_sharded["codecs"],
    },
  }


def measure(name, layout, volume, folder, reads=12):
  path = os.path.join(folder, name.split()[0].replace("^", "") + str(abs(hash(name))))
  spec = {
    "driver": "zarr3",
    "kvstore": {"driver": "file", "path": path},
    "create": True,
    "metadata": {
      "shape": list(volume.shape),
      "data_type": "uint16",
      "codecs": layout["codecs"],
      "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": layout["chunk"]}},
    },
  }
  start = time.perf_counter()
  ts.open(spec).result().write(volume).result()
  write_s = time.perf_counter() - start
  store = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": path}}, read=True).result()
  rng = np.random.default_rng(0)
  ms = []
  for axis in range(3):
    start = time.perf_counter()
    for index in rng.integers(0, volume.shape[axis], reads):
      key = [slice(None)] * 3
      key[axis] = int(index)
      store[tuple(key)].read().result()
    ms.append(1000 * (time.perf_counter() - start) / reads)
  return zarr_writer.directory_bytes(path), write_s, ms


def write_inputs(volume, folder):
  """The volume in each input format, laid out as beamlines write them: {name: spec}."""
  n = volume.shape[1]
  specs = {}
  specs["zarr v2, 64^3 chunks (baseline)"] = path = os.path.join(folder, "scan.zarr")
  chunked = {
    "shape": list(volume.shape),
    "chunks": [64, 64, 64],
    "dtype": "<u2",
    "compressor": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1},
  }
  ts.open({"driver": "zarr", "kvstore": {"driver": "file", "path": path}, "create": True, "metadata": chunked}).result().write(
    volume
  ).result()
  specs["multi-page TIFF"] = path = os.path.join(folder, "scan.tif")
  tifffile.imwrite(path, volume)
  specs["TIFF folder"] = path = os.path.join(folder, "slices")
  os.makedirs(path)
  for z, plane in enumerate(volume):
    tifffile.imwrite(os.path.join(path, f"s{z:05d}.tif"), plane)
  specs["HDF5, gzip chunks 16 x N/2 x N/2"] = path = os.path.join(folder, "scan.h5")
  with h5py.File(path, "w") as f:
    f.create_dataset("exchange/data", data=volume, chunks=(16, n // 2, n // 2), compression="gzip")
  specs["HDF5, contiguous"] = path = os.path.join(folder, "plain.h5")
  with h5py.File(path, "w") as f:
    f.create_dataset("recon", data=volume)
  specs[".npy"] = path = os.path.join(folder, "scan.npy")
  np.save(path, volume)
  return specs


def slice_ms(volume, reads=8):
  rng = np.random.default_rng(0)
  ms = []
  for axis in range(3):
    start = time.perf_counter()
    for index in rng.integers(0, volume.shape[axis], reads):
      volume.slice(axis, int(index))
    ms.append(1000 * (time.perf_counter() - start) / reads)
  return ms


def bench_formats(volume):
  print(f"{'input':34s} {'ms/slice z':>11s} {'y':>7s} {'x':>7s}   {'copy s':>7s} {'copy: z':>8s} {'y':>7s} {'x':>7s}")
  with tempfile.TemporaryDirectory() as folder:
    rows = {}
    for name, spec in write_inputs(volume, folder).items():
      opened = formats.open_volume(spec)
      direct = slice_ms(opened)
      start = time.perf_counter()
      copy, _ = prepare.downscaled(opened, 0, os.path.join(folder, "cache"), progress=False, analysis_copy="auto")
      copy_s = time.perf_counter() - start
      copied = slice_ms(copy) if copy is not opened else None
      rows[name] = (direct, copied)
      copy_text = f"{copy_s:7.2f} {copied[0]:8.1f} {copied[1]:7.1f} {copied[2]:7.1f}" if copied else "   (read as it is)"
      print(f"{name:34s} {direct[0]:11.1f} {direct[1]:7.1f} {direct[2]:7.1f}   {copy_text}")
    base = np.mean(rows["zarr v2, 64^3 chunks (baseline)"][0][1:])
    print("y/x slice time over the zarr baseline's, as analysed:")
    for name, (direct, copied) in rows.items():
      analysed = copied or direct
      print(f"  {name:32s} {np.mean(analysed[1:]) / base:6.2f}x   (as stored: {np.mean(direct[1:]) / base:6.2f}x)")


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--size", type=int, default=192)
  parser.add_argument("--formats", action="store_true", help="time each input format instead of the zarr layouts")
  args = parser.parse_args()
  n = args.size
  recon, _, _ = phantoms.synthesize("xenopus", (n, n, n), seed=0, index=0)
  volume = np.clip(recon * 2e6 + 1000, 0, 65535).astype(np.uint16)
  print(f"uint16 synthetic CT volume {volume.shape}, {volume.nbytes / 2**20:.1f} MiB raw")
  if args.formats:
    bench_formats(volume)
    return
  print(f"{'layout':38s} {'MiB':>7s} {'write s':>8s} {'ms/slice z':>11s} {'y':>7s} {'x':>7s}")
  with tempfile.TemporaryDirectory() as folder:
    for name, layout in layouts(n).items():
      nbytes, write_s, ms = measure(name, layout, volume, folder)
      print(f"{name:38s} {nbytes / 2**20:7.1f} {write_s:8.2f} {ms[0]:11.1f} {ms[1]:7.1f} {ms[2]:7.1f}")


if __name__ == "__main__":
  main()
