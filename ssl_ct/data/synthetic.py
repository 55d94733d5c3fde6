"""Writes a synthetic CT set (volumes, masks, labels, truth.json) and caches it by its parameters.

Layout of a set folder:
  <name>.zarr                  reconstructed volume (zarr v3)
  truth/<name>_mask.zarr       uint8 sample mask (container excluded)
  truth/<name>_labels.zarr     uint8 labels (medaka: 1 = visual system)
  truth.json                   boxes and paths, see ssl_ct/data/truth.py
  phantoms.json                the parameters that made the set
"""

import hashlib
import json
import os

import numpy as np
import tqdm

from ssl_ct import outputs
from ssl_ct.data import phantoms, truth, zarr_writer
from ssl_ct.errors import InputError

_SET_FILE = "phantoms.json"
DTYPES = ("float32", "uint16", "uint8")


def volume_shapes(kind, shape, num_volumes, z_jitter, seed):
  """Per-volume shapes: the z size varies by up to +-z_jitter (fraction), as in real scan series."""
  rng = np.random.default_rng([seed, 7])
  jitter = rng.uniform(-z_jitter, z_jitter, num_volumes)
  return [(int(round(shape[0] * (1 + j))), shape[1], shape[2]) for j in jitter]


def _to_dtype(recon, dtype, window_mu):
  """uint16 stores a fixed linear map of attenuation (recorded in the attributes); uint8 the
  phantom's display window (below it 0, above it 255), as atlas scans are exported."""
  if dtype == "float32":
    return recon.astype(np.float32), {}
  if dtype == "uint8":
    low, high = window_mu
    scale = 255.0 / (high - low)
    return np.clip(np.round((recon - low) * scale), 0, 255).astype(np.uint8), {"mu_scale": scale, "mu_offset": -low * scale}
  scale, offset = 2.0e6, 1000.0
  return np.clip(recon * scale + offset, 0, 65535).astype(np.uint16), {"mu_scale": scale, "mu_offset": offset}


def write_set(out_dir, *, kind, num_volumes, shape, seed, z_jitter=0.0, dtype="float32", overwrite=False, progress=True):
  """Synthesizes `num_volumes` volumes into `out_dir` (atomically, as one folder)."""
  if kind not in phantoms.GENERATORS:
    raise InputError(f"unknown phantom kind {kind!r}; choose one of {sorted(phantoms.GENERATORS)}")
  if num_volumes < 1:
    raise InputError(f"number of volumes must be >= 1, got {num_volumes}; ask for at least one volume")
  if len(shape) != 3 or shape[1] != shape[2] or min(shape) < 16:
    raise InputError(f"synthetic shape {tuple(shape)} is not (z, n, n) with n >= 16 (square axial slices); give e.g. 112,64,64")
  if dtype not in DTYPES:
    raise InputError(f"synthetic dtype {dtype!r} is not supported; use one of {', '.join(DTYPES)}")
  if not 0 <= z_jitter <= 0.5:
    raise InputError(f"z jitter {z_jitter} is outside [0, 0.5]; give a fraction of the z size such as 0.05")
  params = {"kind": kind, "num_volumes": num_volumes, "shape": list(shape), "seed": seed, "z_jitter": z_jitter, "dtype": dtype}
  entries = {}
  with outputs.atomic_dir(out_dir, overwrite) as tmp:
    os.makedirs(os.path.join(tmp, "truth"))
    shapes = volume_shapes(kind, shape, num_volumes, z_jitter, seed)
    for index in tqdm.tqdm(range(num_volumes), desc=f"synthesize {kind}", disable=not progress, unit="vol"):
      name = f"{kind}_{index:03d}"
      recon, phantom, artifacts = phantoms.synthesize(kind, shapes[index], seed, index)
      data, scaling = _to_dtype(recon, dtype, phantom.window_mu)
      attrs = {"ssl_ct": {"synthetic": params, "index": index, "artifacts": artifacts, **scaling}}
      zarr_writer.write_zarr3(data, os.path.join(tmp, f"{name}.zarr"), attributes=attrs)
      zarr_writer.write_zarr3(phantom.mask_DxHxW.astype(np.uint8), os.path.join(tmp, "truth", f"{name}_mask.zarr"))
      zarr_writer.write_zarr3(phantom.labels_DxHxW, os.path.join(tmp, "truth", f"{name}_labels.zarr"))
      entries[name] = {
        "box": truth.box_of_mask(phantom.mask_DxHxW),
        "mask": f"truth/{name}_mask.zarr",
        "labels": f"truth/{name}_labels.zarr",
        "label_names": phantom.label_names,
        "shape": list(shapes[index]),
      }
    truth.write_truth(tmp, entries)
    outputs.write_json(os.path.join(tmp, _SET_FILE), params)
  return out_dir


def set_folder_name(kind, num_volumes, shape, seed, z_jitter, dtype):
  """Cache key: a folder name that changes whenever a parameter changes."""
  params = json.dumps([phantoms.GENERATOR_VERSION, kind, num_volumes, list(shape), seed, z_jitter, dtype])
  return f"{kind}-{hashlib.sha1(params.encode()).hexdigest()[:10]}"


def cached_set(cache_dir, *, kind, num_volumes, shape, seed, z_jitter=0.0, dtype="float32", progress=True):
  """Path of the set in `cache_dir`, synthesizing it only when it is not there yet."""
  out_dir = os.path.join(cache_dir, set_folder_name(kind, num_volumes, shape, seed, z_jitter, dtype))
  if os.path.exists(os.path.join(out_dir, _SET_FILE)):
    return out_dir
  try:
    return write_set(
      out_dir, kind=kind, num_volumes=num_volumes, shape=shape, seed=seed, z_jitter=z_jitter, dtype=dtype, progress=progress
    )
  except (InputError, OSError):
    if os.path.exists(os.path.join(out_dir, _SET_FILE)):  # another process finished the same set first
      return out_dir
    raise
