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
