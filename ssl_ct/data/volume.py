"""A read-only 3D volume in (z, y, x) order, whatever the file format behind it.

Backends (ssl_ct/data/formats.py) implement only `_open` and `_read_box`; slices along
any axis, boxes and mean-pooled downsampled views are built here on top of them, read
slab by slab so a large volume never has to fit in memory.

Shapes: D, H, W = the volume's z, y, x sizes.
"""

import abc
import concurrent.futures
import logging
import threading

import numpy as np
import tqdm

from ssl_ct.errors import InputError

SUPPORTED_DTYPES = ("uint8", "uint16", "int8", "int16", "int32", "uint32", "float32", "float64")
_SLAB_BYTES = 256 * 2**20  # Upper bound on one read when streaming a volume.
_DOWNSAMPLE_READ_BYTES = 8 * 2**20  # one read as stored, while downsampling (two are in memory)


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
    """Mean-pooled float32 array, shape ceil(shape / factor); edge blocks average what they have."""
    if int(factor) == 1:
      return self.read().astype(np.float32)
    return np.concatenate([block for _, block in self.downsample_slabs(factor, progress=progress)])

  def downsample_slabs(self, factor, *, progress=False, read_bytes=_DOWNSAMPLE_READ_BYTES):
    """Yields (z0, float32 block means of the next z planes) of the factor-downsampled volume, in order.

    Streamed in bounded memory: boxes of whole storage chunks of at most about `read_bytes` as
    stored (z slabs, cut into y bands of whole chunks) are read once each, in the volume's own dtype
    and without a decoded-chunk cache, the next one on a reader thread while this one is summed
    into the factor-grid cells it overlaps. A cell that straddles boxes is summed from each, so boxes
    need not align with the grid, and stay small whatever the factor: memory holds two boxes and
    the output planes of one slab (reads of a few MiB are also freed to the system at once, where
    larger ones left the allocator holding more), whatever the volume's size.
    """
    factor = int(factor)
    if factor < 1:
      raise InputError(f"downsample factor must be a positive integer, got {factor}")
    d, h, w = self.shape
    chunk_z, chunk_y = (self.stream_chunk or (1, 1, 1))[:2]
    plane_bytes = h * w * self.dtype.itemsize
    rows = max(chunk_z, read_bytes // plane_bytes // chunk_z * chunk_z)
    band = (
      h
      if rows * plane_bytes <= read_bytes
      else min(h, max(chunk_y, read_bytes // (rows * w * self.dtype.itemsize) // chunk_y * chunk_y))
    )
    boxes = [(z0, min(z0 + rows, d), y0, min(y0 + band, h)) for z0 in range(0, d, rows) for y0 in range(0, h, band)]
    counts_z, counts_y, counts_x = (_cell_sizes(n, factor) for n in self.shape)
    cells_yx = counts_y[:, None] * counts_x[None, :]
    source = self.streamed()
    read = lambda b: source.read((b[0], b[2], 0), (b[1], b[3], w))  # noqa: E731
    sums, first = np.zeros((0, len(counts_y), len(counts_x)), np.float32), 0  # output planes [first, first + len(sums)) so far
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as reader:
      ahead = reader.submit(read, boxes[0])
      for i, (z0, z1, y0, y1) in enumerate(tqdm.tqdm(boxes, desc=f"downsample {self.name}", disable=not progress, leave=False)):
        box = ahead.result()
        if i + 1 < len(boxes):
          ahead = reader.submit(read, boxes[i + 1])
        if self.dtype.kind == "f" and not np.isfinite(box).all():
          bad = z0 + int(np.argwhere(~np.isfinite(box))[0, 0])
          raise InputError(
            f"{self.where}: slice {bad} along z of volume {self.name} holds NaN or Inf voxels; replace them (e.g. np.nan_to_num) before use"
          )
        stop = -(-z1 // factor)
        if first + len(sums) < stop:  # this slab's output planes, after the one it may share with the slab before
          sums = np.concatenate([sums, np.zeros((stop - first - len(sums), *sums.shape[1:]), np.float32)])
        part = block_sums(box, (z0, y0, 0), factor)
        sums[z0 // factor - first : stop - first, y0 // factor : y0 // factor + part.shape[1]] += part
        if y1 == h:  # the slab's last band: its complete output planes are final
          done = stop - first if z1 == d else z1 // factor - first
          if done:
            yield first, sums[:done] / (counts_z[first : first + done, None, None] * cells_yx)
            sums, first = sums[done:].copy(), first + done

  @property
  def stream_chunk(self):
    """(z, y, x) voxels per storage chunk (reads aligned to it decode each chunk once), or None when not chunked."""
    return None

  def streamed(self):
    """This volume for one pass in z order (backends with a decoded-chunk cache open one without)."""
    return self


def _cell_sizes(n, factor):
  """Voxels of each factor-grid cell along an axis of n voxels (the last cell may be short), as float32."""
  return np.minimum(factor, n - factor * np.arange(-(-n // factor))).astype(np.float32)


def block_sums(x, origin, factor):
  """Float32 sums of `x` over each cell of the factor grid it overlaps, `x` lying at voxel `origin`
  of that grid: cells cut by x's faces hold the sum of their part inside x.

  Axis by axis, whole cells as a reshaped sum (vectorized, summed in float32 straight from x's
  dtype, no converted copy of x), the cut cells at either end on their own; the first axis
  already shrinks the array by `factor`.
  """
  for axis in range(x.ndim):
    n = x.shape[axis]
    head = min(n, -origin[axis] % factor)  # voxels before the first cell boundary inside x
    full = (n - head) // factor * factor
    lead = (slice(None),) * axis
    parts = [x[(*lead, slice(0, head))].sum(axis=axis, keepdims=True, dtype=np.float32)] if head else []
    if full:
      whole = x[(*lead, slice(head, head + full))]
      parts.append(
        whole.reshape(whole.shape[:axis] + (full // factor, factor) + whole.shape[axis + 1 :]).sum(
          axis=axis + 1, dtype=np.float32
        )
      )
    if head + full < n:
      parts.append(x[(*lead, slice(head + full, n))].sum(axis=axis, keepdims=True, dtype=np.float32))
    x = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=axis)
  return x


def block_mean(x, factor):
  """Float32 mean over non-overlapping factor^3 blocks; partial edge blocks average their own voxels."""
  sizes = [_cell_sizes(n, factor) for n in x.shape]
  return block_sums(x, (0,) * x.ndim, factor) / (sizes[0][:, None, None] * sizes[1][None, :, None] * sizes[2][None, None, :])


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


_HOLD_LOCK = threading.Lock()  # one whole read per held volume and process, whichever thread asks first


class HeldVolume(Volume):
  """A volume read whole into memory on its first read, then every box and slice is cut from
  that array: a training pair reads two slices, and a chunked store's per-read cost (about
  0.4 ms a slice here, `experiments/bench_train.py`) is most of that for small volumes. Pickles
  without the array (a grain worker process reads its own copy on first use)."""

  def __init__(self, inner):
    self.inner = inner
    self.source, self.name, self.format_name = inner.source, inner.name, inner.format_name
    self.shape, self.dtype, self.voxel_size_um = inner.shape, inner.dtype, inner.voxel_size_um
    self._handle = None

  @property
  def where(self):
    return self.inner.where

  def _get_handle(self):
    with _HOLD_LOCK:
      return super()._get_handle()

  def _open(self):
    return self.inner.read()

  def _read_box(self, handle, start, stop):
    return handle[tuple(slice(a, b) for a, b in zip(start, stop))]


def held(volumes, budget_bytes):
  """`volumes` with the first of them whose sizes add up to at most `budget_bytes` as HeldVolumes
  (read into memory on first use), the rest as they are (read from their files box by box)."""
  out, total = [], 0
  for v in volumes:
    total += v.nbytes
    out.append(HeldVolume(v) if total <= budget_bytes else v)
  return out
