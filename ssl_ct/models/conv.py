"""A convolution whose weight gradient XLA:CPU computes in slices of the batch.

XLA computes a convolution's weight gradient as one more convolution, with the batch as the
dimension it sums over. On the CPU that convolution ran on one core, as long on 2 cores as on
one, where its forward pass took half as long; summed over four slices of the batch, the rotation
demo's train step is 1.12-1.13x faster on one host device (`python experiments/bench_train.py
--torch`, README). Beside other host devices, whose convolutions already share the cores, and in
slices of few rows (the sorting demo's 12 maps in slices of 3) it was slower, so those keep
XLA's gradient, as accelerators do. The forward pass and the input gradient are XLA's own; the
weight gradient is the same up to float rounding (the sum's order).

`conv_general_dilated` has `lax.conv_general_dilated`'s signature: `nn.Conv(conv_general_dilated=...)`.
"""

import functools

import jax
import jax.numpy as jnp
from jax import lax

# Slices of the batch the weight gradient is summed over, the smallest feature map (pixels)
# and the fewest batch rows per slice that get them: below either the slices' overhead
# outweighs the gain (the sorting demo's 12 slices in 4 slices of 3: 0.86x).
WEIGHT_GRAD_SLICES = 4
MIN_PIXELS = 64
MIN_ROWS = 16


def weight_grad_slices(lhs_shape, batch_dim, spatial_dims, backend, devices):
  """How many slices of the batch the weight gradient of a convolution of `lhs_shape` is summed over:
  1 (XLA's gradient) off the CPU, below MIN_PIXELS or MIN_ROWS, and beside other host devices, whose own
  convolutions already keep the cores busy (2 host devices on 2 cores: 0.91x with slices)."""
  pixels = 1
  for d in spatial_dims:
    pixels *= lhs_shape[d]
  if backend != "cpu" or devices > 1 or pixels < MIN_PIXELS:
    return 1
  batch = lhs_shape[batch_dim]
  return max(k for k in range(1, WEIGHT_GRAD_SLICES + 1) if batch % k == 0 and (k == 1 or batch // k >= MIN_ROWS))


def conv_general_dilated(lhs, rhs, window_strides, padding, **kwargs):
  """`lax.conv_general_dilated`, with the weight gradient summed over slices of the batch on the CPU."""
  conv = functools.partial(lax.conv_general_dilated, window_strides=window_strides, padding=padding, **kwargs)
  numbers = lax.conv_dimension_numbers(lhs.shape, rhs.shape, kwargs.get("dimension_numbers"))
  batch_dim = numbers.lhs_spec[0]
  slices = weight_grad_slices(lhs.shape, batch_dim, numbers.lhs_spec[2:], jax.default_backend(), jax.local_device_count())
  if slices == 1:
    return conv(lhs, rhs)

  @jax.custom_vjp
  def sliced(lhs, rhs):
    return conv(lhs, rhs)

  def forward(lhs, rhs):
    return conv(lhs, rhs), (lhs, rhs)

  def backward(residuals, grad_out):
    lhs, rhs = residuals
    grad_lhs = jax.vjp(lambda x: conv(x, rhs), lhs)[1](grad_out)[0]
    pieces = zip(jnp.split(lhs, slices, axis=batch_dim), jnp.split(grad_out, slices, axis=numbers.out_spec[0]))
    grad_rhs = sum(jax.vjp(lambda w, x=x: conv(x, w), rhs)[1](g)[0] for x, g in pieces)
    return grad_lhs, grad_rhs

  sliced.defvjp(forward, backward)
  return sliced(lhs, rhs)
