"""A procedural class-conditional generator with known factors: a `Renderer` you can read.

A second, genuinely different `G(z, c)` for the latent world (`palm_jax.envs.renderer`):
no weights, no training, every pixel a closed-form function of (z, c), so what an agent
explores and what an encoder learns can be checked against ground truth.

Class `c` in [0, K) sets the shape, `SHAPES[c mod 4]` (disc, square, triangle, ring), and
the colour `palette[c]` (K hues evenly spaced on the HSV circle, saturation 0.8, value 1).
The latent `z [N, 8]` sets the eight `FACTORS` through the standard normal CDF,
`u = Phi(z)`, so each factor is uniform on its range when `z ~ N(0, I)`:

    x, y        centre in [-0.5, 0.5]        (image coordinates p in [-1, 1]^2, y down)
    size        r = 0.15 + 0.3 u             (disc radius / half side / inradius-ish)
    angle       theta = 2 pi u               (the shape's rotation)
    brightness  b = 0.5 + 0.5 u              (the shape's colour is b * palette[c])
    bg_level    g = 0.1 + 0.4 u              (grey background ...)
    bg_angle    phi = 2 pi u                 (... with a linear gradient along phi ...)
    bg_slope    s = 0.3 u                    (... of slope s: bg(p) = g + s p.(cos, sin) phi)

Rendering: `q = R(-theta) (p - centre)` in the shape's frame, `d = sdf(q, r)` its signed
distance (Inigo Quilez, "2D distance functions", iquilezles.org/articles/distfunctions2d:
circle, box, equilateral triangle; the ring is the annulus `| |q| - r | - 0.3 r`), one
pixel of anti-aliasing `cover = clip(0.5 - d / pixel, 0, 1)` with `pixel = 2 / R`, and
`image = clip((1 - cover) bg + cover b palette[c], 0, 1)`, returned as float in [-1, 1].

    config.generator = "procedural:shapes"
    config.generator_kwargs = dict(resolution=16, num_classes=4)
"""
from __future__ import annotations

import colorsys
import math

import jax
import jax.numpy as jnp
import numpy as np

from palm_jax.envs.renderer import FunctionRenderer, RendererHandle
from palm_jax.runtime.errors import require

SHAPES = ("disc", "square", "triangle", "ring")
FACTORS = ("x", "y", "size", "angle", "brightness", "bg_level", "bg_angle", "bg_slope")
LATENT_DIM = len(FACTORS)
KINDS = ("shapes",)


def palette(num_classes: int) -> np.ndarray:
  """float32 `[K, 3]` RGB in [0, 1]: hue k / K, saturation 0.8, value 1."""
  return np.array([colorsys.hsv_to_rgb(k / num_classes, 0.8, 1.0)
                   for k in range(num_classes)], np.float32)


def init_params(num_classes: int) -> dict:
  """The renderer's variables: `{"palette": float32 [K, 3]}` (a pytree, traced)."""
  return {"palette": jnp.asarray(palette(num_classes))}


def factors(z: jax.Array) -> dict:
  """`z [N, 8]` → the named factors, each `[N]` (ranges in the module docstring)."""
  u = jax.scipy.stats.norm.cdf(z.astype(jnp.float32))
  return dict(x=u[:, 0] - 0.5, y=u[:, 1] - 0.5, size=0.15 + 0.3 * u[:, 2],
              angle=2.0 * math.pi * u[:, 3], brightness=0.5 + 0.5 * u[:, 4],
              bg_level=0.1 + 0.4 * u[:, 5], bg_angle=2.0 * math.pi * u[:, 6],
              bg_slope=0.3 * u[:, 7])


def _sdf_box(qx, qy, r):
  dx, dy = jnp.abs(qx) - r, jnp.abs(qy) - r
  outside = jnp.sqrt(jnp.maximum(dx, 0.0) ** 2 + jnp.maximum(dy, 0.0) ** 2)
  return outside + jnp.minimum(jnp.maximum(dx, dy), 0.0)


def _sdf_triangle(qx, qy, r):
  """Quilez's `sdEquilateralTriangle` of half side `r` (apex at -y, i.e. up on screen)."""
  k = math.sqrt(3.0)
  qy = -qy                                 # image y points down; keep the apex up
  px, py = jnp.abs(qx) - r, qy + r / k
  fold = px + k * py > 0.0
  px, py = (jnp.where(fold, (px - k * py) / 2, px), jnp.where(fold, (-k * px - py) / 2, py))
  px = px - jnp.clip(px, -2.0 * r, 0.0)
  return -jnp.sqrt(px * px + py * py) * jnp.sign(py)


def signed_distance(shape, qx, qy, r):
  """Signed distance of each shape's frame point; `shape [N]` int, `qx, qy [N, R, R]`."""
  rad = jnp.sqrt(qx * qx + qy * qy)
  r = r[:, None, None]
  all_d = jnp.stack([rad - r, _sdf_box(qx, qy, r), _sdf_triangle(qx, qy, r),
                     jnp.abs(rad - r) - 0.3 * r])                 # [4, N, R, R]
  return jnp.take_along_axis(all_d, shape[None, :, None, None], axis=0)[0]


def render(params: dict, z: jax.Array, c: jax.Array, *, resolution: int) -> jax.Array:
  """Images float32 `[N, R, R, 3]` in [-1, 1] of latents `z [N, 8]`, classes `c [N]`."""
  f = factors(z)
  coords = (jnp.arange(resolution, dtype=jnp.float32) + 0.5) * (2.0 / resolution) - 1.0
  py, px = jnp.meshgrid(coords, coords, indexing="ij")              # [R, R]; rows are y
  dx, dy = px[None] - f["x"][:, None, None], py[None] - f["y"][:, None, None]
  cos, sin = jnp.cos(f["angle"])[:, None, None], jnp.sin(f["angle"])[:, None, None]
  qx, qy = cos * dx + sin * dy, -sin * dx + cos * dy               # R(-theta) (p - centre)
  c = c.astype(jnp.int32)
  d = signed_distance(c % len(SHAPES), qx, qy, f["size"])
  cover = jnp.clip(0.5 - d * (resolution / 2.0), 0.0, 1.0)[..., None]
  bg = (f["bg_level"][:, None, None] + f["bg_slope"][:, None, None]
        * (px[None] * jnp.cos(f["bg_angle"])[:, None, None]
           + py[None] * jnp.sin(f["bg_angle"])[:, None, None]))[..., None]
  fg = (f["brightness"][:, None] * params["palette"][c])[:, None, None, :]
  img01 = jnp.clip((1.0 - cover) * bg + cover * fg, 0.0, 1.0)  # the gradient can overshoot
  return img01 * 2.0 - 1.0


def make_renderer(resolution: int = 32, num_classes: int = 10) -> FunctionRenderer:
  """The procedural `Renderer` (variables: `init_params(num_classes)`)."""
  require(int(resolution) >= 4, f"procedural resolution={resolution} must be >= 4 pixels.")
  require(int(num_classes) >= 1, f"procedural num_classes={num_classes} must be >= 1.")
  res = int(resolution)
  return FunctionRenderer(lambda p, z, c: render(p, z, c, resolution=res),
                          latent_dim=LATENT_DIM, num_classes=int(num_classes),
                          image_shape=(res, res, 3))


def load(spec: str, kwargs: dict | None = None) -> RendererHandle:
  """`"procedural:shapes"` + `{resolution, num_classes}` → a `RendererHandle`."""
  kind = spec.partition(":")[2]
  require(kind in KINDS, f"config.generator={spec!r} names no procedural generator; use "
                         f"one of {['procedural:' + k for k in KINDS]}.")
  kwargs = dict(kwargs or {})
  unknown = sorted(set(kwargs) - {"resolution", "num_classes"})
  require(not unknown, f"config.generator_kwargs {unknown} are not procedural settings; use "
                       "resolution and num_classes.")
  renderer = make_renderer(**kwargs)
  return RendererHandle(renderer, init_params(renderer.num_classes))
