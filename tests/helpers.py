"""Shared test helpers: writing a volume in every format, hashing inputs, finding the real scans."""

import functools
import glob
import hashlib
import json
import os

import h5py
import jax
import numpy as np
import tensorstore as ts
import tifffile

from ssl_ct import train
from ssl_ct.data import fov, prepare, volume, zarr_writer

REAL_DATA = os.environ.get("SSL_CT_REAL_DATA", os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data"))
REAL_DATA_MISSING = (
  f"real micro-CT scans not found at {os.path.abspath(REAL_DATA)} (they ship with the developers' shared/ folder, "
  "not with a user's clone); set SSL_CT_REAL_DATA to run these tests"
)


def init_variables(model, rngs, *inputs, **kwargs):
  """`model.init` compiled once and unoptimized, as the training's initial state is
  (train.RUN_ONCE); op by op, every initializer's draw compiled on its own took seconds."""
  return jax.jit(functools.partial(model.init, **kwargs), compiler_options=train.RUN_ONCE)(rngs, *inputs)


def tree_digest(path):
  """SHA-256 over every file (names and bytes) under `path`: proves an input was not changed."""
  digest = hashlib.sha256()
  files = [path] if os.path.isfile(path) else sorted(os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs)
  for f in files:
    digest.update(os.path.relpath(f, path).encode())
    with open(f, "rb") as fh:
      digest.update(fh.read())
  return digest.hexdigest()


def _tensorstore_write(path, array, driver, chunks):
  spec = {"driver": driver, "kvstore": {"driver": "file", "path": path}, "create": True}
  if driver == "n5":
    spec["metadata"] = {
      "dimensions": list(array.shape),
      "blockSize": chunks,
      "dataType": array.dtype.name,
      "compression": {"type": "gzip"},
    }
  else:
    spec["metadata"] = {
      "shape": list(array.shape),
      "chunks": chunks,
      "dtype": array.dtype.str,
      "compressor": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1},
    }
  ts.open(spec).result().write(array).result()


def write_in_format(array, folder, fmt):
  """Writes `array` in format `fmt` under `folder`; returns the spec to open it with."""
  stem = os.path.join(folder, f"vol_{fmt}")
  if fmt == "npy":
    np.save(stem + ".npy", array)
    return stem + ".npy"
  if fmt in ("hdf5-dxchange", "hdf5-nexus", "hdf5-path"):
    with h5py.File(stem + ".h5", "w") as f:
      if fmt == "hdf5-dxchange":
        f.create_dataset("exchange/data", data=array, chunks=True, compression="gzip")
        f["implements"] = "exchange"
        return stem + ".h5"
      if fmt == "hdf5-nexus":
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        data = entry.create_group("data")
        data.attrs.update({"NX_class": "NXdata", "signal": "data"})
        data.create_dataset("data", data=array)
        data.create_dataset("other", data=array[:2])  # a second 3D dataset: the NXdata signal decides
        return stem + ".h5"
      f.create_dataset("scan/recon", data=array)
      f.create_dataset("scan/dark", data=array[:1])
    return stem + ".h5:/scan/recon"
  if fmt == "tiff":
    tifffile.imwrite(stem + ".tif", array, imagej=array.dtype != np.int32)
    return stem + ".tif"
  if fmt == "tiff-folder":
    os.makedirs(stem)
    for z, plane in enumerate(array):
      tifffile.imwrite(os.path.join(stem, f"slice_{z}.tif"), plane)  # natural order: slice_10 after slice_9
    return stem
  if fmt == "zarr2":
    _tensorstore_write(stem + ".zarr", array, "zarr", [8, 8, 8])
    return stem + ".zarr"
  if fmt == "n5":
    _tensorstore_write(stem + ".n5", array, "n5", [8, 8, 8])
    return stem + ".n5"
  if fmt == "zarr3":
    zarr_writer.write_zarr3(array, stem + ".zarr")
    return stem + ".zarr"
  if fmt == "tensorstore-json":
    zarr_writer.write_zarr3(array, stem + ".zarr")
    with open(stem + ".json", "w") as f:
      json.dump({"driver": "zarr3", "kvstore": {"driver": "file", "path": stem + ".zarr"}}, f)
    return stem + ".json"
  raise ValueError(fmt)


FORMATS = ("npy", "hdf5-dxchange", "hdf5-nexus", "hdf5-path", "tiff", "tiff-folder", "zarr2", "n5", "zarr3", "tensorstore-json")


def array_dataset(arrays):
  """A prepare.Dataset over in-memory arrays named v0, v1, ...: intensity range (0, 1), fields of view estimated."""
  volumes = [volume.ArrayVolume(a, name=f"v{i}") for i, a in enumerate(arrays)]
  fovs = {v.name: fov.estimate_fov(v) for v in volumes}
  return prepare.Dataset(volumes=volumes, ranges={v.name: (0.0, 1.0) for v in volumes}, fovs=fovs, truth={}, root="")


def tensorboard_events(folder):
  """[(tag, step, kind)] of every summary in the TensorBoard event files under `folder`; kind is
  "scalar" or "image". Reads the TFRecord framing (length, crc, event, crc) directly."""
  import struct

  from tensorboardX.proto import event_pb2

  found = []
  for path in sorted(glob.glob(os.path.join(folder, "events.out.tfevents.*"))):
    with open(path, "rb") as f:
      data = f.read()
    at = 0
    while at < len(data):
      (length,) = struct.unpack("<Q", data[at : at + 8])
      event = event_pb2.Event.FromString(data[at + 12 : at + 12 + length])
      at += 12 + length + 4
      for value in event.summary.value:
        found.append((value.tag, event.step, "image" if value.HasField("image") else "scalar"))
  return found
