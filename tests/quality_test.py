"""End-to-end quality on a small held-out synthetic set: the trained rotation model must beat
the threshold baseline. The slowest test (a few minutes on 2 cores): smaller volumes or
slices leave the model at chance within a CI budget."""

import tempfile

from absl.testing import absltest

from configs import rotation_xenopus
from ssl_ct import train


def small_config():
  config = rotation_xenopus.get_config("demo")
  config.data.synthetic.seed = 1  # not the demo set the curve rule was looked at on
  config.data.synthetic.num_volumes = 6
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


if __name__ == "__main__":
  absltest.main()
