"""The bench's command line: `python -m palm_jax.bench <subcommand> [--flags]`.

Subcommands live in `SUBCOMMANDS` (name → `Subcommand(add_arguments, run, help)`), one
module each under `palm_jax/bench/`. The persistent compilation cache is on (as for
`palm_jax.main`; `PALM_JAX_XLA_CACHE=0` turns it off, e.g. to time cold compiles twice).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any, Callable

from palm_jax.bench import features, frame_log, gan, generator, palm, suite
from palm_jax.runtime import files


@dataclasses.dataclass(frozen=True)
class Subcommand:
  add_arguments: Callable[[argparse.ArgumentParser], None]
  run: Callable[[argparse.Namespace], Any]
  help: str


SUBCOMMANDS: dict[str, Subcommand] = {
    "generator": Subcommand(generator.add_generator_arguments, generator.bench_generator,
                            "StyleGAN2-ADA generator throughput (CIFAR config)"),
    "palm": Subcommand(palm.add_palm_arguments, palm.bench_palm,
                       "PALM env steps/s with all updates on, and a breakdown"),
    "gan": Subcommand(gan.add_gan_arguments, gan.bench_gan,
                      "GAN training s/kimg (NVIDIA's cifar config)"),
    "features": Subcommand(features.add_features_arguments, features.bench_features,
                           "feature extraction + linear probe time"),
    "framelog": Subcommand(frame_log.add_framelog_arguments, frame_log.bench_framelog,
                           "frame-log record layouts: write and random-read speed"),
    "suite": Subcommand(suite.add_suite_arguments, suite.bench_suite,
                        "everything above, most important first, within a time budget"),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
  parser = argparse.ArgumentParser(prog="python -m palm_jax.bench", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--json", default="", help="also write the rows to this JSON file")
  sub = parser.add_subparsers(dest="subcommand", required=True)
  for name, command in SUBCOMMANDS.items():
    command.add_arguments(sub.add_parser(name, help=command.help))
  return parser.parse_args(argv)


def main(argv: list[str] | None = None):
  from palm_jax.runtime import compile_cache  # pylint: disable=import-outside-toplevel
  args = parse_args(sys.argv[1:] if argv is None else argv)
  compile_cache.enable()
  out = SUBCOMMANDS[args.subcommand].run(args)
  if args.json:
    files.write_json(args.json, out)
  return out
