r"""`config.job = "cas"`: classification accuracy score of conditional generators (cas.py).

    python -m palm_jax.main --config=configs/cas.py --workdir=DIR \
        --config.generators=../shared/data/generators/cifar10_subset_g64/generator.npz

For each generator of `config.generators` (comma-separated weight files), and for each
classifier of `config.classifiers`: CAS (trained on `num_per_class` samples per class,
tested on `data.test`) and the reverse (trained on `data.train`, tested on the samples),
beside the real yardstick (trained on `data.train`, tested on `data.test`). Writes
DIR/eval/cas.json and DIR/eval/cas_samples_<name>.png (one row per class) and prints the
table.
"""
from __future__ import annotations

import os
import time

import jax

from palm_jax.evaluation import cas, linear_eval
from palm_jax.models import stylegan2
from palm_jax.runtime import files, images
from palm_jax.palm import generator as palm_generator
from palm_jax.runtime.errors import require

CONFIG = "configs/cas.py"
# Read without a default (checked by jobs.run_job before anything runs).
REQUIRED = ("seed", "generators", "num_per_class", "classifiers", "data", "cnn_steps",
            "linear_max_iter")


def run(config, workdir: str) -> None:
  """The job: `config` as in configs/cas.py."""
  paths = [p.strip() for p in str(config.generators).split(",") if p.strip()]
  require(bool(paths), "config.generators is empty; name one or more generator files, e.g. "
                       "--config.generators=DIR/generator.npz.")
  require(int(config.num_per_class) >= 10, f"config.num_per_class={config.num_per_class} "
          "is too few samples to train a classifier; use e.g. 500.")
  for kind in config.classifiers:
    require(kind in cas.CLASSIFIERS, f"config.classifiers has {kind!r}; use some of "
                                     f"{list(cas.CLASSIFIERS)}.")
  train = linear_eval.load_split(config.data.train, config.data, field="data.train")
  test = linear_eval.load_split(config.data.test, config.data, field="data.test")
  linear_eval.check_labelled(train, "real training")
  linear_eval.check_labelled(test, "real test")
  gens = {}
  for i, path in enumerate(paths):
    gen = palm_generator.load_generator_file(path, stylegan2.load_generator)
    name = f"{i}_{os.path.basename(os.path.dirname(os.path.abspath(path))) or 'gen'}"
    require(gen.c_dim == max(int(train.labels.max()) + 1, train.num_classes or 0),
            f"generator {path} has {gen.c_dim} classes but {config.data.train} has "
            f"{int(train.labels.max()) + 1}; CAS compares the same classes.")
    require(gen.img_resolution == train.images.shape[1],
            f"generator {path} makes {gen.img_resolution}px images but the real data is "
            f"{train.images.shape[1]}px; set --config.data.image_size to match.")
    gens[name] = (path, gen)
  t0 = time.time()
  sources = {name: cas.generate_labelled(gen, int(config.num_per_class), seed=int(config.seed))
             for name, (_, gen) in gens.items()}
  table = cas.scores(sources, (train.images, train.labels), (test.images, test.labels),
                     num_classes=gens[next(iter(gens))][1].c_dim,
                     classifiers=tuple(config.classifiers), cnn_steps=int(config.cnn_steps),
                     linear_max_iter=int(config.linear_max_iter), seed=int(config.seed))
  result = {"generators": {name: path for name, (path, _) in gens.items()},
            "train": train.spec, "test": test.spec, "num_train": len(train),
            "num_test": len(test), "num_per_class": int(config.num_per_class),
            "cnn_steps": int(config.cnn_steps), "linear_max_iter": int(config.linear_max_iter),
            "seed": int(config.seed), "scores": table,
            "seconds": round(time.time() - t0, 1)}
  if jax.process_index() != 0:
    return
  eval_dir = os.path.join(workdir, "eval")
  os.makedirs(eval_dir, exist_ok=True)
  for name, (imgs, _) in sources.items():
    n = int(config.num_per_class)
    grid = imgs.reshape((-1, n) + imgs.shape[1:])[:, :min(n, 10)]
    images.save_png(os.path.join(eval_dir, f"cas_samples_{name}.png"), images.make_grid(grid))
  path = files.write_json(os.path.join(eval_dir, "cas.json"), result)
  lines = [f"CAS ({len(train)} real train / {len(test)} real test images, "
           f"{config.num_per_class} samples per class):"]
  for kind, by in table.items():
    lines.append(f"  {kind}: real->real {by['real']:.4f}; " + "; ".join(
        f"{name}: CAS {v['cas']:.4f}, reverse {v['reverse']:.4f}"
        for name, v in by.items() if name != "real"))
  print("\n".join(lines) + f"\nwrote {path}", flush=True)
