"""Pretext losses: pure functions of arrays returning (scalar loss, metrics dict).

Shapes: B = batch, A = angle classes.
"""

import jax
import jax.numpy as jnp
import optax


def rotation_nll(logits_BxA, angle_B, *, label_smoothing=0.0):
  """Mean NLL of the angle class by which the twin slice was rotated."""
  num_classes = logits_BxA.shape[-1]
  labels_BxA = optax.smooth_labels(jax.nn.one_hot(angle_B, num_classes), label_smoothing)
  loss = jnp.mean(optax.softmax_cross_entropy(logits_BxA, labels_BxA))
  acc = jnp.mean(jnp.argmax(logits_BxA, axis=-1) == angle_B)
  return loss, {"rot_acc": acc}


def accuracy_by_axis(logits_BxA, angle_B, axis_B):
  """Rotation accuracy of the pairs cut along each axis: {"rot_acc_z", "rot_acc_y", "rot_acc_x"}."""
  correct_B = (jnp.argmax(logits_BxA, axis=-1) == angle_B).astype(jnp.float32)
  metrics = {}
  for axis, name in enumerate("zyx"):
    on_axis_B = (axis_B == axis).astype(jnp.float32)
    metrics[f"rot_acc_{name}"] = jnp.sum(correct_B * on_axis_B) / jnp.maximum(jnp.sum(on_axis_B), 1.0)
  return metrics


def pairwise_ranking(z_B, position_B, *, margin=0.2, group_B=None):
  """Mean over pairs with position_i > position_j of max(0, margin - (z_i - z_j)).

  `group_B` (optional) marks which slices come from the same volume draw: only pairs
  within a group are compared (positions of different volumes are not comparable).
  """
  diff_BxB = z_B[:, None] - z_B[None, :]
  ordered_BxB = position_B[:, None] > position_B[None, :]
  if group_B is not None:
    ordered_BxB &= group_B[:, None] == group_B[None, :]
  hinge_BxB = jnp.maximum(0.0, margin - diff_BxB)
  loss = jnp.sum(jnp.where(ordered_BxB, hinge_BxB, 0.0)) / jnp.maximum(jnp.sum(ordered_BxB), 1)
  return loss, {"mean_displacement": mean_displacement(z_B, position_B, group_B)}


def mean_displacement(z_B, position_B, group_B=None):
  """The paper's control metric: (1/k) sum_i |argsort(position)_i - argsort(z)_i|.

  With `group_B` (equal-sized groups of consecutive slices), each group is sorted on its
  own (sorting by group first keeps the groups' blocks in place), and the mean is over all.
  """
  if group_B is None:
    true_order, predicted_order = jnp.argsort(position_B), jnp.argsort(z_B)
  else:
    true_order, predicted_order = jnp.lexsort((position_B, group_B)), jnp.lexsort((z_B, group_B))
  return jnp.mean(jnp.abs(true_order - predicted_order).astype(jnp.float32))


def _rotation_from_outputs(logits, batch, **kw):
  loss, metrics = rotation_nll(logits, batch["angle"], **kw)
  return loss, {**metrics, **accuracy_by_axis(logits, batch["angle"], batch["axis"])}


def _ranking_from_outputs(logits, batch, **kw):
  return pairwise_ranking(logits, batch["position"], group_B=batch.get("group"), **kw)


# name -> fn(logits, batch, **kw) -> (loss, metrics): adapters that only pick arrays.
LOSSES = {
  "rotation_nll": _rotation_from_outputs,
  "pairwise_ranking": _ranking_from_outputs,
}


def get_loss(name):
  if name not in LOSSES:
    raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(LOSSES)}")
  return LOSSES[name]
