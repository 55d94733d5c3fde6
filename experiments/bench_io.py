r"""Measures zarr v3 chunk layouts and codecs for slice reads along every axis.

  python experiments/bench_io.py [--size 192]

Prints bytes on disk, write time and milliseconds per slice read along z, y and x (no
decoded-chunk cache, so every read decodes) for a synthetic uint16 CT volume. The
default layout of ssl_ct/data/zarr_writer.py was chosen from these figures.
"""

import argparse
import os
import tempfile
import time

import numpy as np
import tensorstore as ts

from ssl_ct.data import phantoms, zarr_writer

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


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument("--size", type=int, default=192)
  args = parser.parse_args()
  n = args.size
  recon, _, _ = phantoms.synthesize("xenopus", (n, n, n), seed=0, index=0)
  volume = np.clip(recon * 2e6 + 1000, 0, 65535).astype(np.uint16)
  print(f"uint16 synthetic CT volume {volume.shape}, {volume.nbytes / 2**20:.1f} MiB raw")
  print(f"{'layout':38s} {'MiB':>7s} {'write s':>8s} {'ms/slice z':>11s} {'y':>7s} {'x':>7s}")
  with tempfile.TemporaryDirectory() as folder:
    for name, layout in layouts(n).items():
      nbytes, write_s, ms = measure(name, layout, volume, folder)
      print(f"{name:38s} {nbytes / 2**20:7.1f} {write_s:8.2f} {ms[0]:11.1f} {ms[1]:7.1f} {ms[2]:7.1f}")


if __name__ == "__main__":
  main()
