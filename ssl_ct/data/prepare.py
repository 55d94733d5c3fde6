"""From `config.data` to opened volumes and their ground truth (if any)."""

import dataclasses
import logging
import os

from ssl_ct.data import fov, intensity, sources, synthetic, truth


@dataclasses.dataclass
class Dataset:
  volumes: list  # ssl_ct.data.volume.Volume, one per input volume
  ranges: dict  # name -> (low, high) intensity range for normalization
  fovs: dict  # name -> fov.FieldOfView of the reconstruction, or None
  truth: dict  # name -> truth entry (see ssl_ct/data/truth.py); {} without ground truth
  root: str  # folder the data came from ("" for a list of specs)


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
  volumes = sources.open_volumes(root)
  ranges, fovs = {}, {}
  for v in volumes:
    fovs[v.name] = fov.estimate_fov(v)
    fill = fovs[v.name].fill if fovs[v.name] else None
    percentiles = {"low_percentile": data_config.low_percentile, "high_percentile": data_config.high_percentile}
    ranges[v.name] = intensity.intensity_range(v, fill=fill, **percentiles)
  gt, folder = _truth_for(root, volumes)
  for v in volumes:
    fov_text = f"field of view r={fovs[v.name].radius:.0f}" if fovs[v.name] else "no field of view"
    has_truth = " (truth)" if v.name in gt else ""
    logging.info(
      "%-24s %-11s %-16s %-8s range [%.4g, %.4g] %s%s",
      v.name,
      v.format_name,
      v.shape,
      v.dtype,
      *ranges[v.name],
      fov_text,
      has_truth,
    )
  return Dataset(volumes=volumes, ranges=ranges, fovs=fovs, truth=gt, root=folder)
