"""Damages a checkpoint on purpose, as a full disk or a killed writer would (shared by tests)."""
import os


def truncate_state(step_dir):
  """Truncates every data file of `<step_dir>/state` to 10 bytes: unreadable, folder intact."""
  for root, _, names in os.walk(os.path.join(step_dir, "state")):
    for name in names:
      if os.sep + "d" in root:
        with open(os.path.join(root, name), "r+b") as f:
          f.truncate(10)
