"""grain pipelines over the volume layer.

A record is the address of one slice: (volume, axis, index), over every slice of every
volume along the configured axes. The sampler shuffles records (so a batch mixes volumes
and axes); random transforms draw the twin slice and the rotation from grain's per-record
generator, so the stream is deterministic in the seed and resumes exactly from a
checkpointed iterator state, with any number of workers.
"""

import dataclasses
import os

import grain
import numpy as np
import scipy.stats
from absl import flags

from ssl_ct.data import augment, fov, slices
from ssl_ct.errors import InputError


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
    return {
      "ref": ref,
      "twin": twin,
      "angle": np.int32(angle_class),
      "volume": np.int32(element["volume"]),
      "axis": np.int32(axis),
    }


# grain's defaults (16 threads, 500 records ahead) cost the demo pipeline a fifth of its rate on 2
# cores: each record returned checks the readiness of the whole buffer, and the threads contend
# for the GIL. A couple of batches ahead, two threads per core: 480-520 -> 630-650 pairs/s
# (README, Rotation loss: measured results).
_READ_OPTIONS = grain.ReadOptions(num_threads=min(16, 2 * (os.cpu_count() or 1)), prefetch_buffer_size=64)


def _allow_workers(data_config):
  if data_config.num_workers and not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()  # grain workers read absl flags; notebooks and tests never parse them


def shuffled_loader(source, operations, data_config, *, seed, shard_options=None, num_epochs=None):
  """A grain DataLoader drawing `source`'s records shuffled and seeded (infinite by default)
  through `operations`, on `data_config.num_workers` worker processes: every task's loader."""
  shard_options = shard_options or grain.sharding.NoSharding()
  sampler = grain.samplers.IndexSampler(len(source), shard_options=shard_options, shuffle=True, num_epochs=num_epochs, seed=seed)
  _allow_workers(data_config)
  return grain.DataLoader(
    data_source=source, sampler=sampler, operations=operations, worker_count=data_config.num_workers, read_options=_READ_OPTIONS
  )


def make_rotation_loader(dataset, data_config, *, seed, batch_size, shard_options=None, num_epochs=None):
  """Infinite (by default) loader of rotation-pair batches of `batch_size` (this process's share)."""
  read = ReadRotationPair(
    dataset, size=data_config.slice_size, twin_range=data_config.twin_range, angles_deg=data_config.angles_deg
  )
  operations = [read, grain.transforms.Batch(batch_size, drop_remainder=True)]
  return shuffled_loader(
    make_slice_addresses(dataset), operations, data_config, seed=seed, shard_options=shard_options, num_epochs=num_epochs
  )


def rotation_validation_batches(dataset, data_config, *, seed, num_pairs, batch_size):
  """Fixed batches of pairs (the same draws every evaluation), balanced over volumes and axes.

  The rotation task trains on every volume, so these come from the training volumes: they
  measure how well the pretext task was learned (per axis), not generalization.
  """
  read = ReadRotationPair(
    dataset, size=data_config.slice_size, twin_range=data_config.twin_range, angles_deg=data_config.angles_deg
  )
  pairs = [read.random_map(element, rng) for element, rng in rotation_validation_draws(dataset, seed, num_pairs, batch_size)]
  stacked = [pairs[i : i + batch_size] for i in range(0, len(pairs), batch_size)]
  return [{key: np.stack([p[key] for p in batch]) for key in batch[0]} for batch in stacked]


def rotation_validation_draws(dataset, seed, num_pairs, batch_size):
  """[(element, rng)] behind rotation_validation_batches, in its order: element = {"volume", "axis",
  "index"} of the reference slice, rng the generator the pair is then drawn with."""
  source = make_slice_addresses(dataset)
  draws = []
  for i in range(num_pairs // batch_size * batch_size):
    rng = np.random.default_rng([seed, 13, i])
    volume, axis = (i // 3) % len(dataset.volumes), i % 3
    first, stop = source.valid_ranges[volume][axis]
    draws.append(({"volume": volume, "axis": axis, "index": int(rng.integers(first, stop))}, rng))
  return draws


class ReadTwoViews(grain.transforms.RandomMap):
  """Record -> two augmented views of one slice, {"view1", "view2"} (SimCLR, MoCo v3).

  Both views start from the same field-of-view window under one random base rotation; each
  then gets its own augmentation of `augment_strength` (ssl_ct/data/augment.py).
  """

  def __init__(self, dataset, data_config):
    self.volumes = dataset.volumes
    self.ranges = [dataset.ranges[v.name] for v in self.volumes]
    self.fovs = [dataset.fovs[v.name] for v in self.volumes]
    self.size, self.strength = data_config.slice_size, data_config.augment_strength

  def random_map(self, element, rng):
    vol_id, axis, index = element["volume"], element["axis"], element["index"]
    volume = self.volumes[vol_id]
    windows = fov.slice_windows(volume.shape, self.fovs[vol_id], axis, index)
    window = windows[int(rng.integers(len(windows)))]
    base = slices.model_input(volume.slice(axis, index), self.ranges[vol_id], self.size, rng.uniform(0.0, 360.0), window)
    views = [augment.augment(base, rng, self.strength) for _ in range(2)]
    return {"view1": views[0], "view2": views[1], "volume": np.int32(vol_id)}


def make_contrastive_loader(dataset, data_config, *, seed, batch_size, shard_options=None, num_epochs=None):
  """Infinite (by default) loader of batches of two-view pairs from every slice of every volume."""
  operations = [ReadTwoViews(dataset, data_config), grain.transforms.Batch(batch_size, drop_remainder=True)]
  return shuffled_loader(
    make_slice_addresses(dataset), operations, data_config, seed=seed, shard_options=shard_options, num_epochs=num_epochs
  )


def sort_axis(shape, configured):
  """The axis slices are sorted along: the configured one, or the longest (-1)."""
  return int(np.argmax(shape)) if configured == -1 else int(configured)


def split_volumes(names, validation_fraction, seed):
  """(train ids, validation ids): a seeded random split of the volumes (paper 3:1), both sorted."""
  order = np.random.default_rng([seed, 7]).permutation(len(names))
  held_out = int(round(validation_fraction * len(names))) if len(names) > 1 else 0
  return sorted(int(i) for i in order[held_out:]), sorted(int(i) for i in order[:held_out])


def draw_positions(rng, first, stop, k, distribution, beta=4.0, scale=0.35):
  """k distinct sorted slice indices in [first, stop): uniform, or generalized-Gaussian around the middle.

  A generalized Gaussian (shape `beta`, scale a fraction of the range) draws fewer of the
  empty slices near the ends; draws outside the range are redrawn.
  """
  length = stop - first
  if length < k:
    raise InputError(f"{length} valid slices cannot give {k} distinct ones; lower data.slices_per_batch")
  if distribution == "uniform":
    return np.sort(first + rng.choice(length, size=k, replace=False))
  chosen = set()
  middle = first + (length - 1) / 2
  while len(chosen) < k:
    draws = middle + scipy.stats.gennorm.rvs(beta, scale=scale * length, size=4 * k, random_state=rng)
    for index in np.round(draws).astype(int):
      if first <= index < stop and len(chosen) < k:
        chosen.add(int(index))
  return np.array(sorted(chosen))


class ReadSortingGroup(grain.transforms.RandomMap):
  """Record -> k slices of ONE volume along its sort axis, with their indices as positions.

  Each slice gets its own random rotation about the sort axis (samples lie in random
  orientations; the order must come from anatomy, not from how the sample was mounted)
  when `rotate` is set; all are cut to the inscribed disk.
  """

  def __init__(self, dataset, volume_ids, data_config):
    self.volumes = [dataset.volumes[i] for i in volume_ids]
    self.volume_ids = list(volume_ids)
    self.ranges = [dataset.ranges[v.name] for v in self.volumes]
    self.fovs = [dataset.fovs[v.name] for v in self.volumes]
    self.config = data_config

  def random_map(self, element, rng):
    c = self.config
    slot = int(element["group"]) % len(self.volumes)
    volume, volume_fov = self.volumes[slot], self.fovs[slot]
    axis = sort_axis(volume.shape, c.sort_axis)
    first, stop = fov.valid_indices(volume.shape, volume_fov, axis)
    positions = draw_positions(
      rng, first, stop, c.slices_per_batch, c.index_distribution, beta=c.gennorm_beta, scale=c.gennorm_scale
    )
    images = []
    for index in positions:
      windows = fov.slice_windows(volume.shape, volume_fov, axis, int(index))
      window = windows[int(rng.integers(len(windows)))]
      angle = rng.uniform(0.0, 360.0) if c.rotate else 0.0
      image = slices.model_input(volume.slice(axis, int(index)), self.ranges[slot], c.slice_size, angle, window)
      images.append(augment.augment(image, rng, c.augment_strength))  # strength 0: no draw, the same stream
    k = len(positions)
    return {
      "image": np.stack(images),
      "position": positions.astype(np.float32),
      "group": np.full(k, element["group"], np.int32),
      "volume": np.full(k, self.volume_ids[slot], np.int32),
    }


class FlattenGroups(grain.transforms.Map):
  """(G, k, ...) batches of groups -> (G*k, ...) batches of slices."""

  def map(self, element):
    return {key: value.reshape(-1, *value.shape[2:]) for key, value in element.items()}


@dataclasses.dataclass
class GroupRecords(grain.sources.RandomAccessDataSource):
  """Record i -> {"group": i}; ReadSortingGroup turns it into the k slices of volume i mod n."""

  size: int

  def __len__(self):
    return self.size

  def __getitem__(self, record):
    return {"group": np.int32(record)}


def _groups_in(batch_size, k):
  if batch_size % k:
    raise InputError(f"batch size {batch_size} is not a whole number of groups of k={k} slices; set data.groups_per_batch")
  return batch_size // k


def make_sorting_loader(dataset, data_config, volume_ids, *, seed, batch_size, shard_options=None, num_epochs=None):
  """Infinite (by default) loader of batches of `batch_size` slices: groups of k from one volume each."""
  k = data_config.slices_per_batch
  groups = _groups_in(batch_size, k)
  if not volume_ids:
    raise InputError("no training volumes are left after the validation split; lower data.validation_fraction or add volumes")
  source = GroupRecords(len(volume_ids) * max(1, data_config.groups_per_epoch_per_volume))
  operations = [
    ReadSortingGroup(dataset, volume_ids, data_config),
    grain.transforms.Batch(groups, drop_remainder=True),
    FlattenGroups(),
  ]
  return shuffled_loader(source, operations, data_config, seed=seed, shard_options=shard_options, num_epochs=num_epochs)


def sorting_validation_batches(dataset, data_config, volume_ids, *, seed, num_groups):
  """A fixed list of single-group batches from the held-out volumes (same draws every evaluation)."""
  if not volume_ids:
    return []
  read = ReadSortingGroup(dataset, volume_ids, data_config)
  batches = []
  for group in range(num_groups):
    rng = np.random.default_rng([seed, 11, group])
    batches.append(read.random_map({"group": np.int32(group)}, rng))
  return batches
