"""Volume backends and format detection: zarr v2/v3, N5 and any tensorstore spec, HDF5, TIFF, .npy.

`open_volume(spec)` is the one way in. Every backend opens its source read-only.

A missing zarr/N5 chunk or shard is an error, not zeros, unless `fill_missing=True` (for stores
whose writer leaves chunks equal to the fill value out). Remote stores (gs://, s3://, http(s)://)
are opened and read with a bounded time and retry count (`set_remote_options`, or the
SSL_CT_REMOTE_TIMEOUT_S and SSL_CT_REMOTE_RETRIES environment variables).
"""

import json
import logging
import os
import re

import h5py
import hdf5plugin  # noqa: F401  registers the Blosc, LZ4, Bitshuffle, Zstd... HDF5 filters with h5py
import numpy as np
import tensorstore as ts
import tifffile

from ssl_ct.data import voxel_size, zarr_writer
from ssl_ct.data.volume import Volume
from ssl_ct.errors import InputError

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".cxi")
TIFF_SUFFIXES = (".tif", ".tiff")
_URL_PREFIXES = ("gs://", "s3://", "http://", "https://", "file://", "memory://")
# One bounded decoded-chunk cache per process, shared by all volumes: slices along y and x
# revisit the same chunks. Created on first use (contexts do not pickle into workers).
_TS_CACHE_BYTES = 512 * 2**20
_ts_context = None
_remote = {
  "timeout_s": float(os.environ.get("SSL_CT_REMOTE_TIMEOUT_S", 30)),
  "retries": int(os.environ.get("SSL_CT_REMOTE_RETRIES", 3)),
}
_FILL_MISSING_HINT = "re-copy the store, or pass --fill_missing (config data.fill_missing=True) if its writer leaves out chunks equal to the fill value"


def set_remote_options(*, timeout_s=None, retries=None):
  """Bounds on every remote open and read: seconds per call, retries per request."""
  global _ts_context
  if timeout_s is not None:
    if not timeout_s > 0:
      raise InputError(f"remote timeout {timeout_s} is not a positive number of seconds; give e.g. 30")
    _remote["timeout_s"] = float(timeout_s)
  if retries is not None:
    if int(retries) < 0:
      raise InputError(f"remote retries {retries} is negative; give 0 or more")
    _remote["retries"] = int(retries)
  _ts_context = None  # rebuilt with the new retry counts


def _shared_context():
  global _ts_context
  if _ts_context is None:
    retries = {"max_retries": _remote["retries"], "initial_delay": "0.5s", "max_delay": "4s"}
    _ts_context = ts.Context(
      {
        "cache_pool": {"total_bytes_limit": _TS_CACHE_BYTES},
        "gcs_request_retries": retries,
        "s3_request_retries": retries,
        "http_request_retries": retries,
      }
    )
  return _ts_context


def _uncached_context():
  """A context with the shared retry bounds and no decoded-chunk cache (one pass in z order)."""
  spec = _shared_context().spec.to_json()
  return ts.Context({**spec, "cache_pool": {"total_bytes_limit": 0}})


def _kvstore_path(kv):
  """The local folder of a tensorstore kvstore (dict or URL string), or "" when it is not local."""
  if isinstance(kv, str):
    return kv[len("file://") :] if kv.startswith("file://") else ""
  if not isinstance(kv, dict):
    return ""
  if kv.get("driver") == "file":
    return kv.get("path", "")
  return _kvstore_path(kv.get("base", ""))  # ocdbt, zip... over a local base


def _is_remote(spec):
  kv = spec.get("kvstore", {}) if isinstance(spec, dict) else {}
  url = kv if isinstance(kv, str) else kv.get("driver", "") if isinstance(kv, dict) else ""
  return str(url).startswith(("gs", "s3", "http"))


def _read_json(path, what):
  try:
    with open(path) as f:
      return json.load(f)
  except json.JSONDecodeError as e:
    raise InputError(f"{path}: invalid JSON in the {what} ({e.msg} at line {e.lineno}); repair or re-export the file") from e
  except UnicodeDecodeError as e:
    raise InputError(f"{path}: the {what} is not text; repair or re-export the file") from e


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
    f = _read_hdf5(path)
    if dataset not in f or not isinstance(f[dataset], h5py.Dataset):
      found = ", ".join(_datasets_3d(f)) or "none"
      f.close()
      raise InputError(f"{path}: no dataset {dataset} in the file (3D datasets: {found}); pass '{path}:/path/to/dataset'")
    if dataset == "/exchange/data" and any(k in f for k in ("exchange/theta", "exchange/data_white", "exchange/data_dark")):
      logging.warning(
        "%s: /exchange/data sits beside theta or flat/dark fields: it looks like projections, not a reconstruction; "
        "reconstruct first (e.g. with tomopy) and pass the reconstructed volume",
        path,
      )
    return f[dataset]

  def _voxel_size(self, handle):
    return voxel_size.from_hdf5(handle.file, handle.name)

  @property
  def stream_chunk(self):
    chunks = self._get_handle().chunks
    return tuple(int(c) for c in chunks) if chunks else None

  def _read_box(self, handle, start, stop):
    try:
      return handle[tuple(slice(a, b) for a, b in zip(start, stop))]
    except OSError as e:
      filters = [int(k) for k in handle._filters if str(k).isdigit()]
      missing = [f"{k} ({_FILTER_NAMES.get(k, 'unknown')})" for k in filters if not h5py.h5z.filter_avail(k)]
      if missing:
        raise InputError(
          f"{self.where}: compressed with HDF5 filter {', '.join(missing)} that this installation cannot decode; "
          "pip install hdf5plugin (or the filter's plugin) and retry"
        ) from e
      raise


class TiffVolume(Volume):
  """One multi-page TIFF, one page per z; pages are decoded only when read."""

  format_name = "tiff"

  def _open(self):
    return tifffile.TiffFile(self.source).series[0]

  def _voxel_size(self, handle):
    return voxel_size.from_tiff(handle.parent)

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

  def _voxel_size(self, handle):
    with tifffile.TiffFile(os.path.join(self.source, handle[0][0])) as first:  # ImageJ's spacing says z
      return voxel_size.from_tiff(first)

  def _read_box(self, handle, start, stop):
    files, shape, dtype = handle
    planes = []
    for z in range(start[0], stop[0]):
      plane = tifffile.imread(os.path.join(self.source, files[z]))
      if plane.shape != shape[1:] or plane.dtype != dtype:
        raise InputError(
          f"{self.source}/{files[z]}: slice of shape {plane.shape} and dtype {plane.dtype} differs from the first slice "
          f"({shape[1:]}, {dtype}); every TIFF in a stack folder must have the same 2D shape and dtype: re-export the stack"
        )
      planes.append(plane[start[1] : stop[1], start[2] : stop[2]])
    return np.stack(planes)


class TensorstoreVolume(Volume):
  """Any tensorstore spec (zarr, zarr3, n5, remote kvstores); `source` is the JSON spec.

  `fill_missing`: read a missing chunk as the fill value instead of failing.
  """

  format_name = "tensorstore"

  def __init__(self, source, name, fill_missing=False, voxel_size_um=None, cached=True):
    self.fill_missing = bool(fill_missing)
    self._given_voxel_size = voxel_size_um  # from the OME-Zarr group around the array
    self._cached = cached
    super().__init__(source, name)

  @property
  def stream_chunk(self):
    return tuple(int(c) for c in self._get_handle().chunk_layout.read_chunk.shape)

  def streamed(self):
    """The same store without the shared decoded-chunk cache: a z-order pass reads each chunk once."""
    return TensorstoreVolume(self.source, self.name, self.fill_missing, self.voxel_size_um, cached=False)

  def _voxel_size(self, handle):
    return self._given_voxel_size

  @property
  def where(self):
    spec = json.loads(self.source)
    kv = spec.get("kvstore", "")
    return _kvstore_path(kv) or (kv if isinstance(kv, str) else json.dumps(kv)) or self.source

  def _wait(self, future, what):
    """The future's result; remote calls are bounded by the remote timeout."""
    timeout = _remote["timeout_s"] if _is_remote(json.loads(self.source)) else None
    try:
      return future.result(timeout=timeout)
    except TimeoutError as e:
      raise InputError(
        f"{self.where}: no answer within {timeout:g} s while {what} ({_remote['retries']} retries); "
        "check the network and the URL, or raise SSL_CT_REMOTE_TIMEOUT_S"
      ) from e

  def _open(self):
    spec = {**json.loads(self.source), "fill_missing_data_reads": self.fill_missing}
    try:
      context = _shared_context() if self._cached else _uncached_context()
      store = self._wait(ts.open(spec, read=True, context=context), "opening")
    except InputError:
      raise
    except ValueError as e:
      raise InputError(f"{self.where}: cannot open ({str(e).splitlines()[0][:200]}); check the path, URL or spec") from e
    extra = store.rank - 3
    if extra > 0 and all(n == 1 for n in store.shape[:extra]):  # OME-Zarr's t and c axes of length 1
      store = store[(0,) * extra]
    return store

  def _dtype(self, handle):
    return handle.dtype.numpy_dtype

  def _read_box(self, handle, start, stop):
    try:
      return self._wait(handle[tuple(slice(a, b) for a, b in zip(start, stop))].read(), "reading")
    except InputError:
      raise
    except ValueError as e:
      if "NOT_FOUND" in str(e) and "missing" in str(e):
        raise InputError(f"{self.where}: {str(e).splitlines()[0][:200]}; {_FILL_MISSING_HINT}") from e
      raise


def tiff_files_in(folder):
  names = [n for n in os.listdir(folder) if n.lower().endswith(TIFF_SUFFIXES) and not n.startswith(".")]
  return sorted(names, key=lambda n: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", n)])


# Registered HDF5 filter ids (https://github.com/HDFGroup/hdf5_plugins) that beamline files use.
_FILTER_NAMES = {32001: "Blosc", 32004: "LZ4", 32008: "Bitshuffle", 32015: "Zstandard", 32017: "SZ", 32026: "Blosc2"}


def _read_hdf5(path):
  try:
    return h5py.File(path, "r")
  except OSError as e:
    raise InputError(f"{path}: cannot open as HDF5 ({str(e).splitlines()[0][:200]}); check that the file is complete") from e


def _datasets_3d(f):
  found = []
  f.visititems(lambda n, o: found.append("/" + n) if isinstance(o, h5py.Dataset) and o.ndim == 3 else None)
  return found


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
    meta = _read_json(os.path.join(path, "zarr.json"), "zarr v3 metadata")
    if not isinstance(meta, dict):
      raise InputError(f"{path}/zarr.json: expected a JSON object of zarr v3 metadata; repair or re-export the store")
    if meta.get("node_type") == "group":
      return _group_child(path, meta.get("attributes", {}))
    return "zarr3", path
  if os.path.exists(os.path.join(path, ".zarray")):
    return "zarr", path
  if os.path.exists(os.path.join(path, ".zgroup")):
    attrs_path = os.path.join(path, ".zattrs")
    attrs = _read_json(attrs_path, "zarr attributes") if os.path.exists(attrs_path) else {}
    return _group_child(path, attrs if isinstance(attrs, dict) else {})
  if os.path.exists(os.path.join(path, "attributes.json")):
    attrs = _read_json(os.path.join(path, "attributes.json"), "N5 attributes")
    if isinstance(attrs, dict) and "dimensions" in attrs:
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


def _ome_voxel_size(path):
  """Voxel size an OME-Zarr group at `path` records for its first level, or None."""
  for meta_file, key in (("zarr.json", "attributes"), (".zattrs", None)):
    meta_path = os.path.join(path, meta_file)
    if os.path.exists(meta_path):
      meta = _read_json(meta_path, "zarr metadata")
      attrs = meta.get(key, {}) if key else meta
      try:
        return voxel_size.from_ome_zarr(attrs) if isinstance(attrs, dict) else None
      except (ValueError, KeyError, TypeError, IndexError):
        return None
  return None


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
    if not tiffs:
      return None
    try:
      with tifffile.TiffFile(os.path.join(path, tiffs[0])) as first:
        planar = len(first.series[0].shape) == 2
    except Exception:  # an unreadable first slice: opening the stack reports it
      planar = True
    return "tiff-stack" if planar else None
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
    path = _kvstore_path(json.loads(volume.source).get("kvstore", {}))
  else:
    path = split_hdf5(volume.source)[0] if isinstance(volume.source, str) else ""
  return path if path and os.path.exists(path) else ""


def stored_bytes(volume):
  """Bytes `volume` occupies on disk (compressed, as stored); its uncompressed size when not a local file."""
  path = local_path(volume)
  return zarr_writer.directory_bytes(path) if path else volume.nbytes


def _spec_dict(spec):
  if isinstance(spec, dict):
    return spec
  try:
    spec_dict = json.loads(spec)
  except json.JSONDecodeError as e:
    raise InputError(f"tensorstore spec {spec[:80]!r}: invalid JSON ({e.msg} at character {e.pos}); fix the spec") from e
  if not isinstance(spec_dict, dict):
    raise InputError(
      f'tensorstore spec {spec[:80]!r} is not a JSON object; give one such as {{"driver": "zarr3", "kvstore": ...}}'
    )
  return spec_dict


def open_volume(spec, name=None, *, fill_missing=False):
  """Opens a path, 'file.h5:/dataset', URL, or tensorstore spec (dict or JSON string) read-only."""
  if isinstance(spec, dict) or (isinstance(spec, str) and spec.lstrip().startswith("{")):
    spec_dict = _spec_dict(spec)
    kv = spec_dict.get("kvstore", {})
    kv_path = kv if isinstance(kv, str) else kv.get("path", "") if isinstance(kv, dict) else ""
    return TensorstoreVolume(json.dumps(spec_dict), name or volume_name(kv_path) or "volume", fill_missing)
  path = os.fspath(spec)
  kind = detect_format(path)
  file_path, dataset = split_hdf5(path)
  if kind != "url" and not os.path.exists(file_path):
    raise InputError(f"no volume at {path}; check the path (a file, folder, glob, URL or tensorstore spec)")
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
    spec = {"driver": driver, "kvstore": {"driver": "file", "path": os.path.abspath(array_path)}}
    return TensorstoreVolume(json.dumps(spec), name, fill_missing, voxel_size_um=_ome_voxel_size(path))
  if kind == "url":
    spec = _url_spec(path)
    try:
      return TensorstoreVolume(json.dumps(spec), name, fill_missing)
    except InputError as e:
      if spec["driver"] != "zarr3" or "no answer within" in str(e):  # an unreachable store is not retried
        raise
      try:  # a zarr v2 store (.zarray) at the URL
        return TensorstoreVolume(json.dumps({**spec, "driver": "zarr"}), name, fill_missing)
      except InputError:
        pass
      raise
  if kind == "tensorstore-json":
    spec = _read_json(path, "tensorstore spec")
    if not isinstance(spec, dict):
      raise InputError(f'{path}: not a tensorstore spec; the file must hold a JSON object such as {{"driver": "zarr3", ...}}')
    return open_volume(spec, name, fill_missing=fill_missing)
  raise InputError(f"{path}: not a volume format ssl_ct reads; use zarr/N5, HDF5 (.h5/.nxs), TIFF, a TIFF folder or .npy")
