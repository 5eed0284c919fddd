"""Reading W&B's offline run files back, for tests that log to W&B (`WANDB_MODE=offline`).

`offline(monkeypatch, where)` points W&B at local files under `where`; `read_offline_runs`
parses the `.wandb` files W&B writes (a LevelDB-style log of protobuf `Record`s) into
history, images, config and summary per run segment; `jsonl_matches` checks that every
`metrics.jsonl` row is the history row of its step.
"""
import glob
import json
import os
import struct

import numpy as np
import wandb
from wandb.proto import wandb_internal_pb2

_BLOCK, _HEADER = 32768, 7  # W&B's record log: 32 KiB blocks, 7-byte headers


def records(path):
  """Every protobuf `Record` of an offline run's `run-<id>.wandb` file, in order.

  The file starts with `:W&B` + magic + version (7 bytes); then 32 KiB blocks of records,
  each `crc32 (4) | length (2) | type (1)` + payload; type 1 is a whole record, 2/3/4 its
  first/middle/last piece; a block's last < 7 bytes are zero padding.
  """
  with open(path, "rb") as f:
    data = f.read()
  assert data[:4] == b":W&B", data[:7]
  pos, pieces = _HEADER, b""
  while pos + _HEADER <= len(data):
    room = _BLOCK - pos % _BLOCK
    if room < _HEADER:
      pos += room
      continue
    _, n, kind = struct.unpack("<IHB", data[pos:pos + _HEADER])
    if n == 0 and kind == 0:  # zero padding to the end of the block
      pos += room
      continue
    pieces += data[pos + _HEADER:pos + _HEADER + n]
    pos += _HEADER + n
    if kind in (1, 4):
      record = wandb_internal_pb2.Record()
      record.ParseFromString(pieces)
      pieces = b""
      yield record


def read_offline_runs(where):
  """[{id, project, group, tags, config, history: {step: {key: value}}, images: {step: {name}},
  finished}] of every offline run folder under `where`, oldest first.

  `run.finish()` returns once the run's exit is handled, but W&B's service process may
  write the file's last buffer a moment later; `wandb.teardown()` waits for it."""
  wandb.teardown()
  runs = []
  for path in sorted(glob.glob(os.path.join(where, "offline-run-*", "run-*.wandb"))):
    out = {"history": {}, "images": {}, "config": {}, "summary": {}, "finished": False}
    for r in records(path):
      kind = r.WhichOneof("record_type")
      if kind == "run":
        out.update(id=r.run.run_id, project=r.run.project, group=r.run.run_group,
                   tags=list(r.run.tags))
        out["config"].update({u.key: json.loads(u.value_json) for u in r.run.config.update})
      elif kind == "config":
        out["config"].update({u.key: json.loads(u.value_json) for u in r.config.update})
      elif kind == "history":
        step = r.history.step.num
        for item in r.history.item:
          key = [item.key] if item.key else list(item.nested_key)
          if len(key) > 1:  # a wandb.Image: {"rollouts": {"_type": "image-file", ...}}
            if key[1] == "_type" and json.loads(item.value_json) == "image-file":
              out["images"].setdefault(step, set()).add(key[0])
          elif not key[0].startswith("_"):  # _step, _runtime, _timestamp: W&B's own
            out["history"].setdefault(step, {})[key[0]] = json.loads(item.value_json)
      elif kind == "summary":
        out["summary"].update({u.key: json.loads(u.value_json) for u in r.summary.update
                               if u.key and not u.key.startswith("_")})
      elif kind == "exit":
        out["finished"] = True
    runs.append(out)
  # Oldest first by what they logged: two segments started within one second have folder
  # names that do not order them.
  return sorted(runs, key=lambda r: min(r["history"], default=float("inf")))



def offline(monkeypatch, where) -> None:
  """W&B offline (no account, no network), its settings and caches under `where`."""
  monkeypatch.setenv("WANDB_MODE", "offline")
  monkeypatch.setenv("WANDB_SILENT", "true")
  for var in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
    monkeypatch.setenv(var, os.path.join(str(where), "wandb_home", var.lower()))
  for var in ("WANDB_DIR", "WANDB_RUN_ID", "WANDB_RESUME"):
    monkeypatch.delenv(var, raising=False)


def jsonl_matches(workdir: str, runs) -> list[int]:
  """Asserts every `metrics.jsonl` row of `workdir` is the W&B history row of its step (same
  keys, same values); returns the steps."""
  with open(os.path.join(workdir, "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f if line.strip()]
  logged = {s: h for r in runs for s, h in r["history"].items()}
  for row in rows:
    step = row.pop("step")
    finite = {k: v for k, v in row.items() if isinstance(v, (int, float)) and np.isfinite(v)}
    assert set(logged[step]) == set(finite), step
    np.testing.assert_allclose([logged[step][k] for k in sorted(finite)],
                               [finite[k] for k in sorted(finite)], rtol=1e-6)
  return sorted(logged)
