"""Multi-process start-up: `jax.distributed.initialize` when the environment asks for it.

- Explicitly: SSL_CT_COORDINATOR=host:port, SSL_CT_NUM_PROCESSES and SSL_CT_PROCESS_ID on every
  process.
- Detected: an `srun` step of more than one task (SLURM), or an Open MPI `mpirun` of more than one
  process; jax reads the coordinator, process count and id from their variables. Set
  SSL_CT_DISTRIBUTED=0 to run every such process on its own.
Otherwise the run is single-process. On CPU hosts the collectives run over gloo.
"""

import os

from absl import logging

_initialized = False


def _int(environ, key, default=0):
  try:
    return int(environ.get(key, default))
  except ValueError:
    return default


def cluster_of(environ):
  """("explicit" | "slurm" | "ompi", process id, process count) of a multi-process launch, or None."""
  if environ.get("SSL_CT_COORDINATOR"):
    return "explicit", _int(environ, "SSL_CT_PROCESS_ID"), _int(environ, "SSL_CT_NUM_PROCESSES", 1)
  if environ.get("SSL_CT_DISTRIBUTED", "1") == "0":
    return None
  slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID", "SLURM_LOCALID")
  # Inside `srun` (SLURM_STEP_NUM_TASKS is the step's task count). A batch script alone also sees
  # SLURM_NTASKS of its allocation, but it is one process: waiting for the others would hang.
  if all(k in environ for k in slurm) and _int(environ, "SLURM_STEP_NUM_TASKS") > 1:
    if _int(environ, "SLURM_STEP_NUM_TASKS") == _int(environ, "SLURM_NTASKS"):
      return "slurm", _int(environ, "SLURM_PROCID"), _int(environ, "SLURM_NTASKS")
    logging.warning(
      "srun step of %s tasks in an allocation of %s: not one job (jax counts SLURM_NTASKS); each task runs alone",
      environ["SLURM_STEP_NUM_TASKS"],
      environ["SLURM_NTASKS"],
    )
  if "OMPI_MCA_orte_hnp_uri" in environ and _int(environ, "OMPI_COMM_WORLD_SIZE") > 1:
    return "ompi", _int(environ, "OMPI_COMM_WORLD_RANK"), _int(environ, "OMPI_COMM_WORLD_SIZE")
  return None


def process_id_from_env(environ=os.environ):
  """This process's index in the job (0 when single-process), known before jax starts."""
  cluster = cluster_of(environ)
  return cluster[1] if cluster else 0


def initialize_from_env():
  import jax  # here, not at the top: process_id_from_env runs before the command line's checks load JAX

  global _initialized
  cluster = cluster_of(os.environ)
  if cluster is None or _initialized:
    return
  if jax.config.jax_platforms in (None, "", "cpu") or os.environ.get("JAX_PLATFORMS", "") == "cpu":
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
  if cluster[0] == "explicit":
    jax.distributed.initialize(
      coordinator_address=os.environ["SSL_CT_COORDINATOR"],
      num_processes=int(os.environ["SSL_CT_NUM_PROCESSES"]),
      process_id=int(os.environ["SSL_CT_PROCESS_ID"]),
    )
  else:
    jax.distributed.initialize()  # jax's own SLURM / Open MPI detection
  _initialized = True
  logging.info(
    "%s: process %d of %d, %d devices in all", cluster[0], jax.process_index(), jax.process_count(), jax.device_count()
  )
