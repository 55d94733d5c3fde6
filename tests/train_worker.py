"""Subprocess helper for train_test: trains the tiny rotation config and prints a parameter digest.

  python -m tests.train_worker WORKDIR CACHE_DIR STEPS
Honours SSL_CT_COORDINATOR / SSL_CT_NUM_PROCESSES / SSL_CT_PROCESS_ID (multi-process) and
XLA_FLAGS (forced host devices).
"""

import json
import sys

import jax
import numpy as np

from configs import rotation_xenopus
from ssl_ct import distributed, losses, tasks, train
from ssl_ct.data import prepare


def main(workdir, cache_dir, steps):
  distributed.initialize_from_env()
  config = rotation_xenopus.get_config("tiny")
  config.data.cache_dir = cache_dir
  config.train.steps = steps
  dataset = prepare.load_dataset(config.data, workdir, progress=False)
  task = tasks.get_task(config)
  loader = train.make_train_loader(config, task, dataset)
  state = train.train_loop(
    config,
    workdir,
    model=task.make_model(),
    loader=loader,
    example_batch=task.example_batch(config.data.batch_size),
    loss_fn=losses.get_loss("rotation_nll"),
  )
  leaves = [np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(train.host_params(state.params))]
  flat = np.concatenate(leaves)
  print(
    json.dumps(
      {"process": jax.process_index(), "devices": jax.device_count(), "step": int(state.step), "sample": flat[::97][:64].tolist()}
    )
  )


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
