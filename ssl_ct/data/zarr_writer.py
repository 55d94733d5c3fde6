"""Writes volumes as chunked, compressed zarr v3 through tensorstore, atomically: plain arrays
(`write_zarr3`) and OME-Zarr 0.5 images with a multiscale pyramid (`write_ome_zarr`).

Layout (measured by experiments/bench_io.py): 128^3 shards of 32^3 inner chunks, blosc-lz4
with bit shuffle. A slice along any axis then decodes 32 planes' worth of small chunks
instead of 64 or a whole volume (plane chunks), and lz4 decodes several times faster than
zstd for a few percent more bytes. Shards keep the file count low on parallel filesystems.
"""

import json
import os

import numpy as np
import tensorstore as ts
import tqdm

from ssl_ct import outputs
from ssl_ct.data.volume import ArrayVolume, Volume

INNER_CHUNK = 32  # voxels per side of one compressed chunk
SHARD = 128  # voxels per side of one shard file (a multiple of INNER_CHUNK)


def _codecs(dtype, inner_shape_DxHxW):
  blosc = {
    "name": "blosc",
    "configuration": {"cname": "lz4", "clevel": 5, "shuffle": "bitshuffle", "typesize": dtype.itemsize, "blocksize": 0},
  }
  inner = [{"name": "bytes", "configuration": {"endian": "little"}}, blosc]
  index = [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}]
  sharding = {"chunk_shape": list(inner_shape_DxHxW), "codecs": inner, "index_codecs": index}
  return [{"name": "sharding_indexed", "configuration": sharding}]


def zarr3_spec(path, shape, dtype, *, attributes=None, inner_chunk=INNER_CHUNK, shard=SHARD):
  """tensorstore spec creating a sharded zarr v3 array at `path`."""
  dtype = np.dtype(dtype)
  inner = [min(inner_chunk, n) for n in shape]
  outer = [min(shard // c * c, -(-n // c) * c) for c, n in zip(inner, shape)]
  metadata = {
    "shape": list(shape),
    "data_type": dtype.name,
    "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": outer}},
    "codecs": _codecs(dtype, inner),
    "fill_value": 0,
    "dimension_names": ["z", "y", "x"],
    # The marker says ssl_ct wrote the store (only such stores are replaced by --overwrite).
    "attributes": {outputs.MARKER: {}, **(attributes or {})},
  }
  return {
    "driver": "zarr3",
    "kvstore": {"driver": "file", "path": os.path.abspath(path)},
    "metadata": metadata,
    "create": True,
    # Every chunk is written, zeros too: readers treat a missing chunk as damage, not as zeros.
    "store_data_equal_to_fill_value": True,
  }


def write_zarr3(source, out_path, *, overwrite=False, attributes=None, progress=False, box=None):
  """Streams a Volume or array (optionally only `box` = (start, stop)) into a new zarr v3.

  Returns the number of bytes the written store occupies on disk.
  """
  volume = source if isinstance(source, Volume) else ArrayVolume(np.asarray(source), name=os.path.basename(out_path))
  start, stop = box if box is not None else ((0, 0, 0), volume.shape)
  shape = tuple(b - a for a, b in zip(start, stop))
  with outputs.atomic_dir(out_path, overwrite) as tmp:
    store = ts.open(zarr3_spec(tmp, shape, volume.dtype, attributes=attributes)).result()
    _stream(_box_reader(volume, start, stop), store, progress, out_path, 0)
    nbytes = directory_bytes(tmp)
  return nbytes


def write_slabs(slabs, out_path, shape, dtype, *, overwrite=False, attributes=None):
  """Writes (z0, block) pieces that arrive in z order into a new zarr v3 of `shape`, a whole shard
  row at a time (pieces are gathered until one is complete), so memory holds one shard row."""
  with outputs.atomic_dir(out_path, overwrite) as tmp:
    store = ts.open(zarr3_spec(tmp, shape, dtype, attributes=attributes)).result()
    rows = store.chunk_layout.write_chunk.shape[0]
    row = np.zeros((min(rows, shape[0]), *shape[1:]), dtype)
    row_start, filled = 0, 0
    for z0, block in slabs:
      at = 0
      while at < len(block):
        if z0 + at != row_start + filled:
          raise ValueError(f"{out_path}: piece at z={z0 + at} arrived where z={row_start + filled} was due")
        take = min(len(block) - at, len(row) - filled)
        row[filled : filled + take] = block[at : at + take]
        filled, at = filled + take, at + take
        if filled == len(row) or row_start + filled == shape[0]:
          store[row_start : row_start + filled].write(row[:filled]).result()
          row_start, filled = row_start + filled, 0
          row = row[: min(rows, shape[0] - row_start)] if row_start < shape[0] else row
    if row_start != shape[0]:
      raise ValueError(f"{out_path}: pieces covered {row_start} of {shape[0]} planes")
    nbytes = directory_bytes(tmp)
  return nbytes


def directory_bytes(path):
  """Bytes used by the files under `path` (or the file itself)."""
  if os.path.isfile(path):
    return os.path.getsize(path)
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


OME_VERSION = "0.5"
PYRAMID_MIN_SIDE = 256  # auto levels: halve until the longest side is at most this


def pyramid_levels(shape, levels=0):
  """Number of levels (full resolution first, each half the last); 0 = until the longest side <= PYRAMID_MIN_SIDE."""
  if levels:
    return int(levels)
  count, longest = 1, max(shape)
  while longest > PYRAMID_MIN_SIDE:
    longest, count = -(-longest // 2), count + 1
  return count


def ome_multiscales(name, levels, *, voxel_size_um=None, origin_voxels=(0, 0, 0)):
  """OME-NGFF 0.5 `multiscales` metadata: level k has scale 2^k voxels, and a translation that puts
  voxel (0, 0, 0) of level 0 at `origin_voxels` of the source (so a crop overlays its source)."""
  size = np.asarray(voxel_size_um if voxel_size_um is not None else (1.0, 1.0, 1.0), dtype=np.float64)
  axes = [{"name": a, "type": "space", **({"unit": "micrometer"} if voxel_size_um is not None else {})} for a in "zyx"]
  datasets = []
  for k in range(levels):
    step = 2**k
    translation = (np.asarray(origin_voxels, dtype=np.float64) + (step - 1) / 2) * size  # block centres
    transforms = [
      {"type": "scale", "scale": [float(v) for v in size * step]},
      {"type": "translation", "translation": [float(v) for v in translation]},
    ]
    datasets.append({"path": str(k), "coordinateTransformations": transforms})
  return [{"name": name, "axes": axes, "datasets": datasets, "type": "mean"}]


def write_ome_zarr(source, out_path, *, overwrite=False, attributes=None, progress=False, box=None, voxel_size_um=None, levels=0):
  """Streams a Volume (optionally only `box` = (start, stop)) into a new OME-Zarr 0.5 image.

  Level 0 is the voxels as read; each further level is the 2x2x2 block mean of the one before
  (tensorstore's downsample driver, read slab by slab). The group's attributes hold `ome` and
  `attributes`. Returns the bytes the written store occupies on disk.
  """
  volume = source if isinstance(source, Volume) else ArrayVolume(np.asarray(source), name=os.path.basename(out_path))
  start, stop = box if box is not None else ((0, 0, 0), volume.shape)
  shape = tuple(b - a for a, b in zip(start, stop))
  count = pyramid_levels(shape, levels)
  multiscales = ome_multiscales(volume.name, count, voxel_size_um=voxel_size_um, origin_voxels=start)
  group = {
    "zarr_format": 3,
    "node_type": "group",
    "attributes": {"ome": {"version": OME_VERSION, "multiscales": multiscales}, outputs.MARKER: {}, **(attributes or {})},
  }
  with outputs.atomic_dir(out_path, overwrite) as tmp:
    with open(os.path.join(tmp, "zarr.json"), "w") as f:
      json.dump(group, f, indent=1)
    level = ts.open(zarr3_spec(os.path.join(tmp, "0"), shape, volume.dtype)).result()
    _stream(_box_reader(volume, start, stop), level, progress, out_path, 0)
    for k in range(1, count):
      smaller = ts.downsample(level, [2, 2, 2], method="mean")
      nxt = ts.open(zarr3_spec(os.path.join(tmp, str(k)), smaller.shape, volume.dtype)).result()
      _stream(lambda a, b, smaller=smaller: smaller[a:b].read().result(), nxt, progress, out_path, k)
      level = nxt
    nbytes = directory_bytes(tmp)
  return nbytes


def _box_reader(volume, start, stop):
  """read_rows(z0, z1) of the box [start, stop) of `volume`, z counted from the box's start."""
  return lambda z0, z1: volume.read((start[0] + z0, start[1], start[2]), (start[0] + z1, stop[1], stop[2]))


def _stream(read_rows, store, progress, out_path, level):
  """Writes `store` a write-chunk row of z planes at a time from read_rows(z0, z1)."""
  rows = store.chunk_layout.write_chunk.shape[0]
  slabs = list(range(0, store.shape[0], rows))
  desc = f"write {os.path.basename(out_path)}" + (f" level {level}" if level else "")
  for z0 in tqdm.tqdm(slabs, desc=desc, disable=not progress, unit="slab"):
    z1 = min(z0 + rows, store.shape[0])
    store[z0:z1].write(read_rows(z0, z1)).result()
