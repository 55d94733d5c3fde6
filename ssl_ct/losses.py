"""Losses (pretext and segmentation): pure functions of arrays returning (scalar loss, metrics dict).

Shapes: B = batch, A = angle classes, H x W = pixels, K = segmentation classes, M = boxes per slice, D = embedding.
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


def cross_entropy_dice(logits_BxHxWxK, labels_BxHxW, *, dice_weight=1.0, smooth=1.0):
  """Pixel cross entropy plus `dice_weight` x (1 - soft Dice) averaged over the foreground classes.

  Dice counts every pixel of the batch together (one overlap per class), so slices without
  the class do not each pull its score to zero.
  """
  num_classes = logits_BxHxWxK.shape[-1]
  onehot_BxHxWxK = jax.nn.one_hot(labels_BxHxW, num_classes)
  ce = jnp.mean(optax.softmax_cross_entropy(logits_BxHxWxK, onehot_BxHxWxK))
  probs_BxHxWxK = jax.nn.softmax(logits_BxHxWxK)
  overlap_K = jnp.sum(probs_BxHxWxK * onehot_BxHxWxK, axis=(0, 1, 2))
  total_K = jnp.sum(probs_BxHxWxK + onehot_BxHxWxK, axis=(0, 1, 2))
  dice_K = (2 * overlap_K + smooth) / (total_K + smooth)
  dice = jnp.mean(dice_K[1:])
  accuracy = jnp.mean(jnp.argmax(logits_BxHxWxK, axis=-1) == labels_BxHxW)
  return ce + dice_weight * (1.0 - dice), {"pixel_acc": accuracy, "dice": dice, "ce": ce}


def box_tightness(logits_BxHxWxK, boxes_BxMx5, *, alpha=4.0, negative_weight=1.0):
  """A segmentation loss from boxes alone: the bounding box tightness prior (Hsu et al. 2019,
  the paper's reference [16]), multiple-instance form, without its pairwise term.

  A row of `boxes_BxMx5` is (class, y0, y1, x0, x1), ends exclusive, class 0 an empty slot. A
  tight box of a connected region is crossed by the region along every row and every column it
  spans, so each such line is a positive bag: its alpha-softmax of p_class (a smooth maximum,
  sum p e^(alpha p) / sum e^(alpha p)) should be 1, -log of it the loss. A pixel outside every
  box of a class is a negative of that class: -log(1 - p_class). The two means are added with
  `negative_weight` on the second.
  """
  num_classes = logits_BxHxWxK.shape[-1]
  height, width = logits_BxHxWxK.shape[1:3]
  probs_BxHxWxK = jax.nn.softmax(logits_BxHxWxK)
  class_BxM, y0, y1, x0, x1 = (boxes_BxMx5[..., i] for i in range(5))
  valid_BxM = class_BxM > 0
  y_1x1xH, x_1x1xW = jnp.arange(height)[None, None], jnp.arange(width)[None, None]
  rows_BxMxH = (y_1x1xH >= y0[..., None]) & (y_1x1xH < y1[..., None]) & valid_BxM[..., None]
  cols_BxMxW = (x_1x1xW >= x0[..., None]) & (x_1x1xW < x1[..., None]) & valid_BxM[..., None]
  inside_BxMxHxW = rows_BxMxH[..., :, None] & cols_BxMxW[..., None, :]
  onehot_BxMxK = jax.nn.one_hot(class_BxM, num_classes)
  p_BxMxHxW = jnp.einsum("bhwk,bmk->bmhw", probs_BxHxWxK, onehot_BxMxK)

  weight_BxMxHxW = jnp.where(inside_BxMxHxW, jnp.exp(alpha * p_BxMxHxW), 0.0)
  weighted_BxMxHxW = weight_BxMxHxW * p_BxMxHxW

  def bag_loss(axis, lines):  # -log of the smooth maximum along each line (rows: over x)
    smooth_max = jnp.sum(weighted_BxMxHxW, axis) / jnp.maximum(jnp.sum(weight_BxMxHxW, axis), 1e-12)
    return jnp.sum(jnp.where(lines, -jnp.log(jnp.maximum(smooth_max, 1e-6)), 0.0)), jnp.sum(lines)

  row_loss, num_rows = bag_loss(-1, rows_BxMxH)
  col_loss, num_cols = bag_loss(-2, cols_BxMxW)
  positive = (row_loss + col_loss) / jnp.maximum(num_rows + num_cols, 1)

  covered_BxHxWxK = jnp.einsum("bmhw,bmk->bhwk", inside_BxMxHxW.astype(jnp.float32), onehot_BxMxK) > 0
  outside_BxHxWxK = ~covered_BxHxWxK & (jnp.arange(num_classes) > 0)[None, None, None]  # the background has no boxes
  negative_terms = -jnp.log(jnp.maximum(1.0 - probs_BxHxWxK, 1e-6))
  negative = jnp.sum(jnp.where(outside_BxHxWxK, negative_terms, 0.0)) / jnp.maximum(jnp.sum(outside_BxHxWxK), 1)
  return positive + negative_weight * negative, {"box_positive": positive, "box_negative": negative}


def _normalize(x_BxD):
  # rsqrt of the clamped squared norm: a finite gradient at a zero row (jnp.linalg.norm's is NaN there).
  return x_BxD * jax.lax.rsqrt(jnp.maximum(jnp.sum(x_BxD * x_BxD, axis=-1, keepdims=True), 1e-12))


def nt_xent(z_2BxD, *, temperature=0.1):
  """SimCLR's NT-Xent. Rows i and i + B are the two views of one slice: each one's positive is
  the other, the 2B - 2 remaining rows its negatives; cosine similarities over `temperature`."""
  two_b = z_2BxD.shape[0]
  z = _normalize(z_2BxD)
  logits_2Bx2B = (z @ z.T) / temperature
  logits_2Bx2B = jnp.where(jnp.eye(two_b, dtype=bool), -jnp.inf, logits_2Bx2B)  # a view is not its own pair
  positives_2B = (jnp.arange(two_b) + two_b // 2) % two_b
  loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits_2Bx2B, positives_2B))
  accuracy = jnp.mean(jnp.argmax(logits_2Bx2B, axis=-1) == positives_2B)
  return loss, {"contrastive_acc": accuracy}


def info_nce(q_BxD, k_BxD, *, temperature=0.2):
  """MoCo v3's contrastive term: query i against every key of the batch, its own key the positive;
  scaled by 2 x temperature as in the MoCo v3 paper."""
  logits_BxB = (_normalize(q_BxD) @ _normalize(k_BxD).T) / temperature
  labels_B = jnp.arange(q_BxD.shape[0])
  loss = jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits_BxB, labels_B)) * 2 * temperature
  return loss, jnp.mean(jnp.argmax(logits_BxB, axis=-1) == labels_B)


def moco_v3(p_2BxD, k_2BxD, *, temperature=0.2):
  """Symmetric MoCo v3 loss: the predictions of view 1 against the momentum keys of view 2 and back.

  `k_2BxD` come from the momentum (EMA) encoder and carry no gradient."""
  p1, p2 = jnp.split(p_2BxD, 2)
  k1, k2 = jnp.split(jax.lax.stop_gradient(k_2BxD), 2)
  loss_12, acc_12 = info_nce(p1, k2, temperature=temperature)
  loss_21, acc_21 = info_nce(p2, k1, temperature=temperature)
  return loss_12 + loss_21, {"contrastive_acc": (acc_12 + acc_21) / 2}


def _rotation_from_outputs(logits, batch, **kw):
  loss, metrics = rotation_nll(logits, batch["angle"], **kw)
  return loss, {**metrics, **accuracy_by_axis(logits, batch["angle"], batch["axis"])}


def _ranking_from_outputs(logits, batch, **kw):
  return pairwise_ranking(logits, batch["position"], group_B=batch.get("group"), **kw)


def _segmentation_from_outputs(logits, batch, **kw):
  return cross_entropy_dice(logits, batch["labels"], **kw)


def _boxes_from_outputs(logits, batch, **kw):
  return box_tightness(logits, batch["boxes"], **kw)


def _simclr_from_outputs(outputs, batch, **kw):
  del batch
  return nt_xent(outputs["z"], **kw)


def _moco_from_outputs(outputs, batch, **kw):
  # train_step hands a loss of a state with momentum parameters {"online": ..., "momentum": ...}.
  del batch
  return moco_v3(outputs["online"]["p"], outputs["momentum"]["z"], **kw)


# name -> fn(logits, batch, **kw) -> (loss, metrics): adapters that only pick arrays.
LOSSES = {
  "rotation_nll": _rotation_from_outputs,
  "pairwise_ranking": _ranking_from_outputs,
  "cross_entropy_dice": _segmentation_from_outputs,
  "box_tightness": _boxes_from_outputs,
  "nt_xent": _simclr_from_outputs,
  "moco_v3": _moco_from_outputs,
}


def get_loss(name):
  if name not in LOSSES:
    raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(LOSSES)}")
  return LOSSES[name]
