"""Task models on a ResNet encoder; each takes the batch dict and returns (logits, out).

- RotationNet (siamese): one encoder f_theta on the reference and the twin slice,
  concatenated embeddings, a small MLP f_phi with one logit per angle class.
- SortingNet: one scalar per slice (the position score z).
- ContrastiveNet: projections (and MoCo v3 predictions) of two views of each slice.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_ct.models import resnet


class RotationNet(nn.Module):
  """f_phi sees the two feature maps concatenated along channels, spatial layout kept.

  Globally pooled embeddings are close to rotation-invariant (a pooled histogram of
  features barely changes under rotation), which makes the relative angle slow to learn;
  the concatenated maps let the small head compare where things are in both slices.
  """

  encoder: nn.Module
  num_classes: int
  head_hidden: int

  def __call__(self, batch, *, deterministic=True):
    ref_BxHxWx1, twin_BxHxWx1 = batch["ref"], batch["twin"]
    # One encoder pass over both slices: the two branches share weights by construction.
    out = self.encode(jnp.concatenate([ref_BxHxWx1, twin_BxHxWx1]), deterministic=deterministic)
    ref_Bxhxwxc, twin_Bxhxwxc = jnp.split(out["feature_map"], 2)
    logits_BxA = self.head(ref_Bxhxwxc, twin_Bxhxwxc)
    return logits_BxA, {"embedding": jnp.split(out["embedding"], 2)[0], "feature_map": ref_Bxhxwxc}

  def encode(self, images_BxHxWx1, *, deterministic=True):
    """The encoder's outputs for single slices (localization encodes each slice input once: `apply(..., method=)`)."""
    _, out = self.encoder(images_BxHxWx1, deterministic=deterministic)
    return out

  @nn.compact
  def head(self, ref_Bxhxwxc, twin_Bxhxwxc):
    """f_phi: angle logits of pairs of feature maps."""
    dtype = self.encoder.dtype
    pair = jnp.concatenate([ref_Bxhxwxc, twin_Bxhxwxc], axis=-1)
    pair = nn.relu(nn.Conv(self.head_hidden, (1, 1), dtype=dtype, name="head_mix")(pair))
    hidden = nn.relu(nn.Dense(self.head_hidden, dtype=dtype, name="head_hidden")(pair.reshape(pair.shape[0], -1)))
    return nn.Dense(self.num_classes, dtype=dtype, name="head_out")(hidden).astype(jnp.float32)


class SortingNet(nn.Module):
  encoder: nn.Module

  @nn.compact
  def __call__(self, batch, *, deterministic=True):
    z_Bx1, out = self.encoder(batch["image"], deterministic=deterministic)
    return z_Bx1[:, 0], out


class ContrastiveNet(nn.Module):
  """SimCLR / MoCo v3: the encoder's pooled embedding of each view through a projection MLP, and
  for MoCo v3 a predictor MLP on top (`predictor_hidden` > 0). Both views go through one pass."""

  encoder: nn.Module
  projection_hidden: int
  projection_dim: int
  predictor_hidden: int = 0

  @nn.compact
  def __call__(self, batch, *, deterministic=True):
    views_2BxNxNx1 = jnp.concatenate([batch["view1"], batch["view2"]])
    _, out = self.encoder(views_2BxNxNx1, deterministic=deterministic)
    dense, norm = functools.partial(nn.Dense, dtype=self.encoder.dtype), functools.partial(nn.LayerNorm, dtype=self.encoder.dtype)
    h = nn.relu(norm(name="proj_norm")(dense(self.projection_hidden, name="proj_hidden")(out["embedding"])))
    z_2BxD = dense(self.projection_dim, name="proj_out")(h)
    outputs = {"z": z_2BxD}
    if self.predictor_hidden:
      q = nn.relu(norm(name="pred_norm")(dense(self.predictor_hidden, name="pred_hidden")(z_2BxD)))
      outputs["p"] = dense(self.projection_dim, name="pred_out")(q)
    return jax.tree.map(lambda a: a.astype(jnp.float32), outputs), out


def make_contrastive_model(model_config):
  encoder = resnet.get_encoder(model_config.name)(
    width=model_config.width,
    small_stem=model_config.small_stem,
    output_stride=model_config.output_stride,
    dtype=resnet.get_compute_dtype(model_config),
  )
  return ContrastiveNet(
    encoder=encoder,
    projection_hidden=model_config.projection_hidden,
    projection_dim=model_config.projection_dim,
    predictor_hidden=model_config.predictor_hidden,
  )


def make_model(model_config, num_classes=0):
  """RotationNet when num_classes > 0 (angle classes), else SortingNet."""
  encoder_cls = functools.partial(
    resnet.get_encoder(model_config.name),
    width=model_config.width,
    dropout_rate=model_config.dropout,
    small_stem=model_config.small_stem,
    output_stride=model_config.output_stride,
    dtype=resnet.get_compute_dtype(model_config),
  )
  if num_classes:
    return RotationNet(encoder=encoder_cls(), num_classes=num_classes, head_hidden=model_config.head_hidden)
  return SortingNet(encoder=encoder_cls(num_outputs=1))
