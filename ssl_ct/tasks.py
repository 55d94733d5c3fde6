"""Per-task glue: which model, data loader, example batch and localizer a config's task uses."""

import dataclasses

import jax
import numpy as np

from ssl_ct import curves, localize, localize_rotation
from ssl_ct.data import pipeline
from ssl_ct.models import heads


@dataclasses.dataclass
class RotationTask:
  """Siamese rotation loss; localization by the certainty p0 of unrotated pairs (paper 2.1, 2.2)."""

  config: object
  units = "pairs"
  method_name = "rotation loss (certainty p0)"

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
    """(volume, fov, value_range) -> (box or None, {"curves", "smoothed"}) in analysis-grid voxels."""
    loc = self.config.localize
    p0_fn = localize_rotation.make_p0_fn(model, zero_class=list(self.config.data.angles_deg).index(0))
    rule = {
      "smooth": loc.smooth,
      "level": loc.level,
      "cut_noise_factor": loc.cut_noise_factor,
      "min_contrast": loc.min_contrast,
      "max_gap": loc.max_gap,
    }

    def localize(volume, volume_fov, value_range):
      by_axis = localize_rotation.certainty_curves(
        volume,
        volume_fov,
        value_range,
        p0_fn=p0_fn,
        params=params,
        size=self.config.data.slice_size,
        offsets=tuple(loc.twin_offsets),
        batch_size=loc.batch_size,
        seed=self.config.seed,
      )
      smoothed = {axis: curves.smooth_curve(c, loc.smooth) for axis, c in by_axis.items()}
      return localize_rotation.box_from_curves(by_axis, **rule), {"curves": by_axis, "smoothed": smoothed}

    return localize


@dataclasses.dataclass
class SortingTask:
  """Pairwise ranking of k slices from one volume; localization by MC-dropout variance (paper 2.1, 2.2)."""

  config: object
  units = "slices"
  method_name = "sorting loss (MC dropout)"

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
    """(volume, fov, value_range) -> (box or None, extras) in analysis-grid voxels."""
    loc = self.config.localize
    variance_fn = localize.make_variance_fn(model, loc.num_samples, loc.variance_of)
    example = {"image": jax.ShapeDtypeStruct((1, self.config.data.slice_size, self.config.data.slice_size, 1), np.float32)}
    feature_map = jax.eval_shape(lambda p, b: model.apply({"params": p}, b)[1]["feature_map"], params, example)

    def localize_one(volume, volume_fov, value_range):
      return localize.localize_volume(
        volume,
        volume_fov,
        value_range,
        variance_fn=variance_fn,
        params=params,
        size=self.config.data.slice_size,
        axis=pipeline.sort_axis(volume.shape, self.config.data.sort_axis),
        grid_side=feature_map.shape[1],
        top_percent=loc.top_percent,
        smooth=loc.smooth,
        max_gap=loc.max_gap,
        extent=loc.extent,
        flat_fraction=loc.flat_fraction,
        cut_noise_factor=loc.cut_noise_factor,
        batch_size=loc.batch_size,
        seed=self.config.seed,
      )

    return localize_one


TASKS = {"rotation": RotationTask, "sorting": SortingTask}


def get_task(config):
  if config.task not in TASKS:
    raise ValueError(f"unknown task {config.task!r}; valid tasks: {', '.join(TASKS)}")
  return TASKS[config.task](config)
