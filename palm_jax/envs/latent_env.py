"""The latent environment: a class-conditional generator turned into an interactive world.

Each episode draws a class `c` uniformly and a first latent; each step mixes the agent's
action `a` with fresh noise `eps` and smooths it with an exponential moving average:

    z'  = alpha * action_scale * a + (1 - alpha) * eps         (T_com)
    z_0 = eps_0                                                (reset: no action yet)
    z_t = beta * z_{t-1} + (1 - beta) * z'          for t >= 1  (T_ema)
    s_t = G(z_t, c)                                            (an image)

With `latent_space="z"` (the paper) `z` lives in the generator's input space; the mapping
network normalises it, so only the direction of `z_t` reaches the image. With
`latent_space="w"` the same dynamics run after the mapping network: `eps` is replaced by
`w = mapping(eps, c)` (truncated by `truncation_psi`) and the state is a point of W.

Gymnax conventions: `EnvParams` (the numbers, traced; the generator's variables too, passed
on every call and never captured) and `EnvState` are dataclasses; `reset`/`step` are pure.
The per-environment dynamics are plain functions `vmap`ped over environments; rendering is
one batched generator call per step (or, with `render_chunk`, a `lax.map` over slices of
`render_chunk` environments, which bounds the generator's temporaries). An environment whose episode has ended auto-resets
inside `step`: the frame returned is then the first frame of a new episode with a new class
(`first=True`), so every step renders exactly one image per environment.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from palm_jax.envs.renderer import RendererHandle, check_renderer, to_uint8
from palm_jax.runtime.errors import require


@struct.dataclass
class EnvParams:
  """Numbers of the dynamics (traced, so sweeps need no recompilation)."""
  alpha: float = 0.5           # weight of the action in T_com
  beta: float = 0.95           # EMA weight of the previous latent in T_ema
  action_scale: float = 1.0    # actions in [-1, 1] are multiplied by this
  truncation_psi: float = 1.0  # truncation of the mapping network
  episode_length: int = 20     # frames per episode, the reset frame included


@struct.dataclass
class EnvState:
  latent: jax.Array  # float32 [N, D]: z_t (D = z_dim) or w_t (D = w_dim)
  label: jax.Array   # int32 [N]: the episode's class
  t: jax.Array       # int32 [N]: index of the current frame within its episode


def ema_latent(prev, action, eps, t, alpha, beta, action_scale):
  """One environment's latent update `[D] -> [D]` (T_com then T_ema; see module doc).

  At t == 0 (a reset) the latent is the noise alone, as the agent has not acted yet.
  """
  mixed = alpha * action_scale * action + (1.0 - alpha) * eps
  return jnp.where(t == 0, eps, beta * prev + (1.0 - beta) * mixed)


class LatentEnv:
  """Static structure of the environment: which generator, which latent space.

  `generator` is the Flax generator module; its variables are passed to every call. The
  module must provide `mapping(z, c, truncation_psi=...) -> ws [N, num_ws, w_dim]` (with
  `c` the float one-hot class `[N, c_dim]`, `[N, 0]` when unconditional) and
  `synthesis(ws, noise_mode=...) -> images [N, H, W, C]` in [-1, 1], like
  `palm_jax.models.stylegan2.Generator`.

  `render_chunk > 0` renders at most that many images per generator call (see `render`).

  `LatentEnv.from_renderer(r)` builds the same environment over any
  `palm_jax.envs.renderer.Renderer` (z space; `gen_vars` are then the renderer's params).
  """

  def __init__(self, generator, *, z_dim: int, w_dim: int, num_ws: int, num_classes: int,
               latent_space: str = "z", noise_mode: str = "const", render_chunk: int = 0):
    require(latent_space in ("z", "w"),
            f"config.env.latent_space={latent_space!r} is not a latent space; use 'z' (the "
            "paper) or 'w'.")
    require(noise_mode in ("const", "random", "none"),
            f"config.env.noise_mode={noise_mode!r} is unknown; use 'const', 'random' or "
            "'none'.")
    require(render_chunk >= 0, f"config.env.render_chunk={render_chunk} must be >= 0 (0 "
            "renders all environments in one generator call).")
    self.generator, self.latent_space, self.noise_mode = generator, latent_space, noise_mode
    self.render_chunk = int(render_chunk)
    self.z_dim, self.w_dim, self.num_ws = z_dim, w_dim, num_ws
    self.c_dim = num_classes                # 0 for unconditional generators
    self.num_classes = max(num_classes, 1)  # unconditional generators: one "class"
    self.latent_dim = z_dim if latent_space == "z" else w_dim
    self.renderer = None                    # set by `from_renderer`

  @classmethod
  def from_renderer(cls, renderer) -> LatentEnv:
    """The environment over any `Renderer` (`render(params, z, c)`); dynamics unchanged."""
    env = cls(None, z_dim=renderer.latent_dim, w_dim=renderer.latent_dim, num_ws=1,
              num_classes=renderer.num_classes)
    env.renderer = renderer
    return env

  @property
  def action_dim(self) -> int:
    return self.latent_dim

  # -- rendering ----------------------------------------------------------------------
  def _map(self, gen_vars, z, labels, psi):
    c = jax.nn.one_hot(labels, self.c_dim, dtype=jnp.float32)  # [N, 0] if unconditional
    return self.generator.apply(gen_vars, z, c, truncation_psi=psi,
                                method=self.generator.mapping)

  def render(self, gen_vars, latent, labels, params: EnvParams, key) -> jax.Array:
    """Images `[N, H, W, C]` uint8 for latents `[N, D]` and classes `[N]`.

    With `render_chunk = S` and `N > S`, the batch is rendered in `K = ceil(N / S)` slices
    inside `lax.map`, so the generator's temporaries are those of S images. Slice `j` takes
    the strided rows `{a·K + j}` (a reshape `[S, K] -> [K, S]`), not a contiguous block:
    when the batch is split over devices, every slice then draws equally from every
    device's rows and needs no communication. Rows are rendered independently, so the
    result equals the unchunked one bit for bit (tested) — except `noise_mode="random"`,
    whose per-pixel noise is drawn per slice (same distribution, other values).
    """
    n, s = latent.shape[0], self.render_chunk
    if not s or n <= s:
      return self._render(gen_vars, latent, labels, params, key)
    k = -(-n // s)
    pad = k * s - n

    def to_slices(x):                         # [N, ...] -> [K, S, ...], row a*K + j -> [j, a]
      x = jnp.concatenate([x, x[:pad]], axis=0) if pad else x
      return jnp.swapaxes(x.reshape((s, k) + x.shape[1:]), 0, 1)
    keys = jax.random.split(key, k)
    out = jax.lax.map(lambda a: self._render(gen_vars, a[0], a[1], params, a[2]),
                      (to_slices(latent), to_slices(labels), keys))   # [K, S, H, W, C]
    return jnp.swapaxes(out, 0, 1).reshape((k * s,) + out.shape[2:])[:n]

  def _render(self, gen_vars, latent, labels, params: EnvParams, key) -> jax.Array:
    """One generator call: mapping (z space) + synthesis, uint8 `[N, H, W, C]`."""
    if self.renderer is not None:  # any G(z, c): palm_jax.envs.renderer
      return to_uint8(self.renderer.render(gen_vars, latent, labels))
    if self.latent_space == "z":
      ws = self._map(gen_vars, latent, labels, params.truncation_psi)
    else:
      ws = jnp.broadcast_to(latent[:, None, :], (latent.shape[0], self.num_ws, self.w_dim))
    rngs = {"noise": key} if self.noise_mode == "random" else None
    img = self.generator.apply(gen_vars, ws, noise_mode=self.noise_mode, rngs=rngs,
                               method=self.generator.synthesis)
    return jnp.clip(jnp.round(img.astype(jnp.float32) * 127.5 + 128.0), 0, 255).astype(jnp.uint8)

  def render_z(self, gen_vars, z, labels, params: EnvParams, key) -> jax.Array:
    """Images uint8 `[N, H, W, C]` for input latents `z [N, z_dim]` in either space."""
    if self.latent_space == "w":
      z = self._map(gen_vars, z, labels, params.truncation_psi)[:, 0].astype(jnp.float32)
    return self.render(gen_vars, z, labels, params, key)

  def _noise(self, gen_vars, key, labels, params: EnvParams):
    """Fresh `eps` per environment, in the environment's latent space."""
    eps = jax.random.normal(key, (labels.shape[0], self.z_dim), jnp.float32)
    if self.latent_space == "w":
      eps = self._map(gen_vars, eps, labels, params.truncation_psi)[:, 0].astype(jnp.float32)
    return eps

  # -- the environment ----------------------------------------------------------------
  def reset(self, key, gen_vars, params: EnvParams, num_envs: int,
            t0: jax.Array | None = None) -> tuple[jax.Array, EnvState]:
    """New episodes for `num_envs` environments: `(frames uint8 [N,H,W,C], state)`.

    `t0` optionally staggers the environments (frame indices in [0, episode_length)) so
    that episodes do not all end on the same step.
    """
    k_label, k_eps, k_render = jax.random.split(key, 3)
    labels = jax.random.randint(k_label, (num_envs,), 0, self.num_classes, jnp.int32)
    latent = self._noise(gen_vars, k_eps, labels, params)
    t = jnp.zeros((num_envs,), jnp.int32) if t0 is None else t0.astype(jnp.int32)
    state = EnvState(latent=latent, label=labels, t=t)
    return self.render(gen_vars, latent, labels, params, k_render), state

  def step(self, key, state: EnvState, action, gen_vars, params: EnvParams):
    """Advances every environment one step.

    Args: `action` float [N, D] in [-1, 1]. Returns `(frames uint8 [N,H,W,C], state,
    first bool [N])`; `first[n]` marks environments whose episode ended and that show the
    first frame of a new episode (the action had no effect on it).
    """
    n = state.label.shape[0]
    k_label, k_eps, k_render = jax.random.split(key, 3)
    t_next = state.t + 1
    first = t_next >= params.episode_length
    t_next = jnp.where(first, 0, t_next)
    labels = jnp.where(first, jax.random.randint(k_label, (n,), 0, self.num_classes,
                                                 jnp.int32), state.label)
    eps = self._noise(gen_vars, k_eps, labels, params)
    latent = jax.vmap(ema_latent, in_axes=(0, 0, 0, 0, None, None, None))(
        state.latent, action.astype(jnp.float32), eps, t_next, params.alpha, params.beta,
        params.action_scale)
    state = EnvState(latent=latent, label=labels, t=t_next)
    return self.render(gen_vars, latent, labels, params, k_render), state, first


def random_actions(key, num_envs: int, action_dim: int) -> jax.Array:
  """Uniform actions in [-1, 1] (warm-up and the random-action ablation)."""
  return jax.random.uniform(key, (num_envs, action_dim), jnp.float32, -1.0, 1.0)


def generator_info(gen) -> dict[str, Any]:
  """The sizes a `LatentEnv` needs, read off a generator handle."""
  return dict(z_dim=gen.z_dim, w_dim=gen.w_dim, num_ws=gen.num_ws,
              num_classes=gen.c_dim)


def make_latent_env(gen, *, latent_space: str = "z", noise_mode: str = "const", **kwargs):
  """The `LatentEnv` of a `GeneratorHandle` (StyleGAN, both spaces) or a `RendererHandle`.

  `kwargs` go to `LatentEnv` for StyleGAN generators (its own rendering options).
  """
  if isinstance(gen, RendererHandle):
    require(latent_space == "z", f"config.env.latent_space={latent_space!r}: W space needs "
            "a StyleGAN mapping network; renderers explore their own latent, so use 'z'.")
    check_renderer(gen.renderer, gen.variables)
    return LatentEnv.from_renderer(gen.renderer)
  return LatentEnv(gen.module, z_dim=gen.z_dim, w_dim=gen.w_dim, num_ws=gen.num_ws,
                   num_classes=gen.c_dim, latent_space=latent_space, noise_mode=noise_mode,
                   **kwargs)
