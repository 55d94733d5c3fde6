"""Appends metrics to <workdir>/metrics.jsonl (one JSON object per logged step) on process 0."""

import json
import os

import jax
from absl import logging


class MetricWriter:
  def __init__(self, workdir, filename="metrics.jsonl"):
    self.path = os.path.join(workdir, filename)
    self.active = jax.process_index() == 0

  def write(self, step, metrics):
    if not self.active:
      return
    record = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
    with open(self.path, "a") as f:
      f.write(json.dumps(record) + "\n")
    logging.info("step %d: %s", step, ", ".join(f"{k}={v:.4g}" for k, v in metrics.items()))


def read_metrics(workdir, filename="metrics.jsonl"):
  """All records of a metrics file as a list of dicts (for notebooks and reports)."""
  path = os.path.join(workdir, filename)
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]
