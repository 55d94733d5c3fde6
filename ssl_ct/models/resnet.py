"""ResNet encoders (18-152 and a tiny test net) for single-channel CT slices, in Flax linen.

Normalization is GroupNorm: it keeps no batch statistics, so a forward pass is a pure
function of (params, slice, dropout key). MC-dropout samples, the per-slice certainty at
test time and the 1-vs-N-device results then do not depend on which slices share a batch.

Dropout sits right before a final 1x1 "embed" convolution whose output is the feature map
(superpixel embeddings). A `jax.vmap` over dropout keys therefore batches only that 1x1
convolution; the stages before it run once per slice.

`dtype` is the compute dtype of convolutions and dense layers ("bfloat16" on accelerators);
parameters stay float32 (the optimizer updates float32 master weights), GroupNorm computes its
statistics in float32, and the returned logits, embedding and maps are float32.

Shapes: B = batch, H, W = slice size, C = channels, h, w = feature-map size.
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_ct.models import conv as convolution

# nn.Conv with the weight gradient summed over slices of the batch on the CPU (ssl_ct/models/conv.py).
Conv = functools.partial(nn.Conv, conv_general_dilated=convolution.conv_general_dilated)

# config.model.dtype -> compute dtype.
COMPUTE_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


class Dropout(nn.Module):
  """flax's nn.Dropout with its mask drawn as one flat vector and reshaped.

  jax.random's (partitionable Threefry) bits depend only on an element's flat index, so the
  mask is flax's bit for bit; XLA:CPU compiles a flat draw in a tenth of the time of a 4-D one
  (0.24 against 2.5 s for an 8x16x16x4 mask on 2 cores), and every train step, MC-dropout
  pass and test with dropout compiled one.
  """

  rate: float

  @nn.compact
  def __call__(self, x, *, deterministic=True):
    if self.rate == 0.0 or deterministic:
      return x
    keep = 1.0 - self.rate
    mask = jax.random.bernoulli(self.make_rng("dropout"), keep, (x.size,)).reshape(x.shape)
    return jax.lax.select(mask, x / keep, jnp.zeros_like(x))


def get_compute_dtype(model_config):
  """The compute dtype `model_config.dtype` names; float32 for the configs of runs from before the key."""
  name = model_config.dtype if "dtype" in model_config else "float32"
  if name not in COMPUTE_DTYPES:
    raise ValueError(f"unknown compute dtype {name!r}; valid names: {', '.join(COMPUTE_DTYPES)}")
  return COMPUTE_DTYPES[name]


def group_norm(channels, name=None, zero_init=False, dtype=jnp.float32):
  """GroupNorm with groups of at least 4 channels; zero_init starts a residual branch at identity."""
  scale_init = nn.initializers.zeros if zero_init else nn.initializers.ones
  return nn.GroupNorm(num_groups=min(32, max(1, channels // 4)), scale_init=scale_init, dtype=dtype, name=name)


class BasicBlock(nn.Module):
  filters: int
  strides: int = 1
  dilation: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv, norm = functools.partial(Conv, dtype=self.dtype), functools.partial(group_norm, dtype=self.dtype)
    residual = x
    y = conv(self.filters, (3, 3), self.strides, kernel_dilation=self.dilation, use_bias=False)(x)
    y = nn.relu(norm(self.filters)(y))
    y = conv(self.filters, (3, 3), kernel_dilation=self.dilation, use_bias=False)(y)
    y = norm(self.filters, zero_init=True)(y)
    if residual.shape != y.shape:
      residual = conv(self.filters, (1, 1), self.strides, use_bias=False, name="proj")(residual)
      residual = norm(self.filters, name="proj_norm")(residual)
    return nn.relu(residual + y)


class BottleneckBlock(nn.Module):
  filters: int
  strides: int = 1
  dilation: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    conv, norm = functools.partial(Conv, dtype=self.dtype), functools.partial(group_norm, dtype=self.dtype)
    residual = x
    y = nn.relu(norm(self.filters)(conv(self.filters, (1, 1), use_bias=False)(x)))
    y = nn.relu(norm(self.filters)(conv(self.filters, (3, 3), self.strides, kernel_dilation=self.dilation, use_bias=False)(y)))
    y = conv(self.filters * 4, (1, 1), use_bias=False)(y)
    y = norm(self.filters * 4, zero_init=True)(y)
    if residual.shape != y.shape:
      residual = conv(self.filters * 4, (1, 1), self.strides, use_bias=False, name="proj")(residual)
      residual = norm(self.filters * 4, name="proj_norm")(residual)
    return nn.relu(residual + y)


class ResNet(nn.Module):
  """Returns (logits_BxO, out): out["feature_map"] is B x h x w x C, out["embedding"] is B x C,
  out["trunk_map"] the B x h x w x C activations the MC dropout acts on, out["stem"] and
  out["stages"] the stem's and every stage's output (the skips of segmentation decoders).

  With num_outputs=0 the logits are the embedding itself.
  """

  stage_sizes: Sequence[int]
  block_cls: type = BasicBlock
  width: int = 64
  num_outputs: int = 0
  dropout_rate: float = 0.0
  small_stem: bool = False  # 3x3 stride-2 stem without max-pool (input/2, not /4), for small slices
  # Input pixels per feature-map cell; stages past it keep their resolution and dilate
  # instead (DeepLab's output stride): a finer superpixel grid for the same receptive field.
  output_stride: int = 32
  dtype: Any = jnp.float32  # compute dtype; parameters and outputs are float32

  @nn.compact
  def __call__(self, x_BxHxWx1, *, deterministic=True):
    conv, norm = functools.partial(Conv, dtype=self.dtype), functools.partial(group_norm, dtype=self.dtype)
    x = x_BxHxWx1
    if self.small_stem:
      x = nn.relu(norm(self.width, name="stem_norm")(conv(self.width, (3, 3), 2, use_bias=False, name="stem")(x)))
    else:
      x = conv(self.width, (7, 7), 2, padding=[(3, 3), (3, 3)], use_bias=False, name="stem")(x)
      x = nn.relu(norm(self.width, name="stem_norm")(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding="SAME")
    stem_map = x
    stride, dilation, stage_maps = (2 if self.small_stem else 4), 1, []
    for stage, num_blocks in enumerate(self.stage_sizes):
      for block in range(num_blocks):
        strides = 2 if stage > 0 and block == 0 else 1
        if strides == 2 and stride >= self.output_stride:
          strides, dilation = 1, dilation * 2
        stride *= strides
        name = f"stage{stage + 1}_block{block + 1}"
        x = self.block_cls(self.width * 2**stage, strides, dilation, dtype=self.dtype, name=name)(x)
      stage_maps.append(x)
    trunk_map_BxhxwxC = x  # what the MC dropout drops: the exact dropout variance needs it
    x = Dropout(self.dropout_rate, name="mc_dropout")(x, deterministic=deterministic)
    feature_map_BxhxwxC = conv(x.shape[-1], (1, 1), name="embed")(x)
    embedding_BxC = jnp.mean(feature_map_BxhxwxC, axis=(1, 2))
    logits = nn.Dense(self.num_outputs, dtype=self.dtype, name="head")(embedding_BxC) if self.num_outputs else embedding_BxC
    maps = {"feature_map": feature_map_BxhxwxC, "embedding": embedding_BxC, "trunk_map": trunk_map_BxhxwxC}
    logits, maps = jax.tree.map(lambda a: a.astype(jnp.float32), (logits, maps))  # losses and localizers see float32
    return logits, {**maps, "stem": stem_map, "stages": tuple(stage_maps)}


ResNetTiny = functools.partial(ResNet, stage_sizes=[1, 1])
ResNet18 = functools.partial(ResNet, stage_sizes=[2, 2, 2, 2])
ResNet34 = functools.partial(ResNet, stage_sizes=[3, 4, 6, 3])
ResNet50 = functools.partial(ResNet, stage_sizes=[3, 4, 6, 3], block_cls=BottleneckBlock)
ResNet101 = functools.partial(ResNet, stage_sizes=[3, 4, 23, 3], block_cls=BottleneckBlock)
ResNet152 = functools.partial(ResNet, stage_sizes=[3, 8, 36, 3], block_cls=BottleneckBlock)

ENCODERS = {
  "resnet_tiny": ResNetTiny,
  "resnet18": ResNet18,
  "resnet34": ResNet34,
  "resnet50": ResNet50,
  "resnet101": ResNet101,
  "resnet152": ResNet152,
}


def get_encoder(name):
  if name not in ENCODERS:
    raise ValueError(f"unknown model {name!r}; valid names: {', '.join(ENCODERS)}")
  return ENCODERS[name]
