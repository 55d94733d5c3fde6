"""End-to-end quality on small synthetic sets the demos never see: each trained model must
beat the threshold baseline. The slowest tests (a few minutes on 2 cores): smaller volumes or
slices leave the models at chance within a CI budget."""

import tempfile

from absl.testing import absltest

from ssl_ct import metric_writer, run_localization, train
from ssl_ct.configs import rotation_xenopus, sorting_medaka


def _train_and_localize(config, workdir):
  state = train.train_and_evaluate(config, workdir)
  return run_localization.localize_workdir(config, workdir, params=train.host_params(state.params))


def small_config():
  config = rotation_xenopus.get_config("demo")
  config.data.synthetic.seed = 3  # not the demo set, nor seeds 1-2 the curve rule was chosen on
  config.data.synthetic.num_volumes = 6
  config.data.slice_size = 48  # about half the demo's pixels: CI time
  # Half the demo's width, twice as fast: on seeds 21 and 22 (chosen there, not on seed 3) it
  # learned the pretext as well as width 16 (validation accuracy 0.378 / 0.444 against 0.382 /
  # 0.462 at step 1000) and boxed within 2.98% / 0.62% of the side (threshold: 20.0% / 17.1%).
  config.model.width = 8
  # 1000 steps: at 500 the validation accuracy sits at the trust gate (2x chance, 0.286), above it
  # on one processor and below on another (0.2535 on an AMD EPYC: every box null, the test fails);
  # at 1000 it is 0.378 there.
  config.train.steps = 1000
  config.train.log_every = 100
  config.train.checkpoint_every = 1000
  return config


class QualityTest(absltest.TestCase):
  def test_rotation_model_beats_threshold_baseline(self):
    summary = _train_and_localize(small_config(), tempfile.mkdtemp())
    method, threshold = summary["rotation loss (certainty p0)"], summary["threshold baseline"]
    self.assertLess(method["relative_error_pct"], 0.5 * threshold["relative_error_pct"], summary)
    self.assertGreater(method["iou"], threshold["iou"] + 0.2, summary)
    self.assertGreater(method["recall"], 0.8, summary)


def small_sorting_config():
  config = sorting_medaka.get_config("demo")
  config.data.synthetic.seed = 1  # not the demo set, nor seeds 4-5 the box rule was chosen on
  config.data.synthetic.num_volumes = 12
  config.train.steps = 600
  config.train.log_every = 100
  config.train.eval_every = 300
  config.train.checkpoint_every = 600
  return config


class SortingQualityTest(absltest.TestCase):
  def test_sorting_model_orders_held_out_slices_and_finds_the_fish(self):
    workdir = tempfile.mkdtemp()
    config = small_sorting_config()
    summary = _train_and_localize(config, workdir)
    validation = [r["val_mean_displacement"] for r in metric_writer.read_metrics(workdir) if "val_mean_displacement" in r]
    k = config.data.slices_per_batch
    chance = (k * k - 1) / (3 * k)  # expected mean displacement of a random order of k slices
    # Held-out volumes: at most half the displacement of a random order (about 2 of 12 places).
    self.assertLess(validation[-1], 0.5 * chance, validation)
    # The boxes beat the threshold baseline, which boxes the bright tube (measured: MAE 9.4 vs
    # 17.3 voxels, IoU 0.34 vs 0.23 with 9 training volumes and 600 steps).
    method, threshold = summary["sorting loss (MC dropout)"], summary["threshold baseline"]
    self.assertLess(method["mae_voxels"], 0.75 * threshold["mae_voxels"], summary)
    self.assertGreater(method["iou"], threshold["iou"] + 0.05, summary)


if __name__ == "__main__":
  absltest.main()
