"""Per-task glue: which model, data loader, example batch and localizer a config's task uses."""

import dataclasses

import jax
import numpy as np

from ssl_ct import localize_rotation, localize_sorting
from ssl_ct.data import pipeline
from ssl_ct.models import heads


@dataclasses.dataclass
class RotationTask:
  """Siamese rotation loss; localization by the certainty p0 of unrotated pairs (paper 2.1, 2.2)."""

  config: object
  units = "pairs"

  def make_model(self):
    return heads.make_model(self.config.model, num_classes=len(self.config.data.angles_deg))

  def make_loader(self, dataset, *, seed, batch_size, shard_options=None):
    return pipeline.make_rotation_loader(dataset, self.config.data, seed=seed, batch_size=batch_size, shard_options=shard_options)

  def validation_batches(self, dataset):
    del dataset  # every volume is trained on: the pretext task needs no held-out volumes to localize
    return []

  def example_batch(self, batch_size):
    n = self.config.data.slice_size
    image = jax.ShapeDtypeStruct((batch_size, n, n, 1), np.float32)
    label = jax.ShapeDtypeStruct((batch_size,), np.int32)
    return {"ref": image, "twin": image, "angle": label, "volume": label}

  def make_localizer(self, model, params):
    zero_class = list(self.config.data.angles_deg).index(0)
    size, seed = self.config.data.slice_size, self.config.seed
    return localize_rotation.RotationLocalizer(model, params, zero_class=zero_class, size=size, seed=seed, **self.config.localize)


@dataclasses.dataclass
class SortingTask:
  """Pairwise ranking of k slices from one volume; localization by MC-dropout variance (paper 2.1, 2.2)."""

  config: object
  units = "slices"

  def make_model(self):
    return heads.make_model(self.config.model)

  def split(self, dataset):
    """(train ids, validation ids) of the dataset's volumes."""
    names = [v.name for v in dataset.volumes]
    return pipeline.split_volumes(names, self.config.data.validation_fraction, self.config.seed)

  def make_loader(self, dataset, *, seed, batch_size, shard_options=None):
    train_ids, _ = self.split(dataset)
    return pipeline.make_sorting_loader(
      dataset, self.config.data, train_ids, seed=seed, batch_size=batch_size, shard_options=shard_options
    )

  def validation_batches(self, dataset):
    _, val_ids = self.split(dataset)
    num = self.config.train.validation_groups
    return pipeline.sorting_validation_batches(dataset, self.config.data, val_ids, seed=self.config.seed, num_groups=num)

  def example_batch(self, batch_size):
    n = self.config.data.slice_size
    label = jax.ShapeDtypeStruct((batch_size,), np.int32)
    return {
      "image": jax.ShapeDtypeStruct((batch_size, n, n, 1), np.float32),
      "position": jax.ShapeDtypeStruct((batch_size,), np.float32),
      "group": label,
      "volume": label,
    }

  def make_localizer(self, model, params):
    data = self.config.data
    return localize_sorting.SortingLocalizer(
      model, params, size=data.slice_size, sort_axis=data.sort_axis, seed=self.config.seed, **self.config.localize
    )


TASKS = {"rotation": RotationTask, "sorting": SortingTask}


def get_task(config):
  if config.task not in TASKS:
    raise ValueError(f"unknown task {config.task!r}; valid tasks: {', '.join(TASKS)}")
  return TASKS[config.task](config)
