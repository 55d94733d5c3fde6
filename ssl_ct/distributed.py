"""Multi-host start-up: `jax.distributed.initialize` when the environment asks for it.

Set SSL_CT_COORDINATOR=host:port, SSL_CT_NUM_PROCESSES and SSL_CT_PROCESS_ID on every
process (on CPU hosts the collectives run over gloo). Without them the run is single-process.
"""

import os

import jax
from absl import logging

_initialized = False


def initialize_from_env():
  global _initialized
  coordinator = os.environ.get("SSL_CT_COORDINATOR")
  if not coordinator or _initialized:
    return
  if jax.config.jax_platforms in (None, "", "cpu") or os.environ.get("JAX_PLATFORMS", "") == "cpu":
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(
    coordinator_address=coordinator,
    num_processes=int(os.environ["SSL_CT_NUM_PROCESSES"]),
    process_id=int(os.environ["SSL_CT_PROCESS_ID"]),
  )
  _initialized = True
  logging.info("process %d of %d, %d devices in all", jax.process_index(), jax.process_count(), jax.device_count())
