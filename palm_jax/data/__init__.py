"""Evaluation datasets: `load_dataset("tfds:cifar10:test" | "npz:…" | "folder:…" | "interp:…")`.

See `palm_jax.data.datasets` for the spec grammar. TFDS is imported only for `tfds:` specs.
"""
from palm_jax.data.datasets import (Dataset, DatasetSpec, load_dataset, make_interp,
                                    parse_spec, parse_spec_list)

__all__ = ["Dataset", "DatasetSpec", "load_dataset", "make_interp", "parse_spec",
           "parse_spec_list"]
