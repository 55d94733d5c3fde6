"""Parallel-beam CT of axial slices: projection, detector physics, filtered back-projection.

The projector is a sparse matrix (ray-driven, bilinear, unit steps along each ray), built
once per (size, angles) and cached; its transpose is the matching back-projector. All z
slices of a volume go through one sparse matrix product.

Shapes: Z = slices, N = slice side (N x N), A = projection angles, T = detector bins (= N).
"""

import functools

import numpy as np
import scipy.ndimage
import scipy.sparse


@functools.lru_cache(maxsize=4)
def projector(size, num_angles):
  """Sparse (A*T, N*N) matrix: line integrals through an N x N slice (unit pixel length)."""
  n = size
  coords = np.arange(n) - (n - 1) / 2
  theta_A = np.arange(num_angles) * np.pi / num_angles
  cos_A, sin_A = np.cos(theta_A), np.sin(theta_A)
  t_T, s_S = coords, coords  # detector positions, steps along the ray
  # Point (row, col) = t * (sin, cos) + s * (cos, -sin), relative to the slice centre.
  row = t_T[None, :, None] * sin_A[:, None, None] + s_S[None, None, :] * cos_A[:, None, None]
  col = t_T[None, :, None] * cos_A[:, None, None] - s_S[None, None, :] * sin_A[:, None, None]
  row, col = row + (n - 1) / 2, col + (n - 1) / 2
  ray = np.broadcast_to(np.arange(num_angles * n).reshape(num_angles, n, 1), row.shape)
  r0, c0 = np.floor(row).astype(np.int64), np.floor(col).astype(np.int64)
  fr, fc = (row - r0).astype(np.float32), (col - c0).astype(np.float32)
  rows, cols, vals = [], [], []
  for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc), (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
    rr, cc = r0 + dr, c0 + dc
    inside = (rr >= 0) & (rr < n) & (cc >= 0) & (cc < n) & (w > 0)
    rows.append(ray[inside])
    cols.append(rr[inside] * n + cc[inside])
    vals.append(w[inside])
  matrix = scipy.sparse.csr_matrix(
    (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(num_angles * n, n * n), dtype=np.float32
  )
  return matrix, matrix.T.tocsr()


def project(slices_ZxNxN, num_angles):
  """Sinograms (Z, A, T) of the slices (attenuation per pixel)."""
  z, n, _ = slices_ZxNxN.shape
  forward, _ = projector(n, num_angles)
  sino = forward @ slices_ZxNxN.reshape(z, n * n).T.astype(np.float32)
  return sino.T.reshape(z, num_angles, n)


@functools.lru_cache(maxsize=8)
def _ramp_filter(num_bins):
  """Ram-Lak filter with a Hann window, from its spatial form (no DC offset)."""
  size = int(2 ** np.ceil(np.log2(2 * num_bins)))
  k = np.concatenate([np.arange(0, size // 2 + 1), np.arange(-size // 2 + 1, 0)])
  h = np.zeros(size)
  h[0] = 0.25
  odd = k % 2 == 1
  h[odd] = -1.0 / (np.pi * k[odd]) ** 2
  window = 0.5 + 0.5 * np.cos(2 * np.pi * np.fft.fftfreq(size))
  return np.real(np.fft.fft(h)) * 2 * window, size


def fbp(sino_ZxAxT):
  """Filtered back-projection to (Z, N, N), zero outside the circular field of view."""
  z, a, n = sino_ZxAxT.shape
  ramp, size = _ramp_filter(n)
  spectrum = np.fft.fft(sino_ZxAxT, n=size, axis=-1) * ramp
  filtered = np.real(np.fft.ifft(spectrum, axis=-1))[..., :n].astype(np.float32)
  _, backward = projector(n, a)
  recon = (backward @ filtered.reshape(z, a * n).T).T.reshape(z, n, n) * (np.pi / (2 * a))
  return recon * field_of_view(n)


def field_of_view(size):
  """Boolean N x N disk inscribed in the slice."""
  c = np.arange(size) - (size - 1) / 2
  return (c[:, None] ** 2 + c[None, :] ** 2) <= (size / 2) ** 2


def scan(mu_ZxNxN, rng, *, num_angles, photons=8e3, electronic_noise=2.0, ring_strength=0.0, beam_hardening=0.0, psf_sigma=0.8):
  """Simulated acquisition + reconstruction of an attenuation map (per-pixel mu).

  Poisson photon noise on the detector counts, blurred by the detector's point spread
  function across its rows (z) and columns (`psf_sigma`, pixels: scintillator and optics),
  then Gaussian read noise; per-column gain errors (`ring_strength`, relative std) give
  ring artifacts; a quadratic loss of effective attenuation with path length
  (`beam_hardening`) gives cupping.
  """
  path_ZxAxT = project(mu_ZxNxN, num_angles)
  path_ZxAxT = path_ZxAxT - beam_hardening * path_ZxAxT**2
  gain_T = 1.0 + ring_strength * rng.standard_normal(path_ZxAxT.shape[-1])
  expected = photons * gain_T * np.exp(-path_ZxAxT)
  counts = rng.poisson(expected).astype(np.float32)
  if psf_sigma > 0:  # light spreads in the scintillator after the photons are counted: noise correlates in z too
    counts = scipy.ndimage.gaussian_filter(counts, sigma=(psf_sigma, 0, psf_sigma), mode="nearest")
  counts = counts + electronic_noise * rng.standard_normal(expected.shape)
  measured = -np.log(np.maximum(counts, 1.0) / photons)  # flat field without the gain error
  return fbp(measured.astype(np.float32))
