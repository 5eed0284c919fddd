"""Loading official StyleGAN2-ADA weights: .pkl (persistence format), .pt, .npz, checks."""
import collections
import contextlib
import pickle
import sys
import types

import jax
import numpy as np
import pytest

from palm_jax.models import stylegan2 as sg
from palm_jax.models.stylegan2 import weights as sw
from palm_jax.runtime.errors import UserError

torch = pytest.importorskip("torch")

_BUFFERS = ("w_avg", "noise_const", "resample_filter")


@pytest.fixture(scope="module")
def fixture_state(shared_dir):
  data = np.load(shared_dir / "fixtures" / "stylegan2_ada_small.npz")
  return {k[len("state/"):]: data[k] for k in data.files if k.startswith("state/")}


FIXTURE_KWARGS = dict(z_dim=32, c_dim=10, w_dim=64, img_resolution=32, img_channels=3,
                      mapping_kwargs=dict(num_layers=2),
                      synthesis_kwargs=dict(channel_base=2048, channel_max=64,
                                            num_fp16_res=0, conv_clamp=128))


def _assert_variables_equal_state(gen, state):
  flat = sw.variables_to_state(gen.variables, gen.config)
  assert sorted(flat) == sorted(state)
  for k, v in state.items():
    np.testing.assert_array_equal(flat[k], v, err_msg=k)


# ------------------------------------------- a .pkl made like torch_utils.persistence ---

@contextlib.contextmanager
def _fake_nvidia_modules():
  """`torch_utils.persistence` and `dnnlib.util` stand-ins, present only while pickling."""
  persistence = types.ModuleType("torch_utils.persistence")

  def _reconstruct_persistent_obj(meta):
    raise AssertionError("never called: the file is only written here")
  _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
  _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
  persistence._reconstruct_persistent_obj = _reconstruct_persistent_obj
  util = types.ModuleType("dnnlib.util")

  class EasyDict(dict):
    pass
  EasyDict.__module__, EasyDict.__qualname__ = "dnnlib.util", "EasyDict"
  util.EasyDict = EasyDict
  mods = {"torch_utils": types.ModuleType("torch_utils"), "torch_utils.persistence": persistence,
          "dnnlib": types.ModuleType("dnnlib"), "dnnlib.util": util}
  saved = {k: sys.modules.get(k) for k in mods}
  sys.modules.update(mods)
  try:
    yield persistence, EasyDict
  finally:
    for k, v in saved.items():
      if v is None:
        sys.modules.pop(k, None)
      else:
        sys.modules[k] = v


class _Persistent:
  """Pickles like a `@persistence.persistent_class` torch module: reduce → reconstruct(meta)."""

  def __init__(self, reconstruct, module_src, class_name, state):
    self.reconstruct, self.meta = reconstruct, dict(
        type="class", version=4, module_src=module_src, class_name=class_name, state=state)

  def __reduce__(self):
    return self.reconstruct, (self.meta,)


def _module_tree(state_dict, reconstruct, easydict, src, init_kwargs):
  """Nested `_Persistent` objects whose `__dict__`-like state mirrors `nn.Module`."""
  def node(prefix):
    names = {k[len(prefix):].split(".")[0] for k in state_dict if k.startswith(prefix)}
    params, buffers, modules = (collections.OrderedDict() for _ in range(3))
    for name in sorted(names):
      key = prefix + name
      if key in state_dict:
        t = torch.from_numpy(np.array(state_dict[key]))
        if name in _BUFFERS:
          buffers[name] = t
        else:
          params[name] = torch.nn.Parameter(t, requires_grad=False)
      else:
        modules[name] = node(key + ".")
    return dict(training=False, _parameters=params, _buffers=buffers, _modules=modules,
                _non_persistent_buffers_set=set(), _forward_hooks=collections.OrderedDict(),
                _init_args=(), _init_kwargs=easydict(), weight_gain=np.float64(0.125),
                activation="lrelu")
  root = node("")
  root["_init_kwargs"] = easydict(
      {k: easydict(v) if isinstance(v, dict) else v for k, v in init_kwargs.items()})

  def wrap(state, class_name):
    state["_modules"] = collections.OrderedDict(
        (k, wrap(v, "Layer")) for k, v in state["_modules"].items())
    return _Persistent(reconstruct, src, class_name, state)
  return wrap(root, "Generator")


@pytest.mark.parametrize("protocol", [2, 4])
def test_pkl_snapshot_loads_without_running_embedded_source(tmp_path, fixture_state, protocol):
  marker = tmp_path / "EXECUTED"
  src = (f"open({str(marker)!r}, 'w').write('the embedded source ran')\n"
         "raise RuntimeError('embedded source executed')\n")
  with _fake_nvidia_modules() as (persistence, easydict):
    g_ema = _module_tree(fixture_state, persistence._reconstruct_persistent_obj, easydict, src,
                         FIXTURE_KWARGS)
    snapshot = {"G": g_ema, "D": None, "G_ema": g_ema, "augment_pipe": None,
                "training_set_kwargs": easydict(path="cifar10.zip", use_labels=True)}
    data = pickle.dumps(snapshot, protocol=protocol)
  assert b"torch_utils.persistence" in data and b"_reconstruct_persistent_obj" in data
  assert "torch_utils.persistence" not in sys.modules and "dnnlib" not in sys.modules
  path = tmp_path / "network-snapshot-000000.pkl"
  path.write_bytes(data)
  gen = sg.load_generator(path)
  assert not marker.exists()
  assert gen.config.conv_clamp == 128          # init_kwargs come from the snapshot
  assert gen.config.channels == {4: 64, 8: 64, 16: 64, 32: 64}
  _assert_variables_equal_state(gen, fixture_state)
  assert sg.load_generator(path, conv_clamp=None).config.conv_clamp is None


def test_pkl_with_other_globals_is_refused(tmp_path):
  marker = tmp_path / "EXECUTED"

  class Evil:
    def __reduce__(self):
      return (exec, (f"open({str(marker)!r}, 'w')",))
  path = tmp_path / "evil.pkl"
  path.write_bytes(pickle.dumps({"G_ema": Evil()}))
  with pytest.raises(UserError, match=r"refusing to unpickle builtins\.exec"):
    sg.load_generator(path)
  assert not marker.exists()


# ---------------------------------------------------------------------- .pt and .npz ---

def test_pt_state_dict(tmp_path, fixture_state):
  path = tmp_path / "G_ema.pt"
  torch.save({k: torch.from_numpy(v) for k, v in fixture_state.items()}, path)
  gen = sg.load_generator(path)
  assert gen.config.conv_clamp == 256              # not in shapes: the official default
  assert (gen.z_dim, gen.c_dim, gen.w_dim, gen.num_ws) == (32, 10, 64, 8)
  assert (gen.img_resolution, gen.img_channels) == (32, 3)
  _assert_variables_equal_state(gen, fixture_state)
  assert sg.load_generator(path, conv_clamp=64).config.conv_clamp == 64


def test_npz_round_trip_through_save_generator_npz(tmp_path, shared_dir, fixture_state):
  gen = sg.load_generator(shared_dir / "fixtures" / "stylegan2_ada_small.npz", conv_clamp=32)
  path = tmp_path / "exported" / "gen.npz"
  sg.save_generator_npz(path, gen)
  with np.load(path) as data:
    assert sorted(k[6:] for k in data.files if k.startswith("state/")) == sorted(fixture_state)
  back = sg.load_generator(path)
  assert back.config == gen.config and back.config.conv_clamp == 32
  _assert_variables_equal_state(back, fixture_state)


def _write_npz(path, state):
  np.savez(path, **{f"state/{k}": v for k, v in state.items()})
  return path


def test_wrong_shape_missing_and_unexpected_keys(tmp_path, fixture_state):
  bad = dict(fixture_state)
  bad["synthesis.b16.conv1.weight"] = np.zeros((64, 64, 3, 1), np.float32)
  with pytest.raises(UserError) as e:
    sg.load_generator(_write_npz(tmp_path / "shape.npz", bad))
  assert "'synthesis.b16.conv1.weight' has shape [64, 64, 3, 1]" in str(e.value)
  assert "expects [64, 64, 3, 3]" in str(e.value)

  missing = {k: v for k, v in fixture_state.items() if k != "synthesis.b8.conv0.affine.bias"}
  with pytest.raises(UserError, match=r"'synthesis\.b8\.conv0\.affine\.bias' \(shape \[64\]\) "
                                      r"is missing"):
    sg.load_generator(_write_npz(tmp_path / "missing.npz", missing))

  extra = dict(fixture_state, **{"synthesis.b8.conv0.extra": np.zeros(3, np.float32)})
  with pytest.raises(UserError, match=r"unexpected key 'synthesis\.b8\.conv0\.extra' "
                                      r"\(shape \[3\]"):
    sg.load_generator(_write_npz(tmp_path / "extra.npz", extra))

  with pytest.raises(UserError, match="has suffix '.bin'"):
    sg.load_generator(_write_npz(tmp_path / "x.npz", fixture_state).rename(tmp_path / "x.bin"))
  with pytest.raises(UserError, match="does not exist"):
    sg.load_generator(tmp_path / "nope.pt")


# ---------------------------------------------------------------- inference & cache ---

def test_infer_kwargs_non_cifar_unconditional():
  kwargs = dict(z_dim=16, c_dim=0, w_dim=24, img_resolution=64, img_channels=1,
                mapping_kwargs=dict(num_layers=3, layer_features=40),
                synthesis_kwargs=dict(channel_base=1024, channel_max=128, conv_clamp=256))
  config = sg.GeneratorConfig.from_kwargs(**kwargs)
  state = {k: np.zeros(s, np.float32) for k, s in sw.expected_state_shapes(config).items()}
  state.update(sw._filter_buffers(config))
  inferred = sw.infer_init_kwargs(state)
  assert sg.GeneratorConfig.from_kwargs(**inferred) == config
  assert inferred["synthesis_kwargs"]["channel_base"] == 1024
  assert "embed_features" not in inferred["mapping_kwargs"]
  assert config.channels == {4: 128, 8: 128, 16: 64, 32: 32, 64: 16} and config.num_ws == 10
  # Channel counts that no (channel_base, channel_max) pair gives become a channels_dict.
  odd = {res: ch for res, ch in zip(config.block_resolutions, (32, 48, 16, 40, 8))}
  kwargs["synthesis_kwargs"] = dict(channels_dict=odd, conv_clamp=256)
  config = sg.GeneratorConfig.from_kwargs(**kwargs)
  state = {k: np.zeros(s, np.float32) for k, s in sw.expected_state_shapes(config).items()}
  state.update(sw._filter_buffers(config))
  inferred = sw.infer_init_kwargs(state)
  assert inferred["synthesis_kwargs"]["channels_dict"] == odd
  assert sg.GeneratorConfig.from_kwargs(**inferred) == config


def test_resnet_state_is_rejected(fixture_state):
  state = dict(fixture_state, **{"synthesis.b8.skip.weight": np.zeros((64, 64, 1, 1))})
  with pytest.raises(UserError, match="architecture 'resnet'"):
    sw.infer_init_kwargs(state)


def test_nvidia_name_downloads_once_to_cache(tmp_path, monkeypatch):
  calls = []

  def fake_download(url, dest):
    calls.append(url)
    with open(dest, "wb") as f:
      f.write(b"weights")
  monkeypatch.setenv("PALM_JAX_CACHE", str(tmp_path))
  for _ in range(2):
    path = sw.resolve_weights_path("nvidia:cifar10", download=fake_download)
  assert path == tmp_path / "stylegan2-ada-pytorch" / "cifar10.pkl"
  assert path.read_bytes() == b"weights" and calls == [sw.PRETRAINED["cifar10"]]
  assert [p.name for p in path.parent.iterdir()] == ["cifar10.pkl"]   # no temp files left
  with pytest.raises(UserError, match="unknown pretrained generator 'nvidia:ffhq'"):
    sw.resolve_weights_path("nvidia:ffhq")


def test_init_generator_matches_official_init_rules():
  gen = sg.init_generator(jax.random.key(3), z_dim=4, c_dim=2, w_dim=8, img_resolution=8,
                          img_channels=3, mapping_kwargs=dict(num_layers=2),
                          synthesis_kwargs=dict(channel_base=64, channel_max=16))
  state = sw.variables_to_state(gen.variables, gen.config)
  assert sorted(state) == sorted(sw.expected_state_shapes(gen.config))
  np.testing.assert_array_equal(state["synthesis.b8.conv0.affine.bias"], 1.0)
  np.testing.assert_array_equal(state["synthesis.b8.conv0.bias"], 0.0)
  np.testing.assert_array_equal(state["mapping.w_avg"], 0.0)
  assert 50 < state["mapping.fc1.weight"].std() < 150          # N(0, 1) / 0.01
  assert 0.7 < state["synthesis.b8.conv0.weight"].std() < 1.3
