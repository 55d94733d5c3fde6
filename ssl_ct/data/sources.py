"""Resolves `config.data.path` into the volumes to train on and localize.

The path is a folder (every volume in it), a glob, one volume, or a list of paths
and tensorstore specs. A volume's name is its file or folder stem.
"""

import glob
import logging
import os

from ssl_ct.data import formats, voxel_size
from ssl_ct.errors import InputError

# Written next to volumes, never volumes themselves (a .json spec counts only when named directly).
_SIDECARS = ("truth", "README.md", "readme.md")


def _folder_entries(folder):
  entries, skipped = [], []
  for name in sorted(os.listdir(folder)):
    if name.startswith(".") or name in _SIDECARS or name.endswith(".json"):
      continue
    path = os.path.join(folder, name)
    (entries if formats.detect_format(path) else skipped).append(path)
  if skipped:
    logging.warning(
      "%s: skipped %d entries that are not volumes: %s", folder, len(skipped), ", ".join(map(os.path.basename, skipped[:5]))
    )
  return entries


def resolve_specs(path):
  """List of volume specs (paths or tensorstore dicts) named by `path`."""
  if isinstance(path, dict):
    return [path]
  if isinstance(path, (list, tuple)):
    return [spec for item in path for spec in resolve_specs(item)]
  path = str(path)
  if path.lstrip().startswith("{") or formats.detect_format(path) == "url":
    return [path]
  if any(c in path for c in "*?["):
    matches = sorted(glob.glob(path))
    if not matches:
      raise InputError(f"glob {path!r} matches no files; check the pattern")
    return matches
  if os.path.isdir(path) and not formats.detect_format(path):
    entries = _folder_entries(path)
    if not entries:
      raise InputError(f"{path}: folder holds no volumes (zarr, N5, HDF5, TIFF, .npy); check data.path")
    return entries
  return [path]


def open_volumes(path, *, fill_missing=False, voxel_size_um=None):
  """Opens every volume named by `path`; names must be unique. `voxel_size_um` (one number or
  z, y, x; None or () = as each file records it) replaces what the files say."""
  volumes = [formats.open_volume(spec, fill_missing=fill_missing) for spec in resolve_specs(path)]
  if voxel_size_um:
    for v in volumes:
      v.voxel_size_um = voxel_size.checked(voxel_size_um, "data.voxel_size_um")
  names = [v.name for v in volumes]
  duplicates = sorted({n for n in names if names.count(n) > 1})
  if duplicates:
    raise InputError(f"several volumes are named {duplicates}; give each volume a distinct file or folder name")
  return volumes


def input_paths(path, volumes=()):
  """Local files and folders that `path` names (folders, files, glob matches, spec files) and that
  hold `volumes`: what no output may overwrite, contain or lie inside (ssl_ct.outputs.check_apart)."""
  if isinstance(path, (list, tuple)):
    named = [p for item in path for p in input_paths(item)]
  elif isinstance(path, str) and path and not path.lstrip().startswith("{") and formats.detect_format(path) != "url":
    base = formats.split_hdf5(path)[0]
    named = sorted(glob.glob(base)) if any(c in base for c in "*?[") else [base]
  else:
    named = []
  held = [formats.local_path(v) for v in volumes]
  return sorted({os.path.realpath(p) for p in named + held if p and os.path.exists(p)})
