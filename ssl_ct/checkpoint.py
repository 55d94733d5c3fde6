"""orbax checkpoints of the train state together with the grain iterator state.

One composite checkpoint per saved step in <workdir>/checkpoints: `state` (the TrainState
pytree) and `data` (where the data iterator stands), saved asynchronously. orbax writes
each step to a temporary folder and renames it when complete, so a run killed mid-save
leaves only complete steps behind and resumes from the latest of them.
"""

import os

import grain
import jax
import orbax.checkpoint as ocp
from absl import logging


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


def save(manager, step, state, iterator):
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(iterator)))


def restore_latest(manager, state, iterator):
  """(state, step) from the latest complete checkpoint, or the inputs and step 0 when there is none."""
  step = manager.latest_step()
  if step is None:
    return state, 0
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  restored = manager.restore(
    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), data=grain.checkpoint.CheckpointRestore(iterator))
  )
  logging.info("resumed from step %d in %s", step, manager.directory)
  return restored["state"], step


def restore_params(workdir, state):
  """Parameters of the latest checkpoint in `workdir` (for localization), without the data state."""
  manager = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")), item_names=("state", "data"))
  step = manager.latest_step()
  if step is None:
    return None, None
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
  manager.close()
  return restored["state"], step
