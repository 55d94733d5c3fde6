r"""Writes a synthetic CT set with ground truth (the embedded default data) to a folder.

  python -m ssl_ct.phantoms --kind=medaka --num=12 --shape=192,64,64 OUT_DIR
  python -m ssl_ct.phantoms --kind=xenopus --num=12 --shape=112,112,112 --preview=OUT.png OUT_DIR

See ssl_ct/data/synthetic.py for the folder layout and ssl_ct/data/phantoms.py for the physics.
"""

import argparse

from ssl_ct.data import phantoms, synthetic
from ssl_ct.errors import CliParser, exit_on_input_error, run_cli


def _shape(text):
  try:
    shape = tuple(int(n) for n in text.split(","))
  except ValueError:
    raise argparse.ArgumentTypeError(f"shape must be three integers z,y,x, got {text!r}") from None
  if len(shape) != 3:
    raise argparse.ArgumentTypeError(f"shape must be three integers z,y,x, got {text!r}")
  return shape


def main(argv=None):
  parser = CliParser(prog="python -m ssl_ct.phantoms", description=__doc__.split("\n")[1])
  parser.add_argument("output", help="new folder for the set")
  parser.add_argument("--kind", choices=sorted(phantoms.GENERATORS), default="xenopus")
  parser.add_argument("--num", type=int, default=12, help="number of volumes")
  parser.add_argument("--shape", type=_shape, default=(112, 112, 112), help="z,y,x voxels (y == x)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--z-jitter", type=float, default=0.0, help="+- fraction of z size between volumes")
  parser.add_argument("--dtype", choices=synthetic.DTYPES, default="float32", help="uint8: the family's display window, as atlas scans are exported")
  parser.add_argument("--preview", default="", help="also save a PNG of mid slices with the true boxes")
  parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
  args = parser.parse_args(argv)
  out = exit_on_input_error(
    synthetic.write_set,
    args.output,
    kind=args.kind,
    num_volumes=args.num,
    shape=args.shape,
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
