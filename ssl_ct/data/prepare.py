"""From `config.data` to opened volumes and their ground truth (if any)."""

import dataclasses
import hashlib
import logging
import math
import os

import numpy as np

from ssl_ct.data import formats, fov, intensity, sources, synthetic, truth, zarr_writer
from ssl_ct.data.volume import held


@dataclasses.dataclass
class Dataset:
  volumes: list  # ssl_ct.data.volume.Volume per input volume, as analysed (downscaled if asked)
  ranges: dict  # name -> (low, high) intensity range for normalization
  fovs: dict  # name -> fov.FieldOfView of the reconstruction, or None
  truth: dict  # name -> truth entry (see ssl_ct/data/truth.py); {} without ground truth
  root: str  # folder the data came from ("" for a list of specs)
  factors: dict = dataclasses.field(default_factory=dict)  # name -> downscale factor (1: as stored)
  input_shapes: dict = dataclasses.field(default_factory=dict)  # name -> shape of the input volume
  inputs: list = dataclasses.field(default_factory=list)  # the input volumes as opened (no output may touch them)

  def factor(self, name):
    return self.factors.get(name, 1)

  def voxel_size(self, name):
    """Micrometres per voxel (z, y, x) of the input volume, or None."""
    return next((v.voxel_size_um for v in self.inputs if v.name == name), None)

  def input_shape(self, name):
    return self.input_shapes.get(name) or next(v.shape for v in self.volumes if v.name == name)


def _source_stamp(volume):
  """Changes when the input volume changes (path, shape, dtype, modification time)."""
  path = formats.local_path(volume)
  mtime = os.path.getmtime(path) if path else 0
  return hashlib.sha1(f"{volume.source}|{volume.shape}|{volume.dtype}|{mtime}".encode()).hexdigest()[:8]


# Formats whose y and x slices read far more than the slice: every TIFF page, every file of a
# TIFF folder, every compressed HDF5 chunk the slice crosses (h5py caches 1 MiB of them).
_SLOW_SLICING = ("tiff", "tiff-stack", "hdf5")
_LARGE_NPY_BYTES = 2**30  # a memory-mapped .npy slices fast along y and x while the page cache holds it


def needs_analysis_copy(volume, mode):
  """Whether to analyse a chunked zarr copy rather than the input itself (data.analysis_copy)."""
  if mode == "never":
    return False
  if mode == "always":
    return True
  return volume.format_name in _SLOW_SLICING or (volume.format_name == "npy" and volume.nbytes > _LARGE_NPY_BYTES)


def downscaled(volume, downscale_to, cache_dir, progress=True, analysis_copy="never"):
  """(volume to analyse, factor): a block-mean copy cached as zarr when the volume is larger than
  `downscale_to`; else, when the input's layout makes slices along y and x slow, a chunked zarr
  copy at full resolution (`analysis_copy`: auto | always | never), written in one pass."""
  if not downscale_to or max(volume.shape) <= downscale_to:
    if not needs_analysis_copy(volume, analysis_copy):
      return volume, 1
    path = os.path.join(cache_dir, f"{volume.name}_copy_{_source_stamp(volume)}.zarr")
    if not os.path.exists(path):
      logging.info("copying %s (%s) into %s: slices along y and x read from chunked zarr", volume.name, volume.format_name, path)
      zarr_writer.write_zarr3(volume, path, attributes={"ssl_ct": {"source": volume.source, "factor": 1}}, progress=progress)
    return formats.open_volume(path, name=volume.name), 1
  factor = math.ceil(max(volume.shape) / downscale_to)
  path = os.path.join(cache_dir, f"{volume.name}_x{factor}_{_source_stamp(volume)}.zarr")
  if not os.path.exists(path):
    logging.info("downscaling %s by %d into %s", volume.name, factor, path)
    shape = tuple(-(-n // factor) for n in volume.shape)
    zarr_writer.write_slabs(
      volume.downsample_slabs(factor, progress=progress),
      path,
      shape,
      np.float32,
      attributes={"ssl_ct": {"source": volume.source, "factor": factor}},
    )
  return formats.open_volume(path, name=volume.name), factor


def data_root(data_config, workdir, progress=True):
  """The folder or spec to read: the user's path, or the cached synthetic set."""
  if data_config.path:
    return data_config.path
  syn = data_config.synthetic
  cache_dir = data_config.cache_dir or os.path.join(workdir, "data")
  return synthetic.cached_set(
    cache_dir,
    kind=syn.kind,
    num_volumes=syn.num_volumes,
    shape=tuple(syn.shape),
    seed=syn.seed,
    z_jitter=syn.z_jitter,
    dtype=syn.dtype,
    progress=progress,
  )


def _truth_for(root, volumes):
  """Ground truth from a truth.json in the data folder, checked against the volume shapes."""
  folder = root if isinstance(root, str) and os.path.isdir(root) else ""
  entries = truth.read_truth(folder) if folder else {}
  by_name = {v.name: v for v in volumes}
  checked = {}
  for name, entry in entries.items():
    if name in by_name:
      box = entry["box"] and truth.check_box(entry["box"], by_name[name].shape, f"truth.json[{name!r}]")
      checked[name] = {**entry, "box": box}
  return checked, folder


def load_dataset(data_config, workdir, progress=True):
  """Opens every volume, checks it (NaN, constant, shape), finds its field of view and intensity range."""
  root = data_root(data_config, workdir, progress)
  inputs = sources.open_volumes(root, fill_missing=data_config.fill_missing, voxel_size_um=data_config.get("voxel_size_um"))
  volumes, factors = [], {}
  for v in inputs:
    cache = os.path.join(workdir, "cache")
    analysed, factors[v.name] = downscaled(v, data_config.downscale_to, cache, progress, data_config.analysis_copy)
    volumes.append(analysed)
  volumes = held(volumes, data_config.get("in_memory_mb", 0) * 2**20)
  ranges, fovs = {}, {}
  for v in volumes:
    fovs[v.name] = fov.estimate_fov(v)
    percentiles = {"low_percentile": data_config.low_percentile, "high_percentile": data_config.high_percentile}
    ranges[v.name] = intensity.intensity_range(v, fov=fovs[v.name], **percentiles)
  gt, folder = _truth_for(root, inputs)
  for v in volumes:
    fov_text = f"field of view r={fovs[v.name].radius:.0f}" if fovs[v.name] else "no field of view"
    has_truth = " (truth)" if v.name in gt else ""
    size = inputs[volumes.index(v)].voxel_size_um
    logging.info(
      "%-24s %-11s %-16s %-8s range [%.4g, %.4g] %s, voxel %s%s",
      v.name,
      v.format_name,
      v.shape,
      v.dtype,
      *ranges[v.name],
      fov_text,
      " x ".join(f"{s:.4g}" for s in size) + " um" if size else "size unknown",
      has_truth,
    )
  shapes = {v.name: v.shape for v in inputs}
  return Dataset(
    volumes=volumes, ranges=ranges, fovs=fovs, truth=gt, root=folder, factors=factors, input_shapes=shapes, inputs=inputs
  )
