"""SimSiam (Chen & He 2021) on positive pairs: the encoder objective of PALM.

For a positive pair `(x1, x2)` (PALM: consecutive observations `(s_t, s_{t+1})` of one
trajectory; where the pairs come from is the caller's choice), with encoder `f`,
projector `g` and predictor `h`:

    z_i = g(f(x_i)),   p_i = h(z_i),
    D(p, z) = − mean_batch  (p / ||p||) · (z / ||z||)          (negative cosine)
    L = ½ D(p1, sg(z2)) + ½ D(p2, sg(z1))                      (sg = stop-gradient)

Optimiser (SimSiam's `main_simsiam.py`): SGD with momentum 0.9 and weight decay 5e-4 on
every parameter (PyTorch's coupled form, `g ← g + wd·θ` before momentum), learning rate
`base_lr · batch / 256` on a cosine schedule `lr_t = lr_0 · ½ (1 + cos(π t / T))` over
`T = total_steps` updates (0 after); with `fix_pred_lr` the predictor keeps `lr_0`.
`schedule="constant"` keeps `lr_0` throughout instead: then an encoder saved after `t`
updates is what a run of `t` updates would have produced, which is what a curve over
permanent snapshots (sample-size curves, paper Fig. 6) should mean. Under the cosine
schedule an intermediate snapshot is a point of one long schedule, not a shorter run.

The two views go through the network separately, as in the reference, so BatchNorm
normalises each view with its own statistics and the running averages are updated twice
per step. Everything is a pure function of a `SimSiamState` pytree: it runs under
`jax.jit` with the batch sharded over a `("data",)` mesh (BatchNorm and the loss then
reduce over the global batch) and inside `lax.scan`.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from palm_jax.models.atari_encoder import PalmAtariEncoder, torso_features
from palm_jax.models.heads import Predictor, Projector
from palm_jax.models.resnet import ResNet, infer_resnet
from palm_jax.representation.augment import augment
from palm_jax.runtime.errors import require

_DTYPES = ("float32", "bfloat16", "float16")
ENCODERS = ("resnet", "atari")
SCHEDULES = ("cosine", "constant")


@dataclasses.dataclass(frozen=True)
class SimSiamConfig:
  """Architecture and optimiser of SimSiam. Defaults: the paper's CIFAR setting.

  Build from a config section with `as_simsiam_config(config.simsiam)`.
  """
  stage_sizes: tuple[int, ...] = (2, 2, 2, 2)  # BasicBlocks per ResNet stage (ResNet-18)
  width: int = 64                # channels of the stem / first stage; features = width·2^(S-1)
  zero_init_residual: bool = True  # last BN of each block starts at 0 (as SimSiam)
  proj_hidden_dim: int = 2048    # projector hidden width
  proj_dim: int = 2048           # projector output width (= predictor output)
  proj_layers: int = 2           # projector Dense+BN layers (2 for CIFAR, 3 for ImageNet)
  pred_hidden_dim: int = 512     # predictor bottleneck width
  dtype: str = "float32"         # compute dtype ("bfloat16" on GPU/TPU); params stay float32
  batch_size: int = 512          # pairs per update; the lr is base_lr · batch_size / 256
  base_lr: float = 0.03          # SimSiam's base learning rate
  momentum: float = 0.9          # SGD momentum
  weight_decay: float = 5e-4     # coupled L2 weight decay on all parameters
  fix_pred_lr: bool = False      # keep the predictor's lr constant (SimSiam's --fix-pred-lr)
  total_steps: int = 0           # updates of the cosine schedule (or pass total_steps=)
  augment: bool = False          # apply SimSiam's CIFAR augmentations to both views
  schedule: str = "cosine"       # "cosine" (SimSiam) or "constant" (lr_0 throughout)
  # "resnet" (CIFAR: `stage_sizes`/`width`, RGB) or "atari" (DrQ's conv torso on uint8
  # stacks [84, 84, 4], `models/atari_encoder.PalmAtariEncoder`; stage_sizes/width unused).
  encoder: str = "resnet"

  @property
  def feature_dim(self) -> int:
    if self.encoder == "atari":
      return torso_features(84)
    return self.width * 2 ** (len(self.stage_sizes) - 1)

  @property
  def init_lr(self) -> float:
    return self.base_lr * self.batch_size / 256.0


def as_simsiam_config(config: Any) -> SimSiamConfig:
  """A validated `SimSiamConfig` from itself, a dict or an `ml_collections.ConfigDict`.

  Raises a UserError naming any unknown field or invalid value.
  """
  if isinstance(config, SimSiamConfig):
    fields = dataclasses.asdict(config)
  else:
    if hasattr(config, "to_dict"):
      config = config.to_dict()
    require(isinstance(config, Mapping),
            f"the SimSiam config must be a SimSiamConfig, dict or ConfigDict, got "
            f"{type(config).__name__}; pass e.g. config.simsiam.")
    known = {f.name for f in dataclasses.fields(SimSiamConfig)}
    unknown = sorted(set(config) - known)
    require(not unknown, f"unknown SimSiam config field(s) {unknown}; the known fields are "
                         f"{sorted(known)}.")
    fields = dict(config)
  if "stage_sizes" in fields:
    fields["stage_sizes"] = tuple(int(s) for s in fields["stage_sizes"])
  cfg = SimSiamConfig(**fields)
  require(len(cfg.stage_sizes) >= 1 and all(s >= 1 for s in cfg.stage_sizes),
          f"simsiam.stage_sizes={cfg.stage_sizes} needs at least one stage of at least one "
          f"block; use e.g. (2, 2, 2, 2).")
  for name in ("width", "proj_hidden_dim", "proj_dim", "proj_layers", "pred_hidden_dim",
               "batch_size"):
    require(int(getattr(cfg, name)) >= 1,
            f"simsiam.{name}={getattr(cfg, name)} must be a positive integer.")
  require(cfg.dtype in _DTYPES,
          f"simsiam.dtype={cfg.dtype!r} is not supported; use one of {_DTYPES}.")
  require(cfg.encoder in ENCODERS, f"simsiam.encoder={cfg.encoder!r} must be one of "
                                   f"{ENCODERS}.")
  require(not (cfg.encoder == "atari" and cfg.augment),
          "simsiam.augment=True applies CIFAR's colour augmentations, which do not apply to "
          "grayscale Atari stacks; set simsiam.augment=False with simsiam.encoder='atari'.")
  require(cfg.schedule in SCHEDULES, f"simsiam.schedule={cfg.schedule!r} must be one of "
                                    f"{SCHEDULES}.")
  require(cfg.base_lr > 0, f"simsiam.base_lr={cfg.base_lr} must be positive (e.g. 0.03).")
  require(0 <= cfg.momentum < 1, f"simsiam.momentum={cfg.momentum} must be in [0, 1).")
  require(cfg.weight_decay >= 0,
          f"simsiam.weight_decay={cfg.weight_decay} must be non-negative (e.g. 5e-4).")
  return cfg


class SimSiamModel(nn.Module):
  """Encoder `f`, projector `g`, predictor `h`: images `[B, H, W, 3]` → `(feat, z, p)`.

  `feat [B, F]` float32, `z [B, proj_dim]`, `p [B, proj_dim]`. Variables are named
  `encoder`, `projector`, `predictor` in both `params` and `batch_stats`.
  """
  encoder: ResNet
  projector: Projector
  predictor: Predictor

  def __call__(self, images: jax.Array, train: bool = True):
    feat = self.encoder(images, train)
    z = self.projector(feat, train)
    p = self.predictor(z, train)
    return feat, z, p

  def encode(self, images: jax.Array, train: bool = False) -> jax.Array:
    return self.encoder(images, train)


def make_encoder(config: Any) -> nn.Module:
  """The encoder of a SimSiam config: a `ResNet`, or the Atari torso."""
  cfg = as_simsiam_config(config)
  if cfg.encoder == "atari":
    return PalmAtariEncoder(dtype=jnp.dtype(cfg.dtype))
  return ResNet(stage_sizes=cfg.stage_sizes, width=cfg.width,
                zero_init_residual=cfg.zero_init_residual, dtype=jnp.dtype(cfg.dtype))


def make_model(config: Any) -> SimSiamModel:
  """The full `SimSiamModel` of a SimSiam config."""
  cfg = as_simsiam_config(config)
  dtype = jnp.dtype(cfg.dtype)
  return SimSiamModel(
      encoder=make_encoder(cfg),
      projector=Projector(cfg.proj_hidden_dim, cfg.proj_dim, cfg.proj_layers, dtype=dtype),
      predictor=Predictor(cfg.pred_hidden_dim, cfg.proj_dim, dtype=dtype))


def make_schedule(config: Any, total_steps: int) -> optax.Schedule:
  """`lr_t = lr_0 · ½ (1 + cos(π min(t, T) / T))`, `lr_0 = base_lr · batch_size / 256`.

  With `schedule="constant"`: `lr_t = lr_0`.
  """
  cfg = as_simsiam_config(config)
  require(int(total_steps) >= 1,
          f"SimSiam total_steps={total_steps} must be a positive number of updates; set "
          f"simsiam.total_steps or pass total_steps= (the number of SimSiam updates).")
  if cfg.schedule == "constant":
    init_lr = cfg.init_lr
    return lambda step: jnp.full(jnp.shape(step), init_lr, jnp.float32)
  return optax.cosine_decay_schedule(cfg.init_lr, decay_steps=int(total_steps), alpha=0.0)


def make_optimizer(config: Any, total_steps: int) -> optax.GradientTransformation:
  """SimSiam's SGD: `g ← g + wd·θ; m ← μ m + g; θ ← θ − lr_t m` (PyTorch's SGD).

  With `fix_pred_lr`, parameters under the top-level `predictor` key use the constant
  `lr_0`; all others follow the cosine schedule. Expects SimSiamModel's params tree.
  """
  cfg = as_simsiam_config(config)
  schedule = make_schedule(cfg, total_steps)
  sgd = lambda lr: optax.chain(optax.add_decayed_weights(cfg.weight_decay),  # noqa: E731
                               optax.sgd(lr, momentum=cfg.momentum or None))
  if not cfg.fix_pred_lr:
    return sgd(schedule)

  def labels(params):
    return {name: jax.tree.map(lambda _: "fixed" if name == "predictor" else "cosine", sub)
            for name, sub in params.items()}
  return optax.multi_transform({"cosine": sgd(schedule), "fixed": sgd(cfg.init_lr)}, labels)


@flax.struct.dataclass
class SimSiamState:
  """Everything SimSiam carries between updates (a pytree; `config`/`tx` are static).

  params:       `{"encoder", "projector", "predictor"}` float32 parameters.
  batch_stats:  BatchNorm running means/variances, same keys.
  opt_state:    optax state of `tx`.
  step:         int32 scalar, updates done so far (the schedule's `t`).
  """
  params: Any
  batch_stats: Any
  opt_state: Any
  step: jax.Array
  config: SimSiamConfig = flax.struct.field(pytree_node=False)
  tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)
  total_steps: int = flax.struct.field(pytree_node=False, default=1)


def init_simsiam(key: jax.Array, config: Any, image_shape: tuple[int, int, int], *,
                 total_steps: int | None = None) -> SimSiamState:
  """Initial SimSiam state for images of `image_shape = (H, W, 3)` (`(84, 84, 4)` stacks
  for `encoder="atari"`).

  `total_steps` (SimSiam updates in the run) defaults to `config.total_steps`.
  """
  cfg = as_simsiam_config(config)
  total_steps = int(total_steps if total_steps is not None else cfg.total_steps)
  if cfg.encoder == "atari":
    require(len(tuple(image_shape)) == 3 and tuple(image_shape)[:2] == (84, 84),
            f"image_shape={tuple(image_shape)} must be (84, 84, stack) for the Atari torso.")
  else:
    require(len(tuple(image_shape)) == 3 and tuple(image_shape)[-1] == 3,
            f"image_shape={tuple(image_shape)} must be (height, width, 3) RGB.")
  model = make_model(cfg)
  tx = make_optimizer(cfg, total_steps)
  dummy = jnp.zeros((2, *image_shape), jnp.uint8)
  variables = jax.jit(lambda k: model.init(k, dummy, train=False))(key)
  params = variables["params"]
  return SimSiamState(params=params, batch_stats=variables["batch_stats"],
                      opt_state=tx.init(params), step=jnp.zeros((), jnp.int32),
                      config=cfg, tx=tx, total_steps=total_steps)


def _l2_normalize(x: jax.Array, eps: float = 1e-8) -> jax.Array:
  """`x / max(||x||, eps)` along the last axis, differentiable at 0 (PyTorch's eps)."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), eps * eps))


def negative_cosine(p: jax.Array, z: jax.Array) -> jax.Array:
  """`D(p, z) = − mean_i cos(p_i, sg(z_i))`: `p, z [B, d]` → float32 scalar.

  No gradient flows into `z` (stop-gradient), only into `p`.
  """
  chex.assert_equal_shape([p, z])
  chex.assert_rank(p, 2)
  z = jax.lax.stop_gradient(z)
  p_n = _l2_normalize(p.astype(jnp.float32))
  z_n = _l2_normalize(z.astype(jnp.float32))
  return -jnp.mean(jnp.sum(p_n * z_n, axis=-1))


def simsiam_loss(p1: jax.Array, p2: jax.Array, z1: jax.Array, z2: jax.Array) -> jax.Array:
  """Symmetric loss `L = ½ D(p1, sg(z2)) + ½ D(p2, sg(z1))`; all `[B, d]`; in [−1, 1]."""
  return 0.5 * negative_cosine(p1, z2) + 0.5 * negative_cosine(p2, z1)


def collapse_std(z: jax.Array) -> jax.Array:
  """SimSiam's collapse monitor: per-channel std over the batch of `z / ||z||`, averaged.

  `z [B, d]` → scalar; ≈ `1/sqrt(d)` for well-spread outputs, 0 for a collapsed encoder.
  """
  return jnp.mean(jnp.std(_l2_normalize(z.astype(jnp.float32)), axis=0))


def simsiam_update(state: SimSiamState, x1: jax.Array, x2: jax.Array, key: jax.Array, *,
                   return_features: bool = False):
  """One SGD step on a batch of positive pairs.

  `x1, x2`: `[B, H, W, 3]` uint8 or float in [-1, 1], `B = config.batch_size` (global).
  `key` draws the augmentations when `config.augment` (otherwise unused).
  Returns `(state, metrics)`: the new state and float32 scalar metrics `loss` (L before
  the step), `z_std` (`collapse_std` of both views' z) and `lr` (the cosine lr of this
  step). With `return_features=True` returns `(state, metrics, (f1, f2))` as well: the
  encoder features `[B, F]` float32 of this step's forward pass (parameters *before* the
  step, BatchNorm in train mode, the augmented views when `config.augment`), detached —
  they spare the caller a second encoder pass (e.g. for the APT reward), but differ from
  `encode(...)` (eval-mode BatchNorm, new parameters).
  """
  cfg = state.config
  chex.assert_rank(x1, 4)
  chex.assert_equal_shape([x1, x2])
  require(x1.shape[0] == cfg.batch_size,
          f"SimSiam got a batch of {x1.shape[0]} pairs but simsiam.batch_size="
          f"{cfg.batch_size} (which sets the lr); make them equal.")
  if cfg.augment:
    k1, k2 = jax.random.split(key)
    x1, x2 = augment(k1, x1), augment(k2, x2)
  model = make_model(cfg)

  def loss_fn(params):
    (f1, z1, p1), upd = model.apply({"params": params, "batch_stats": state.batch_stats},
                                    x1, train=True, mutable=["batch_stats"])
    (f2, z2, p2), upd = model.apply({"params": params, "batch_stats": upd["batch_stats"]},
                                    x2, train=True, mutable=["batch_stats"])
    return simsiam_loss(p1, p2, z1, z2), (upd["batch_stats"], z1, z2, f1, f2)

  (loss, (batch_stats, z1, z2, f1, f2)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {
      "loss": loss,
      "z_std": collapse_std(jnp.concatenate([z1, z2], axis=0)),
      "lr": make_schedule(cfg, state.total_steps)(state.step).astype(jnp.float32),
  }
  new_state = state.replace(params=params, batch_stats=batch_stats, opt_state=opt_state,
                            step=state.step + 1)
  if return_features:
    return new_state, metrics, (jax.lax.stop_gradient(f1), jax.lax.stop_gradient(f2))
  return new_state, metrics


def encoder_variables(state_or_variables: Any) -> dict[str, Any]:
  """The encoder's own `{"params", "batch_stats"}` from a state or SimSiam/encoder variables."""
  if isinstance(state_or_variables, SimSiamState):
    return {"params": state_or_variables.params["encoder"],
            "batch_stats": state_or_variables.batch_stats.get("encoder", {})}
  v = state_or_variables
  require(isinstance(v, Mapping) and "params" in v and "batch_stats" in v,
          "encode wants a SimSiamState or a variables dict with 'params' and 'batch_stats'; "
          "pass the whole state or {'params': ..., 'batch_stats': ...}.")
  params, stats = v["params"], v["batch_stats"]
  if "encoder" in params:  # the Atari torso has no BatchNorm: no batch_stats["encoder"]
    params, stats = params["encoder"], stats.get("encoder", {})
  return {"params": params, "batch_stats": stats}


def encode(state_or_variables: Any, images: jax.Array, train: bool = False, *,
           config: Any = None) -> jax.Array:
  """Encoder features `[B, F]` float32 of images `[B, H, W, 3]` (uint8 or float [-1, 1]).

  Accepts a `SimSiamState`, SimSiam variables or encoder-only variables
  (`{"params", "batch_stats"}`). The architecture comes from the state, `config`, or is
  inferred from the parameter shapes (compute dtype then float32). `train=False` (the
  default) uses BatchNorm running averages; `train=True` normalises with this batch's
  statistics and discards their update. The result is detached (stop-gradient).
  """
  variables = encoder_variables(state_or_variables)
  if isinstance(state_or_variables, SimSiamState):
    model = make_encoder(state_or_variables.config)
  elif config is not None:
    model = make_encoder(config)
  elif "Conv_0" in variables["params"]:  # the Atari torso's parameter names
    model = PalmAtariEncoder()
  else:
    model = infer_resnet(variables["params"])
  if train:
    feats, _ = model.apply(variables, images, train=True, mutable=["batch_stats"])
  else:
    feats = model.apply(variables, images, train=False)
  chex.assert_shape(feats, (images.shape[0], model.feature_dim))
  return jax.lax.stop_gradient(feats)


__all__ = [
    "SimSiamConfig", "SimSiamModel", "SimSiamState", "as_simsiam_config",
    "collapse_std", "encode", "encoder_variables", "init_simsiam", "make_encoder",
    "make_model", "make_optimizer", "make_schedule", "negative_cosine", "simsiam_loss",
    "simsiam_update",
]
