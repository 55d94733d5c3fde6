"""Growing a coarse sample box to the sample's faint parts by background subtraction along one axis.

A localizer's box sits on what its network found most telling (the sorting variance on a
fish's dense core) and misses faint fins and tails at its edges. Here the slices along `axis`
outside the box (minus a guard) are the background: every pixel's median and spread (MAD)
over them say what an empty slice looks like there, tube wall, medium, rings and all, whatever
their brightness. Each voxel of the box grown by `band` of the volume's sides gets a z-score against
them; after a Gaussian smoothing of one voxel (across the other two dimensions, for the profile
along each), a voxel is foreground when its |z| exceeds what only `false_positive` of the voxels of
background slices do. Each face of the box then moves outward over every index whose foreground count is at least `min_fraction` of the
region's cross-section (gaps of up to `max_gap` indices bridged), never past the band and never
inward: the refinement only adds voxels (with `plane="fit"` the faces across `axis` move in too, to
where the foreground ends). With `min_component`, only the foreground's connected components
holding that fraction of the largest one's voxels count: a particle or a bubble apart from the
sample neither pulls a face out to it nor holds a loose face on it (one touching the sample is
part of its component and still counts). Along `axis` first, the background re-estimated
without the new sample slices each time, until it settles (at most `iterations` moves), then in
the plane; a move along `axis` that would leave too few empty slices is undone (a packing that
changes along the axis, not the sample) and the faces along it are not called measured. A box most of whose slices hold nothing the empty ones do not (an empty tube that a
network boxed anyway) is no sample.

It needs empty slices along `axis` (a sorting volume's tube ends); without enough of them the
box is returned unchanged and the note says why, unless a seed box (the threshold baseline's)
leaves enough along `axis`: the refinement then starts from the box cut to the seed's extent;
failing that, with `across_band`, growths along the other two axes measure the faces across it.
Pure numpy; the volume is read in blocks of slices, so memory holds the band region's
cross-section times at most `_STAT_SLICES` slices (with `min_component`, also its foreground as
bits up to `_CACHED_BYTES` and the labels of at most `_COMPONENT_CELLS` cells).
"""

import numpy as np
import scipy.ndimage

from ssl_ct.data import truth

MISSED = "grown to the foreground it missed"  # in the note of a box the coverage rule grew (reports count them)
FITTED = "moved in to the sample"  # in the note of a box whose faces `plane="fit"` moved inward (reports count them)
FAINT = "too faint for measured faces"  # in the note of a box whose sample the z-scores barely see (reports count them)
SEEDED = "refined from the threshold box's extent"  # in the note of a box refined from its axis seed (reports count them)
# In the note of a box grown to its axis seed's extent instead of null (reports count them).
SEED_PAST = "the threshold box, this box's object in the plane, reaches past it into the slices taken for empty"
ACROSS = "faces across"  # in the note of a box whose plane faces growths across the axis measured (reports count them)
_BLOCK = 64  # slices per read
_SIGMA = 1.0  # voxels, Gaussian smoothing of the z-scores
_HALO = 3  # slices read past a block's ends so the smoothing sees its neighbours
_CUT_CHUNKS = 8  # runs of background slices the foreground cut is measured on, at most (_cuts)
_STAT_SLICES = 128  # background slices the per-pixel statistics are taken over, at most
_COMPONENT_CELLS = 2**21  # cells the connected components are labelled on, at most (_kept_components)
_CACHED_BYTES = 2**27  # foreground bits kept between _kept_components' pass and the counting, at most


def _read(volume, axis, first, stop, lo, hi):
  """Slices [first, stop) along `axis`, in-plane [lo, hi) (volume order), float32 with `axis` first."""
  start, end = list(lo), list(hi)
  start[axis], end[axis] = first, stop
  return np.moveaxis(volume.read(start, end), axis, 0).astype(np.float32)


def _background_runs(length, start, stop, guard):
  """Half-open runs of slice indices outside [start - guard, stop + guard)."""
  runs = [(0, max(0, start - guard)), (min(length, stop + guard), length)]
  return [(a, b) for a, b in runs if b > a]


def _evenly(count, most):
  """Sorted indices of at most `most` of `count` items, evenly spaced, first and last included."""
  return np.unique(np.linspace(0, count - 1, min(count, most)).round().astype(int))


def _background_stats(volume, axis, runs, lo, hi):
  """(centre, spread) per in-plane pixel over the background slices: median and 1.4826 x MAD.

  Robust, because the faint sample the refinement is after lies partly among these slices
  until it is found; the spread is floored at its median over pixels (flat, noiseless regions).
  At most _STAT_SLICES slices, evenly spaced, are kept; they are read in blocks of _BLOCK
  slices (one read per block, not per slice: a chunked store decodes each chunk once).
  """
  indices = np.concatenate([np.arange(a, b) for a, b in runs])
  chosen = set(indices[_evenly(len(indices), _STAT_SLICES)].tolist())
  kept = []
  for a, b in runs:
    for first in range(a, b, _BLOCK):
      rows = [i - first for i in range(first, min(b, first + _BLOCK)) if i in chosen]
      if rows:
        kept.append(_read(volume, axis, first, first + rows[-1] + 1, lo, hi)[rows])
  stack = np.concatenate(kept)
  centre = np.median(stack, axis=0)
  spread = 1.4826 * np.median(np.abs(stack - centre), axis=0)
  return centre, np.maximum(spread, max(float(np.median(spread)), 1e-12))


def _smoothed_z(block, centre, spread, along):
  """z-scores of a block (sort axis first) smoothed across every dimension but `along` (block order).

  Not along the profiled dimension: a blur there would move a bright face outward by its tail.
  """
  sigma = [0.0 if d == along else _SIGMA for d in range(3)]
  return scipy.ndimage.gaussian_filter((block - centre) / spread, sigma, mode="nearest")


def _cuts(volume, axis, runs, lo, hi, centre, spread, false_positive, cut, block_dims=(0, 1, 2)):
  """Per block dimension, the |smoothed z| that only `false_positive` of background voxels exceed.

  CT noise is neither Gaussian nor independent (streaks, rings), so a multiple of its spread
  would not say how often empty voxels pass: the quantile is measured on pieces of the background,
  up to _CUT_CHUNKS runs of background slices spread over it, each cut in the plane into
  tiles x tiles pieces, `cut` = (slices per run, the percentile over pieces taken: 50, the
  median; tiles per in-plane side, 1: whole slices). Atypical pieces (the tube's ends, a faint
  part of the sample still outside the box, debris) are outvoted. They only raise a piece's
  quantile, so a lower percentile outvotes more of them: when most runs hold some (a faint end on
  each side of the box, debris), the median is one of them and the growth stalls short of the
  faint end. Debris is small in the plane as well: with the background a few runs long (a
  sample that fills most of the axis), a bright particle in most runs puts the cut at its own
  z-scores (4x the noise's on a xenopus seed-9 volume) and hides a faint sample; tiles outvote it.
  """
  cut_slices, cut_rank, tiles = cut
  chunks = [(first, min(b, first + cut_slices)) for a, b in runs for first in range(a, b, cut_slices)]
  chunks = [chunks[i] for i in _evenly(len(chunks), _CUT_CHUNKS)]
  quantiles = []
  for first, stop in chunks:
    block = _read(volume, axis, first, stop, lo, hi)
    by_dim = [np.abs(_smoothed_z(block, centre, spread, d)) if d in block_dims else None for d in range(3)]
    for piece in _tiles(block.shape, tiles):
      quantiles.append([np.quantile(z[piece], 1.0 - false_positive) if z is not None else 0.0 for z in by_dim])
  return [float(q) for q in np.percentile(quantiles, cut_rank, axis=0)]


def _tiles(shape, tiles):
  """Index expressions cutting a block (slices first) into tiles x tiles pieces in the plane (fewer where a side is shorter)."""
  sides = [[slice(i[0], i[-1] + 1) for i in np.array_split(np.arange(n), min(tiles, n))] for n in shape[1:]]
  return [np.s_[:, rows, cols] for rows in sides[0] for cols in sides[1]]


def _profiles(volume, axis, lo, hi, centre, spread, cuts, block_dims=(0, 1, 2), min_component=0.0):
  """Foreground voxel counts per index of each block dimension (sort axis, rows, cols), region coordinates;
  zeros for the dimensions not in `block_dims`. `min_component` > 0: only the foreground of the
  region's connected components holding at least that fraction of the largest one's voxels
  counts (`_kept_components`): a speck of debris or a bubble beside the sample does not."""
  first = lo[axis]
  counts = [np.zeros(n, np.int64) for n in _block_sides(axis, lo, hi)]
  kept, blocks = {}, None
  if min_component > 0:
    kept, blocks = _kept_components(volume, axis, lo, hi, centre, spread, cuts, block_dims, min_component)
  if blocks is None:
    blocks = _foreground_blocks(volume, axis, lo, hi, centre, spread, cuts, block_dims)
  for a, b, by_dim in blocks:
    for d, foreground in by_dim.items():
      if d in kept:
        foreground &= kept[d](a - first, b - first)
      summed = foreground.sum(axis=tuple(e for e in range(3) if e != d))
      if d == 0:
        counts[0][a - first : b - first] = summed
      else:
        counts[d] += summed
  return counts


def _foreground_blocks(volume, axis, lo, hi, centre, spread, cuts, block_dims):
  """Yields (a, b, {block dimension: foreground mask}) for the region's slices [a, b) along `axis`,
  _BLOCK at a time; each block is read with _HALO slices past its ends so the smoothing sees its
  neighbours."""
  for a in range(lo[axis], hi[axis], _BLOCK):
    b = min(hi[axis], a + _BLOCK)
    pad_a, pad_b = max(0, a - _HALO), min(volume.shape[axis], b + _HALO)
    block = _read(volume, axis, pad_a, pad_b, lo, hi)
    yield a, b, {d: np.abs(_smoothed_z(block, centre, spread, d)[a - pad_a : b - pad_a]) > cuts[d] for d in block_dims}


def _kept_components(volume, axis, lo, hi, centre, spread, cuts, block_dims, min_component):
  """({block dimension: (i, j) -> the region's slices [i, j) (region coordinates, block order), True
  where a voxel of that dimension's foreground belongs to one of its connected components
  (26-connected) holding at least `min_component` of the largest one's voxels}, the foreground
  blocks as `_foreground_blocks` yields them: kept as bits from this pass when they take at most
  _CACHED_BYTES, else None, and the caller computes them again).

  Each dimension's own foreground: it is not smoothed along that dimension (`_smoothed_z`), so a
  particle a voxel or two past a face stays apart from the sample along the profile it would pull.
  Labelled on the foreground pooled over cubes of `pool` voxels a side (1 unless the region has
  more than _COMPONENT_CELLS voxels), so memory stays bounded whatever the region's size; pooling
  only joins components (a gap narrower than a cube closes), so it keeps more, never less.
  """
  sides = _block_sides(axis, lo, hi)
  pool = max(1, int(np.ceil((np.prod(sides, dtype=np.float64) / _COMPONENT_CELLS) ** (1 / 3))))
  cells = [-(-n // pool) for n in sides]
  voxels = {d: np.zeros(cells, np.int64) for d in block_dims}  # foreground voxels per cell
  cache = [] if np.prod(sides, dtype=np.float64) * len(block_dims) / 8 <= _CACHED_BYTES else None
  for a, b, by_dim in _foreground_blocks(volume, axis, lo, hi, centre, spread, cuts, block_dims):
    if cache is not None:
      cache.append((a, b, {d: np.packbits(foreground, axis=-1) for d, foreground in by_dim.items()}))
    for d, foreground in by_dim.items():
      padded = np.zeros((b - a, cells[1] * pool, cells[2] * pool), bool)
      padded[:, : sides[1], : sides[2]] = foreground
      per_slice = padded.reshape(b - a, cells[1], pool, cells[2], pool).sum(axis=(2, 4), dtype=np.int64)
      np.add.at(voxels[d], np.arange(a - lo[axis], b - lo[axis]) // pool, per_slice)
  rows, cols = np.arange(sides[1]) // pool, np.arange(sides[2]) // pool
  kept = {}
  for d, counts in voxels.items():
    labels, count = scipy.ndimage.label(counts > 0, structure=np.ones((3, 3, 3), bool))
    sizes = scipy.ndimage.sum(counts, labels, index=np.arange(1, count + 1)) if count else np.zeros(1)
    cells_kept = np.isin(labels, 1 + np.flatnonzero(sizes >= min_component * sizes.max()))
    kept[d] = lambda i, j, k=cells_kept: k[np.arange(i, j) // pool][:, rows][:, :, cols]
  if cache is None:
    return kept, None
  unpack = lambda bits: np.unpackbits(bits, axis=-1, count=sides[2]).view(bool)  # noqa: E731
  return kept, ((a, b, {d: unpack(bits) for d, bits in packed.items()}) for a, b, packed in cache)


def _plane_dims(axis):
  return [d for d in range(3) if d != axis]


def _block_sides(axis, lo, hi):
  """The sides of the region [lo, hi) in block order (`axis` first, then the plane)."""
  return [hi[axis] - lo[axis], *(hi[d] - lo[d] for d in _plane_dims(axis))]


def _grow(hits, start, stop, offset, low, high, max_gap):
  """(start, stop) moved outward over hit indices (global), gaps of up to `max_gap` bridged, within [low, high)."""
  new_stop, gap, i = stop, 0, stop
  while i < high and gap <= max_gap:
    gap = 0 if hits[i - offset] else gap + 1
    new_stop = i + 1 if gap == 0 else new_stop
    i += 1
  new_start, gap, i = start, 0, start - 1
  while i >= low and gap <= max_gap:
    gap = 0 if hits[i - offset] else gap + 1
    new_start = i if gap == 0 else new_start
    i -= 1
  return new_start, new_stop


def refine_box_faces(
  volume,
  box,
  axis,
  *,
  plane="grow",
  band=0.25,
  false_positive=3e-4,
  min_fraction=0.005,
  guard=0.02,
  cut_slices=16,
  cut_rank=50.0,
  cut_tiles=1,
  max_gap=2,
  min_background=0.05,
  iterations=4,
  min_sample_slices=0.5,
  min_coverage=0.0,
  measure="all",
  tail_fraction=0.0,
  fit_fraction=0.0,
  faint_fraction=0.0,
  min_component=0.0,
  fit_axis=False,
  axis_seed=None,
  across_band=0.0,
):
  """(box, note, measured, tails): `box` ({"start", "stop"}, half-open, on the volume's grid) grown to the
  faint sample, unchanged, or None; `measured` (`_measured_faces`, None without a box) says which
  faces the growth found the sample's end at (none when it could not run: too few empty slices);
  `measure="plane"` counts only the faces in the plane across `axis` (a faint sample's ends along
  the axis can fall below the growth's foreground fraction: README, per-face margins).
  `tails` (`_tails`, None unless `tail_fraction` > 0 and the growth ran): per face, how many
  indices past it still hold at least `tail_fraction` of the cross-section as foreground, a
  faint continuation the growth's `min_fraction` did not take in: a crop margin that grows where
  the sample's end is uncertain and is 0 where it ends sharply (ssl_ct/crop.py face_pads).

  `plane`: how the faces across `axis` move, "grow" (outward only) or "fit" (to the extent of the
  foreground runs in the band that overlap the box, inward too: a coarse box a superpixel wider
  than the sample shrinks to it; `_fit`). Along `axis` the faces only grow (unless `fit_axis`). `fit_fraction` > 0:
  a face fit moves in stops at the end of the runs holding at least this fraction (below
  `min_fraction`: a faint sample's weak foreground keeps its face; 0: `min_fraction`).
  `faint_fraction` > 0: a box whose slices hold fewer foreground voxels than this fraction of its
  volume is a faint sample, whose edges the z-scores do not see (an embryo nearly as dense as its
  medium: its rim scores as background): its faces only grow, none counts as measured (the crop
  keeps the uniform margin on all of them), and the note says so. A sample the z-scores see
  fills about half its box (an ellipsoid: 0.52).
  `min_component` > 0: the growth and the fit in the band count only the foreground components
  holding at least this fraction of the largest one's voxels (`_kept_components`; not the
  coverage rule, whose background of the volume's end slices can split a sample into pieces).
  `fit_axis`: the faces along `axis` are fit too (as `plane="fit"` fits the others, with
  `fit_fraction`) once the growth along it has settled: a coarse box longer than the sample
  along the axis (a certainty curve that read the medium past the sample) shrinks to it; not
  when the growth along it was undone or the box is faint.
  `axis_seed` (a box, e.g. the threshold baseline's): when `box` leaves too few empty slices
  along `axis` (a certainty curve that read the packing or the holder on every slice), the
  refinement starts from `box` cut to the seed's extent along `axis` instead, if that leaves
  enough; its growth along the axis then takes back any sample slice the seed missed. Kept
  as it was when that growth reaches too far (undone) or finds no sample. And a box the
  growth calls no sample while the seed is its object in the plane and reaches past it along
  `axis` (`_seed_past_box`: the slices taken for empty hold the sample) is no verdict: the box
  takes in the seed's extent along `axis`, unrefined.
  `across_band` > 0: a box left unrefined for want of empty slices along `axis` (a head that
  fills it) has its faces in the plane measured by growths along each plane dimension instead,
  each within this fraction of the sides (`_measure_across`): a face found there is measured,
  the rest keep the box's face and stay unmeasured.

  `band`: how far a face may move, fraction of the volume's side along that dimension;
  `guard`: slices next to the box left out of the background, fraction of the axis (at least 2);
  `cut_slices`, `cut_rank`, `cut_tiles`: the length of the background runs the foreground cut is
  measured on, the percentile over pieces taken, the pieces per in-plane side of a run (`_cuts`);
  `min_background`: fewest background slices needed, fraction of the axis (at least 8).
  `min_sample_slices`: a box fewer of whose slices than this hold a sample (by the growth's
  own rule) is no sample: (None, note). On the demo's seed-4 set at least 0.91 of every coarse
  box's slices did, on empty synthetic tubes at most 0.01.
  `min_coverage` > 0: a box whose range holds less than this fraction of the foreground along
  the axis (against the volume's end slices) or of its slices' whole cross-section along a
  plane dimension (a network that boxed the tube's wall beside the sample, or half the
  sample) grows to that foreground's extent (`_grow_to_foreground`); a grown box whose plane it
  moved is grown again in the band around its new cross-section (the first growth along the
  axis read the old one, and missed the sample's faint ends there).
  The note says what moved, or why nothing could ("" when nothing needed to).
  """
  if box is None:
    return None, "", None
  length = volume.shape[axis]
  guard_slices, needed = _slice_counts(length, guard, min_background)
  start, stop = list(box["start"]), list(box["stop"])
  cut = (cut_slices, cut_rank, cut_tiles)
  local = dict(band=band, false_positive=false_positive, min_fraction=min_fraction, guard_slices=guard_slices, cut=cut)
  local.update(needed=needed, max_gap=max_gap, iterations=iterations, min_sample_slices=min_sample_slices, plane=plane)
  local.update(fit_fraction=fit_fraction or min_fraction, faint_fraction=faint_fraction, min_component=min_component)
  local.update(fit_axis=fit_axis)
  covers = []  # what _grow_to_foreground did
  rule = dict(false_positive=false_positive, min_fraction=min_fraction, min_coverage=min_coverage, max_gap=max_gap, cut=cut)

  def cover_plane():  # over the whole cross-section of the box's slices, against the slices outside them
    runs = _background_runs(length, start[axis], stop[axis], guard_slices)
    if sum(b - a for a, b in runs) < needed:
      return ""
    lo, hi = [0, 0, 0], list(volume.shape)
    lo[axis], hi[axis] = start[axis], stop[axis]
    plane = _plane_dims(axis)
    return _grow_to_foreground(volume, axis, plane, runs, lo, hi, start, stop, "its slices'", **rule)

  if min_coverage > 0 and length >= 2 * needed:  # along the axis, against the volume's end slices (its tube ends)
    ends = [(0, needed), (length - needed, length)]
    whole = ([0, 0, 0], list(volume.shape))
    covers.append(_grow_to_foreground(volume, axis, [axis], ends, *whole, start, stop, "the volume's", **rule))
  banded = [list(start), list(stop)]  # the box the band is laid around
  status, note, profile, unmeasured = _grow_in_band(volume, axis, start, stop, **local)
  if status == "no background" and axis_seed is not None:
    seeded = _from_seed(volume, axis, start, stop, axis_seed, banded, local)
    status, note, profile, unmeasured = seeded or (status, note, profile, unmeasured)
  if status == "no sample" and axis_seed is not None and _seed_past_box(volume.shape, axis, start, stop, axis_seed, guard_slices):
    # No verdict from slices that hold the sample: the box takes in the seed's extent along the axis, unrefined.
    start[axis], stop[axis] = min(start[axis], axis_seed["start"][axis]), max(stop[axis], axis_seed["stop"][axis])
    status, note = "no background", f"not refined: {SEED_PAST}; grown to its extent along {'zyx'[axis]}"
  if status == "no sample" and min_coverage > 0:  # a box beside the sample rather than none: grown to it first
    covers.append(cover_plane())
    if covers[-1]:
      banded = [list(start), list(stop)]
      status, note, profile, unmeasured = _grow_in_band(volume, axis, start, stop, **local)
  if status == "no sample":
    return None, note, None, None
  if status == "grown" and min_coverage > 0:
    covers.append(cover_plane())
    if covers[-1]:
      # The growth along the axis read the old box's cross-section (a tube wall beside the
      # sample): along the axis it saw none of the sample's faint ends. Grown again in the new band.
      covered = [list(start), list(stop)]
      again = _grow_in_band(volume, axis, start, stop, **local)
      if again[0] == "grown":
        banded = covered
        status, regrown, profile, unmeasured = again
        note = "; ".join(filter(None, [note, regrown]))
  measured = _measured_faces(volume.shape, *banded, start, stop, band) if status == "grown" else [[False, False]] * 3
  if status == "no background" and across_band > 0:
    measured, across = _measure_across(volume, axis, start, stop, dict(local, band=across_band), guard, min_background)
    note = "; ".join(filter(None, [note, across]))
  for d in unmeasured | ({axis} if measure == "plane" else set()):
    measured[d] = [False, False]
  tails = _tails(profile, start, stop, tail_fraction, max_gap) if status == "grown" and tail_fraction > 0 else None
  return (*_result(box, start, stop, "; ".join(filter(None, [*covers, note]))), measured, tails)


def _slice_counts(length, guard, min_background):
  """(guard slices, fewest empty slices needed) along an axis of `length` slices."""
  return max(2, int(round(guard * length))), max(8, int(np.ceil(min_background * length)))


def _measure_across(volume, axis, start, stop, local, guard, min_background):
  """(measured, note): the plane faces of [start, stop) (moved in place) placed by growths along
  each plane dimension in turn, within `local["band"]` of the sides, when the slices along `axis`
  leave no background (a sample that fills it). Along a plane dimension the slices beside the
  sample are the background; a packing or holder that changes along it can read as sample there
  (packed heads: the packing's strands run along z and blend into the head along y), so the
  growths only move faces out, only a face a growth stopped inside its band counts
  (`_measured_faces`), and where both growths placed a face the outer one is kept; the other
  faces stay as they were, unmeasured."""
  plane = _plane_dims(axis)
  found = {}  # (dimension, side) -> faces placed
  for d in plane:
    guard_slices, needed = _slice_counts(volume.shape[d], guard, min_background)
    s, e = list(start), list(stop)
    # Outward only: the background along a plane dimension can be poor (a round tube's chords of
    # medium differ from slice to slice and score as sample), and a fit inward to such foreground
    # cut an embryo to nothing (xenopus 112^3 seed 4, a box along the whole z axis).
    grow = dict(local, guard_slices=guard_slices, needed=needed, plane="grow", fit_axis=False)
    status, _, _, unmeasured = _grow_in_band(volume, d, s, e, **grow)
    if status != "grown":
      continue
    measured = _measured_faces(volume.shape, start, stop, s, e, local["band"])
    for p in set(plane) - unmeasured:
      for side, face in enumerate((s[p], e[p])):
        if measured[p][side]:
          found.setdefault((p, side), []).append(face)
  measured = [[False, False] for _ in range(3)]
  for (p, side), faces in found.items():
    (start if side == 0 else stop)[p] = min(faces) if side == 0 else max(faces)
    measured[p][side] = True
  if not found:
    return measured, ""
  names = ", ".join(f"{'zyx'[p]}{'-+'[side]}" for p, side in sorted(found))
  return measured, f"{ACROSS} {'zyx'[axis]} measured by growths along {' and '.join('zyx'[d] for d in plane)}: {names}"


def _seed_past_box(shape, axis, start, stop, seed, guard):
  """Whether `seed` is the box's object in the plane (each of its faces there within `guard`
  indices, at least 5% of the side, of the box's) and reaches past the box along `axis` by more
  than `guard` slices: the slices taken for empty hold the sample, and "no sample" is no verdict."""
  near = lambda d: max(guard, int(np.ceil(0.05 * shape[d])))  # noqa: E731
  same = all(abs(seed["start"][d] - start[d]) <= near(d) and abs(seed["stop"][d] - stop[d]) <= near(d) for d in _plane_dims(axis))
  return same and (seed["start"][axis] < start[axis] - guard or seed["stop"][axis] > stop[axis] + guard)


def _from_seed(volume, axis, start, stop, seed, banded, local):
  """`_grow_in_band`'s (status, note, profile, unmeasured) for [start, stop) cut to `seed`'s extent
  along `axis`; `start`, `stop` and `banded` updated in place. None, the box unchanged, when the
  cut leaves too few empty slices (`_grow_in_band` says so before it reads anything), or the
  growth from it was undone or found no sample."""
  first, last = max(start[axis], seed["start"][axis]), min(stop[axis], seed["stop"][axis])
  if last <= first:
    return None
  cut_start, cut_stop = list(start), list(stop)
  cut_start[axis], cut_stop[axis] = first, last
  cut = [list(cut_start), list(cut_stop)]
  status, grown_note, profile, unmeasured = _grow_in_band(volume, axis, cut_start, cut_stop, **local)
  if status != "grown" or axis in unmeasured:
    return None
  start[:], stop[:], banded[:] = cut_start, cut_stop, cut
  seeded = f"{SEEDED} along {'zyx'[axis]} (the box left too few empty slices)"
  return status, "; ".join(filter(None, [seeded, grown_note])), profile, unmeasured


def _fit(hits, start, stop, offset, max_gap):
  """(start, stop): the extent of the runs of hit indices (`hits` of the band region starting at
  global index `offset`) that overlap [start, stop) or come within `max_gap` of it, so outward as
  far as `_grow` and inward to the foreground's ends; unchanged when no run does (nothing to fit to)."""
  firsts, stops = _runs(hits, max_gap)
  firsts, stops = firsts + offset, stops + offset
  near = (firsts <= stop + max_gap) & (stops >= start - max_gap)
  if not near.any():
    return start, stop
  return int(firsts[near].min()), int(stops[near].max())


def _tails(profile, start, stop, fraction, max_gap):
  """[[before, after] indices per dimension]: how far past each face of [start, stop) the indices
  holding at least `fraction` of the cross-section as foreground reach (gaps of up to `max_gap`
  bridged: `_grow` over them), within the band region of `profile` = (foreground counts per
  dimension, the region's first index, its sides); 0 past a face the foreground ends at."""
  counts, lo, sides = profile
  tails = []
  for d in range(3):
    weak = _hits(counts[d], d, sides, fraction)
    first, end = _grow(weak, start[d], stop[d], lo[d], lo[d], lo[d] + len(weak), max_gap)
    tails.append([start[d] - first, end - stop[d]])
  return tails


def refine_box(volume, box, axis, **settings):
  """(box, note) of `refine_box_faces`."""
  return refine_box_faces(volume, box, axis, **settings)[:2]


def _measured_faces(shape, band_start, band_stop, start, stop, band):
  """[[start measured, stop measured] per dimension]: a face the growth stopped short of its band's
  limit ended where the foreground did (the slices beyond it looked empty); a face at the limit
  may have more sample past it. A face on the volume's boundary has nothing past it to lose."""
  lo, hi = _band_limits(shape, band_start, band_stop, band)
  return [[a == 0 or a != low, b == n or b != high] for a, b, low, high, n in zip(start, stop, lo, hi, shape)]


def _band_limits(shape, start, stop, band):
  """(lo, hi): the region a box [start, stop) may grow into, `band` of each side past its faces, clipped."""
  lo = [max(0, a - int(np.ceil(band * n))) for a, n in zip(start, shape)]
  hi = [min(n, b + int(np.ceil(band * n))) for b, n in zip(stop, shape)]
  return lo, hi


def _grow_in_band(
  volume,
  axis,
  start,
  stop,
  *,
  band,
  false_positive,
  min_fraction,
  guard_slices,
  cut,
  needed,
  max_gap,
  iterations,
  min_sample_slices,
  plane,
  fit_fraction,
  faint_fraction,
  min_component,
  fit_axis,
):
  """Grows (or fits, `plane`) [start, stop) in place within the band around it; (status, note,
  profile, unmeasured): status "grown" (moved or not), "no background" (too few empty slices: left
  as it is) or "no sample" (unchanged; the box is none); profile (the last foreground counts per
  dimension, the band region's first index and sides; None unless grown) for `_tails`;
  unmeasured, the dimensions whose faces the growth could not place: every one of a faint box
  (its slices hold fewer foreground voxels than `faint_fraction` of it: faces grown outward
  only), and `axis` when a growth along it would have left too few empty slices (it is undone,
  and the plane refined against the background before it: the slices past the box differed from
  one another, a packing or holder that changes along the axis, not the sample's end)."""
  shape, length = volume.shape, volume.shape[axis]
  lo, hi = _band_limits(shape, start, stop, band)
  sides = [h - low for low, h in zip(lo, hi)]

  def hits_of(counts, d):
    return _hits(counts, d, sides, min_fraction)

  def grown(d, counts):
    return _grow(hits_of(counts, d), start[d], stop[d], lo[d], lo[d], hi[d], max_gap)

  # The sort axis first, until it settles: sample slices found there leave the background,
  # which changes every z-score. Then the plane, once: its profiles do not depend on its faces.
  unmeasured, before = set(), None  # before: the axis faces and counts before the last growth along it
  for round_ in range(iterations + 1):
    runs = _background_runs(length, start[axis], stop[axis], guard_slices)
    if sum(b - a for a, b in runs) < needed:
      if before is None:
        note = f"not refined further: fewer than {needed} empty slices along {'zyx'[axis]} outside the box"
        return "no background", note, None, unmeasured
      (start[axis], stop[axis]), counts = before
      note = f"the growth along {'zyx'[axis]} undone: it left fewer than {needed} empty slices"
      unmeasured.add(axis)
      break
    centre, spread = _background_stats(volume, axis, runs, lo, hi)
    cuts = _cuts(volume, axis, runs, lo, hi, centre, spread, false_positive, cut)
    counts = dict(
      zip([axis, *_plane_dims(axis)], _profiles(volume, axis, lo, hi, centre, spread, cuts, min_component=min_component))
    )
    note = ""
    if round_ == 0:
      inside = hits_of(counts[axis], axis)[start[axis] - lo[axis] : stop[axis] - lo[axis]]
      if inside.mean() < min_sample_slices:
        return (
          "no sample",
          (
            f"no sample: {inside.mean():.0%} of the box's slices along {'zyx'[axis]} differ from the empty ones "
            f"(needs {min_sample_slices:.0%})"
          ),
          None,
          unmeasured,
        )
    if round_ < iterations:
      new = grown(axis, counts[axis])
      if new != (start[axis], stop[axis]):
        before = ((start[axis], stop[axis]), counts)
        start[axis], stop[axis] = new
        continue
    break
  seen = counts[axis][start[axis] - lo[axis] : stop[axis] - lo[axis]].sum() / np.prod(np.subtract(stop, start))
  faint = seen < faint_fraction
  # Along the axis the faces fit once it has settled (`fit_axis`), unless the growth along it was undone.
  fit_dims = [axis] if fit_axis and not faint and axis not in unmeasured else []
  for d in fit_dims + _plane_dims(axis):
    if d == axis or plane == "fit" and not faint:
      fitted = _fit(hits_of(counts[d], d), start[d], stop[d], lo[d], max_gap)
      weak = (
        fitted
        if fit_fraction == min_fraction
        else _fit(_hits(counts[d], d, sides, fit_fraction), start[d], stop[d], lo[d], max_gap)
      )
      # Out as far as the fit goes; in no further than the weak foreground's ends (or the fit's).
      start[d], stop[d] = min(fitted[0], max(weak[0], start[d])), max(fitted[1], min(weak[1], stop[d]))
    else:
      start[d], stop[d] = grown(d, counts[d])
  if faint:
    seen_pct, needed_pct = f"{seen:.1%}", f"{faint_fraction:.0%}"
    note = "; ".join(
      filter(None, [note, f"{FAINT}: {seen_pct} of the box's voxels stand out from the empty slices (needs {needed_pct})"])
    )
    unmeasured.update(range(3))
  return "grown", note, (counts, lo, sides), unmeasured


def _grow_to_foreground(
  volume, axis, dims, runs, lo, hi, start, stop, where, *, false_positive, min_fraction, min_coverage, max_gap, cut
):
  """Grows [start, stop) along `dims` (in place) to the region's foreground when it holds too little of it; the note.

  The band that `refine_box` grows within is local, and its background is the slices outside
  the box: a coarse box on the wrong structure (the tube's wall beside the sample) finds no
  sample to grow into, and a box that ends halfway along the sample counts the rest of it as
  background. Here the region [lo, hi) is scored against the background slices `runs`; per
  dimension the fraction of its foreground voxels inside the box's range is the coverage.
  Under `min_coverage` along any of `dims`, the box's ranges along `dims` become the union with
  the foreground's extent (the run of indices where at least `min_fraction` of the cross-section
  is foreground, gaps of `max_gap` bridged, that holds the most of it): conservative, a crop
  keeps what it might otherwise cut away.
  """
  fractions, counts, sides = _coverage(volume, axis, lo, hi, start, stop, runs, false_positive, cut, dims)
  low = min(dims, key=lambda d: fractions[d])
  if fractions[low] >= min_coverage:
    return ""
  for d in dims:
    run = _main_run(counts[d], _hits(counts[d], d, sides, min_fraction), max_gap)
    if run is not None:
      start[d], stop[d] = min(start[d], lo[d] + run[0]), max(stop[d], lo[d] + run[1])
  return f"the box held {fractions[low]:.0%} of {where} foreground along {'zyx'[low]} (needs {min_coverage:.0%}): {MISSED}"


def _hits(counts, d, sides, min_fraction):
  """Which indices along dimension `d` of a region of `sides` hold a sample: at least `min_fraction`
  of the cross-section (and 2 voxels) foreground."""
  return counts >= max(2, min_fraction * (int(np.prod(sides)) // sides[d]))


def _runs(hits, max_gap):
  """(firsts, stops): the half-open runs of hit indices, gaps of up to `max_gap` bridged (empty arrays without hits)."""
  indices = np.flatnonzero(hits)
  if not indices.size:
    return indices, indices
  breaks = np.flatnonzero(np.diff(indices) > max_gap + 1)
  return indices[np.r_[0, breaks + 1]], indices[np.r_[breaks, len(indices) - 1]] + 1


def _main_run(counts, hits, max_gap):
  """(first, stop) of the run of hit indices (gaps of up to `max_gap` bridged) that holds the most foreground,
  or None: a volume's atypical end slices or a speck of debris elsewhere do not stretch the box."""
  firsts, stops = _runs(hits, max_gap)
  if not firsts.size:
    return None
  best = int(np.argmax([counts[a:b].sum() for a, b in zip(firsts, stops)]))
  return int(firsts[best]), int(stops[best])


def _coverage(volume, axis, lo, hi, start, stop, runs, false_positive, cut, dims=(0, 1, 2)):
  """({dim: fraction of the region's foreground inside [start, stop)}, per-index foreground counts, region sides).

  The region [lo, hi) is scored against the background slices `runs` along `axis` (region
  coordinates for the counts), along the volume dimensions `dims` only."""
  order = [axis, *_plane_dims(axis)]  # block dimension -> volume dimension
  block_dims = [order.index(d) for d in dims]
  centre, spread = _background_stats(volume, axis, runs, lo, hi)
  cuts = _cuts(volume, axis, runs, lo, hi, centre, spread, false_positive, cut, block_dims)
  counts = dict(zip(order, _profiles(volume, axis, lo, hi, centre, spread, cuts, block_dims)))
  fractions = {}
  for d in dims:
    total = int(counts[d].sum())
    inside = counts[d][max(0, start[d] - lo[d]) : max(0, stop[d] - lo[d])].sum()
    fractions[d] = float(inside) / total if total else 1.0
  return fractions, counts, [h - low for low, h in zip(lo, hi)]


def _result(box, start, stop, note):
  result = {"start": [int(s) for s in start], "stop": [int(s) for s in stop]}
  grown, fitted = truth.face_moves(result, box), truth.face_moves(box, result)
  moves = [f"grown to the faint sample: {', '.join(grown)} voxels" if grown else ""]
  moves.append(f"{FITTED}: {', '.join(fitted)} voxels" if fitted else "")
  return result, "; ".join(filter(None, [*moves, note]))


class Refined:
  """A localizer whose boxes are grown by `refine_box` along `axis_of(volume.shape)`.

  localize() returns the inner localizer's extras plus "coarse_box" and "refinement" (the
  note); a box found to hold nothing becomes None ("no sample"), a box that fills the field stays.
  `from_threshold`: the inner localizer's threshold box (extras "threshold_box", the rotation
  localizer's with its trim) is `refine_box_faces`' `axis_seed`.
  """

  def __init__(self, localizer, axis_of, from_threshold=False, **settings):
    self.localizer, self.axis_of, self.settings = localizer, axis_of, settings
    self.from_threshold = from_threshold
    self.method_name = localizer.method_name  # the report says what the refinement did

  def localize(self, volume, volume_fov, value_range):
    box, extras = self.localizer.localize(volume, volume_fov, value_range)
    if box is None or extras.get("outcome") == "fills the field":
      return box, extras
    extras["coarse_box"] = box
    seed = extras.get("threshold_box") if self.from_threshold else None
    box, extras["refinement"], extras["measured_faces"], tails = refine_box_faces(
      volume, box, self.axis_of(volume.shape), axis_seed=seed, **self.settings
    )
    if tails is not None:
      extras["face_tails"] = tails  # grid voxels past each face (crop.face_pads)
    if box is None:
      extras["outcome"] = "no sample"
    return box, extras

  def save(self, *args, **kwargs):
    return self.localizer.save(*args, **kwargs)
