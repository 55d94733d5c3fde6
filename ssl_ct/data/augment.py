"""Image augmentations for pre-training, as one grain-friendly function with one `strength` knob.

`augment(image_NxNx1, rng, strength)`: random resized crop, flips, 90-degree rotations,
contrast and brightness jitter, Gaussian noise and blur, then the inscribed-disk cut again (the
corners never carry information). strength 0 returns the image unchanged; 1 is the usual
SimCLR-like setting for CT slices; larger is more aggressive (the paper: aggressive
augmentation helps the sorting loss and hurts SimCLR; experiments/segmentation_pretraining.py
measures it).
"""

import numpy as np
import scipy.ndimage

from ssl_ct.data import slices


def augment(image_NxNx1, rng, strength):
  """One random augmentation of a model input (float32 N x N x 1, values in [0, 1])."""
  if strength <= 0:
    return image_NxNx1
  x = image_NxNx1[..., 0]
  n = x.shape[0]
  scale = rng.uniform(max(0.2, 1.0 - 0.5 * strength), 1.0)  # side of the crop, fraction of the slice
  side = max(4, int(round(scale * n)))
  r0, c0 = rng.integers(0, n - side + 1, size=2)
  x = slices.rotate_resize(x[r0 : r0 + side, c0 : c0 + side], n, 0.0)
  if rng.uniform() < 0.5:
    x = x[:, ::-1]
  x = np.rot90(x, k=int(rng.integers(4)))
  contrast = np.exp(rng.uniform(-0.4, 0.4) * strength)
  x = (x - 0.5) * contrast + 0.5 + rng.uniform(-0.2, 0.2) * strength
  if rng.uniform() < 0.5:
    x = scipy.ndimage.gaussian_filter(x, sigma=rng.uniform(0.1, 1.0) * strength)
  x = x + rng.normal(0.0, 0.05 * strength * rng.uniform(), x.shape)
  return (np.clip(x, 0.0, 1.0) * slices.disk_mask(n))[..., None].astype(np.float32)
