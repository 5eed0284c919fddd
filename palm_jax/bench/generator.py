"""`python -m palm_jax.bench generator`: the StyleGAN2-ADA generator's throughput.

    python -m palm_jax.bench generator --batch_sizes=1024,4096,8192 --dtype=bfloat16 \
        --up_impl=transpose --modulation=weights [--chunk_size=2048] [--against=PATH]

The CIFAR config (32×32, `--channels` at every resolution, 2 mapping layers, z/w 512,
c_dim 10) with random weights. Per batch size: ahead-of-time compile (seconds and XLA's
memory plan of that program), then the median of `--iters` device-synchronised calls after
`--warmup`; images/s and TFLOP/s. FLOPs count the 3×3 synthesis convolutions, the
up-sampling ones at input resolution as the official stride-2 transposed convolution
computes them (8.0 GFLOP/image at 512 channels); `tflops_issue_count` uses the issue's
12.8 GFLOP (up-sampling convolutions at output resolution, what the polyphase form runs).
A batch that runs out of memory is reported and skipped. `--against=PATH` (a clone of
NVIDIA's stylegan2-ada-pytorch) also runs NVIDIA's generator with the same weights:
`palm_jax/bench/against.py`.
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from palm_jax.bench import timing

# The CIFAR-10 generator's shapes (stylegan2-ada-pytorch train.py, cfg_specs['cifar']:
# map=2, fmaps=1 → min(channel_base / res, 512) = 512 channels at every resolution; 16384
# gives the same channels at 32×32), random weights: benchmarks need no download.
CIFAR_GENERATOR = dict(z_dim=512, c_dim=10, w_dim=512, img_resolution=32, img_channels=3,
                       mapping_kwargs=dict(num_layers=2),
                       synthesis_kwargs=dict(channel_base=16384, channel_max=512,
                                             conv_clamp=256))


def int_list(text: str) -> list[int]:
  return [int(x) for x in text.split(",") if x]


def add_generator_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--batch_sizes", type=int_list, default=[256, 1024, 4096, 8192])
  p.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32", "float16"])
  p.add_argument("--channels", type=int, default=512, help="feature channels at every res")
  p.add_argument("--resolution", type=int, default=32)
  p.add_argument("--z_dim", type=int, default=512)
  p.add_argument("--w_dim", type=int, default=512)
  p.add_argument("--c_dim", type=int, default=10)
  p.add_argument("--mapping_layers", type=int, default=2)
  p.add_argument("--noise_mode", default="const", choices=["const", "random", "none"])
  p.add_argument("--truncation_psi", type=float, default=1.0)
  p.add_argument("--up_impl", default="polyphase",
                 help="polyphase | transpose, or per resolution: 8:transpose,16:polyphase")
  p.add_argument("--modulation", default="activations",
                 help="activations | weights (NVIDIA's fused per-sample weights), or per res")
  p.add_argument("--chunk_size", type=int, default=0, help="render in lax.map chunks (0: off)")
  p.add_argument("--warmup", type=int, default=2)
  p.add_argument("--iters", type=int, default=10, help="timed calls (the median is kept)")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--against", default="",
                 help="path of a stylegan2-ada-pytorch clone: compare with NVIDIA's code")
  p.add_argument("--nvidia_fp16_res", type=int, default=0,
                 help="--against: NVIDIA's num_fp16_res (4 = its cifar config's fp16 path)")


def generator_flops_per_image(config, up_at_output: bool = False) -> float:
  """FLOPs of the 3×3 synthesis convolutions for one image: Σ pixels·k²·I·O·2.

  Up-sampling convolutions count at input resolution (official transposed conv) unless
  `up_at_output` (output resolution, i.e. what the folded polyphase form executes).
  """
  ch, k = config.channels, config.kernel_size
  total = 0.0
  for res in config.block_resolutions:
    total += res * res * k * k * ch[res] * ch[res] * 2                    # conv1
    if res > 4:
      pixels = res * res if up_at_output else (res // 2) ** 2
      total += pixels * k * k * ch[res // 2] * ch[res] * 2                # conv0 (up)
  return total


def build_generator(*, channels=512, resolution=32, z_dim=512, w_dim=512, c_dim=10,
                    mapping_layers=2, dtype="bfloat16", up_impl="polyphase",
                    modulation="activations", seed=0):
  """A random-weight generator handle with NVIDIA's cifar architecture at `channels`."""
  from palm_jax.models.stylegan2 import init_generator  # pylint: disable=import-outside-toplevel
  return init_generator(
      jax.random.key(seed), dtype=jnp.dtype(dtype), up_impl=up_impl, modulation=modulation,
      z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, img_resolution=resolution, img_channels=3,
      mapping_kwargs=dict(num_layers=mapping_layers),
      synthesis_kwargs=dict(channel_base=channels * resolution, channel_max=channels,
                            conv_clamp=256))


def generate_program(gen, chunk_size: int = 0, noise_mode: str = "const",
                     truncation_psi: float = 1.0):
  """`jit(fn)(variables, z [N, z_dim], labels [N], key) -> images [N, R, R, 3]`; the
  variables are an argument (never embedded constants)."""
  from palm_jax.models.stylegan2.handle import map_in_chunks  # pylint: disable=import-outside-toplevel

  def fn(variables, z, labels, key):
    def one(inputs, k):
      z, labels = inputs
      return gen.module.apply(variables, z, gen.one_hot(labels, z.shape[0]), truncation_psi,
                              None, noise_mode, rngs={"noise": k})
    return map_in_chunks(one, (z, labels), key, chunk_size or None)
  return jax.jit(fn)


def measure_generator(gen, batch: int, *, repeats: int = 10, warmup: int = 2,
                      chunk_size: int = 0, noise_mode: str = "const",
                      truncation_psi: float = 1.0, seed: int = 0) -> dict:
  """One row: images/s, TFLOP/s, ms/batch, compile seconds, XLA's memory plan (or oom)."""
  rng = np.random.default_rng(seed)
  z = jnp.asarray(rng.standard_normal((batch, gen.z_dim)), jnp.float32)
  labels = jnp.asarray(rng.integers(0, max(gen.c_dim, 1), batch), jnp.int32)
  key = jax.random.key(seed + 1)
  row = dict(batch=batch, up_impl=gen.module.up_impl, modulation=gen.module.modulation,
             dtype=jnp.dtype(gen.dtype).name, chunk_size=chunk_size)
  try:
    program = generate_program(gen, chunk_size, noise_mode, truncation_psi)
    compiled, compile_s, memory = timing.compile_aot(program, gen.variables, z, labels, key)
    seconds = timing.median_seconds(lambda: compiled(gen.variables, z, labels, key),
                                    repeats, warmup)
  except Exception as e:  # pylint: disable=broad-except
    if not timing.is_oom(e):
      raise
    return dict(row, oom=True, error=timing.oom_message(e))
  flops = generator_flops_per_image(gen.config)
  flops_out = generator_flops_per_image(gen.config, up_at_output=True)
  imgs = batch / seconds
  return dict(row, oom=False, images_per_s=imgs, tflops=imgs * flops / 1e12,
              tflops_issue_count=imgs * flops_out / 1e12, ms_per_batch=seconds * 1e3,
              compile_s=compile_s, memory=memory,
              peak_bytes=None if memory is None else memory["peak_bytes"])


def format_row(row: dict) -> str:
  head = (f"batch {row['batch']:6d} {row['up_impl']}/{row['modulation']}"
          f"{' chunk ' + str(row['chunk_size']) if row.get('chunk_size') else ''}")
  if row["oom"]:
    return f"{head}: out of memory ({row['error']})"
  return (f"{head}: {row['images_per_s']:12,.0f} img/s  {row['tflops']:8.2f} TFLOP/s "
          f"({row['tflops_issue_count']:.2f} by the issue's 12.8 count)  "
          f"{row['ms_per_batch']:9.2f} ms/batch  compile {row['compile_s']:6.1f} s  "
          f"memory plan {timing.gib(row['peak_bytes'])}")


def bench_generator(args: argparse.Namespace) -> list[dict]:
  """Times the generator per batch size; prints and returns one dict per batch size."""
  gen = build_generator(channels=args.channels, resolution=args.resolution, z_dim=args.z_dim,
                        w_dim=args.w_dim, c_dim=args.c_dim, mapping_layers=args.mapping_layers,
                        dtype=args.dtype, up_impl=args.up_impl, modulation=args.modulation,
                        seed=args.seed)
  flops = generator_flops_per_image(gen.config)
  flops_out = generator_flops_per_image(gen.config, up_at_output=True)
  print(f"generator bench on {timing.device_description()}, dtype {args.dtype}, "
        f"{args.channels} ch, {args.resolution}x{args.resolution}, up_impl={args.up_impl}, "
        f"modulation={args.modulation}, chunk_size={args.chunk_size or 'off'}; "
        f"{flops / 1e9:.2f} GFLOP/image (issue's count {flops_out / 1e9:.2f})", flush=True)
  results = []
  for batch in args.batch_sizes:
    row = measure_generator(gen, batch, repeats=args.iters, warmup=args.warmup,
                            chunk_size=args.chunk_size, noise_mode=args.noise_mode,
                            truncation_psi=args.truncation_psi, seed=args.seed)
    results.append(row)
    print(format_row(row), flush=True)
  if args.against:
    from palm_jax.bench import against  # pylint: disable=import-outside-toplevel
    results.append(against.compare(args.against, gen, generate_program,
                                   batch=min(args.batch_sizes), repeats=args.iters,
                                   seed=args.seed, num_fp16_res=args.nvidia_fp16_res))
  return results
