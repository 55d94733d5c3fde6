"""End-to-end quality on a small held-out synthetic set: the trained rotation model must beat
the threshold baseline. The slowest test (a few minutes on 2 cores): smaller volumes or
slices leave the model at chance within a CI budget."""

import tempfile

from absl.testing import absltest

from configs import rotation_xenopus, sorting_medaka
from ssl_ct import metric_writer, train


def small_config():
  config = rotation_xenopus.get_config("demo")
  config.data.synthetic.seed = 3  # not the demo set, nor seeds 1-2 the curve rule was chosen on
  config.data.synthetic.num_volumes = 6
  config.data.slice_size = 48  # about half the demo's pixels: CI time
  config.train.steps = 1000
  config.train.log_every = 100
  config.train.checkpoint_every = 1000
  return config


class QualityTest(absltest.TestCase):
  def test_rotation_model_beats_threshold_baseline(self):
    summary = train.train_and_evaluate(small_config(), tempfile.mkdtemp())
    method, threshold = summary["rotation loss (certainty p0)"], summary["threshold baseline"]
    self.assertLess(method["relative_error_pct"], 0.5 * threshold["relative_error_pct"], summary)
    self.assertGreater(method["iou"], threshold["iou"] + 0.2, summary)
    self.assertGreater(method["recall"], 0.8, summary)


def small_sorting_config():
  config = sorting_medaka.get_config("demo")
  config.data.synthetic.seed = 1  # not the demo set
  config.data.synthetic.num_volumes = 12
  config.data.slice_size = 64  # 4x faster than the demo's 128 px
  config.train.steps = 600
  config.train.log_every = 100
  config.train.eval_every = 300
  config.train.checkpoint_every = 600
  return config


class SortingQualityTest(absltest.TestCase):
  def test_sorting_model_orders_held_out_slices(self):
    workdir = tempfile.mkdtemp()
    config = small_sorting_config()
    train.train_and_evaluate(config, workdir, mode="train")
    validation = [r["val_mean_displacement"] for r in metric_writer.read_metrics(workdir) if "val_mean_displacement" in r]
    k = config.data.slices_per_batch
    chance = (k * k - 1) / (3 * k)  # expected mean displacement of a random order of k slices
    # Held-out volumes: at most half the displacement of a random order (about 2 of 12 places).
    self.assertLess(validation[-1], 0.5 * chance, validation)


if __name__ == "__main__":
  absltest.main()
