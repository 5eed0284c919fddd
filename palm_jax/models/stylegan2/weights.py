"""Official StyleGAN2-ADA weights ↔ `GeneratorHandle`: reading, checking, converting, saving.

Accepted inputs (`load_generator(path)`):

* `.pkl` — an official training snapshot (`network-snapshot-*.pkl`): a pickled dict with
  `G_ema` whose classes went through `torch_utils.persistence`, i.e. every module pickles as
  `torch_utils.persistence._reconstruct_persistent_obj(meta)` with `meta = {module_src,
  class_name, state}` and `state` the module's `__dict__`. A restricted unpickler maps only
  the few globals such files need (that function → a stand-in recording `meta`, torch's tensor
  rebuild functions, `dnnlib.EasyDict` → dict, numpy scalars) and refuses all others. The
  embedded source is never executed; NVIDIA's code and dnnlib are not needed (torch is, to
  rebuild tensors). The state dict is collected from `_parameters`/`_buffers`/`_modules`, and
  the constructor arguments from `_init_kwargs`.
* `.pt` / `.pth` — `torch.save(G_ema.state_dict())`, read with `weights_only=True`.
* `.npz` — the same keys as `state/<key>`, plus optionally `init_kwargs` (a JSON string);
  `save_generator_npz` writes this format.
* `nvidia:cifar10` — NVIDIA's conditional CIFAR-10 snapshot, downloaded once to
  `$PALM_JAX_CACHE` (default `~/.cache/palm_jax`).

Without stored constructor arguments they are inferred from the tensor shapes; `conv_clamp`
cannot be seen in shapes and defaults to 256 (what the official training configs use).
"""
from __future__ import annotations

import collections
import io
import json
import os
import pathlib
import pickle
import re
import tempfile
import urllib.request

import jax
import jax.numpy as jnp
import numpy as np

from palm_jax.models.stylegan2.handle import GeneratorHandle
from palm_jax.models.stylegan2.network import Generator, GeneratorConfig
from palm_jax.models.stylegan2.ops import fir_filter_2d
from palm_jax.runtime.errors import UserError, require

PRETRAINED = {
    "cifar10": "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/cifar10.pkl",
}
DEFAULT_CONV_CLAMP = 256
_BUFFER_NAMES = ("w_avg", "noise_const")
_UNSET = object()


# ------------------------------------------------------------------------- public API ---

def load_generator(path, *, conv_clamp=_UNSET, dtype=jnp.float32, up_impl="polyphase",
                   modulation="activations", cache_dir=None) -> GeneratorHandle:
  """Loads official StyleGAN2-ADA generator weights (`G_ema`) into a `GeneratorHandle`.

  `path`: a `.pkl` snapshot, a `.pt`/`.pth` state dict, a `.npz`, or `nvidia:cifar10`.
  `conv_clamp` overrides the stored/default value (None disables clamping). `dtype` is the
  compute dtype (`jnp.bfloat16` on accelerators); parameters stay float32. `up_impl` and
  `modulation` pick equivalent implementations (`GeneratorHandle.with_impl`).
  """
  path = resolve_weights_path(path, cache_dir=cache_dir)
  state, init_kwargs = read_state_dict(path)
  if init_kwargs is None:
    init_kwargs = infer_init_kwargs(state, source=path)
  if conv_clamp is not _UNSET:
    init_kwargs["synthesis_kwargs"] = {**init_kwargs.get("synthesis_kwargs", {}),
                                       "conv_clamp": conv_clamp}
  config = GeneratorConfig.from_kwargs(**init_kwargs)
  variables = state_to_variables(state, config, source=path)
  return GeneratorHandle(Generator(config, dtype=dtype), variables).with_impl(up_impl,
                                                                              modulation)


def save_generator_npz(path, gen: GeneratorHandle) -> None:
  """Writes `state/<official key>` arrays and `init_kwargs` (JSON) that `load_generator` reads.

  Written to a temporary file first and renamed, so readers never see a partial file.
  """
  path = pathlib.Path(path)
  arrays = {f"state/{k}": v for k, v in variables_to_state(gen.variables, gen.config).items()}
  arrays["init_kwargs"] = np.array(json.dumps(gen.config.to_kwargs()))
  path.parent.mkdir(parents=True, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      np.savez(f, **arrays)
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def read_state_dict(path) -> tuple[dict[str, np.ndarray], dict | None]:
  """`(state_dict as float32 numpy, official init kwargs or None)` from a weights file."""
  path = pathlib.Path(path)
  require(path.is_file(), f"generator weights file {str(path)!r} does not exist; pass the path "
          "of a .pkl snapshot, a .pt/.pth state dict or a .npz, or 'nvidia:cifar10'.")
  suffix = path.suffix.lower()
  if suffix == ".pkl":
    return read_snapshot_pkl(path)
  if suffix in (".pt", ".pth"):
    return _read_torch_state_dict(path), None
  if suffix == ".npz":
    return _read_npz(path)
  raise UserError(f"generator weights file {str(path)!r} has suffix {suffix!r}; expected "
                  ".pkl, .pt, .pth or .npz.")


# ------------------------------------------------------------------------ file formats ---

class _PersistentObject:
  """Stand-in for an object pickled through `torch_utils.persistence` (source never run)."""

  def __init__(self, meta):
    meta = dict(meta)
    self.class_name = meta.get("class_name")
    self.state = dict(meta.get("state") or {})


class _AttrDict(dict):
  """Stand-in for `dnnlib.EasyDict` (a dict subclass); becomes a plain dict."""


def _torch():
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise UserError("reading .pkl/.pt StyleGAN2 weights needs PyTorch to rebuild tensors; "
                    "install it (pip install torch) or convert the file to .npz.") from e
  return torch


def _latin1_encode(text, encoding="latin1"):
  require(encoding == "latin1", f"unexpected _codecs.encode encoding {encoding!r} in pickle; "
          "pass an official StyleGAN2-ADA snapshot.")
  return text.encode("latin1")


def _load_storage_from_bytes(data):
  # Official: torch.storage._load_from_bytes = torch.load(bytes), unrestricted; ours is not.
  return _torch().load(io.BytesIO(data), weights_only=True, map_location="cpu")


class _SnapshotUnpickler(pickle.Unpickler):
  """Resolves only the globals an official snapshot needs; everything else is refused."""

  def find_class(self, module, name):
    module = {"__builtin__": "builtins"}.get(module, module)      # pickle protocol 2 names
    if (module, name) == ("torch_utils.persistence", "_reconstruct_persistent_obj"):
      return _PersistentObject
    if module in ("dnnlib", "dnnlib.util") and name == "EasyDict":
      return _AttrDict
    if (module, name) == ("collections", "OrderedDict"):
      return collections.OrderedDict
    if (module, name) in (("builtins", "set"), ("builtins", "frozenset")):
      return {"set": set, "frozenset": frozenset}[name]
    if (module, name) == ("_codecs", "encode"):       # bytes in pickle protocol 2
      return _latin1_encode
    if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray"):
      allowed = {"dtype": np.dtype, "ndarray": np.ndarray}
      core = getattr(np, "_core", None) or np.core
      allowed.update(scalar=core.multiarray.scalar, _reconstruct=core.multiarray._reconstruct)
      if name in allowed:
        return allowed[name]
    if (module, name) == ("torch.storage", "_load_from_bytes"):
      return _load_storage_from_bytes
    if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_parameter",
                                             "_rebuild_parameter_with_state"):
      return getattr(_torch()._utils, name)
    raise UserError(f"refusing to unpickle {module}.{name}: this .pkl is not an official "
                    "StyleGAN2-ADA (PyTorch) snapshot, so convert it to a G_ema state dict "
                    "(.pt) or .npz first.")


def read_snapshot_pkl(path) -> tuple[dict[str, np.ndarray], dict]:
  """State dict and init kwargs of `G_ema` in an official StyleGAN2-ADA snapshot `.pkl`."""
  with open(path, "rb") as f:
    try:
      data = _SnapshotUnpickler(f).load()
    except UserError:
      raise
    except Exception as e:  # corrupt/truncated files raise many types
      raise UserError(f"cannot read {str(path)!r} as a StyleGAN2-ADA snapshot ({e}); check "
                      "the file is a complete network-snapshot .pkl.") from e
  require(isinstance(data, dict) and isinstance(data.get("G_ema"), _PersistentObject),
          f"{str(path)!r} has no persistent 'G_ema' network (found keys "
          f"{sorted(data) if isinstance(data, dict) else type(data).__name__}); pass an "
          "official StyleGAN2-ADA snapshot.")
  g = data["G_ema"]
  state: dict[str, np.ndarray] = {}
  _collect_state(g, "", state)
  kwargs = _plain(g.state.get("_init_kwargs") or {})
  args = tuple(g.state.get("_init_args") or ())
  names = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels", "mapping_kwargs",
           "synthesis_kwargs")
  kwargs.update(zip(names, _plain(list(args))))
  return state, kwargs


def _collect_state(obj: _PersistentObject, prefix: str, out: dict) -> None:
  """Walks `_parameters`, `_buffers`, `_modules` like `torch.nn.Module.state_dict()`."""
  state = obj.state
  skip = set(state.get("_non_persistent_buffers_set") or ())
  for group in ("_parameters", "_buffers"):
    for name, value in (state.get(group) or {}).items():
      if value is not None and not (group == "_buffers" and name in skip):
        out[prefix + name] = _to_numpy(value)
  for name, child in (state.get("_modules") or {}).items():
    if isinstance(child, _PersistentObject):
      _collect_state(child, f"{prefix}{name}.", out)
    elif child is not None:
      raise UserError(f"snapshot module {prefix}{name} is a {type(child).__name__}, not a "
                      "persistent StyleGAN2-ADA module; pass an official snapshot.")


def _plain(x):
  if isinstance(x, dict):
    return {k: _plain(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return type(x)(_plain(v) for v in x)
  if isinstance(x, np.generic):
    return x.item()
  return x


def _to_numpy(value) -> np.ndarray:
  if isinstance(value, np.ndarray):
    return value.astype(np.float32)
  return value.detach().cpu().float().numpy()


def _read_torch_state_dict(path) -> dict[str, np.ndarray]:
  torch = _torch()
  try:
    obj = torch.load(path, map_location="cpu", weights_only=True)
  except Exception as e:
    raise UserError(f"cannot read {str(path)!r} with torch.load(weights_only=True) ({e}); "
                    "save G_ema.state_dict(), not the module itself.") from e
  require(isinstance(obj, dict) and all(isinstance(k, str) and hasattr(v, "shape")
                                        for k, v in obj.items()),
          f"{str(path)!r} does not hold a state dict (name → tensor); save it with "
          "torch.save(G_ema.state_dict(), path).")
  return {k: _to_numpy(v) for k, v in obj.items()}


def _read_npz(path) -> tuple[dict[str, np.ndarray], dict | None]:
  with np.load(path, allow_pickle=False) as data:
    state = {k[len("state/"):]: np.asarray(data[k], np.float32)
             for k in data.files if k.startswith("state/")}
    kwargs = json.loads(str(data["init_kwargs"])) if "init_kwargs" in data.files else None
  require(state, f"{str(path)!r} has no 'state/<key>' arrays; write it with "
          "save_generator_npz or np.savez(**{'state/' + k: v for k, v in state_dict.items()}).")
  return state, kwargs


def resolve_weights_path(path, cache_dir=None, download=None) -> pathlib.Path:
  """`nvidia:<name>` → a cached local file (downloaded once); other paths pass through."""
  path = str(path)
  if not path.startswith("nvidia:"):
    return pathlib.Path(os.path.expanduser(path))
  name = path[len("nvidia:"):]
  require(name in PRETRAINED, f"unknown pretrained generator {path!r}; available: "
          f"{', '.join('nvidia:' + n for n in PRETRAINED)}.")
  cache = pathlib.Path(cache_dir or os.environ.get("PALM_JAX_CACHE")
                       or os.path.expanduser("~/.cache/palm_jax"))
  target = cache / "stylegan2-ada-pytorch" / f"{name}.pkl"
  if not target.is_file():
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    os.close(fd)
    try:
      (download or _download)(PRETRAINED[name], tmp)
      os.replace(tmp, target)
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)
  return target


def _download(url: str, dest: str) -> None:
  try:
    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as f:
      while chunk := response.read(1 << 20):
        f.write(chunk)
  except OSError as e:
    raise UserError(f"could not download {url} ({e}); download it by hand and pass its "
                    "local path instead of the nvidia: name.") from e


# ------------------------------------------------------------------ shapes and checks ---

def expected_state_shapes(config: GeneratorConfig) -> dict[str, tuple[int, ...]]:
  """Official `state_dict()` key → shape for `config` (computed abstractly, no compile)."""
  module = Generator(config)
  z = jax.ShapeDtypeStruct((1, config.z_dim), jnp.float32)
  c = jax.ShapeDtypeStruct((1, config.c_dim), jnp.float32)
  abstract = jax.eval_shape(lambda k, z, c: module.init({"params": k}, z, c),
                            jax.random.key(0), z, c)
  shapes = {k: tuple(v.shape) for k, v in _flatten(abstract).items()}
  for key, taps in _filter_buffers(config).items():
    shapes[key] = taps.shape
  return shapes


def _filter_buffers(config: GeneratorConfig) -> dict[str, np.ndarray]:
  """The official `resample_filter` buffers (block-level and per conv layer)."""
  taps = np.asarray(config.resample_filter, np.float64)
  f = (taps / taps.sum()) if taps.size >= 8 else fir_filter_2d(taps)   # official rule
  out = {}
  for res in config.block_resolutions:
    out[f"synthesis.b{res}.resample_filter"] = f.astype(np.float32)
    for layer in (("conv1",) if res == 4 else ("conv0", "conv1")):
      out[f"synthesis.b{res}.{layer}.resample_filter"] = f.astype(np.float32)
  return out


def _flatten(variables) -> dict:
  out = {}
  for collection in variables.values():
    for path, leaf in jax.tree_util.tree_flatten_with_path(collection)[0]:
      out[".".join(p.key for p in path)] = leaf
  return out


def state_to_variables(state: dict, config: GeneratorConfig, source="weights") -> dict:
  """Official state dict → `{'params', 'buffers'}`, with every key and shape checked."""
  expected = expected_state_shapes(config)
  missing = [k for k in expected if k not in state]
  if missing:
    raise UserError(
        f"{source}: key {missing[0]!r} (shape {list(expected[missing[0]])}) is missing "
        f"({len(missing)} missing in all); the file does not match the generator "
        "configuration, so pass matching weights or constructor arguments.")
  unexpected = [k for k in state if k not in expected]
  if unexpected:
    raise UserError(
        f"{source}: unexpected key {unexpected[0]!r} (shape "
        f"{list(np.shape(state[unexpected[0]]))}; {len(unexpected)} unexpected in all); the "
        "file does not match the generator configuration, so pass matching weights.")
  for key, shape in expected.items():
    found = tuple(np.shape(state[key]))
    require(found == shape, f"{source}: key {key!r} has shape {list(found)} but the generator "
            f"configuration expects {list(shape)}; pass weights and constructor arguments "
            "that match.")
  for key, f in _filter_buffers(config).items():
    require(np.allclose(state[key], f, atol=1e-6), f"{source}: {key!r} differs from the "
            f"configured resample_filter {list(config.resample_filter)}; pass the matching "
            "synthesis_kwargs.resample_filter.")
  variables = {"params": {}, "buffers": {}}
  for key in expected:
    if key.endswith("resample_filter"):
      continue
    *path, leaf = key.split(".")
    node = variables["buffers" if leaf in _BUFFER_NAMES else "params"]
    for p in path:
      node = node.setdefault(p, {})
    node[leaf] = jnp.asarray(state[key], jnp.float32)
  return variables


def variables_to_state(variables, config: GeneratorConfig) -> dict[str, np.ndarray]:
  """`{'params', 'buffers'}` → official state dict (numpy float32, incl. filter buffers)."""
  state = {k: np.asarray(v, np.float32) for k, v in _flatten(variables).items()}
  state.update(_filter_buffers(config))
  return state


def infer_init_kwargs(state: dict, source="weights") -> dict:
  """Official `Generator` constructor arguments implied by state-dict shapes.

  `conv_clamp` is not visible in shapes: it is set to `DEFAULT_CONV_CLAMP`. Channel counts
  become `channel_base`/`channel_max` when some pair reproduces them (preferring the official
  default base 32768), else an explicit `channels_dict`.
  """
  def shape(key):
    require(key in state, f"{source}: key {key!r} is missing, so this is not a StyleGAN2-ADA "
            "generator state dict (G_ema.state_dict()).")
    return np.shape(state[key])

  fcs = [k for k in state if re.fullmatch(r"mapping\.fc\d+\.weight", k)]
  require(fcs, f"{source}: no 'mapping.fc0.weight' key, so this is not a StyleGAN2-ADA "
          "generator state dict.")
  num_layers = len(fcs)
  w_dim = shape(f"mapping.fc{num_layers - 1}.weight")[0]
  embed = state.get("mapping.embed.weight")
  c_dim = 0 if embed is None else embed.shape[1]
  embed_features = 0 if embed is None else embed.shape[0]
  z_dim = shape("mapping.fc0.weight")[1] - embed_features
  resolutions = sorted({int(m.group(1)) for k in state
                        if (m := re.match(r"synthesis\.b(\d+)\.", k))})
  require(resolutions, f"{source}: no 'synthesis.b4.*' keys, so this is not a StyleGAN2-ADA "
          "generator state dict.")
  img_resolution = resolutions[-1]
  if any(re.match(r"synthesis\.b\d+\.skip\.", k) for k in state):
    raise UserError(f"{source}: synthesis blocks have 'skip' convolutions (architecture "
                    "'resnet'); only the 'skip' generator architecture is supported.")
  if f"synthesis.b{resolutions[0]}.torgb.weight" not in state and len(resolutions) > 1:
    raise UserError(f"{source}: only the last synthesis block has a torgb layer (architecture "
                    "'orig'); only the 'skip' generator architecture is supported.")
  channels = {r: shape(f"synthesis.b{r}.conv1.weight")[0] for r in resolutions}
  mapping = dict(num_layers=num_layers)
  if c_dim and embed_features != w_dim:
    mapping["embed_features"] = embed_features
  if num_layers > 1 and shape("mapping.fc0.weight")[0] != w_dim:
    mapping["layer_features"] = shape("mapping.fc0.weight")[0]
  if "mapping.w_avg" not in state:
    mapping["w_avg_beta"] = None
  synthesis = dict(conv_clamp=DEFAULT_CONV_CLAMP, num_fp16_res=0,
                   kernel_size=shape("synthesis.b4.conv1.weight")[-1],
                   use_noise="synthesis.b4.conv1.noise_strength" in state)
  synthesis.update(_channel_kwargs(channels, img_resolution))
  f = state.get("synthesis.b4.resample_filter")
  if f is not None:
    taps = np.asarray(f, np.float64)
    taps = taps.sum(axis=1) if taps.ndim == 2 else taps      # rows of outer(f, f) / sum²
    synthesis["resample_filter"] = ([1, 3, 3, 1] if np.allclose(taps, [.125, .375, .375, .125])
                                    else [float(t) for t in taps])
  return dict(z_dim=int(z_dim), c_dim=int(c_dim), w_dim=int(w_dim),
              img_resolution=int(img_resolution),
              img_channels=int(shape(f"synthesis.b{img_resolution}.torgb.weight")[0]),
              mapping_kwargs=mapping, synthesis_kwargs=synthesis)


def _channel_kwargs(channels: dict[int, int], img_resolution: int) -> dict:
  """`channel_base`/`channel_max` with `min(base // res, max) == channels[res]`, if any."""
  channel_max = max(channels.values())
  lo, hi = 1, 1 << 62
  for res, ch in channels.items():
    if ch < channel_max:
      lo, hi = max(lo, ch * res), min(hi, ch * res + res - 1)
    else:
      lo = max(lo, ch * res)
  if lo <= hi:
    base = 32768 if lo <= 32768 <= hi else lo
    return dict(channel_base=int(base), channel_max=int(channel_max))
  return dict(channels_dict={int(r): int(ch) for r, ch in channels.items()})
