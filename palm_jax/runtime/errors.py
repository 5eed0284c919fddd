"""The one exception type for mistakes a user can make.

A bad config value, a wrong weights file, a missing dataset or a corrupt checkpoint is
raised as `UserError("<one sentence naming the value and the fix>")`. `palm_jax.main`
prints that sentence alone (no traceback) and exits with status 2; library callers can
catch it like any `ValueError`.
"""


class UserError(ValueError):
  """A mistake the user can fix; the message is one sentence naming value and fix."""


def require(condition: bool, message: str) -> None:
  """Raises `UserError(message)` unless `condition` holds (checked before compilation)."""
  if not condition:
    raise UserError(message)


# The optional RL packages (gymnax, gymnasium, rejax and six, which gymnax 1.0.1 imports
# without declaring it): pyproject.toml's `rl` extra, from a checkout.
RL_INSTALL = 'pip install -e ".[rl]"'


def missing_dependency(e: ImportError, user: str, package: str, install: str) -> UserError:
  """The sentence for an optional `package` that `user` could not import, naming the module
  that is really missing (`e.name`): `pip install gymnax` leaves gymnax 1.0.1 without `six`,
  which it imports but does not declare, and "install gymnax" would then be wrong."""
  missing = (e.name or "").split(".")[0]
  if missing == package:
    return UserError(f"{user} needs the optional package {package}, which is not installed; "
                     f"install it with `{install}`.")
  if missing:
    return UserError(f"{user} cannot import {package}: the module {missing!r} it imports is "
                     f"not installed; install it with `{install}` (or `pip install {missing}`).")
  return UserError(f"{user} cannot import {package} ({type(e).__name__}: {e}); install a "
                   f"matching version with `{install}`.")
