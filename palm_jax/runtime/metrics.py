"""Metrics users can plot and progress they can read.

`MetricWriter` appends one JSON object per log step to `DIR/metrics.jsonl` and writes the
same scalars (and images) as TensorBoard event files under `DIR/tb/` and, when the config
asks for it (`config.log.wandb`, `runtime/wandb_log.py`), to a Weights & Biases run. Only
process 0 writes; other processes get a writer that does nothing, so callers never branch
on the process.
`Progress` turns step counts into a line with steps/s and ETA.
"""
from __future__ import annotations

import json
import math
import os
import time
from typing import Mapping

import jax
import numpy as np
from absl import logging

from palm_jax.runtime import wandb_log


def _to_python(value):
  value = np.asarray(value)
  if value.size != 1:
    raise ValueError(f"metrics must be scalars, got shape {value.shape}")
  value = value.item()
  return value if isinstance(value, (int, bool)) else float(value)


class _NoBoard:
  """Stands in for a TensorBoard writer when tensorboardX is absent."""

  def add_scalar(self, *args, **kwargs):
    pass

  add_image = add_scalar
  flush = add_scalar
  close = add_scalar


class MetricWriter:
  """Scalars to `metrics.jsonl` + TensorBoard (+ W&B); images to TensorBoard (+ W&B);
  process 0 only.

  `wandb`: the run's W&B settings (`wandb_log.Settings.from_config(config)`); None or
  disabled = no W&B. The W&B run of `logdir` opens (or resumes) here and finishes at `close`.
  """

  def __init__(self, logdir: str, *, jsonl_name: str = "metrics.jsonl",
               enabled: bool | None = None, wandb: wandb_log.Settings | None = None):
    self.logdir = logdir
    self.enabled = jax.process_index() == 0 if enabled is None else enabled
    self.jsonl_path = os.path.join(logdir, jsonl_name)
    self._tb = None
    self._purge_step = None
    self._files = 0  # event files this writer opened (each flush closes one)
    self._wandb = None
    if self.enabled:
      os.makedirs(logdir, exist_ok=True)
      if wandb is not None and wandb.enabled:
        self._wandb = wandb_log.Run(logdir, wandb)

  def _board(self):
    if self._tb is None:
      try:  # optional: accelerator machines often lack it; metrics.jsonl is still written
        from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      except ImportError:
        logging.warning("tensorboardX is not installed: no TensorBoard events, only %s "
                        "(pip install tensorboardX to get them).", self.jsonl_path)
        self._tb = _NoBoard()
      else:
        # purge_step: TensorBoard hides the events at or after it that an earlier process
        # wrote, so a resumed run's redone steps are not drawn twice.
        # The suffix keeps files opened within one second apart (names carry the time in
        # whole seconds, and a second file of the same name would replace the first).
        self._tb = SummaryWriter(os.path.join(self.logdir, "tb"), flush_secs=30,
                                 purge_step=self._purge_step,
                                 filename_suffix=f".{os.getpid()}.{self._files}")
        self._files += 1
        self._purge_step = None  # only the first file after a resume purges
    return self._tb

  def truncate_after(self, step: int) -> None:
    """Drops JSON lines logged after `step` and purges TensorBoard events after it (a
    resumed run redoes those steps)."""
    if not self.enabled:
      return
    self._purge_step = int(step) + 1
    if not os.path.exists(self.jsonl_path):
      return
    with open(self.jsonl_path) as f:
      lines = [line for line in f if line.strip()]
    kept = [line for line in lines if json.loads(line).get("step", 0) <= step]
    if len(kept) != len(lines):
      tmp = self.jsonl_path + ".tmp"
      with open(tmp, "w") as f:
        f.writelines(kept)
      os.replace(tmp, self.jsonl_path)

  def write_scalars(self, step: int, scalars: Mapping[str, object]) -> None:
    """One JSON line `{"step": step, **scalars}` and one TensorBoard (and W&B) point per
    finite scalar, at the same step."""
    if not self.enabled:
      return
    row = {"step": int(step)}
    row.update({k: _to_python(v) for k, v in scalars.items()})
    with open(self.jsonl_path, "a") as f:
      f.write(json.dumps(row, allow_nan=True) + "\n")
    points = {k: v for k, v in row.items()
              if k != "step" and isinstance(v, (int, float)) and math.isfinite(v)}
    board = self._board()
    for k, v in points.items():
      board.add_scalar(k, v, int(step))
    if self._wandb is not None:
      self._wandb.log_scalars(int(step), points)

  def write_image(self, step: int, name: str, image) -> None:
    """An `[H, W, C]` uint8 image to TensorBoard (and W&B)."""
    if not self.enabled:
      return
    self._board().add_image(name, np.asarray(image), int(step), dataformats="HWC")
    if self._wandb is not None:
      self._wandb.log_image(int(step), name, image)

  def write_summary(self, values: Mapping[str, float]) -> None:
    """Final numbers to the W&B run's summary, when this writer logs to W&B."""
    if self._wandb is not None:
      self._wandb.set_summary(values)

  def flush(self) -> None:
    """Everything written so far is on disk when this returns.

    tensorboardX's own `flush()` does not wait for its background thread to take the
    queued events, so points written just before it can still be missing. Closing the
    file does wait; the next write opens a new one, and TensorBoard reads every file.
    (The W&B run stays open: W&B writes what it was given in its own process.)
    """
    if self._tb is not None:
      self._tb.close()
      self._tb = None

  def close(self) -> None:
    """Flushes TensorBoard and finishes the W&B run (the host loops call it however they
    end: done, an error, or SIGTERM)."""
    self.flush()
    if self._wandb is not None:
      self._wandb.close()
      self._wandb = None


def format_duration(seconds: float) -> str:
  """`3725` → `'1h02m05s'`; `'?'` when unknown."""
  if not math.isfinite(seconds) or seconds < 0:
    return "?"
  seconds = int(round(seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def plural(n: int, noun: str) -> str:
  """`1, "chunk"` → "1 chunk"; `3, "chunk"` → "3 chunks"."""
  return f"{n:,} {noun}" if n == 1 else f"{n:,} {noun}s"


def _process_start() -> float:
  """When this process started (wall clock): Linux's /proc, else when this module loaded."""
  try:
    with open("/proc/self/stat") as f:
      ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: start, ticks after boot
    with open("/proc/uptime") as f:
      uptime = float(f.read().split()[0])
    return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
  except (OSError, ValueError, IndexError):
    return time.time()


PROCESS_START = _process_start()


def since_start() -> str:
  """Wall time since the process started (start-up, imports and compilation included)."""
  return format_duration(time.time() - PROCESS_START)


class Progress:
  """Rate and ETA of a long job: the rate is the average over every timed interval of the
  run so far, so one slow or fast chunk does not swing it. The interval that compiled
  (`timed=False`) and the seconds a caller spent writing between reports (`excluded_s`:
  checkpoints, rollout pictures) are left out of it."""

  def __init__(self, total: int, *, start: int = 0, unit: str = "steps"):
    self.total, self.unit = int(total), unit
    self._last_step, self._last_time = int(start), time.time()
    self._units, self._seconds = 0, 0.0
    self.rate = float("nan")

  def update(self, step: int, timed: bool = True, excluded_s: float = 0.0) -> dict:
    """Records that `step` units are done; logs and returns `{rate, eta_s}`."""
    now = time.time()
    dt = now - self._last_time - max(float(excluded_s), 0.0)
    if timed and step > self._last_step and dt > 0:
      self._units += step - self._last_step
      self._seconds += dt
      self.rate = self._units / self._seconds
    self._last_step, self._last_time = int(step), now
    eta = (self.total - step) / self.rate if self.rate > 0 else float("nan")
    pct = 100.0 * step / max(self.total, 1)
    logging.info("%s/%s %s (%.1f%%) | %s %s/s | ETA %s", f"{step:,}", f"{self.total:,}",
                 self.unit, pct, f"{self.rate:,.0f}" if math.isfinite(self.rate) else "?",
                 self.unit, format_duration(eta))
    return {"rate": self.rate, "eta_s": eta}
