"""Synthetic CT volumes with ground truth: Xenopus-like embryos, Medaka-like fish and packed heads.

An attenuation map is drawn in 3D, then every axial slice is scanned and reconstructed
(ssl_ct/data/tomography.py), so volumes carry photon noise, streaks, a circular field of
view and, on some volumes, rings and cupping. Attenuation is per voxel and scaled with
the slice size so the total absorption (and noise level) does not depend on resolution.

Each phantom carries the intensity window its family's scans are usually exported with
(`window_mu`: attenuation mapped to 0 and to 255 when a set is written as uint8).

Shapes: D, H, W = z, y, x sizes (H == W: axial slices are square).
"""

import dataclasses

import numpy as np
import scipy.ndimage
import scipy.spatial

from ssl_ct.data import tomography

MEDIUM_MU_128 = 0.012  # medium attenuation per voxel at a 128-voxel slice
GENERATOR_VERSION = 9  # part of the cache key: bump when the physics, anatomy or storage change (9: every chunk stored)


@dataclasses.dataclass
class Phantom:
  mu_DxHxW: np.ndarray  # attenuation map (per voxel)
  mask_DxHxW: np.ndarray  # bool, the sample (never the container)
  labels_DxHxW: np.ndarray  # uint8 label map, names in `label_names`
  label_names: dict
  window_mu: tuple  # (attenuation shown as 0, as 255) in a uint8 export


def smooth_noise(shape, scale, rng):
  """Unit-std smooth random field with features about `scale` voxels across."""
  coarse = tuple(max(2, int(np.ceil(n / scale)) + 3) for n in shape)
  field = scipy.ndimage.gaussian_filter(rng.standard_normal(coarse), 0.7)
  field = scipy.ndimage.zoom(field, [(n + 2 * scale) / c for n, c in zip(shape, coarse)], order=1)
  field = field[tuple(slice(int(scale), int(scale) + n) for n in shape)]
  return (field - field.mean()) / (field.std() + 1e-8)


def random_rotation(rng, max_tilt_deg=180.0):
  """Rotation matrix: random spin about z, then a tilt of at most max_tilt_deg about a random horizontal axis."""
  spin = rng.uniform(0, 2 * np.pi)
  tilt = np.deg2rad(rng.uniform(-max_tilt_deg, max_tilt_deg))
  axis_angle = rng.uniform(0, 2 * np.pi)
  rz = np.array([[1, 0, 0], [0, np.cos(spin), -np.sin(spin)], [0, np.sin(spin), np.cos(spin)]])
  horizontal = np.array([0.0, np.cos(axis_angle), np.sin(axis_angle)])
  k = np.array([[0, -horizontal[2], horizontal[1]], [horizontal[2], 0, -horizontal[0]], [-horizontal[1], horizontal[0], 0]])
  rt = np.eye(3) + np.sin(tilt) * k + (1 - np.cos(tilt)) * k @ k
  return rt @ rz


def local_coords(shape, center, rotation):
  """Voxel coordinates in a frame centred at `center`, axes = columns of `rotation`; (3, D, H, W)."""
  grid = np.indices(shape, dtype=np.float32).reshape(3, -1) - np.asarray(center, np.float32)[:, None]
  return (rotation.T.astype(np.float32) @ grid).reshape(3, *shape)


def cell_texture(points_Px3, coords_3xM, membrane_width, rng):
  """Worley-style cells: (membrane strength, per-cell value) at each coordinate."""
  tree = scipy.spatial.cKDTree(points_Px3)
  dist_Mx2, idx_Mx2 = tree.query(coords_3xM.T, k=2)
  membrane = np.exp(-(((dist_Mx2[:, 1] - dist_Mx2[:, 0]) / membrane_width) ** 2))
  cell_value = rng.uniform(-1, 1, len(points_Px3))[idx_Mx2[:, 0]]
  return membrane.astype(np.float32), cell_value.astype(np.float32)


def xenopus(shape, rng):
  """Embryo: lumpy ellipsoid with cellular texture, a yolk gradient (animal-vegetal axis) and a
  blastocoel-like cavity in the animal half, in medium."""
  d, h, w = shape
  mu_medium = MEDIUM_MU_128 * 128 / h
  # The box is drawn to fill 10-40% of the volume; the circular field of view caps the largest.
  target_fraction = rng.uniform(0.10, 0.40)
  aspect = rng.uniform(0.8, 1.0, 3)
  rotation = random_rotation(rng)
  unit_reach = np.sqrt(rotation**2 @ aspect**2) * 1.04  # half-extent per axis of the rotated, lumpy ellipsoid
  scale = (target_fraction * d * h * w / np.prod(2 * unit_reach)) ** (1 / 3)
  scale = min(scale, 0.47 * d / unit_reach[0], 0.47 * h / np.hypot(unit_reach[1], unit_reach[2]))
  radii, reach = aspect * scale, unit_reach * scale
  fov_room = max(0.0, 0.48 * h - np.hypot(reach[1], reach[2]))
  angle, offset = rng.uniform(0, 2 * np.pi), fov_room * np.sqrt(rng.uniform())
  center = np.array([rng.uniform(reach[0] + 1, d - reach[0] - 1), h / 2 + offset * np.sin(angle), w / 2 + offset * np.cos(angle)])
  local = local_coords(shape, center, rotation)
  shape_field = sum((local[i] / radii[i]) ** 2 for i in range(3))
  lumps = smooth_noise(shape, max(4, radii.min() / 2), rng)
  embryo = shape_field + 0.1 * lumps <= 1.0
  cavity_center = np.array([-0.35 * radii[0], 0.0, 0.0])  # animal half, away from the yolk
  cavity = sum(((local[i] - cavity_center[i]) / (0.45 * radii[i])) ** 2 for i in range(3)) <= 1.0
  cavity &= embryo
  coords = np.argwhere(embryo).T.astype(np.float32)
  cell_size = max(3.0, 0.045 * h)
  num_cells = int(embryo.sum() / cell_size**3) + 4
  points = coords[:, rng.choice(coords.shape[1], num_cells, replace=False)].T + rng.uniform(-0.5, 0.5, (num_cells, 3))
  membrane, cell_value = cell_texture(points, coords, 0.6, rng)
  # Homogeneous medium (the paper's assumption on the background) in a cylindrical holder inside the
  # field of view, air outside: medium beyond the field of view would truncate the projections.
  yy, xx = np.indices((h, w), dtype=np.float32)
  holder = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2) < 0.49 * h
  mu = np.zeros(shape, np.float32)
  mu[:, holder] = mu_medium
  contrast = rng.uniform(0.2, 0.4)
  # Yolk: denser towards the vegetal pole, along the embryo's (randomly oriented) first axis.
  vegetal = np.clip(local[0][tuple(coords.astype(int))] / radii[0], -1, 1)
  # In-vivo embryos are nearly iso-attenuating with their medium (why a threshold fails on them): the
  # tissue averages to the medium, its structure (yolk gradient, membranes, cell-to-cell variation) does not.
  structure = 0.6 * vegetal + 0.4 * cell_value + membrane
  tissue = mu_medium * (1 + contrast * (structure - structure.mean()))
  mu[tuple(coords.astype(int))] = tissue
  mu[cavity] = mu_medium * (1 - 0.3 * contrast)  # blastocoel fluid, slightly below the medium
  _add_debris(mu, embryo, rng, mu_medium)
  labels = embryo.astype(np.uint8) + cavity.astype(np.uint8)
  # Iso-attenuating: a window cannot drop the medium without the embryo, so it keeps both.
  return Phantom(mu, embryo, labels, {"0": "background", "1": "tissue", "2": "cavity"}, (0.0, 2.0 * mu_medium))


def _add_debris(mu, sample, rng, mu_medium):
  """A few small bright particles and air bubbles in the medium, outside the sample."""
  d, h, w = mu.shape
  grid = np.indices(mu.shape, dtype=np.float32)
  for _ in range(rng.integers(2, 7)):
    r = rng.uniform(1.0, 0.025 * h + 1.0)
    angle, radius = rng.uniform(0, 2 * np.pi), rng.uniform(0, 0.42 * h)
    c = (rng.uniform(r, d - r), h / 2 + radius * np.sin(angle), w / 2 + radius * np.cos(angle))
    blob = sum((grid[i] - c[i]) ** 2 for i in range(3)) <= r**2
    blob &= ~scipy.ndimage.binary_dilation(sample, iterations=2)
    mu[blob] = mu_medium * rng.choice([0.1, rng.uniform(1.6, 2.5)])


def _fish_geometry(length, body_radius, u, v, w):
  """Boolean parts of a fish in its frame: u along the body (0 = snout), v lateral, w dorsal."""
  s = u / length
  taper = np.clip(1.0 - ((s - 0.3) / 0.7).clip(0) ** 0.8, 0.12, 1.0)
  head = ((s - 0.12) / 0.13) ** 2 + (v / body_radius) ** 2 + (w / (0.9 * body_radius)) ** 2 <= 1.0
  body = (s >= 0.1) & (s <= 0.82) & ((v / (0.8 * body_radius * taper)) ** 2 + (w / (body_radius * taper)) ** 2 <= 1.0)
  eye_r = 0.38 * body_radius
  eyes = np.zeros_like(head)
  for side in (-1, 1):
    eyes |= ((u - 0.09 * length) ** 2 + (v - side * 0.85 * body_radius) ** 2 + (w - 0.2 * body_radius) ** 2) <= eye_r**2
  optic = ((s - 0.17) / 0.05) ** 2 + (v / (0.55 * body_radius)) ** 2 + (
    (w - 0.35 * body_radius) / (0.35 * body_radius)
  ) ** 2 <= 1.0
  spine = (s >= 0.16) & (s <= 0.9) & (v**2 + (w - 0.25 * body_radius * taper) ** 2 <= max(0.8, 0.12 * body_radius) ** 2)
  fin_height = body_radius * (0.5 + 1.2 * ((s - 0.82) / 0.18).clip(0, 1))
  tail = (s > 0.78) & (s <= 1.0) & (np.abs(v) <= 0.9) & (np.abs(w) <= fin_height)
  fins = (s > 0.45) & (s <= 0.8) & (np.abs(v) <= 0.8) & (np.abs(w) <= body_radius * taper + 0.35 * body_radius)
  return {"head": head, "body": body, "eyes": eyes, "optic": optic, "spine": spine, "tail": tail, "fins": fins}


def medaka(shape, rng):
  """Elongated fish (head, eyes, spine, faint tail and fins) in a bright container tube."""
  d, h, w = shape
  mu_medium = MEDIUM_MU_128 * 128 / h
  tube_center = np.array([h / 2, w / 2]) + rng.uniform(-0.03, 0.03, 2) * h
  tube_inner = 0.36 * h
  wall = max(1.5, 0.035 * h)
  yy, xx = np.indices((h, w), dtype=np.float32)
  radius_yx = np.hypot(yy - tube_center[0], xx - tube_center[1])
  mu = np.zeros(shape, np.float32)
  inside = radius_yx < tube_inner
  mu[:, inside] = mu_medium
  mu[:, (radius_yx >= tube_inner) & (radius_yx < tube_inner + wall)] = mu_medium * rng.uniform(3.0, 4.0)
  length = rng.uniform(0.55, 0.8) * d
  body_radius = rng.uniform(0.16, 0.2) * h
  rotation = random_rotation(rng, max_tilt_deg=np.degrees(np.arctan(0.25 * h / length)))
  # Fish are mounted head first into their tube (snout towards z = 0), as in high-throughput
  # mounting; their tilt, roll and position along the tube vary. The sorting loss relies on it.
  axis = rotation[:, 0]
  room = tube_inner - 1.6 * body_radius - 0.5 * length * np.hypot(axis[1], axis[2])
  offset = rng.uniform(-1, 1, 2) * max(room, 0) / np.sqrt(2)
  center = np.array([rng.uniform(0.5 * length * abs(axis[0]) + 2, d - 0.5 * length * abs(axis[0]) - 2), *(tube_center + offset)])
  snout = center - 0.5 * length * axis
  u, v, wd = local_coords(shape, snout, rotation)
  parts = _fish_geometry(length, body_radius, u, v, wd)
  texture = smooth_noise(shape, max(2.0, 0.05 * h), rng)
  soft = parts["head"] | parts["body"]
  mu[soft] = mu_medium * (1.35 + 0.08 * texture[soft])
  mu[(parts["tail"] | parts["fins"]) & ~soft] = mu_medium * rng.uniform(1.12, 1.2)
  mu[parts["optic"]] = mu_medium * 1.5
  mu[parts["spine"]] = mu_medium * 2.2
  mu[parts["eyes"]] = mu_medium * 2.0
  mask = soft | parts["tail"] | parts["fins"] | parts["eyes"] | parts["spine"]
  mask &= inside[None]
  visual = (parts["eyes"] | parts["optic"]) & mask
  # Windowed just above the medium: the medium goes to 0, the fish, tail and tube wall stay.
  window = (1.05 * mu_medium, 2.5 * mu_medium)
  return Phantom(mu, mask, visual.astype(np.uint8), {"0": "background", "1": "visual_system"}, window)


def _packing(shape, yy, xx, holder_yx, sample, rng):
  """Fibrous packing (gauze, foam, wood wool) in part of the holder: strands running along z."""
  d, h, w = shape
  stretch = int(rng.integers(3, 6))  # strands several times longer along z than across
  coarse = smooth_noise((max(2, d // stretch), h, w), max(2.0, 0.03 * h), rng)
  strands = scipy.ndimage.zoom(coarse, (d / coarse.shape[0], 1, 1), order=1)[:d]
  side = rng.uniform(0, 2 * np.pi)  # the packing fills the part of the holder beyond a random chord
  along = (yy - h / 2) * np.sin(side) + (xx - w / 2) * np.cos(side)
  region_yx = holder_yx & (along > rng.uniform(-0.5, 0.2) * h)  # from a sliver to all of the holder
  fibres = (np.abs(strands) < rng.uniform(0.25, 0.5)) & region_yx[None]
  return fibres & ~scipy.ndimage.binary_dilation(sample, iterations=1)


def packed_head(shape, rng):
  """Head-like specimen (skull shell, soft tissue, air passages, teeth, sometimes a paw) in a
  cylindrical holder with fibrous packing beside it, in air: the mouse-atlas scans' setting.

  The head spans most of z and is often cut by the volume's ends; the packing's structure, not
  only the sample's, tells a slice's orientation, and its level lies between air and tissue.
  """
  d, h, w = shape
  mu_tissue = 2.5 * MEDIUM_MU_128 * 128 / h
  yy, xx = np.indices((h, w), dtype=np.float32)
  holder_center = np.array([h / 2, w / 2]) + rng.uniform(-0.03, 0.03, 2) * h
  holder_inner = rng.uniform(0.40, 0.45) * h
  wall = max(1.0, 0.015 * h)
  radius_yx = np.hypot(yy - holder_center[0], xx - holder_center[1])
  holder_yx = radius_yx < holder_inner
  mu = np.zeros(shape, np.float32)
  mu[:, (radius_yx >= holder_inner) & (radius_yx < holder_inner + wall)] = mu_tissue * rng.uniform(1.0, 1.6)
  # Head: an egg along (nearly) z, half-length 0.35-0.65 of z (beyond the ends on some volumes).
  radii = np.array([rng.uniform(0.35, 0.65) * d, rng.uniform(0.16, 0.26) * h, rng.uniform(0.16, 0.26) * h])
  rotation = random_rotation(rng, max_tilt_deg=20.0)
  room = max(0.0, holder_inner - 1.1 * radii[1:].max())
  angle, offset = rng.uniform(0, 2 * np.pi), room * np.sqrt(rng.uniform())
  center = np.array(
    [rng.uniform(0.35, 0.65) * d, holder_center[0] + offset * np.sin(angle), holder_center[1] + offset * np.cos(angle)]
  )
  u, v, t = local_coords(shape, center, rotation)
  taper = 1.0 - 0.45 * np.clip(u / radii[0], 0, 1)  # narrower towards the snout (+u)
  shape_field = (u / radii[0]) ** 2 + (v / (radii[1] * taper)) ** 2 + (t / (radii[2] * taper)) ** 2
  lumps = smooth_noise(shape, max(3.0, 0.06 * h), rng)
  head = shape_field + 0.08 * lumps <= 1.0
  shell = head & ~scipy.ndimage.binary_erosion(head, iterations=max(1, int(round(0.02 * h))))
  texture = smooth_noise(shape, max(2.0, 0.04 * h), rng)
  mu[head] = mu_tissue * (1.0 + 0.08 * texture[head])
  mu[shell] = mu_tissue * rng.uniform(2.2, 3.0)
  for _ in range(int(rng.integers(2, 5))):  # air passages, inside the head only
    c = np.array([rng.uniform(0.0, 0.6), rng.uniform(-0.4, 0.4), rng.uniform(-0.4, 0.4)]) * radii
    r = rng.uniform(0.08, 0.18) * radii[1:].min() * np.array([3.0, 1.0, 1.0])
    passage = ((u - c[0]) / r[0]) ** 2 + ((v - c[1]) / r[1]) ** 2 + ((t - c[2]) / r[2]) ** 2 <= 1.0
    mu[passage & head & ~shell] = 0.0
  teeth = head & (u > 0.6 * radii[0]) & (np.abs(t + 0.5 * radii[2] * taper) < 0.15 * radii[2])
  mu[teeth] = mu_tissue * 3.0
  sample = head.copy()
  if rng.uniform() < 0.5:  # a forepaw against the head, as on C57BL6
    paw_center = center + rotation @ np.array(
      [rng.uniform(-0.3, 0.3) * radii[0], 1.05 * radii[1], rng.uniform(-0.5, 0.5) * radii[2]]
    )
    pu, pv, pt = local_coords(shape, paw_center, rotation)
    paw = (pu / (0.35 * radii[0])) ** 2 + (pv / (0.25 * radii[1])) ** 2 + (pt / (0.3 * radii[2])) ** 2 <= 1.0
    paw &= holder_yx[None] & ~head
    mu[paw] = mu_tissue * 1.1
    mu[paw & (np.abs(pv) < 0.06 * radii[1])] = mu_tissue * 2.5  # its bone
    sample |= paw
  sample &= holder_yx[None]
  mu[:, ~holder_yx & (radius_yx >= holder_inner + wall)] = 0.0
  fibres = _packing(shape, yy, xx, holder_yx, sample, rng)
  mu[fibres] = mu_tissue * rng.uniform(0.8, 1.05)  # soaked in fixative: close to soft tissue
  # Exported as atlas scans are: the window's floor just under soft tissue (air, most of the
  # packing and the noise go to 0), soft tissue a few grey levels above it, bone far up.
  low = rng.uniform(0.75, 0.92) * mu_tissue
  tissue_level = rng.uniform(8.0, 40.0)  # grey value of soft tissue
  window = (low, low + 255.0 * (mu_tissue - low) / tissue_level)
  labels = sample.astype(np.uint8)
  return Phantom(mu, sample, labels, {"0": "background", "1": "specimen"}, window)


GENERATORS = {"xenopus": xenopus, "medaka": medaka, "packed_head": packed_head}


def synthesize(kind, shape, seed, index):
  """One reconstructed volume and its phantom; deterministic in (kind, shape, seed, index)."""
  rng = np.random.default_rng([seed, index, len(kind)])
  phantom = GENERATORS[kind](tuple(shape), rng)
  artifacts = {
    "ring_strength": rng.choice([0.0, rng.uniform(0.004, 0.012)]),
    "beam_hardening": rng.choice([0.0, rng.uniform(0.01, 0.03)]),  # mild: synchrotron beams are near monochromatic
  }
  recon = tomography.scan(phantom.mu_DxHxW, rng, num_angles=shape[1], **artifacts)
  return recon.astype(np.float32), phantom, {k: float(v) for k, v in artifacts.items()}
