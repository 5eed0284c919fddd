"""A generator and its variables: jitted convenience methods and random initialisation.

`GeneratorHandle` is what `load_generator` returns and what the environment, the `sample`
job and the GAN trainer pass around; `init_generator` builds one with NVIDIA's
initialisation. Both are public names of `palm_jax.models.stylegan2`.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from palm_jax.models.stylegan2.network import NOISE_MODES, Generator, GeneratorConfig
from palm_jax.models.stylegan2.ops import validate_impls
from palm_jax.runtime.errors import require

# -------------------------------------------------------------------------------- handle ---

@dataclasses.dataclass(eq=False)
class GeneratorHandle:
  """A generator and its variables, with jitted convenience methods.

  `variables` is `{'params': ..., 'buffers': ...}` (layout in the module docstring); pass it
  to `module.apply` for use inside other jitted code. Methods take integer `labels [N]`
  (ignored, may be None, for unconditional models) and cache one compiled function per
  (method, truncation_cutoff, noise_mode, chunk_size); `truncation_psi` is traced.
  """
  module: Generator
  variables: dict
  _compiled: dict = dataclasses.field(default_factory=dict, repr=False)

  config = property(lambda self: self.module.config)
  kwargs = property(lambda self: self.module.config.to_kwargs())
  params = property(lambda self: self.variables["params"])
  buffers = property(lambda self: self.variables.get("buffers", {}))
  z_dim = property(lambda self: self.config.z_dim)
  c_dim = property(lambda self: self.config.c_dim)
  w_dim = property(lambda self: self.config.w_dim)
  num_ws = property(lambda self: self.config.num_ws)
  img_resolution = property(lambda self: self.config.img_resolution)
  img_channels = property(lambda self: self.config.img_channels)
  dtype = property(lambda self: self.module.dtype)

  def with_dtype(self, dtype) -> GeneratorHandle:
    """The same weights computing in `dtype` (e.g. `jnp.bfloat16`)."""
    return GeneratorHandle(self.module.clone(dtype=dtype), self.variables)

  def with_impl(self, up_impl: str | None = None, modulation: str | None = None):
    """The same weights with another up-sampling conv / modulation form (same function;
    `palm_jax.bench generator` times the candidates). `None` keeps the current one."""
    up_impl = self.module.up_impl if up_impl is None else up_impl
    modulation = self.module.modulation if modulation is None else modulation
    validate_impls(up_impl, modulation)
    return GeneratorHandle(self.module.clone(up_impl=up_impl, modulation=modulation),
                           self.variables)

  def one_hot(self, labels, n: int) -> jax.Array:
    """Integer labels `[N]` → float one-hot `c [N, c_dim]` (`[N, 0]` if unconditional)."""
    if self.c_dim == 0:
      return jnp.zeros((n, 0), jnp.float32)
    return jax.nn.one_hot(labels, self.c_dim, dtype=jnp.float32)

  def _inputs(self, z, labels):
    """Host-side checks before compilation; returns `(z, labels, n)`."""
    if z is None:
      require(self.z_dim == 0, f"z is required: this generator has z_dim={self.z_dim}.")
      require(labels is not None, "z_dim is 0, so pass labels to set the batch size.")
      z = jnp.zeros((len(labels), 0), jnp.float32)
    require(getattr(z, "ndim", 0) == 2 and z.shape[1] == self.z_dim,
            f"z must have shape [N, {self.z_dim}], found {getattr(z, 'shape', None)}.")
    n = z.shape[0]
    if self.c_dim == 0:
      return z, jnp.zeros((n,), jnp.int32), n
    require(labels is not None, f"labels are required: this generator is conditional "
            f"(c_dim={self.c_dim}); pass integer class ids of shape [{n}].")
    if not isinstance(labels, jax.Array):
      labels = np.asarray(labels)
    require(labels.shape == (n,) and jnp.issubdtype(labels.dtype, jnp.integer),
            f"labels must be integers of shape [{n}], found {labels.dtype} {labels.shape}.")
    if isinstance(labels, np.ndarray):     # device arrays are not pulled back to check
      bad = labels[(labels < 0) | (labels >= self.c_dim)]
      require(bad.size == 0, f"labels must lie in [0, {self.c_dim}), found {bad[:5]}.")
    return z, labels, n

  def _fn(self, key, build):
    if key not in self._compiled:
      self._compiled[key] = jax.jit(build())
    return self._compiled[key]

  def map(self, z, labels=None, truncation_psi=1.0, truncation_cutoff=None) -> jax.Array:
    """`z [N, z_dim]`, labels `[N]` → ws `[N, num_ws, w_dim]` float32."""
    self._check_psi(truncation_psi)
    z, labels, n = self._inputs(z, labels)

    def build():
      def fn(variables, z, labels, psi):
        return self.module.apply(variables, z, self.one_hot(labels, z.shape[0]), psi,
                                 truncation_cutoff, method="mapping")
      return fn
    fn = self._fn(("map", truncation_cutoff), build)
    return fn(self.variables, z, labels, jnp.float32(truncation_psi))

  def synthesize(self, ws, noise_mode="const", rng=None, chunk_size=None) -> jax.Array:
    """ws `[N, num_ws, w_dim]` → images `[N, R, R, img_channels]` float32."""
    self._check_noise(noise_mode, rng)

    def build():
      def fn(variables, ws, key):
        def one(ws, k):
          return self.module.apply(variables, ws, noise_mode, method="synthesis",
                                   rngs={"noise": k})
        return map_in_chunks(one, ws, key, chunk_size)
      return fn
    fn = self._fn(("synthesize", noise_mode, chunk_size), build)
    return fn(self.variables, ws, _noise_key(rng))

  def generate(self, z, labels=None, truncation_psi=1.0, truncation_cutoff=None,
               noise_mode="const", rng=None, chunk_size=None) -> jax.Array:
    """`z [N, z_dim]`, labels `[N]` → images `[N, R, R, img_channels]` float32, ≈[-1, 1].

    `chunk_size` renders big batches `chunk_size` images at a time inside `lax.map`
    (bounded memory; random noise then differs from an unchunked call).
    """
    self._check_noise(noise_mode, rng)
    self._check_psi(truncation_psi)
    z, labels, n = self._inputs(z, labels)

    def build():
      def fn(variables, z, labels, psi, key):
        def one(inputs, k):
          z, labels = inputs
          c = self.one_hot(labels, z.shape[0])
          return self.module.apply(variables, z, c, psi, truncation_cutoff, noise_mode,
                                   rngs={"noise": k})
        return map_in_chunks(one, (z, labels), key, chunk_size)
      return fn
    fn = self._fn(("generate", truncation_cutoff, noise_mode, chunk_size), build)
    return fn(self.variables, z, labels, jnp.float32(truncation_psi), _noise_key(rng))

  def _check_psi(self, psi):
    require(self.config.w_avg_beta is not None or psi == 1, f"truncation_psi={psi} needs the "
            "tracked w_avg, but this generator has w_avg_beta=None; use truncation_psi=1.")

  @staticmethod
  def _check_noise(noise_mode, rng):
    require(noise_mode in NOISE_MODES,
            f"noise_mode must be one of {NOISE_MODES}, found {noise_mode!r}.")
    require(noise_mode != "random" or rng is not None,
            "noise_mode='random' needs rng=<a jax.random key>.")


def _noise_key(rng):
  return jax.random.key(0) if rng is None else rng


def map_in_chunks(fn, inputs, key, chunk_size):
  """`fn(inputs, key)` over the batch, `chunk_size` rows at a time inside `lax.map`."""
  n = jax.tree_util.tree_leaves(inputs)[0].shape[0]
  if not chunk_size or n <= chunk_size:
    return fn(inputs, key)
  num = -(-n // chunk_size)
  pad = num * chunk_size - n

  def split(x):
    x = jnp.pad(x, [(0, pad)] + [(0, 0)] * (x.ndim - 1), mode="edge")
    return x.reshape((num, chunk_size) + x.shape[1:])
  chunks = jax.tree_util.tree_map(split, inputs)
  out = jax.lax.map(lambda a: fn(a[0], a[1]), (chunks, jax.random.split(key, num)))
  return out.reshape((num * chunk_size,) + out.shape[2:])[:n]


def init_generator(key, *, dtype=jnp.float32, up_impl="polyphase", modulation="activations",
                   **init_kwargs):
  """A randomly initialised generator handle from official `Generator` keywords.

  Example: `init_generator(jax.random.key(0), z_dim=512, c_dim=10, w_dim=512,
  img_resolution=32, img_channels=3, mapping_kwargs=dict(num_layers=2),
  synthesis_kwargs=dict(channel_base=16384, channel_max=512, conv_clamp=256))`.
  """
  config = GeneratorConfig.from_kwargs(**init_kwargs)
  validate_impls(up_impl, modulation)
  module = Generator(config, dtype=dtype, up_impl=up_impl, modulation=modulation)
  return GeneratorHandle(module, init_variables(module, key))


def init_variables(module: Generator, key) -> dict:
  """The official initialisation, same distribution as `module.init` but cheaper to compile.

  XLA:CPU compiles every `jax.random.normal` call site separately (about 0.4 s each), so
  `module.init` of a full generator compiles for tens of seconds; here one normal draw is
  sliced into all N(0, 1) leaves. Rules (official): weights N(0, 1), mapping `fc*` weights
  N(0, 1) / lr_multiplier, `const` and `noise_const` N(0, 1), `affine` biases 1, other biases,
  `noise_strength` and `w_avg` 0.
  """
  config = module.config
  z = jax.ShapeDtypeStruct((1, config.z_dim), jnp.float32)
  c = jax.ShapeDtypeStruct((1, config.c_dim), jnp.float32)
  abstract = jax.eval_shape(lambda k, z, c: module.init({"params": k}, z, c),
                            jax.random.key(0), z, c)

  def fill(key):
    leaves, treedef = jax.tree_util.tree_flatten_with_path(abstract)
    random_leaves = [leaf for path, leaf in leaves if path[-1].key in _RANDOM_LEAVES]
    pool = jax.random.normal(key, (sum(leaf.size for leaf in random_leaves),), jnp.float32)
    out, offset = [], 0
    for path, leaf in leaves:
      name, parent = path[-1].key, path[-2].key
      if name in _RANDOM_LEAVES:
        value = pool[offset:offset + leaf.size].reshape(leaf.shape)
        offset += leaf.size
        if name == "weight" and parent.startswith("fc"):
          value = value / config.lr_multiplier
      else:
        value = jnp.full(leaf.shape, 1.0 if parent == "affine" else 0.0, jnp.float32)
      out.append(value)
    return jax.tree_util.tree_unflatten(treedef, out)
  return dict(jax.jit(fill)(key))


_RANDOM_LEAVES = ("weight", "const", "noise_const")
