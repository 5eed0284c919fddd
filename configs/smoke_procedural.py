r"""PALM smoke run on the procedural generator: shapes instead of a StyleGAN.

    python -m palm_jax.main --config=configs/smoke_procedural.py --workdir=/tmp/palm_proc

The smoke run (configs/smoke.py) with `palm_jax.models.procedural` rendering the world:
class = shape and colour, latent = position, size, rotation, brightness and background
(8 factors, see that module). Shows a generator without StyleGAN's mapping/synthesis
networks, or any weights, plugging into PALM through `palm_jax.envs.renderer`.
"""
import pathlib
import runpy

_HERE = pathlib.Path(__file__).resolve().parent


def get_config():
  c = runpy.run_path(str(_HERE / "smoke.py"))["get_config"]()
  c.generator = "procedural:shapes"   # palm_jax.models.procedural.load
  # Renderer settings: 16 x 16 RGB frames; 4 classes = disc, square, triangle, ring, each
  # with its own hue.
  c.generator_kwargs = dict(resolution=16, num_classes=4)
  c.env.latent_space = "z"            # the only space a renderer has (no mapping network)
  return c
