"""The latent environment seen as an Atari game: 84×84 grayscale frames, stacks of 4.

An Atari agent (DrQ's conv torso, `palm_jax/models/atari_encoder.py`) reads the last 4
preprocessed frames, `[84, 84, 4]` uint8, newest last. PALM on a game's (unconditional)
generator must hand its encoder the same thing, so this wrapper turns each rendered image
`G(z_t) [R, R, C]` into an Atari frame and keeps the stack in the environment state:

    g_t   = gray(G(z_t))                    C = 1: the channel itself; C = 3: ITU-R BT.601
                                            luma 0.299 R + 0.587 G + 0.114 B (ALE's
                                            grayscale screens are luminance)
    f_t   = round(resize_84(g_t))           bilinear, half-pixel centres
                                            (`jax.image.resize`), uint8 [84, 84]
    S_0   = [0, 0, 0, f_0]                  a reset: zeros, the first frame last
    S_t   = [S_{t-1}[1:], f_t]              a step: the oldest frame rolls out
    S_t   = [0, 0, 0, f_t]   if first_t     an auto-reset inside `step` (new episode)

The reset convention is Dopamine's (`JaxDQNAgent._reset_state` zero-fills the state and
`_record_observation` writes the first frame last, google/dopamine
`dopamine/jax/agents/dqn/dqn_agent.py`) — the same as `palm_jax.envs.atari.FrameStack`,
so the stacks PALM pretrains on look like those DrQ finetunes on.

The latent dynamics are the wrapped `LatentEnv`'s, unchanged; an unconditional generator
(`c_dim = 0`) is one "class" there. The interface is the one `palm_step` uses
(`reset`/`step`/`action_dim`/`num_classes`, `state.label`), so PALM's loop runs on it as is.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from palm_jax.envs.latent_env import EnvParams, EnvState, LatentEnv
from palm_jax.runtime.errors import require

SCREEN_SIZE = 84   # AtariPreprocessing.screen_size (palm_jax.envs.atari)
STACK_SIZE = 4     # JaxDQNAgent.stack_size
_LUMA = (0.299, 0.587, 0.114)   # ITU-R BT.601


@struct.dataclass
class StackedEnvState:
  inner: EnvState    # the latent dynamics ([N, D] latents, [N] labels and times)
  stack: jax.Array   # uint8 [N, 84, 84, K]: the last K frames, newest last

  @property
  def label(self) -> jax.Array:   # int32 [N]: what PALM's replay stores as the class
    return self.inner.label

  @property
  def t(self) -> jax.Array:       # int32 [N]: frame index within the episode
    return self.inner.t


def to_frame(images: jax.Array, size: int = SCREEN_SIZE) -> jax.Array:
  """Rendered images uint8 `[N, R, R, C]` (C = 1 or 3) → Atari frames uint8 `[N, size, size]`."""
  x = images.astype(jnp.float32)
  if x.shape[-1] == 3:
    x = x @ jnp.asarray(_LUMA, jnp.float32)
  else:
    x = x[..., 0]
  if x.shape[1:] != (size, size):
    x = jax.image.resize(x, (x.shape[0], size, size), method="linear", antialias=True)
  return jnp.clip(jnp.round(x), 0, 255).astype(jnp.uint8)


def restart(frames: jax.Array, stack: int) -> jax.Array:
  """`[N, H, W]` → `[N, H, W, stack]`: zeros with the frame last (an episode's start)."""
  zeros = jnp.zeros(frames.shape + (stack - 1,), jnp.uint8)
  return jnp.concatenate([zeros, frames[..., None]], axis=-1)


def push(stacks: jax.Array, frames: jax.Array, first: jax.Array) -> jax.Array:
  """Rolls `frames [N, H, W]` into `stacks [N, H, W, K]`; restarts where `first [N]`."""
  rolled = jnp.concatenate([stacks[..., 1:], frames[..., None]], axis=-1)
  return jnp.where(first[:, None, None, None], restart(frames, stacks.shape[-1]), rolled)


class FrameStackEnv:
  """A `LatentEnv` whose observations are Atari frame stacks `[N, 84, 84, stack]` uint8."""

  def __init__(self, env: LatentEnv, *, stack: int = STACK_SIZE, size: int = SCREEN_SIZE):
    require(stack >= 1, f"config.env.frame_stack={stack} must be at least 1 (Atari: 4).")
    self.env, self.stack, self.size = env, int(stack), int(size)

  # What palm_step and the exploration metrics read off an environment.
  action_dim = property(lambda self: self.env.action_dim)
  num_classes = property(lambda self: self.env.num_classes)
  c_dim = property(lambda self: self.env.c_dim)
  latent_dim = property(lambda self: self.env.latent_dim)

  @property
  def obs_shape(self) -> tuple[int, int, int]:
    return (self.size, self.size, self.stack)

  def reset(self, key, gen_vars, params: EnvParams, num_envs: int,
            t0: jax.Array | None = None) -> tuple[jax.Array, StackedEnvState]:
    """`(stacks uint8 [N, 84, 84, K], state)`: the first frame last, zeros before it."""
    images, inner = self.env.reset(key, gen_vars, params, num_envs, t0=t0)
    stack = restart(to_frame(images, self.size), self.stack)
    return stack, StackedEnvState(inner=inner, stack=stack)

  def step(self, key, state: StackedEnvState, action, gen_vars, params: EnvParams):
    """`(stacks uint8 [N, 84, 84, K], state, first bool [N])`; see the module doc."""
    images, inner, first = self.env.step(key, state.inner, action, gen_vars, params)
    stack = push(state.stack, to_frame(images, self.size), first)
    return stack, StackedEnvState(inner=inner, stack=stack), first

  def render_frames(self, gen_vars, latent, labels, params: EnvParams, key) -> jax.Array:
    """Single Atari frames `[N, 84, 84, 1]` of latents `[N, D]` (pictures, not stacks)."""
    return to_frame(self.env.render(gen_vars, latent, labels, params, key), self.size)[..., None]


def newest_frames(rollout_fn):
  """Wraps `palm_step.make_rollout`'s function: stacks `[num, T, 84, 84, K]` → the newest
  frame of each `[num, T, 84, 84, 1]`, so rollout grids and GIFs show the game."""
  def rollout(*args):
    frames, classes = rollout_fn(*args)
    return frames[..., -1:], classes
  return rollout
