"""`bench generator --against=PATH`: palm_jax's generator beside NVIDIA's, same weights.

PATH is the user's clone of https://github.com/NVlabs/stylegan2-ada-pytorch (its code is
read from there, never copied into palm_jax). NVIDIA's `training.networks.Generator` is
built with the same constructor keywords (`GeneratorConfig.to_kwargs()`), loaded with the
same weights (`variables_to_state`: the official `state_dict()` keys and layouts), and
  1. the images of the float32 programs are compared (max |difference|, relative L2);
  2. both are timed interleaved in one process (jax, torch, jax, torch, …; each call
     waited for; medians), NVIDIA in its default path (`force_fp32=False`, mixed precision
     on `num_fp16_res` resolutions) on the same device type. The ratio reported is
     NVIDIA seconds / palm_jax seconds (> 1: palm_jax is faster).
Torch is needed (imported here only).
"""
from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from palm_jax.runtime.errors import require


def load_nvidia_generator_class(path: str):
  """`training.networks.Generator` from a stylegan2-ada-pytorch clone at `path`."""
  require(os.path.isfile(os.path.join(path, "training", "networks.py")),
          f"--against={path!r} is not a stylegan2-ada-pytorch clone (no training/networks.py"
          "); pass the directory of `git clone https://github.com/NVlabs/"
          "stylegan2-ada-pytorch`.")
  if path not in sys.path:
    sys.path.insert(0, path)
  from training.networks import Generator  # pylint: disable=import-outside-toplevel,import-error
  return Generator


def nvidia_twin(path: str, gen, num_fp16_res: int = 0, device: str = "cpu"):
  """NVIDIA's generator with `gen`'s architecture and weights (eval mode, no grads)."""
  import torch  # pylint: disable=import-outside-toplevel

  from palm_jax.models.stylegan2 import variables_to_state  # pylint: disable=import-outside-toplevel
  generator_cls = load_nvidia_generator_class(path)
  kwargs = gen.config.to_kwargs()
  kwargs["synthesis_kwargs"] = dict(kwargs["synthesis_kwargs"], num_fp16_res=num_fp16_res)
  twin = generator_cls(**kwargs).eval().requires_grad_(False).to(device)
  state = {k: torch.from_numpy(np.array(v, copy=True))
           for k, v in variables_to_state(jax.device_get(gen.variables), gen.config).items()}
  missing, unexpected = twin.load_state_dict(state, strict=False)
  # The official resample_filter buffers follow from the config and are not variables.
  missing = [k for k in missing if not k.endswith("resample_filter")]
  require(not missing and not unexpected, f"NVIDIA's Generator and palm_jax disagree on "
          f"weights: missing {missing[:5]}, unexpected {unexpected[:5]}.")
  return twin


def compare(path: str, gen, generate_program, *, batch: int = 64, repeats: int = 10,
            seed: int = 0, num_fp16_res: int = 0) -> dict:
  """Agreement and interleaved timing of `gen` vs NVIDIA's generator; prints one line.

  `generate_program(gen)` is palm_jax's jitted `(variables, z, labels, key) -> images`
  (`palm_jax.bench.generator.generate_program`).
  """
  import torch  # pylint: disable=import-outside-toplevel
  device = "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"
  twin = nvidia_twin(path, gen, num_fp16_res=num_fp16_res, device=device)
  rng = np.random.default_rng(seed)
  z = rng.standard_normal((batch, gen.z_dim)).astype(np.float32)
  labels = rng.integers(0, max(gen.c_dim, 1), batch).astype(np.int32)
  c = np.eye(max(gen.c_dim, 1), dtype=np.float32)[labels][:, :gen.c_dim]
  tz, tc = torch.from_numpy(z).to(device), torch.from_numpy(c).to(device)
  key = jax.random.key(seed)

  # 1. Agreement: both in float32 (NVIDIA force_fp32), const noise.
  ref_gen = gen.with_dtype(jnp.float32)
  ours = np.asarray(generate_program(ref_gen)(ref_gen.variables, jnp.asarray(z),
                                              jnp.asarray(labels), key))
  with torch.no_grad():
    theirs = twin(tz, tc, noise_mode="const", force_fp32=True).permute(0, 2, 3, 1)
  theirs = theirs.cpu().numpy()
  max_abs = float(np.abs(ours - theirs).max())
  rel_l2 = float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))

  # 2. Interleaved timing: palm_jax in gen's dtype, NVIDIA in its default path.
  program = generate_program(gen)
  jz, jl = jnp.asarray(z), jnp.asarray(labels)
  compiled = program.lower(gen.variables, jz, jl, key).compile()
  run_jax = lambda: compiled(gen.variables, jz, jl, key).block_until_ready()  # noqa: E731

  def run_torch():
    with torch.no_grad():
      out = twin(tz, tc, noise_mode="const")
    if device == "cuda":
      torch.cuda.synchronize()
    return out
  run_jax(), run_torch()                                       # warm-up
  jax_times, torch_times = [], []
  for _ in range(max(repeats, 1)):
    for fn, times in ((run_jax, jax_times), (run_torch, torch_times)):
      start = time.perf_counter()
      fn()
      times.append(time.perf_counter() - start)
  jax_s, torch_s = float(np.median(jax_times)), float(np.median(torch_times))
  row = dict(against=path, batch=batch, device=device, channels=gen.config.channel_max,
             dtype=jnp.dtype(gen.dtype).name, nvidia_num_fp16_res=num_fp16_res,
             max_abs_diff=max_abs, rel_l2_diff=rel_l2, palm_jax_images_per_s=batch / jax_s,
             nvidia_images_per_s=batch / torch_s, ratio=torch_s / jax_s,
             torch_threads=torch.get_num_threads(), oom=False)
  print(f"against NVIDIA ({path}), batch {batch}, {row['channels']} ch, {device}: images "
        f"agree to max |d| {max_abs:.2e} (rel L2 {rel_l2:.2e}); palm_jax "
        f"{row['palm_jax_images_per_s']:,.0f} img/s ({row['dtype']}) vs NVIDIA "
        f"{row['nvidia_images_per_s']:,.0f} img/s: ratio {row['ratio']:.2f}x", flush=True)
  return row
