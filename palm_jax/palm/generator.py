"""The world a PALM run plays in: the generator `config.generator` names, loaded once.

`load_env_generator` resolves every kind the config accepts — a weights file (.pkl, .pt,
.pth, .npz; unreadable ones answered in one sentence by `load_generator_file`),
"nvidia:cifar10" (downloaded once), "random" (NVIDIA's initialisation from
`generator_kwargs`, seeded by `seed + 1`), "procedural:<name>" (a weight-free renderer), or
"" (train one first with the `gan` section into WORKDIR/gan/) — and returns a handle with
the config's compute dtype and implementation.
"""
from __future__ import annotations

import os

import jax
from absl import logging

from palm_jax.palm.dtypes import dtype as _dtype
from palm_jax.runtime.errors import UserError, require


def load_generator_file(name: str, load):
  """`load(name)` for a weights path, with unreadable files answered in one sentence.

  A directory, a text file, a truncated `.npz`/`.pkl` (an interrupted copy or download)
  would otherwise surface as IsADirectoryError/BadZipFile/EOFError tracebacks.
  """
  path = os.path.expanduser(str(name))
  if not str(name).startswith("nvidia:"):
    require(not os.path.isdir(path), f"config.generator={name!r} is a directory; pass the "
            "weights file inside it (e.g. DIR/generator.npz written by the gan job).")
    if path.lower().endswith(".npz") and os.path.isfile(path):
      import zipfile  # pylint: disable=g-import-not-at-top
      require(zipfile.is_zipfile(path), f"config.generator={name!r} is not an .npz archive "
              "(not a complete zip file: truncated, or text); export it again with the gan "
              "job or save_generator_npz.")
  try:
    return load(name)
  except UserError:
    raise
  except Exception as e:  # pylint: disable=broad-except  (zipfile, pickle, EOF, OS errors)
    text = (str(e).strip().splitlines() or [""])[0][:120]
    raise UserError(f"config.generator={name!r} cannot be read as generator weights "
                    f"({type(e).__name__}: {text}); the file is truncated or not a weights "
                    "file: copy or export it again (a .pkl snapshot, .pt/.pth state dict or "
                    "the gan job's .npz).") from None



def load_env_generator(config, workdir: str):
  """The generator handle named by `config.generator` (training one first if it is "")."""
  from palm_jax.models import stylegan2  # pylint: disable=g-import-not-at-top
  name = config.generator
  if name == "random":
    require(len(config.generator_kwargs) > 0, "config.generator='random' needs "
            "config.generator_kwargs (official Generator keywords such as z_dim, c_dim).")
    gen = stylegan2.init_generator(jax.random.PRNGKey(config.seed + 1),
                                   **config.generator_kwargs.to_dict())
  elif name.startswith("procedural:"):  # a generator without weights (palm_jax.envs.renderer)
    from palm_jax.models import procedural  # pylint: disable=g-import-not-at-top
    gen = procedural.load(name, config.generator_kwargs.to_dict())
  elif name == "":
    require(len(config.gan) > 0, "config.generator is empty and config.gan is empty; name "
            "a generator (a file or nvidia:cifar10) or give a gan config to train one.")
    from palm_jax.gan import train as gan_train  # pylint: disable=g-import-not-at-top
    logging.info("No generator given: training one into %s first.", os.path.join(workdir,
                                                                                  "gan"))
    gen = stylegan2.load_generator(gan_train.train_gan(config.gan, os.path.join(workdir,
                                                                                "gan")))
  else:
    gen = load_generator_file(name, stylegan2.load_generator)
  gen = gen.with_dtype(_dtype(config.generator_dtype, "generator_dtype"))
  if not hasattr(gen, "with_impl"):   # a weight-free renderer: no StyleGAN implementations
    return gen
  return gen.with_impl(config.get("generator_up_impl", "polyphase"),
                       config.get("generator_modulation", "activations"))


def render_options(config, gen) -> dict:
  """`LatentEnv` rendering options for StyleGAN generators (renderers take none)."""
  if not hasattr(gen, "with_impl"):
    return {}
  return dict(render_chunk=config.env.get("render_chunk", 0))
