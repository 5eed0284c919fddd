"""Images for people: float [-1, 1] or uint8 batches → grids → PNG files and GIFs.

Rollouts are written at a readable size: 16-32 px frames upscaled by nearest neighbour
(×4 at least, so pixels stay crisp), labelled with the episode class and the time t, and
every trajectory also as a looping animated GIF (Pillow).
"""
from __future__ import annotations

import os

import numpy as np


def to_uint8(images) -> np.ndarray:
  """Maps float images in [-1, 1] (or uint8, returned as is) to uint8 [0, 255].

  Same rounding as NVIDIA's `(img * 127.5 + 128).clamp(0, 255)`.
  """
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images
  return np.clip(np.asarray(images, np.float32) * 127.5 + 128.0, 0, 255).astype(np.uint8)


def make_grid(images, pad: int = 1, pad_value: int = 255) -> np.ndarray:
  """Tiles `[rows, cols, H, W, C]` images into one `[rows*(H+pad)+pad, cols*(W+pad)+pad, C]`.

  Single-channel images are repeated to RGB so every grid is an RGB PNG.
  """
  images = to_uint8(images)
  if images.ndim != 5:
    raise ValueError(f"make_grid wants [rows, cols, H, W, C], got shape {images.shape}")
  rows, cols, h, w, c = images.shape
  if c == 1:
    images, c = np.repeat(images, 3, axis=-1), 3
  grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), pad_value, np.uint8)
  for r in range(rows):
    for k in range(cols):
      y, x = pad + r * (h + pad), pad + k * (w + pad)
      grid[y:y + h, x:x + w] = images[r, k]
  return grid


def save_png(path: str, image) -> str:
  """Writes an `[H, W, C]` (uint8 or float [-1, 1]) image atomically; returns the path."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = to_uint8(image)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  Image.fromarray(image).save(tmp, format="PNG")
  os.replace(tmp, path)
  return path


def upscale(images, factor: int) -> np.ndarray:
  """Nearest-neighbour ×`factor` of `[..., H, W, C]` images (pixels stay crisp)."""
  images = np.asarray(images)
  return np.repeat(np.repeat(images, factor, axis=-3), factor, axis=-2)


def readable_scale(size: int, target: int = 64) -> int:
  """The integer factor (at least 4) that makes a `size`-pixel frame about `target` px."""
  return max(4, -(-target // max(size, 1)))


def _text(draw, xy, text: str) -> None:
  draw.text(xy, text, fill=(0, 0, 0))


def add_caption(image, lines) -> np.ndarray:
  """`[H, W, C]` image → the same with a white band above it holding `lines` of text
  (what the picture shows, for a reader who never saw the code that made it)."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  image = to_uint8(image)
  if image.shape[-1] == 1:
    image = np.repeat(image, 3, axis=-1)
  top = 2 + 12 * len(lines)
  canvas = Image.new("RGB", (image.shape[1], image.shape[0] + top), (255, 255, 255))
  canvas.paste(Image.fromarray(image), (0, top))
  draw = ImageDraw.Draw(canvas)
  for i, line in enumerate(lines):
    _text(draw, (2, 1 + 12 * i), line)
  return np.asarray(canvas)


def labelled_grid(frames, classes, *, scale: int | None = None, pad: int = 2) -> np.ndarray:
  """`[rows, T, H, W, C]` frames → an RGB uint8 grid upscaled ×`scale` (nearest) with a
  header row `t=0 … t=T-1` and a left column `class c` per row (`classes [rows]`)."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  frames = to_uint8(frames)
  rows, cols, h, _, _ = frames.shape
  scale = scale or readable_scale(h)
  body = make_grid(upscale(frames, scale), pad=pad)
  left, top = 56, 14
  canvas = Image.new("RGB", (body.shape[1] + left, body.shape[0] + top), (255, 255, 255))
  canvas.paste(Image.fromarray(body), (left, top))
  draw = ImageDraw.Draw(canvas)
  cell = h * scale + pad
  for t in range(cols):
    _text(draw, (left + pad + t * cell, 1), f"t={t}")
  for r in range(rows):
    _text(draw, (2, top + pad + r * cell + cell // 2 - 6), f"class {int(classes[r])}")
  return np.asarray(canvas)


def save_gif(path: str, frames, *, label: str = "", scale: int | None = None,
             ms_per_frame: int = 250) -> str:
  """`[T, H, W, C]` frames → an animated GIF (looping, upscaled ×`scale`) with `label` and
  `t` written on each frame; atomic like `save_png`."""
  from PIL import Image, ImageDraw  # pylint: disable=g-import-not-at-top
  frames = to_uint8(frames)
  scale = scale or readable_scale(frames.shape[1])
  pictures = []
  for t, frame in enumerate(upscale(frames, scale)):
    if frame.shape[-1] == 1:
      frame = np.repeat(frame, 3, axis=-1)
    canvas = Image.new("RGB", (frame.shape[1], frame.shape[0] + 14), (255, 255, 255))
    canvas.paste(Image.fromarray(frame), (0, 14))
    _text(ImageDraw.Draw(canvas), (2, 1), f"{label} t={t}".strip())
    pictures.append(canvas)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  pictures[0].save(tmp, format="GIF", save_all=True, append_images=pictures[1:],
                   duration=ms_per_frame, loop=0)
  os.replace(tmp, path)
  return path


def save_rollout(stem: str, frames, classes) -> list[str]:
  """`stem.png` (the labelled grid) and `stem_row<r>.gif` per trajectory; returns paths."""
  paths = [save_png(stem + ".png", labelled_grid(frames, classes))]
  for r in range(len(frames)):
    paths.append(save_gif(f"{stem}_row{r}.gif", frames[r], label=f"class {int(classes[r])}"))
  return paths
