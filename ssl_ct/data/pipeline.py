"""grain pipelines over the volume layer.

A record is the address of one slice: (volume, axis, index), over every slice of every
volume along the configured axes. The sampler shuffles records (so a batch mixes volumes
and axes); random transforms draw the twin slice and the rotation from grain's per-record
generator, so the stream is deterministic in the seed and resumes exactly from a
checkpointed iterator state, with any number of workers.
"""

import dataclasses

import grain
import numpy as np
from absl import flags

from ssl_ct.data import fov, slices


@dataclasses.dataclass
class SliceAddresses(grain.sources.RandomAccessDataSource):
  """Record i -> {"volume", "axis", "index"} over the slices with a field-of-view window; reads no voxels."""

  valid_ranges: list  # per volume, per axis in `axes`: half-open (first, stop) slice indices
  axes: tuple = (0, 1, 2)

  def __post_init__(self):
    counts = [b - a for ranges in self.valid_ranges for a, b in ranges]
    self._starts = np.concatenate([[0], np.cumsum(counts)])

  def __len__(self):
    return int(self._starts[-1])

  def __getitem__(self, record):
    block = int(np.searchsorted(self._starts, record, side="right") - 1)
    volume, axis = divmod(block, len(self.axes))
    first = self.valid_ranges[volume][axis][0]
    return {"volume": volume, "axis": self.axes[axis], "index": int(first + record - self._starts[block])}


def make_slice_addresses(dataset, axes=(0, 1, 2)):
  ranges = [[fov.valid_indices(v.shape, dataset.fovs[v.name], axis) for axis in axes] for v in dataset.volumes]
  return SliceAddresses(ranges, axes)


class ReadRotationPair(grain.transforms.RandomMap):
  """Reads a reference slice and a twin within +-twin_range of it; rotates the twin by an angle class.

  Both slices also share a random base rotation, so interpolation blur is present at every
  angle class and cannot reveal the rotation; both are cut to the inscribed disk.
  """

  def __init__(self, dataset, *, size, twin_range, angles_deg):
    self.volumes = dataset.volumes
    self.ranges = [dataset.ranges[v.name] for v in self.volumes]
    self.fovs = [dataset.fovs[v.name] for v in self.volumes]
    self.size = size
    self.twin_range = twin_range
    self.angles_deg = tuple(angles_deg)

  def random_map(self, element, rng):
    vol_id, axis, index = element["volume"], element["axis"], element["index"]
    volume, volume_fov = self.volumes[vol_id], self.fovs[vol_id]
    first, stop = fov.valid_indices(volume.shape, volume_fov, axis)
    reach = max(1, int(round(self.twin_range * volume.shape[axis])))
    twin_index = int(np.clip(index + rng.integers(-reach, reach + 1), first, stop - 1))
    ref_windows = fov.slice_windows(volume.shape, volume_fov, axis, index)
    twin_windows = fov.slice_windows(volume.shape, volume_fov, axis, twin_index)
    pick = rng.uniform()  # the same relative position along the long side in both slices
    ref_window = ref_windows[min(int(pick * len(ref_windows)), len(ref_windows) - 1)]
    twin_window = twin_windows[min(int(pick * len(twin_windows)), len(twin_windows) - 1)]
    angle_class = int(rng.integers(len(self.angles_deg)))
    base = rng.uniform(0.0, 360.0)
    value_range = self.ranges[vol_id]
    ref = slices.model_input(volume.slice(axis, index), value_range, self.size, base, ref_window)
    twin = slices.model_input(
      volume.slice(axis, twin_index), value_range, self.size, base + self.angles_deg[angle_class], twin_window
    )
    return {"ref": ref, "twin": twin, "angle": np.int32(angle_class), "volume": np.int32(element["volume"])}


def make_rotation_loader(dataset, data_config, *, seed, batch_size, shard_options=None, num_epochs=None):
  """Infinite (by default) loader of rotation-pair batches of `batch_size` (this process's share)."""
  source = make_slice_addresses(dataset)
  shard_options = shard_options or grain.sharding.NoSharding()
  sampler = grain.samplers.IndexSampler(len(source), shard_options=shard_options, shuffle=True, num_epochs=num_epochs, seed=seed)
  read = ReadRotationPair(
    dataset, size=data_config.slice_size, twin_range=data_config.twin_range, angles_deg=data_config.angles_deg
  )
  if data_config.num_workers and not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()  # grain workers read absl flags; notebooks and tests never parse them
  return grain.DataLoader(
    data_source=source,
    sampler=sampler,
    operations=[read, grain.transforms.Batch(batch_size, drop_remainder=True)],
    worker_count=data_config.num_workers,
  )
