"""A read-only 3D volume in (z, y, x) order, whatever the file format behind it.

Backends (ssl_ct/data/formats.py) implement only `_open` and `_read_box`; slices along
any axis, boxes and mean-pooled downsampled views are built here on top of them, read
slab by slab so a large volume never has to fit in memory.

Shapes: D, H, W = the volume's z, y, x sizes.
"""

import abc
import logging

import numpy as np
import tqdm

from ssl_ct.errors import InputError

SUPPORTED_DTYPES = ("uint8", "uint16", "int8", "int16", "int32", "uint32", "float32", "float64")
_SLAB_BYTES = 256 * 2**20  # Upper bound on one read when streaming a volume.


class Volume(abc.ABC):
  """Lazily opened, picklable view of one 3D volume; subclasses read boxes."""

  format_name = "?"

  def __init__(self, source, name):
    self.source = source
    self.name = name
    self._handle = None
    handle = self._get_handle()
    self.shape = tuple(int(n) for n in self._shape(handle))
    self.dtype = np.dtype(self._dtype(handle))
    self._check()
    # Micrometres per voxel (z, y, x) where the file says it (ssl_ct/data/voxel_size.py), else None.
    try:
      self.voxel_size_um = self._voxel_size(handle)
    except (ValueError, KeyError, TypeError) as e:  # metadata some other tool wrote: unusable, not fatal
      logging.warning("%s: ignoring its voxel size metadata (%s)", self.where, e)
      self.voxel_size_um = None

  @property
  def where(self):
    """Where the volume is, for messages: its path (backends with a longer source say it shorter)."""
    return str(self.source)

  def __repr__(self):
    return f"{type(self).__name__}({self.name!r}, shape={self.shape}, dtype={self.dtype}, source={self.source!r})"

  def __getstate__(self):
    # Open file handles do not pickle; a worker process reopens from `source`.
    state = dict(self.__dict__)
    state["_handle"] = None
    return state

  def _get_handle(self):
    if self._handle is None:
      try:
        self._handle = self._open()
      except InputError:
        raise
      except Exception as e:  # Truncated or foreign files fail in many library-specific ways.
        raise InputError(
          f"{self.where}: cannot open as {self.format_name} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
          "check that the file is complete and in the format its name says"
        ) from e
    return self._handle

  def _check(self):
    if len(self.shape) != 3:
      raise InputError(
        f"{self.where}: expected a 3D volume (z, y, x), got shape {self.shape}; "
        "pass a single 3D array (for HDF5 add ':/path/to/dataset')"
      )
    if min(self.shape) == 0:
      raise InputError(f"{self.where}: volume is empty (shape {self.shape}); point to a non-empty volume")
    if self.dtype.name not in SUPPORTED_DTYPES:
      raise InputError(f"{self.where}: unsupported dtype {self.dtype}; convert to one of {', '.join(SUPPORTED_DTYPES)}")

  # Backend interface.
  @abc.abstractmethod
  def _open(self):
    """Returns the backend handle (array-like, dataset, store)."""

  def _shape(self, handle):
    return handle.shape

  def _dtype(self, handle):
    return handle.dtype

  def _voxel_size(self, handle):
    return None

  @abc.abstractmethod
  def _read_box(self, handle, start, stop):
    """Returns voxels [start, stop) as an array."""

  # Public reads.
  @property
  def nbytes(self):
    return int(np.prod(self.shape)) * self.dtype.itemsize

  def read(self, start=(0, 0, 0), stop=None):
    """Voxels in the half-open box [start, stop), in the volume's dtype."""
    stop = self.shape if stop is None else stop
    start = tuple(int(s) for s in start)
    stop = tuple(int(s) for s in stop)
    if any(not 0 <= a < b <= n for a, b, n in zip(start, stop, self.shape)):
      raise InputError(
        f"{self.name}: box {start}..{stop} is empty or outside the volume of shape {self.shape}; ask for voxels inside it"
      )
    try:
      box = self._read_box(self._get_handle(), start, stop)
    except InputError:
      raise
    except Exception as e:  # Decoder errors from any backend: name the volume and what to do.
      raise InputError(
        f"{self.where}: could not read box {start}..{stop} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
        "the file or a chunk is corrupt or truncated: re-export or re-copy it"
      ) from e
    return np.asarray(box, dtype=self.dtype)

  def slice(self, axis, index):
    """One 2D slice perpendicular to `axis` (0=z, 1=y, 2=x)."""
    if axis not in (0, 1, 2):
      raise InputError(f"axis must be 0, 1 or 2, got {axis}")
    if not 0 <= index < self.shape[axis]:
      raise InputError(
        f"{self.name}: slice {index} is outside axis {axis} of size {self.shape[axis]}; ask for a slice inside the volume"
      )
    start, stop = [0, 0, 0], list(self.shape)
    start[axis], stop[axis] = index, index + 1
    plane = np.take(self.read(start, stop), 0, axis=axis)
    if self.dtype.kind == "f" and not np.isfinite(plane).all():
      raise InputError(
        f"{self.where}: slice {index} along {'zyx'[axis]} of volume {self.name} holds NaN or Inf voxels; "
        "replace them (e.g. np.nan_to_num) before use"
      )
    return plane

  def slabs(self, rows=None, align=1):
    """Yields (z0, z1) ranges covering the volume, each at most _SLAB_BYTES, multiples of `align`."""
    if rows is None:
      plane_bytes = self.shape[1] * self.shape[2] * max(self.dtype.itemsize, 4)
      rows = max(1, _SLAB_BYTES // plane_bytes)
    rows = max(align, rows // align * align)
    for z0 in range(0, self.shape[0], rows):
      yield z0, min(z0 + rows, self.shape[0])

  def downsample(self, factor, *, progress=False):
    """Mean-pooled float32 view, shape ceil(shape / factor); edge blocks average what they have."""
    factor = int(factor)
    if factor < 1:
      raise InputError(f"downsample factor must be a positive integer, got {factor}")
    if factor == 1:
      return self.read().astype(np.float32)
    out_shape = tuple(-(-n // factor) for n in self.shape)
    out_DxHxW = np.zeros(out_shape, np.float32)
    slabs = list(self.slabs(align=factor))
    for z0, z1 in tqdm.tqdm(slabs, desc=f"downsample {self.name}", disable=not progress, leave=False):
      slab = self.read((z0, 0, 0), (z1, *self.shape[1:])).astype(np.float32)
      if self.dtype.kind == "f" and not np.isfinite(slab).all():
        bad = z0 + int(np.argwhere(~np.isfinite(slab))[0, 0])
        raise InputError(
          f"{self.where}: slice {bad} along z of volume {self.name} holds NaN or Inf voxels; replace them (e.g. np.nan_to_num) before use"
        )
      out_DxHxW[z0 // factor : -(-z1 // factor)] = block_mean(slab, factor)
    return out_DxHxW


def block_mean(x, factor):
  """Mean over non-overlapping factor^3 blocks; partial edge blocks average their own voxels."""
  for axis in range(x.ndim):
    starts = np.arange(0, x.shape[axis], factor)
    counts = np.diff(np.append(starts, x.shape[axis])).astype(np.float32)
    shape = [1] * x.ndim
    shape[axis] = len(starts)
    x = np.add.reduceat(x, starts, axis=axis) / counts.reshape(shape)
  return x


class ArrayVolume(Volume):
  """An in-memory array as a Volume (tests, notebooks, freshly synthesized data)."""

  format_name = "array"

  def __init__(self, array_DxHxW, name="array"):
    self._array = np.asarray(array_DxHxW)
    super().__init__(source=f"<array {name}>", name=name)

  def _open(self):
    return self._array

  def _read_box(self, handle, start, stop):
    return handle[tuple(slice(a, b) for a, b in zip(start, stop))]
