"""orbax checkpoints of the train state together with the grain iterator state.

One composite checkpoint per saved step in <workdir>/checkpoints: `state` (the TrainState
pytree) and `data` (where the data iterator stands), saved asynchronously. With
`train.keep_best`, <workdir>/best holds the parameters of the step with the best validation
pretext metric so far (one step, `state` = {"params"} only). orbax writes
each step to a temporary folder and renames it when complete, so a run killed mid-save
leaves only complete steps behind and resumes from the latest of them.
"""

import os
import sys
import tempfile
import time

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import logging

from ssl_ct.errors import InputError


def make_manager(workdir, max_to_keep=3):
  options = ocp.CheckpointManagerOptions(
    save_interval_steps=1,  # the loop decides when to save (periodic and at the end)
    max_to_keep=max_to_keep,
    enable_async_checkpointing=True,
    cleanup_tmp_directories=True,
  )
  return ocp.CheckpointManager(
    os.path.abspath(os.path.join(workdir, "checkpoints")), options=options, item_names=("state", "data")
  )


BEST = "best"  # <workdir>/best: the best validation step's parameters


def make_best_manager(workdir):
  options = ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=True, cleanup_tmp_directories=True)
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, BEST)), options=options, item_names=("state",))


def drop_best_after(manager, step):
  """Removes best steps later than `step`: a run resumed from `step` re-decides them (a killed run's
  later best could otherwise outlive a better one found on resume, max_to_keep being 1)."""
  for later in [s for s in manager.all_steps() if s > step]:
    manager.delete(later)


def save_best(manager, step, params):
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave({"params": params})), force=True)


def best_step(workdir):
  """The step whose parameters <workdir>/best holds, or None."""
  if not os.path.isdir(os.path.join(workdir, BEST)):
    return None
  manager = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, BEST)), item_names=("state",))
  try:
    return manager.latest_step()
  finally:
    manager.close()


def save(manager, step, state, iterator):
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(iterator)))


def restore_latest(manager, state, iterator):
  """(state, step) from the latest complete checkpoint, or the inputs and step 0 when there is none.

  `state` is the restore target: a state, or its ShapeDtypeStructs (with their shardings).
  """
  step = manager.latest_step()
  if step is None:
    return state, 0
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), data=grain.checkpoint.CheckpointRestore(iterator))
  restored = _restore(manager, step, args)
  logging.info("resumed from step %d in %s", step, manager.directory)
  return restored["state"], step


def _restore(manager, step, args):
  """manager.restore, with a damaged checkpoint (truncated, edited, from another model) as one InputError."""
  with tempfile.TemporaryFile() as captured:
    saved_fd = os.dup(2)
    sys.stderr.flush()
    os.dup2(captured.fileno(), 2)  # see below: only replayed when the restore succeeds
    try:
      restored = manager.restore(step, args=args)
      error = None
    except Exception as e:  # orbax, tensorstore and asyncio fail in many ways on damaged files
      error = e
      # Reads still in flight complete into orbax's closed event loop and print tracebacks from
      # other threads: let them drain into the capture, not into the user's terminal.
      time.sleep(1.0)
    finally:
      sys.stderr.flush()
      os.dup2(saved_fd, 2)
      os.close(saved_fd)
    if error is None:
      captured.seek(0)
      sys.stderr.write(captured.read().decode(errors="replace"))
      return restored
  folder = os.path.join(str(manager.directory), str(step))
  reason = " ".join(str(error).split())[:160]
  raise InputError(
    f"checkpoint {folder} cannot be restored ({type(error).__name__}: {reason}); it is damaged or from another model: "
    "delete that folder to resume from the previous checkpoint, or use a new --workdir"
  ) from error


def restore_params(workdir, abstract_params, *, folder="checkpoints"):
  """(model parameters as host arrays, step) of the latest checkpoint in <workdir>/<folder>, or (None, None).

  Only the parameters are read: no optimizer state, no data iterator (orbax partial restore).
  `folder=BEST` reads the best validation step's parameters.
  """
  items = ("state",) if folder == BEST else ("state", "data")
  manager = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, folder)), item_names=items)
  step = manager.latest_step()
  if step is None:
    return None, None
  item = {"params": jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_params)}
  restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
  args = ocp.args.Composite(state=ocp.args.PyTreeRestore(item=item, restore_args=restore_args, partial_restore=True))
  try:
    restored = _restore(manager, step, args)
  finally:
    manager.close()
  return restored["state"]["params"], step
