"""Metrics of a run, on process 0: <workdir>/metrics.jsonl (one JSON object per logged step) and the
same scalars, plus the localization figures as images, in TensorBoard event files under
<workdir>/tensorboard (`tensorboard --logdir W/tensorboard`)."""

import json
import os

import jax
from absl import logging

TENSORBOARD = "tensorboard"


def _summary_writer(workdir):
  import tensorboardX  # only process 0 of a run writes

  return tensorboardX.SummaryWriter(os.path.join(workdir, TENSORBOARD), flush_secs=30)


class MetricWriter:
  def __init__(self, workdir, filename="metrics.jsonl"):
    self.path = os.path.join(workdir, filename)
    self.workdir = workdir
    self.active = jax.process_index() == 0
    self._board = None

  def write(self, step, metrics):
    if not self.active:
      return
    record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    if self._board is None:
      self._board = _summary_writer(self.workdir)
    for key, value in record.items():
      if key != "step":
        self._board.add_scalar(("validation/" if key.startswith("val_") else "train/") + key, value, int(step))
    logging.info("step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))

  def close(self):
    if self._board is not None:
      self._board.close()
      self._board = None


def write_figures(workdir, step, pngs):
  """The PNG figures {tag: path} as TensorBoard images at `step` (process 0)."""
  if jax.process_index() != 0 or not pngs:
    return
  from matplotlib import image

  board = _summary_writer(workdir)
  try:
    for tag, path in sorted(pngs.items()):
      board.add_image(tag, image.imread(path)[..., :3], int(step), dataformats="HWC")
  finally:
    board.close()


def read_metrics(workdir, filename="metrics.jsonl"):
  """All records of a metrics file as a list of dicts (for notebooks and reports)."""
  path = os.path.join(workdir, filename)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
