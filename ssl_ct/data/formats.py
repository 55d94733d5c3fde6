"""Volume backends and format detection: zarr v2/v3, N5 and any tensorstore spec, HDF5, TIFF, .npy.

`open_volume(spec)` is the one way in. Every backend opens its source read-only.
"""

import json
import os
import re

import h5py
import numpy as np
import tensorstore as ts
import tifffile

from ssl_ct.data import zarr_writer
from ssl_ct.data.volume import Volume
from ssl_ct.errors import InputError

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".cxi")
TIFF_SUFFIXES = (".tif", ".tiff")
_URL_PREFIXES = ("gs://", "s3://", "http://", "https://", "file://", "memory://")
# One bounded decoded-chunk cache per process, shared by all volumes: slices along y and x
# revisit the same chunks. Created on first use (contexts do not pickle into workers).
_TS_CACHE_BYTES = 512 * 2**20
_ts_context = None


def _shared_context():
  global _ts_context
  if _ts_context is None:
    _ts_context = ts.Context({"cache_pool": {"total_bytes_limit": _TS_CACHE_BYTES}})
  return _ts_context


def volume_name(path):
  """A volume's name: its file or folder stem without format suffixes."""
  base = os.path.basename(os.path.normpath(str(path).split("|")[0]))
  for suffix in (".ome.tiff", ".ome.tif", ".ome.zarr", ".zarr", ".n5", ".npy", *HDF5_SUFFIXES, *TIFF_SUFFIXES):
    if base.lower().endswith(suffix):
      return base[: -len(suffix)]
  return base or "volume"


class NpyVolume(Volume):
  format_name = "npy"

  def _open(self):
    return np.load(self.source, mmap_mode="r")

  def _read_box(self, handle, start, stop):
    return handle[tuple(slice(a, b) for a, b in zip(start, stop))]


class Hdf5Volume(Volume):
  """HDF5 dataset; `source` is 'file.h5:/path/to/dataset'."""

  format_name = "hdf5"

  def _open(self):
    path, dataset = self.source.rsplit(":", 1)
    return h5py.File(path, "r")[dataset]

  def _read_box(self, handle, start, stop):
    return handle[tuple(slice(a, b) for a, b in zip(start, stop))]


class TiffVolume(Volume):
  """One multi-page TIFF, one page per z; pages are decoded only when read."""

  format_name = "tiff"

  def _open(self):
    return tifffile.TiffFile(self.source).series[0]

  def _read_box(self, handle, start, stop):
    if len(handle.shape) == 3 and len(handle.pages) != handle.shape[0]:
      return handle.asarray()[tuple(slice(a, b) for a, b in zip(start, stop))]
    return np.stack([handle.pages[z].asarray()[start[1] : stop[1], start[2] : stop[2]] for z in range(start[0], stop[0])])


class TiffStackVolume(Volume):
  """A folder of 2D TIFF files, one per z, in natural sort order."""

  format_name = "tiff-stack"

  def _open(self):
    files = tiff_files_in(self.source)
    first = tifffile.TiffFile(os.path.join(self.source, files[0])).series[0]
    return files, (len(files), *first.shape), first.dtype

  def _shape(self, handle):
    return handle[1]

  def _dtype(self, handle):
    return handle[2]

  def _read_box(self, handle, start, stop):
    files, shape, _ = handle
    planes = []
    for z in range(start[0], stop[0]):
      plane = tifffile.imread(os.path.join(self.source, files[z]))
      if plane.shape != shape[1:]:
        raise InputError(
          f"{self.source}/{files[z]}: slice shape {plane.shape} differs from the first slice {shape[1:]}; "
          "every TIFF in a stack folder must have the same 2D shape"
        )
      planes.append(plane[start[1] : stop[1], start[2] : stop[2]])
    return np.stack(planes)


class TensorstoreVolume(Volume):
  """Any tensorstore spec (zarr, zarr3, n5, remote kvstores); `source` is the JSON spec."""

  format_name = "tensorstore"

  def _open(self):
    spec = json.loads(self.source)
    try:
      return ts.open(spec, read=True, context=_shared_context()).result()
    except ValueError as e:
      raise InputError(f"cannot open tensorstore spec {self.source}: {str(e).splitlines()[0][:200]}") from e

  def _dtype(self, handle):
    return handle.dtype.numpy_dtype

  def _read_box(self, handle, start, stop):
    return handle[tuple(slice(a, b) for a, b in zip(start, stop))].read().result()


def tiff_files_in(folder):
  names = [n for n in os.listdir(folder) if n.lower().endswith(TIFF_SUFFIXES) and not n.startswith(".")]
  return sorted(names, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)])


def _read_hdf5(path):
  try:
    return h5py.File(path, "r")
  except OSError as e:
    raise InputError(f"{path}: cannot open as HDF5 ({str(e).splitlines()[0][:200]}); check that the file is complete") from e


def _hdf5_dataset(path):
  """The 3D dataset of a NeXus (NXdata signal), DXchange (/exchange/data) or single-dataset file."""
  with _read_hdf5(path) as f:
    if "exchange/data" in f:
      return "/exchange/data"
    candidates = []
    f.visititems(lambda n, o: candidates.append((n, o)) if isinstance(o, h5py.Dataset) and o.ndim == 3 else None)
    for name, obj in candidates:
      parent = obj.parent
      if parent.attrs.get("NX_class") in (b"NXdata", "NXdata") and parent.attrs.get("signal") in (
        obj.name.rsplit("/", 1)[1],
        obj.name.rsplit("/", 1)[1].encode(),
      ):
        return "/" + name
    if len(candidates) == 1:
      return "/" + candidates[0][0]
  found = ", ".join("/" + n for n, _ in candidates) or "none"
  raise InputError(f"{path}: cannot tell which dataset is the volume (3D datasets: {found}); pass '{path}:/path/to/dataset'")


def _zarr_kind(path):
  """'zarr3', 'zarr' or 'n5' for a store directory, following groups to their first array."""
  if os.path.exists(os.path.join(path, "zarr.json")):
    with open(os.path.join(path, "zarr.json")) as f:
      meta = json.load(f)
    if meta.get("node_type") == "group":
      return _group_child(path, meta.get("attributes", {}))
    return "zarr3", path
  if os.path.exists(os.path.join(path, ".zarray")):
    return "zarr", path
  if os.path.exists(os.path.join(path, ".zgroup")):
    attrs_path = os.path.join(path, ".zattrs")
    attrs = json.load(open(attrs_path)) if os.path.exists(attrs_path) else {}
    return _group_child(path, attrs)
  if os.path.exists(os.path.join(path, "attributes.json")):
    with open(os.path.join(path, "attributes.json")) as f:
      if "dimensions" in json.load(f):
        return "n5", path
  return None


def _group_child(path, attrs):
  """First multiscale level of an OME-Zarr group, or its only array."""
  multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
  if multiscales:
    return _zarr_kind(os.path.join(path, multiscales[0]["datasets"][0]["path"]))
  children = [c for c in sorted(os.listdir(path)) if _zarr_kind(os.path.join(path, c))]
  if len(children) == 1:
    return _zarr_kind(os.path.join(path, children[0]))
  raise InputError(f"{path}: a zarr group with arrays {children or 'none'}; point to one array, e.g. '{path}/<array>'")


def detect_format(path):
  """Format name of a local path or URL, or None when it is not a volume."""
  lower = str(path).lower()
  if lower.startswith(_URL_PREFIXES) or "|" in lower:
    return "url"
  if split_hdf5(path)[1]:
    return "hdf5"
  if os.path.isdir(path):
    if _zarr_kind(path):
      return "zarr"
    tiffs = tiff_files_in(path)
    if tiffs and len(tifffile.TiffFile(os.path.join(path, tiffs[0])).series[0].shape) == 2:
      return "tiff-stack"
    return None
  if lower.endswith(".npy"):
    return "npy"
  if lower.endswith(HDF5_SUFFIXES):
    return "hdf5"
  if lower.endswith(TIFF_SUFFIXES):
    return "tiff"
  if lower.endswith(".json"):
    return "tensorstore-json"
  return None


def split_hdf5(path):
  """('file.h5', '/dataset') for 'file.h5:/dataset', else (path, None)."""
  base, sep, dataset = str(path).rpartition(":")
  if sep and base.lower().endswith(HDF5_SUFFIXES) and dataset.startswith("/"):
    return base, dataset
  return str(path), None


def _url_spec(url):
  driver = "n5" if ".n5" in url.lower() else "zarr3"
  return {"driver": driver, "kvstore": url}


def local_path(volume):
  """The file or folder holding `volume` on this machine, or "" (a remote store, an in-memory array)."""
  if isinstance(volume, TensorstoreVolume):
    kv = json.loads(volume.source).get("kvstore", {})
    path = kv.get("path", "") if isinstance(kv, dict) and kv.get("driver") == "file" else ""
  else:
    path = split_hdf5(volume.source)[0] if isinstance(volume.source, str) else ""
  return path if path and os.path.exists(path) else ""


def stored_bytes(volume):
  """Bytes `volume` occupies on disk (compressed, as stored); its uncompressed size when not a local file."""
  path = local_path(volume)
  return zarr_writer.directory_bytes(path) if path else volume.nbytes


def open_volume(spec, name=None):
  """Opens a path, 'file.h5:/dataset', URL, or tensorstore spec (dict or JSON string) read-only."""
  if isinstance(spec, dict) or (isinstance(spec, str) and spec.lstrip().startswith("{")):
    spec_dict = spec if isinstance(spec, dict) else json.loads(spec)
    kv = spec_dict.get("kvstore", {})
    kv_path = kv if isinstance(kv, str) else kv.get("path", "") if isinstance(kv, dict) else ""
    return TensorstoreVolume(json.dumps(spec_dict), name or volume_name(kv_path) or "volume")
  path = os.fspath(spec)
  kind = detect_format(path)
  file_path, dataset = split_hdf5(path)
  if kind != "url" and not os.path.exists(file_path):
    raise InputError(f"no volume at {path}: check the path (a file, folder, glob, URL or tensorstore spec)")
  name = name or volume_name(file_path)
  if kind == "npy":
    return NpyVolume(path, name)
  if kind == "hdf5":
    return Hdf5Volume(f"{file_path}:{dataset or _hdf5_dataset(file_path)}", name)
  if kind == "tiff":
    return TiffVolume(path, name)
  if kind == "tiff-stack":
    return TiffStackVolume(path, name)
  if kind == "zarr":
    driver, array_path = _zarr_kind(path)
    return TensorstoreVolume(
      json.dumps({"driver": driver, "kvstore": {"driver": "file", "path": os.path.abspath(array_path)}}), name
    )
  if kind == "url":
    return TensorstoreVolume(json.dumps(_url_spec(path)), name)
  if kind == "tensorstore-json":
    with open(path) as f:
      return open_volume(json.load(f), name)
  raise InputError(f"{path}: not a volume format ssl_ct reads; use zarr/N5, HDF5 (.h5/.nxs), TIFF, a TIFF folder or .npy")
