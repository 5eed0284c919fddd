"""`python -m palm_jax.bench ...` (see palm_jax/bench/__init__.py)."""
from palm_jax.bench.cli import main

main()
