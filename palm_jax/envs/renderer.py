"""Any generator `G(z, c)` as the latent world's renderer: the protocol and its adapters.

PALM's environment needs one thing from a generator: images of latents and classes. The
paper uses StyleGAN2 but notes the method "is not restricted to it" (Liu et al., Sec. 3);
this module states that contract so any jittable generator can be explored:

    render(params, z [N, D] float32, c [N] int32) -> images [N, H, W, C]
        uint8 in [0, 255], or float in [-1, 1] (the generator convention; converted by
        `to_uint8` with the rounding of `LatentEnv.render`)
    latent_dim  = D      size of z (the action has the same size)
    num_classes = K      classes c in [0, K); 0 for unconditional (c is then all zeros)
    image_shape = (H, W, C)

`params` is a pytree (the generator's variables) passed on every call and never captured,
so it can live on the mesh and be swapped without recompiling. Implementations here:
`FunctionRenderer` (any jittable `fn(params, z, c)`, e.g. `palm_jax.models.procedural` or a
Flax module's `apply`) and `StyleGAN2Renderer` (a StyleGAN2 `Generator` through its mapping
and synthesis networks, z space). The W-space variant of the dynamics stays a StyleGAN
option of `LatentEnv` itself (it needs the mapping network separately).

`RendererHandle` binds a renderer to its variables and exposes the attributes of a
`GeneratorHandle` that the PALM job reads (`variables`, `z_dim`, `c_dim`, `img_resolution`,
`img_channels`, `with_dtype`), so `config.generator` may name either; `latent_env.make_latent_env`
builds the `LatentEnv` for either.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

from palm_jax.runtime.errors import require


@runtime_checkable
class Renderer(Protocol):
  """What the latent world needs from a generator (see the module docstring)."""
  latent_dim: int
  num_classes: int
  image_shape: tuple[int, int, int]

  def render(self, params: Any, z: jax.Array, c: jax.Array) -> jax.Array:
    ...


def to_uint8(images: jax.Array) -> jax.Array:
  """Renderer output → uint8: float in [-1, 1] maps by `clip(round(x * 127.5 + 128))`.

  The same formula as `LatentEnv.render` uses for StyleGAN frames, so both kinds of
  generator hand the agent identical frames for identical float images.
  """
  if images.dtype == jnp.uint8:
    return images
  x = jnp.round(images.astype(jnp.float32) * 127.5 + 128.0)
  return jnp.clip(x, 0, 255).astype(jnp.uint8)


@dataclasses.dataclass(frozen=True, eq=False)
class FunctionRenderer:
  """Any jittable `fn(params, z [N, D], c [N]) -> images [N, H, W, C]` as a `Renderer`.

  A Flax module is one line: `FunctionRenderer(lambda v, z, c: module.apply(v, z, c),
  latent_dim=..., num_classes=..., image_shape=...)`. `eq=False`: instances hash by
  identity, so they can be static arguments of `jax.jit` (gymnax environments are).
  """
  fn: Callable[[Any, jax.Array, jax.Array], jax.Array]
  latent_dim: int
  num_classes: int
  image_shape: tuple[int, int, int]

  def render(self, params, z, c):
    return self.fn(params, z, c)


@dataclasses.dataclass(frozen=True, eq=False)
class StyleGAN2Renderer:
  """A StyleGAN2 `Generator` module (`palm_jax.models.stylegan2`) as a z-space `Renderer`.

  `render = synthesis(mapping(z, one_hot(c), truncation_psi), noise_mode)`, as NVIDIA's
  `Generator.forward`; `noise_mode` must be "const" or "none" because the protocol has no
  random key (use `LatentEnv` directly for random noise or W space).
  """
  module: Any
  latent_dim: int
  num_classes: int
  image_shape: tuple[int, int, int]
  truncation_psi: float = 1.0
  noise_mode: str = "const"

  @classmethod
  def from_handle(cls, gen, *, truncation_psi: float = 1.0, noise_mode: str = "const"):
    """From a `GeneratorHandle` (what `stylegan2.load_generator` returns)."""
    require(noise_mode in ("const", "none"), f"noise_mode={noise_mode!r}: a Renderer has no "
            "random key, so use 'const' or 'none' (or LatentEnv itself for 'random').")
    res, ch = gen.img_resolution, gen.img_channels
    return cls(gen.module, gen.z_dim, gen.c_dim, (res, res, ch), float(truncation_psi),
               noise_mode)

  def render(self, params, z, c):
    onehot = (jax.nn.one_hot(c, self.num_classes, dtype=jnp.float32) if self.num_classes
              else jnp.zeros((z.shape[0], 0), jnp.float32))
    ws = self.module.apply(params, z, onehot, truncation_psi=self.truncation_psi,
                           method=self.module.mapping)
    return self.module.apply(params, ws, noise_mode=self.noise_mode,
                             method=self.module.synthesis)


def check_renderer(renderer, params, batch: int = 2) -> None:
  """Host-side check, before compilation, that `renderer` keeps the protocol's promises.

  Runs `render` abstractly (`jax.eval_shape`, nothing is computed) on `[batch, D]` latents
  and raises a UserError naming the mismatch.
  """
  require(isinstance(renderer, Renderer), f"{type(renderer).__name__} is not a Renderer: it "
          "needs latent_dim, num_classes, image_shape and render(params, z, c).")
  require(int(renderer.latent_dim) >= 1, f"renderer.latent_dim={renderer.latent_dim} must be "
                                         ">= 1 (the action has that size).")
  require(int(renderer.num_classes) >= 0, f"renderer.num_classes={renderer.num_classes} "
                                          "must be >= 0 (0 = unconditional).")
  z = jax.ShapeDtypeStruct((batch, renderer.latent_dim), jnp.float32)
  c = jax.ShapeDtypeStruct((batch,), jnp.int32)
  out = jax.eval_shape(renderer.render, params, z, c)
  want = (batch,) + tuple(renderer.image_shape)
  require(getattr(out, "shape", None) == want,
          f"renderer.render returned shape {getattr(out, 'shape', None)} for {batch} "
          f"latents, but image_shape={tuple(renderer.image_shape)} promises {want}; fix "
          "image_shape or the renderer.")
  require(out.dtype == jnp.uint8 or jnp.issubdtype(out.dtype, jnp.floating),
          f"renderer.render returned {out.dtype} images; return uint8 in [0, 255] or float "
          "in [-1, 1].")


@dataclasses.dataclass(eq=False)
class RendererHandle:
  """A renderer and its variables, read by the PALM job like a `GeneratorHandle`."""
  renderer: Any
  variables: Any

  z_dim = property(lambda self: int(self.renderer.latent_dim))
  c_dim = property(lambda self: int(self.renderer.num_classes))
  img_channels = property(lambda self: int(self.renderer.image_shape[2]))

  @property
  def img_resolution(self) -> int:
    h, w, _ = self.renderer.image_shape
    require(h == w, f"the renderer's images are {h}x{w}; the PALM encoder expects square "
                    "images, so render H == W.")
    return int(h)

  def with_dtype(self, dtype) -> RendererHandle:
    """Renderers choose their own compute precision; the handle is returned unchanged."""
    del dtype
    return self

  def generate(self, z, labels=None, truncation_psi=1.0, noise_mode="const", rng=None,
               **unused) -> jax.Array:
    """`GeneratorHandle.generate` for the `sample` job: float32 `[N, H, W, C]` in [-1, 1].

    `truncation_psi`, `noise_mode` and `rng` are StyleGAN settings a renderer has not.
    """
    del truncation_psi, noise_mode, rng, unused
    z = jnp.asarray(z, jnp.float32)
    require(z.ndim == 2 and z.shape[1] == self.z_dim,
            f"z must have shape [N, {self.z_dim}], found {z.shape}.")
    c = (jnp.zeros((z.shape[0],), jnp.int32) if labels is None
         else jnp.asarray(labels, jnp.int32))
    img = jax.jit(self.renderer.render)(self.variables, z, c)
    return img.astype(jnp.float32) / 127.5 - 1.0 if img.dtype == jnp.uint8 else img
