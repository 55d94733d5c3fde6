"""Subprocess helper for train_test: trains a tiny config and prints a parameter digest.

  python -m tests.train_worker WORKDIR CACHE_DIR STEPS [rotation|sorting] [localize]
Honours SSL_CT_COORDINATOR / SSL_CT_NUM_PROCESSES / SSL_CT_PROCESS_ID (multi-process) and
XLA_FLAGS (forced host devices).
"""

import hashlib
import json
import sys

import jax
import numpy as np

from ssl_ct import distributed, losses, run_localization, tasks, train
from ssl_ct.configs import rotation_xenopus, sorting_medaka
from ssl_ct.data import prepare

_CONFIGS = {"rotation": (rotation_xenopus, "rotation_nll"), "sorting": (sorting_medaka, "pairwise_ranking")}


def main(workdir, cache_dir, steps, task_name="rotation", then=""):
  distributed.initialize_from_env()
  config_module, loss_name = _CONFIGS[task_name]
  config = config_module.get_config("tiny")
  config.data.cache_dir = cache_dir
  config.train.steps = steps
  if task_name == "sorting":
    # The ranking loss's gradient sums to exactly zero over a group for shift-like parameters
    # (the embedding bias); Adam scales their rounding noise up to a full step, so the
    # 1-vs-4-device comparison uses SGD, which keeps a zero gradient a zero update.
    config.opt.name = "sgd"
  dataset = prepare.load_dataset(config.data, workdir, progress=False)
  task = tasks.get_task(config)
  loader = train.make_train_loader(config, task, dataset)
  state = train.train_loop(
    config,
    workdir,
    model=task.make_model(),
    loader=loader,
    example_batch=task.example_batch(config.data.batch_size),
    loss_fn=losses.get_loss(loss_name),
  )
  if then == "localize":  # every process localizes its share of the volumes into one results folder
    run_localization.localize_workdir(config, workdir, dataset=dataset, params=train.host_params(state.params))
  leaves = [np.asarray(x) for x in jax.tree.leaves(train.host_params(state.params))]
  digest = hashlib.sha256(b"".join(x.tobytes() for x in leaves)).hexdigest()  # bit-exact parameters
  flat = np.concatenate([x.astype(np.float64).ravel() for x in leaves])
  print(
    json.dumps(
      {
        "process": jax.process_index(),
        "devices": jax.device_count(),
        "step": int(state.step),
        "sample": flat[::97][:64].tolist(),
        "sha256": digest,
      }
    )
  )


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2], int(sys.argv[3]), *sys.argv[4:])
