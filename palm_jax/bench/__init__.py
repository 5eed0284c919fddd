"""Benchmarks: `python -m palm_jax.bench <subcommand> [--flags]`.

    python -m palm_jax.bench generator --batch_sizes=1024,4096,8192 --dtype=bfloat16
    python -m palm_jax.bench palm --config=configs/cifar10.py --num_envs=1024,4096,8192
    python -m palm_jax.bench gan --config=configs/gan_cifar10.py
    python -m palm_jax.bench features --train=50000 --test=10000
    python -m palm_jax.bench suite --budget_s=420 --out=DIR      # all of it, in a budget

One module per subcommand (`generator.py` + `against.py`, `palm.py`, `gan.py`,
`features.py`, `suite.py`), shared measuring in `timing.py`: ahead-of-time compilation,
XLA's memory plan of each program, device-synchronised medians after warm-up.
"""
from palm_jax.bench.cli import SUBCOMMANDS, Subcommand, main, parse_args
from palm_jax.bench.generator import (CIFAR_GENERATOR, bench_generator,
                                      generator_flops_per_image)
from palm_jax.bench.palm import bench_palm

__all__ = ["CIFAR_GENERATOR", "SUBCOMMANDS", "Subcommand", "bench_generator", "bench_palm",
           "generator_flops_per_image", "main", "parse_args"]
