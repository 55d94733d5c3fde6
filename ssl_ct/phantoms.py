r"""Writes a synthetic CT set with ground truth (the embedded default data) to a folder.

  python -m ssl_ct.phantoms --kind=medaka --num=12 --shape=192,64,64 OUT_DIR
  python -m ssl_ct.phantoms --kind=xenopus --num=12 --shape=112,112,112 --preview=OUT.png OUT_DIR

See ssl_ct/data/synthetic.py for the folder layout and ssl_ct/data/phantoms.py for the physics.
"""

from absl import flags

from ssl_ct.data import phantoms, synthetic
from ssl_ct.errors import exit_on_input_error, parse_flags, run_cli, usage_error

_PROG = "python -m ssl_ct.phantoms"


def _shape(text):
  try:
    shape = tuple(int(n) for n in text.split(","))
  except ValueError:
    shape = ()
  if len(shape) != 3:
    usage_error(f"--shape={text}: the shape must be three integers z,y,x", _PROG)
  return shape


def _flags():
  fv = flags.FlagValues()
  flags.DEFINE_enum("kind", "xenopus", sorted(phantoms.GENERATORS), "sample family", flag_values=fv)
  flags.DEFINE_integer("num", 12, "number of volumes", flag_values=fv)
  flags.DEFINE_string("shape", "112,112,112", "z,y,x voxels (y == x)", flag_values=fv)
  flags.DEFINE_integer("seed", 0, "the set is deterministic in it", flag_values=fv)
  flags.DEFINE_float("z_jitter", 0.0, "+- fraction of z size between volumes", flag_values=fv)
  flags.DEFINE_enum(
    "dtype", "float32", synthetic.DTYPES, "uint8: the family's display window, as atlas scans are exported", flag_values=fv
  )
  flags.DEFINE_string("preview", "", "also save a PNG of mid slices with the true boxes", flag_values=fv)
  flags.DEFINE_bool("overwrite", False, "replace OUT if it exists", flag_values=fv)
  return fv


def main(argv=None):
  """`python -m ssl_ct.phantoms OUT_DIR`; `argv` without the program name (tests call it in-process)."""
  args = _flags()
  (output,) = parse_flags(args, argv, prog=_PROG, doc=__doc__, positional=("OUT_DIR",))
  shape = _shape(args.shape)
  out = exit_on_input_error(
    synthetic.write_set,
    output,
    kind=args.kind,
    num_volumes=args.num,
    shape=shape,
    seed=args.seed,
    z_jitter=args.z_jitter,
    dtype=args.dtype,
    overwrite=args.overwrite,
  )
  print(f"wrote {args.num} {args.kind} volumes with truth.json to {out}")
  if args.preview:
    from ssl_ct import plots  # matplotlib only when asked

    plots.save_set_preview(out, args.preview)
    print(f"preview: {args.preview}")


def cli():
  """The console script (setup.cfg)."""
  run_cli(main)


if __name__ == "__main__":
  cli()
