"""Old path of `palm_jax.models.stylegan2.weights` (kept so existing imports keep working).

The module object itself is the package module: private names and monkeypatching behave
exactly as with `from palm_jax.models.stylegan2 import weights`.
"""
import sys

from palm_jax.models.stylegan2 import weights as _module

sys.modules[__name__] = _module
