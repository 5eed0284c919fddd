"""The frozen encoder of evaluation: restore (or randomly initialise) it, extract features.

Checkpoint layout (written by the PALM loop, and by `save_encoder_checkpoint` below for
tests and for encoders trained elsewhere): `DIR/checkpoints/<step>/` holds the Orbax items
  encoder  `{"params": ..., "batch_stats": ...}` of a `palm_jax.models.resnet.ResNet`
  meta     `{"step", "job", "config", "encoder": <ResNet keyword arguments>}`
When `meta["encoder"]` is missing, the architecture is inferred from the parameter names
and shapes (`resnet.infer_resnet`).

Feature extraction runs the encoder in eval mode (BatchNorm running averages, so a
sample's features never depend on its batch-mates) on raw uint8 images — the ResNet
normalises them itself — with no augmentation. Batches are sharded over the mesh's `data`
axis, the last one padded (its padding rows are dropped), and dispatched asynchronously
so the host prepares batch k+1 while the device computes batch k; one jitted program is
compiled per encoder architecture and batch shape, reused for every dataset.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import Mesh

from palm_jax.models import resnet
from palm_jax.runtime import checkpoint, sharding
from palm_jax.runtime.errors import require

ENCODER_INITS = ("checkpoint", "random")
_RESNET_FIELDS = ("stage_sizes", "width", "zero_init_residual")


@dataclasses.dataclass(frozen=True)
class Encoder:
  """A frozen encoder: module, variables `{"params", "batch_stats"}`, and where it came from.

  init: "checkpoint" (restored from `workdir` at `step`) or "random" (fresh init, step 0).
  kwargs: the ResNet keyword arguments (JSON-friendly), reported beside every number.
  """
  model: resnet.ResNet
  variables: Any
  step: int
  init: str
  kwargs: dict

  @property
  def feature_dim(self) -> int:
    return self.model.feature_dim


def encoder_kwargs(kwargs: Mapping[str, Any] | None, *, strict: bool = True) -> dict:
  """Validated, JSON-friendly ResNet kwargs: `{"stage_sizes": [..], "width": .., ...}`.

  Compute dtypes are dropped (evaluation picks its own). Unknown keys raise a UserError,
  or with `strict=False` (a checkpoint's meta) are dropped with a warning.
  """
  kwargs = dict(kwargs or {})
  unknown = sorted(set(kwargs) - set(_RESNET_FIELDS) - {"dtype", "param_dtype"})
  if unknown and not strict:
    logging.warning("Ignoring encoder settings %s (not ResNet arguments).", unknown)
    kwargs = {k: v for k, v in kwargs.items() if k not in unknown}
    unknown = []
  require(not unknown, f"encoder settings {unknown} are not ResNet arguments; use only "
                       f"{list(_RESNET_FIELDS)}.")
  out = {k: kwargs[k] for k in _RESNET_FIELDS if k in kwargs}
  if "stage_sizes" in out:
    stages = out["stage_sizes"]
    require(isinstance(stages, (list, tuple)) and len(stages) >= 1
            and all(int(s) >= 1 for s in stages),
            f"encoder.stage_sizes={stages!r} must be a non-empty list of block counts >= 1, "
            "e.g. (2, 2, 2, 2) for ResNet-18.")
    out["stage_sizes"] = [int(s) for s in stages]
  if "width" in out:
    require(int(out["width"]) >= 1, f"encoder.width={out['width']} must be >= 1 (64 for "
                                    "ResNet-18).")
    out["width"] = int(out["width"])
  return out


def build_model(kwargs: Mapping[str, Any], dtype: str = "float32") -> resnet.ResNet:
  """The ResNet of `encoder_kwargs(kwargs)` computing in `dtype` (params stay float32)."""
  clean = encoder_kwargs(kwargs)
  if "stage_sizes" in clean:
    clean["stage_sizes"] = tuple(clean["stage_sizes"])
  require(dtype in ("float32", "bfloat16", "float16"),
          f"config.dtype={dtype!r} is not a compute dtype; use float32 or bfloat16.")
  return resnet.ResNet(dtype=jnp.dtype(dtype), **clean)


def random_encoder(kwargs: Mapping[str, Any], *, seed: int = 0, image_size: int = 32,
                   dtype: str = "float32") -> Encoder:
  """A freshly initialised encoder (the "random" baseline every number is compared to)."""
  model = build_model(kwargs, dtype)
  dummy = jnp.zeros((1, image_size, image_size, 3), jnp.uint8)
  # Eager on purpose: the per-primitive compilations of the initialisers are cached across
  # calls, while a fresh `jax.jit(model.init)` would recompile the whole init every time.
  variables = model.init(jax.random.key(seed), dummy)
  return Encoder(model, dict(variables), 0, "random", encoder_kwargs(kwargs))


def from_variables(variables: Any, kwargs: Mapping[str, Any] | None = None, *, step: int = 0,
                   init: str = "checkpoint", dtype: str = "float32") -> Encoder:
  """Wraps encoder variables `{"params", "batch_stats"}` you already hold (the PALM loop's)."""
  require(isinstance(variables, Mapping) and "params" in variables,
          "encoder variables must be a dict with 'params' (and 'batch_stats'); pass "
          "{'params': params['encoder'], 'batch_stats': batch_stats['encoder']}.")
  inferred = resnet.infer_resnet(variables["params"])
  inferred_kwargs = {"stage_sizes": list(inferred.stage_sizes), "width": inferred.width}
  kwargs = encoder_kwargs(kwargs, strict=False) if kwargs else inferred_kwargs
  model = build_model(kwargs, dtype)
  if not _shapes_match(model, variables):
    logging.warning("Encoder settings %s do not fit the saved parameters; using %s read "
                    "from the parameters instead.", kwargs, inferred_kwargs)
    kwargs, model = inferred_kwargs, build_model(inferred_kwargs, dtype)
    require(_shapes_match(model, variables),
            "the encoder parameters do not form a palm_jax ResNet; point --workdir at a "
            "PALM run (or save the encoder with features.save_encoder_checkpoint).")
  return Encoder(model, dict(variables), int(step), init, encoder_kwargs(kwargs))


def _shapes_match(model: resnet.ResNet, variables: Mapping[str, Any]) -> bool:
  """Whether `variables` have exactly the parameter tree and shapes `model.init` makes."""
  dummy = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.uint8)
  expected = jax.eval_shape(model.init, jax.random.key(0), dummy)
  shapes = lambda tree: jax.tree.map(np.shape, dict(tree))  # noqa: E731
  return all(shapes(expected[c]) == shapes(variables.get(c, {}))
             for c in ("params", "batch_stats"))


def load_encoder(workdir: str, *, step: int | None = None, init: str = "checkpoint",
                 kwargs: Mapping[str, Any] | None = None, seed: int = 0,
                 image_size: int = 32, dtype: str = "float32") -> Encoder:
  """Restores the encoder of `workdir` (latest or `step`), or initialises one randomly.

  `init="random"`, or `init="checkpoint"` with no checkpoint in the workdir (logged as a
  warning), gives `random_encoder(kwargs)`. A `step` that does not exist raises UserError.
  """
  require(init in ENCODER_INITS,
          f"config.encoder_init={init!r} is not one of {ENCODER_INITS}; use checkpoint or "
          "random.")
  if init == "checkpoint":
    restored = checkpoint.restore_encoder(workdir, step)
    if restored is not None:
      got_step, variables, meta = restored
      meta_kwargs = (meta or {}).get("encoder") or None
      encoder = from_variables(variables, meta_kwargs, step=got_step, dtype=dtype)
      logging.info("Restored encoder %s from %s at step %d.", encoder.kwargs, workdir,
                   got_step)
      return encoder
    require(step is None, f"config.step={step} was asked for but {workdir} has no "
                          "checkpoint; use -1 with a run's workdir, or encoder_init=random.")
    logging.warning("No checkpoint in %s: evaluating a RANDOMLY INITIALISED encoder.",
                    workdir)
  return random_encoder(kwargs or {}, seed=seed, image_size=image_size, dtype=dtype)


def save_encoder_checkpoint(workdir: str, step: int, variables: Any,
                            kwargs: Mapping[str, Any], *, config: Any = None,
                            job: str = "palm") -> str:
  """Writes an encoder-only checkpoint in the PALM run's layout; returns its directory.

  The same items the PALM loop saves (`encoder`, `meta`; `state` is the encoder too),
  so evaluation of an encoder trained elsewhere is `save_encoder_checkpoint(...)` away.
  """
  directory = checkpoint.checkpoint_dir(workdir)
  meta = {"job": job, "encoder": encoder_kwargs(kwargs),
          "config": config.to_dict() if hasattr(config, "to_dict") else (config or {})}
  ckpt = checkpoint.Checkpointer(directory, async_save=False)
  ckpt.save(int(step), state={"encoder": variables}, meta=meta, encoder=variables)
  ckpt.close()
  return directory


@functools.partial(jax.jit, static_argnums=0)
def encode_batch(model: resnet.ResNet, variables: Any, images: jax.Array) -> jax.Array:
  """Eval-mode features `[B, F]` of uint8 `[B, H, W, 3]`; B sharded, variables replicated.

  The module is a static argument (linen modules hash by their fields), so equal
  encoders share one compiled program across extractors and datasets.
  """
  return model.apply(variables, images, train=False)


@functools.cache
def _encode_program():
  """`encode_batch`, started together by every process of a multi-process run (gloo's 30 s
  connect); one wrapper per process, so every extractor shares its compiled programs
  (built on first use: the process count is known only after `jax.distributed`)."""
  return sharding.start_together(encode_batch, "features")


class FeatureExtractor:
  """`extractor(images uint8 [N, H, W, 3]) → float32 [N, F]` with one compiled program.

  batch_size must divide over the mesh's devices (`check_divisible`); the last batch is
  padded with zeros and its padding rows dropped.
  """

  def __init__(self, encoder: Encoder, *, batch_size: int, mesh: Mesh | None = None):
    self.encoder = encoder
    self.mesh = mesh or sharding.make_mesh()
    require(batch_size >= 1, f"config.batch_size={batch_size} must be positive (e.g. 512).")
    sharding.check_divisible("batch_size", batch_size, self.mesh)
    self.batch_size = batch_size
    # to_host: the variables may be global arrays of a multi-process run (PALM's final probe).
    host = sharding.to_host({k: v for k, v in encoder.variables.items()
                             if k in ("params", "batch_stats")})
    self._variables = sharding.host_to_global(host, self.mesh, sharded=False)

  def __call__(self, images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    require(images.ndim == 4 and images.shape[-1] == 3 and images.dtype == np.uint8,
            f"feature extraction wants uint8 [N, H, W, 3] images, got {images.dtype} "
            f"{images.shape}; load data with palm_jax.data.load_dataset.")
    n, bs = images.shape[0], self.batch_size
    start_time, outputs = time.time(), []
    rows = sharding.local_slice(bs)
    for start in range(0, n, bs):
      batch = images[start:start + bs]
      if batch.shape[0] < bs:
        pad = np.zeros((bs - batch.shape[0],) + batch.shape[1:], np.uint8)
        batch = np.concatenate([batch, pad])
      outputs.append(_encode_program()(self.encoder.model, self._variables,
                                       sharding.host_to_global(batch[rows], self.mesh)))
    feats = (np.concatenate(sharding.to_host(outputs))[:n] if outputs
             else np.zeros((0, self.encoder.feature_dim), np.float32))
    logging.info("Features of %d images in %.1fs (%d per batch).", n,
                 time.time() - start_time, bs)
    return feats.astype(np.float32)
