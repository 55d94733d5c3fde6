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
    # Every volume is trained on (localization needs no held-out volumes): fixed pairs from them.
    data, train = self.config.data, self.config.train
    return pipeline.rotation_validation_batches(
      dataset, data, seed=self.config.seed, num_pairs=train.validation_pairs, batch_size=data.batch_size
    )

  def example_batch(self, batch_size):
    n = self.config.data.slice_size
    image = jax.ShapeDtypeStruct((batch_size, n, n, 1), np.float32)
    label = jax.ShapeDtypeStruct((batch_size,), np.int32)
    return {"ref": image, "twin": image, "angle": label, "volume": label, "axis": label}

  def distrust(self, pretext):
    """Why boxes from a model with these validation metrics cannot be trusted, or ""."""
    chance = 1 / len(self.config.data.angles_deg)
    accuracy = pretext.get("val_rot_acc")
    needed = self.config.localize.min_accuracy_over_chance * chance
    if accuracy is None:
      return "the checkpoint has no validation accuracy (train with train.eval_every)"
    if accuracy < needed:
      return (
        f"the pretext task did not learn (validation rotation accuracy {accuracy:.3f}, chance {chance:.3f}, needed {needed:.3f})"
      )
    return ""

  def make_localizer(self, model, params):
    angles = list(self.config.data.angles_deg)
    size, seed = self.config.data.slice_size, self.config.seed
    # A pair without sample gives the model nothing to read the angle from: p0 at chance.
    rule = {k: v for k, v in self.config.localize.items() if k != "min_accuracy_over_chance"}
    return localize_rotation.RotationLocalizer(
      model, params, zero_class=angles.index(0), size=size, seed=seed, floor=1 / len(angles), **rule
    )


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

  def distrust(self, pretext):
    """Why boxes from a model with these validation metrics cannot be trusted, or ""."""
    k = self.config.data.slices_per_batch
    chance = (k * k - 1) / (3 * k)  # mean displacement of a random order of k slices
    displacement = pretext.get("val_mean_displacement")
    allowed = self.config.localize.max_displacement_over_chance * chance
    if displacement is None:
      return "the checkpoint has no validation displacement (hold out volumes: data.validation_fraction > 0)"
    if displacement > allowed:
      return f"the pretext task did not learn (validation mean displacement {displacement:.2f} at k={k}, chance {chance:.2f}, allowed {allowed:.2f})"
    return ""

  def make_localizer(self, model, params):
    data = self.config.data
    rule = {k: v for k, v in self.config.localize.items() if k != "max_displacement_over_chance"}
    return localize_sorting.SortingLocalizer(
      model, params, size=data.slice_size, sort_axis=data.sort_axis, seed=self.config.seed, **rule
    )


TASKS = {"rotation": RotationTask, "sorting": SortingTask}


def get_task(config):
  if config.task not in TASKS:
    raise ValueError(f"unknown task {config.task!r}; valid tasks: {', '.join(TASKS)}")
  return TASKS[config.task](config)
