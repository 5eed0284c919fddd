"""`python -m palm_jax.bench suite --budget_s=420 --out=DIR`: every figure, within a budget.

One command for a short accelerator session. Items run most-important-first — one
figure per target of the issues, then the rest:

  1. generator img/s + TFLOP/s, bf16, batch 4096, each candidate implementation
     (up-conv polyphase/transpose × modulation activations/weights);
  2. PALM env steps/s, configs/cifar10.py shapes, 4096 envs, with the generator / acting /
     updates breakdown (the generator set to the fastest candidate of 1.);
  3. the fastest candidate at batch 8192 (does it fit?);
  4. GAN s/kimg, configs/gan_cifar10.py (NVIDIA's cifar config, synthetic images);
  5. features + linear probe for 50k + 10k images;
  6. 8192 rendered in chunks of 2048; the fastest candidate at 1024; PALM at 1024 and
     8192 envs; `--against` NVIDIA if given; the other candidates at 8192 and 1024;
  7. population training (issue 10): configs/mini.py:random (64 envs) as one run, then as
     populations of 8 and 32 seeds in one vmapped chunk — env steps/s in all vs one run.
Every item reports compile seconds and XLA's memory plan of its own program (see
`timing.py`). Before an item starts, its cost is estimated (from the last item of its
kind, scaled by size; a prior for the first); an item that would end past the budget is
skipped and recorded as such, so the suite always ends cleanly near `--budget_s`. An
item that fails for another reason than memory is recorded with its error and the suite
goes on (a GPU-specific failure in one part costs only that part).

Writes `DIR/suite.json` (every row, the device, versions, timings) and `DIR/suite.md`
(tables ready for BENCHMARKS.md), rewritten after every item so a killed run keeps what
it measured. `--tiny` runs the same code paths at toy sizes (the CPU rehearsal test).
Needs ml_collections for the config files (see BENCHMARKS.md for carrying its wheel).
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import time
import traceback
from typing import Any, Callable

import jax

from palm_jax.bench import features as features_bench
from palm_jax.bench import gan as gan_bench
from palm_jax.bench import generator as generator_bench
from palm_jax.bench import palm as palm_bench
from palm_jax.bench import timing
from palm_jax.runtime import files

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CANDIDATES = [("polyphase", "activations"), ("transpose", "activations"),
              ("polyphase", "weights"), ("transpose", "weights")]
# First-item priors (seconds, compile + run) on an H100-class GPU; replaced by measurements
# as soon as an item of the kind has run. Deliberately pessimistic: the naive JAX port
# compiled for minutes (../shared/notes/generator_performance.md).
PRIORS_S = {"generator": 45.0, "palm": 120.0, "gan": 90.0, "features": 60.0,
            "against": 60.0, "population": 120.0}


@dataclasses.dataclass
class Sizes:
  """What the suite measures; `full()` for accelerators, `tiny()` for the CPU rehearsal."""
  gen: dict                       # build_generator keywords
  gen_main: int                   # the batch every candidate is timed at
  gen_more: tuple[int, ...]       # further batches (best candidate first, then the others)
  gen_chunk: int                  # chunk size for the chunked run of the largest batch
  gen_repeats: int
  palm_config: str
  palm_set: tuple[str, ...]
  palm_envs: tuple[int, ...]      # first one is the main figure
  palm_chunks: int
  palm_repeats: int
  gan_config: str
  gan_set: tuple[str, ...]
  gan_steps: int
  gan_images: int
  features: dict
  population_config: str          # a small config (one member leaves a GPU idle)
  population_set: tuple[str, ...]
  population_members: tuple[int, ...]   # after that config run as one member
  other_candidates: int = len(CANDIDATES) - 1   # slower candidates re-timed at gen_more

  @classmethod
  def full(cls) -> "Sizes":
    return cls(gen=dict(dtype="bfloat16"), gen_main=4096, gen_more=(8192, 1024),
               gen_chunk=2048, gen_repeats=10,
               palm_config=os.path.join(ROOT, "configs", "cifar10.py"), palm_set=(),
               palm_envs=(4096, 1024, 8192), palm_chunks=3, palm_repeats=5,
               gan_config=os.path.join(ROOT, "configs", "gan_cifar10.py"), gan_set=(),
               gan_steps=20, gan_images=4096,
               features=dict(train=50_000, test=10_000, batch_size=512, dtype="bfloat16"),
               population_config=os.path.join(ROOT, "configs", "mini.py:random"),
               population_set=(), population_members=(8, 32))

  @classmethod
  def tiny(cls) -> "Sizes":
    # The PALM and GAN programs are those of tests/test_bench_suite.py's neighbours
    # (configs/smoke.py at 64 envs; tests/test_gan_train.py's GAN), so a test session's
    # compilation cache serves them once compiled.
    return cls(gen=dict(dtype="float32", channels=8, resolution=8, z_dim=8, w_dim=8,
                        c_dim=3, mapping_layers=1),
               gen_main=16, gen_more=(32,), gen_chunk=8, gen_repeats=2,
               palm_config=os.path.join(ROOT, "configs", "smoke.py"),
               palm_set=("batch_size=16",), palm_envs=(64,), palm_chunks=1, palm_repeats=1,
               gan_config=os.path.join(ROOT, "configs", "gan_smoke.py"),
               gan_set=("num_devices=2", "resolution=8", "batch_size=8", "z_dim=16",
                        "w_dim=16", "channel_base=128", "channel_max=16", "map_layers=1",
                        "d_map_layers=1", "mbstd_group=4", "augpipe='bc'", "augment_p=0.2",
                        "d_reg_interval=4", "ada_interval=2"),
               gan_steps=1, gan_images=64,
               features=dict(train=48, test=16, batch_size=16, dtype="float32", width=4,
                             stage_sizes=(1,), max_iter=3),
               population_config=os.path.join(ROOT, "configs", "smoke.py"),
               population_set=("batch_size=16",), population_members=(2,),
               other_candidates=1)


@dataclasses.dataclass
class Item:
  name: str
  kind: str                       # generator | palm | gan | features | against
  size: int                       # batch / envs: scales the cost estimate
  run: Callable[[], dict]
  format: Callable[[dict], str]


def add_suite_arguments(p: argparse.ArgumentParser) -> None:
  p.add_argument("--budget_s", type=float, default=420.0, help="wall-clock budget")
  p.add_argument("--out", default="bench_suite", help="directory for suite.json/.md")
  p.add_argument("--tiny", action="store_true", help="toy sizes (CPU rehearsal)")
  p.add_argument("--against", default="", help="a stylegan2-ada-pytorch clone (optional)")
  p.add_argument("--only", default="", help="comma list of kinds to run (default: all)")


class Budget:
  """Wall-clock accounting and per-kind cost estimates."""

  def __init__(self, budget_s: float):
    self.start, self.budget_s = time.perf_counter(), budget_s
    self.last: dict[str, tuple[float, int]] = {}     # kind -> (wall seconds, size)

  def elapsed(self) -> float:
    return time.perf_counter() - self.start

  def estimate(self, item: Item) -> float:
    if item.kind not in self.last:
      return PRIORS_S[item.kind]
    wall, size = self.last[item.kind]
    return wall * max(1.0, item.size / max(size, 1))   # a new program: compile + run again

  def record(self, item: Item, wall: float) -> None:
    self.last[item.kind] = (wall, item.size)


def _plan(sizes: Sizes, against: str, results: dict) -> list[Item]:
  """The ordered items; later ones read earlier results (the fastest candidate)."""
  def gen_item(up, mod, batch, chunk=0):
    def run():
      gen = generator_bench.build_generator(up_impl=up, modulation=mod, **sizes.gen)
      return generator_bench.measure_generator(gen, batch, repeats=sizes.gen_repeats,
                                               warmup=1, chunk_size=chunk)
    name = f"generator {up}/{mod} batch {batch}" + (f" chunk {chunk}" if chunk else "")
    return Item(name, "generator", batch, run, generator_bench.format_row)

  def best():
    rows = [r for r in results.get("generator", []) if not r["oom"]
            and r["batch"] == sizes.gen_main and not r["chunk_size"]]
    top = max(rows, key=lambda r: r["images_per_s"]) if rows else None
    return (top["up_impl"], top["modulation"]) if top else CANDIDATES[0]

  def lazy_gen_item(batch, chunk=0, which=0):
    """The `which`-th fastest candidate at `batch`, decided when the item starts."""
    def run():
      ranked = _ranked(results, sizes.gen_main)
      up, mod = ranked[which] if which < len(ranked) else CANDIDATES[which]
      return gen_item(up, mod, batch, chunk).run()
    return Item(f"generator candidate #{which + 1} batch {batch}"
                + (f" chunk {chunk}" if chunk else ""), "generator", batch, run,
                generator_bench.format_row)

  def palm_item(n):
    def run():
      up, mod = best()
      config = palm_bench.palm_config(sizes.palm_config, n, list(sizes.palm_set) + [
          f"generator_up_impl={up}", f"generator_modulation={mod}"])
      return palm_bench.measure_palm(config, chunks=sizes.palm_chunks,
                                     repeats=sizes.palm_repeats)
    return Item(f"palm {n} envs", "palm", n, run, palm_bench.format_row)

  def population_item(members):
    def run():
      config = palm_bench.palm_config(sizes.population_config, 64, sizes.population_set)
      return palm_bench.measure_palm(config, chunks=sizes.palm_chunks,
                                     repeats=sizes.palm_repeats, members=members)
    name = f"population of {members}" if members else "population baseline: one run"
    return Item(name, "population", max(members, 1), run, palm_bench.format_row)

  def gan_item():
    def run():
      config = gan_bench.gan_config(sizes.gan_config, sizes.gan_set, sizes.gan_images)
      return gan_bench.measure_gan(config, steps=sizes.gan_steps)
    return Item("gan s/kimg", "gan", 1, run, gan_bench.format_row)

  def features_item():
    def run():
      return features_bench.measure_features(**sizes.features)
    return Item("features + probe", "features", 1, run, features_bench.format_row)

  def against_item():
    def run():
      from palm_jax.bench import against as against_lib  # pylint: disable=import-outside-toplevel
      gen = generator_bench.build_generator(**sizes.gen)
      return against_lib.compare(against, gen, generator_bench.generate_program,
                                 batch=sizes.gen_more[-1], repeats=sizes.gen_repeats)
    return Item("against NVIDIA", "against", 1, run, lambda r: "")

  big = sizes.gen_more[0]
  # One figure per target first (generator at 4096 and 8192, PALM at 4096, GAN, probe),
  # then the other sizes, then the slower candidates.
  items = [gen_item(up, mod, sizes.gen_main) for up, mod in CANDIDATES]
  items += [palm_item(sizes.palm_envs[0]), lazy_gen_item(big), gan_item(), features_item(),
            lazy_gen_item(big, chunk=sizes.gen_chunk)]
  items += [lazy_gen_item(b) for b in sizes.gen_more[1:]]
  items += [palm_item(n) for n in sizes.palm_envs[1:]]
  if against:
    items.append(against_item())
  items += [lazy_gen_item(b, which=w) for w in range(1, 1 + sizes.other_candidates)
            for b in sizes.gen_more]
  items += [population_item(m) for m in (0,) + sizes.population_members]
  return items


def _ranked(results: dict, batch: int) -> list[tuple[str, str]]:
  rows = [r for r in results.get("generator", []) if not r["oom"] and r["batch"] == batch
          and not r["chunk_size"]]
  rows.sort(key=lambda r: -r["images_per_s"])
  seen = []
  for r in rows:
    if (r["up_impl"], r["modulation"]) not in seen:
      seen.append((r["up_impl"], r["modulation"]))
  return seen + [c for c in CANDIDATES if c not in seen]


def bench_suite(args: argparse.Namespace) -> dict:
  """Runs the plan within the budget; returns (and writes) the report dict."""
  sizes = Sizes.tiny() if args.tiny else Sizes.full()
  only = {k for k in args.only.split(",") if k}
  os.makedirs(args.out, exist_ok=True)
  budget = Budget(args.budget_s)
  results: dict[str, list[dict]] = {}
  report: dict[str, Any] = dict(
      started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
      device=timing.device_description(), jax=jax.__version__, python=platform.python_version(),
      budget_s=args.budget_s, tiny=bool(args.tiny), items=[], results=results)
  print(f"suite on {report['device']}, JAX {jax.__version__}, budget {args.budget_s:.0f} s",
        flush=True)
  for item in _plan(sizes, args.against, results):
    if only and item.kind not in only:
      continue
    entry = dict(name=item.name, kind=item.kind)
    estimate = budget.estimate(item)
    if budget.elapsed() + estimate > args.budget_s:
      entry.update(status="skipped", reason=f"estimated {estimate:.0f} s, "
                   f"{args.budget_s - budget.elapsed():.0f} s left")
      print(f"[{budget.elapsed():6.0f} s] skip {item.name}: {entry['reason']}", flush=True)
      report["items"].append(entry)
      continue
    start = time.perf_counter()
    try:
      row = item.run()
      entry["status"] = "oom" if row.get("oom") else "done"
      results.setdefault(item.kind, []).append(row)
      line = item.format(row)
    except Exception as e:  # pylint: disable=broad-except  (keep measuring the rest)
      traceback.print_exc()
      entry.update(status="error", error=f"{type(e).__name__}: {str(e)[:300]}")
      line = entry["error"]
    wall = time.perf_counter() - start
    budget.record(item, wall)
    entry.update(wall_s=wall, estimate_s=estimate)
    report["items"].append(entry)
    print(f"[{budget.elapsed():6.0f} s] {item.name} ({wall:.0f} s): {line}", flush=True)
    _write(args.out, report, budget)
  _write(args.out, report, budget)
  return report


def _write(out: str, report: dict, budget: Budget) -> None:
  report["elapsed_s"] = budget.elapsed()
  files.write_json(os.path.join(out, "suite.json"), report)
  with open(os.path.join(out, "suite.md"), "w") as f:
    f.write(markdown(report))


def _mem(row: dict) -> str:
  return timing.gib(row.get("peak_bytes")).replace(" GiB", "")


def markdown(report: dict) -> str:
  """Tables for BENCHMARKS.md from a suite report."""
  r = report["results"]
  lines = [f"Suite of {report['started']} on {report['device']}, JAX {report['jax']}, "
           f"{report['elapsed_s']:.0f} s of a {report['budget_s']:.0f} s budget"
           f"{' (--tiny rehearsal sizes)' if report['tiny'] else ''}.", ""]
  if r.get("generator"):
    lines += ["| generator | batch | chunk | img/s | TFLOP/s (8.0 GFLOP) | ms/batch | compile s "
              "| memory plan GiB |", "|---|---|---|---|---|---|---|---|"]
    for g in r["generator"]:
      name = f"{g['up_impl']}/{g['modulation']} {g['dtype']}"
      if g["oom"]:
        lines.append(f"| {name} | {g['batch']} | {g['chunk_size'] or '-'} | out of memory "
                     "| | | | |")
        continue
      lines.append(f"| {name} | {g['batch']} | {g['chunk_size'] or '-'} | "
                   f"{g['images_per_s']:,.0f} | {g['tflops']:.1f} | {g['ms_per_batch']:.2f} | "
                   f"{g['compile_s']:.1f} | {_mem(g)} |")
    lines.append("")
  if r.get("palm"):
    lines += ["| PALM envs | generator | env steps/s | ms/iter | generator ms | acting ms | "
              "updates ms | compile s | memory plan GiB | replay GiB |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for p in r["palm"]:
      name = f"{p['up_impl']}/{p['modulation']}"
      if p["oom"]:
        lines.append(f"| {p['num_envs']} | {name} | out of memory | | | | | | | |")
        continue
      lines.append(f"| {p['num_envs']} | {name} | {p['env_steps_per_s']:,.0f} | "
                   f"{p['ms_per_iteration']:.2f} | {p['generator_ms']:.2f} | "
                   f"{p['acting_ms']:.2f} | {p['updates_ms']:.2f} | {p['compile_s']:.1f} | "
                   f"{_mem(p)} | {p['replay_gib']:.2f} |")
    lines.append("")
  if r.get("population"):
    lines += ["| population (configs/mini.py shapes) | members | env steps/s in all | per member "
              "| ms/iter | compile s | memory plan GiB |", "|---|---|---|---|---|---|---|"]
    for p in r["population"]:
      m = p.get("members") or 1
      if p["oom"]:
        lines.append(f"| {p['num_envs']} envs | {m} | out of memory | | | | |")
        continue
      lines.append(f"| {p['num_envs']} envs | {m} | {p['env_steps_per_s']:,.0f} | "
                   f"{p['env_steps_per_s'] / m:,.0f} | {p['ms_per_iteration']:.2f} | "
                   f"{p['compile_s']:.1f} | {_mem(p)} |")
    lines.append("")
  for g in r.get("gan", []):
    lines.append(f"- GAN (batch {g['batch']}, {g['dtype']}): " + (
        "out of memory" if g["oom"] else f"{g['s_per_kimg']:.2f} s/kimg, {g['ms_per_step']:.1f}"
        f" ms/step, compile {g['compile_s']:.1f} s, memory plan {_mem(g)} GiB"))
  for ft in r.get("features", []):
    lines.append(f"- Features {ft['train']} + {ft['test']} images ({ft['dtype']}): " + (
        "out of memory" if ft["oom"] else f"{ft['features_train_s']:.1f} + "
        f"{ft['features_test_s']:.1f} s ({ft['images_per_s']:,.0f} img/s), linear probe "
        f"{ft['probe_s']:.1f} s, encoder compile {ft['compile_s']:.1f} s"))
  for a in r.get("against", []):
    lines.append(f"- Against NVIDIA (batch {a['batch']}, {a['device']}): images agree to "
                 f"{a['max_abs_diff']:.1e}; palm_jax {a['palm_jax_images_per_s']:,.0f} vs "
                 f"NVIDIA {a['nvidia_images_per_s']:,.0f} img/s = {a['ratio']:.2f}x")
  skipped = [i["name"] for i in report["items"] if i["status"] == "skipped"]
  errors = [f"{i['name']} ({i['error']})" for i in report["items"] if i["status"] == "error"]
  if skipped:
    lines.append(f"- Skipped for the budget: {', '.join(skipped)}")
  if errors:
    lines.append(f"- Errors: {'; '.join(errors)}")
  return "\n".join(lines) + "\n"
