"""Segmentation models over the ResNet encoders: DeepLabV3+ and a U-Net decoder (paper 3.2).

Both take {"image": B x H x W x 1} and return (logits_BxHxWxK at input resolution, out), `out`
holding the encoder's maps. The encoder is the same `ResNet` the pretext tasks train (its
parameters live under params["encoder"]), so a pre-trained encoder loads by name
(ssl_ct/segment.py). GroupNorm throughout, as in the encoders: no batch statistics. Decoders compute in the encoder's
dtype and return float32 logits.

Shapes: B batch, H, W input size, h, w a feature map's size, C channels, K classes.
"""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from ssl_ct.models import resnet


def _resize(x_BxhxwxC, hw):
  return jax.image.resize(x_BxhxwxC, (x_BxhxwxC.shape[0], *hw, x_BxhxwxC.shape[-1]), method="bilinear")


class ConvNormRelu(nn.Module):
  channels: int
  kernel: int = 3
  dilation: int = 1
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = nn.Conv(self.channels, (self.kernel, self.kernel), kernel_dilation=self.dilation, use_bias=False, dtype=self.dtype)(x)
    return nn.relu(resnet.group_norm(self.channels, dtype=self.dtype)(x))


class DeepLabV3Plus(nn.Module):
  """Chen et al. 2018: atrous spatial pyramid pooling on the encoder's last map (output stride 16,
  the encoder dilates past it), image pooling, and a decoder fusing the stride-4 features."""

  encoder: nn.Module
  num_classes: int
  aspp_channels: int = 256
  rates: tuple = (6, 12, 18)  # at output stride 16 (the paper's); halve them at 8
  low_level_channels: int = 48

  @nn.compact
  def __call__(self, batch, *, deterministic=True):
    image_BxHxWx1 = batch["image"]
    block = functools.partial(ConvNormRelu, dtype=self.encoder.dtype)
    size = image_BxHxWx1.shape[1:3]
    _, out = self.encoder(image_BxHxWx1, deterministic=deterministic)
    high_Bxhxwxc = out["stages"][-1]
    branches = [block(self.aspp_channels, kernel=1, name="aspp_1x1")(high_Bxhxwxc)]
    branches += [block(self.aspp_channels, dilation=r, name=f"aspp_rate{r}")(high_Bxhxwxc) for r in self.rates]
    pooled = jnp.mean(high_Bxhxwxc, axis=(1, 2), keepdims=True)
    pooled = nn.relu(nn.Conv(self.aspp_channels, (1, 1), dtype=self.encoder.dtype, name="aspp_pool")(pooled))
    branches.append(jnp.broadcast_to(pooled, (*high_Bxhxwxc.shape[:3], self.aspp_channels)))
    x = block(self.aspp_channels, kernel=1, name="aspp_project")(jnp.concatenate(branches, axis=-1))
    x = resnet.Dropout(0.1)(x, deterministic=deterministic)
    # The decoder's skip: the finest stage at no more than stride 4 (stride 2 with a small stem's first stage).
    low = next((s for s in out["stages"] if size[0] // s.shape[1] >= 4), out["stages"][0])
    low = block(self.low_level_channels, kernel=1, name="low_level")(low)
    x = jnp.concatenate([_resize(x, low.shape[1:3]), low], axis=-1)
    x = block(self.aspp_channels, name="decoder_1")(x)
    x = block(self.aspp_channels, name="decoder_2")(x)
    logits = nn.Conv(self.num_classes, (1, 1), dtype=self.encoder.dtype, name="classifier")(x)
    return _resize(logits.astype(jnp.float32), size), out


class UNet(nn.Module):
  """A U-Net decoder over the encoder: from the deepest map up, upsample, concatenate the skip of
  every stage and of the stem, two 3x3 convolutions; logits at input resolution."""

  encoder: nn.Module
  num_classes: int

  @nn.compact
  def __call__(self, batch, *, deterministic=True):
    image_BxHxWx1 = batch["image"]
    block = functools.partial(ConvNormRelu, dtype=self.encoder.dtype)
    _, out = self.encoder(image_BxHxWx1, deterministic=deterministic)
    skips = [out["stem"], *out["stages"][:-1]]
    x = out["stages"][-1]
    for level, skip in reversed(list(enumerate(skips))):
      x = jnp.concatenate([_resize(x, skip.shape[1:3]), skip], axis=-1)
      channels = skip.shape[-1]
      x = block(channels, name=f"up{level}_1")(x)
      x = block(channels, name=f"up{level}_2")(x)
    x = block(skips[0].shape[-1], name="head")(_resize(x, image_BxHxWx1.shape[1:3]))
    logits = nn.Conv(self.num_classes, (1, 1), dtype=self.encoder.dtype, name="classifier")(x)
    return logits.astype(jnp.float32), out


DECODERS = {"deeplabv3plus": DeepLabV3Plus, "unet": UNet}


def make_model(model_config, num_classes):
  """The decoder `model_config.decoder` over the encoder `model_config.name` (no dropout: MC
  dropout is for localization; DeepLabV3+ has its own before the decoder)."""
  if model_config.decoder not in DECODERS:
    raise ValueError(f"unknown decoder {model_config.decoder!r}; valid names: {', '.join(DECODERS)}")
  encoder = functools.partial(
    resnet.get_encoder(model_config.name),
    width=model_config.width,
    small_stem=model_config.small_stem,
    output_stride=model_config.output_stride,
    dtype=resnet.get_compute_dtype(model_config),
  )()
  if model_config.decoder == "deeplabv3plus":
    return DeepLabV3Plus(
      encoder=encoder,
      num_classes=num_classes,
      aspp_channels=model_config.get("decoder_channels", DeepLabV3Plus.aspp_channels),  # configs before the key: the paper's 256
      rates=tuple(model_config.aspp_rates),
    )
  return UNet(encoder=encoder, num_classes=num_classes)
