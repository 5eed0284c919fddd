"""Old path of `palm_jax.models.stylegan2.handle` (kept so existing imports keep working).

The module object itself is the package module: private names and monkeypatching behave
exactly as with `from palm_jax.models.stylegan2 import handle`.
"""
import sys

from palm_jax.models.stylegan2 import handle as _module

sys.modules[__name__] = _module
