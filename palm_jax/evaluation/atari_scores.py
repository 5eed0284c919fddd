"""Human-normalised Atari scores and their aggregates, with stratified-bootstrap intervals.

    HNS(game) = (score − random) / (human − random)

with the standard per-game random and human scores (Mnih et al. 2015, Nature DQN, extended
by Badia et al. 2020, Agent57, Table H.1/H.2; transcribed from Dopamine's
`labs/atari_100k/normalization_utils.py`, the table rliable's Atari 100k data are
normalised with — the same numbers as the Random/Human columns of the Atari 100k tables
in SPR, Schwarzer et al. 2021, Table 4).

Aggregates over a `[runs, games]` HNS matrix follow rliable (Agarwal et al. 2021,
`rliable/metrics.py`, `rliable/library.py`):

    mean    = mean over games of the per-game mean over runs
    median  = median over games of the per-game mean over runs
    IQM     = 25%-trimmed mean of all runs × games entries (scipy.stats.trim_mean)
    #>human = number of games whose mean HNS is above 1;  #>0 = ... above 0

and the 95% interval of each is the percentile interval of a *stratified* bootstrap:
every replicate resamples the runs of each game independently, with replacement (rliable's
`StratifiedBootstrap`, `conf_int(method='percentile')`). rliable itself needs arch, pandas
and seaborn, so these few lines are implemented here and tested against hand computations
and published aggregates instead.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import scipy.stats

HUMAN_SCORES = {
    "alien": 7127.7, "amidar": 1719.5, "assault": 742.0, "asterix": 8503.3,
    "asteroids": 47388.7, "atlantis": 29028.1, "bankheist": 753.1, "battlezone": 37187.5,
    "beamrider": 16926.5, "berzerk": 2630.4, "bowling": 160.7, "boxing": 12.1,
    "breakout": 30.5, "centipede": 12017.0, "choppercommand": 7387.8,
    "crazyclimber": 35829.4, "demonattack": 1971.0, "doubledunk": -16.4, "enduro": 860.5,
    "fishingderby": -38.7, "freeway": 29.6, "frostbite": 4334.7, "gopher": 2412.5,
    "gravitar": 3351.4, "hero": 30826.4, "icehockey": 0.9, "jamesbond": 302.8,
    "kangaroo": 3035.0, "krull": 2665.5, "kungfumaster": 22736.3,
    "montezumarevenge": 4753.3, "mspacman": 6951.6, "namethisgame": 8049.0,
    "phoenix": 7242.6, "pitfall": 6463.7, "pong": 14.6, "privateeye": 69571.3,
    "qbert": 13455.0, "riverraid": 17118.0, "roadrunner": 7845.0, "robotank": 11.9,
    "seaquest": 42054.7, "skiing": -4336.9, "solaris": 12326.7, "spaceinvaders": 1668.7,
    "stargunner": 10250.0, "tennis": -8.3, "timepilot": 5229.2, "tutankham": 167.6,
    "upndown": 11693.2, "venture": 1187.5, "videopinball": 17667.9, "wizardofwor": 4756.5,
    "yarsrevenge": 54576.9, "zaxxon": 9173.3,
}

RANDOM_SCORES = {
    "alien": 227.8, "amidar": 5.8, "assault": 222.4, "asterix": 210.0, "asteroids": 719.1,
    "atlantis": 12850.0, "bankheist": 14.2, "battlezone": 2360.0, "beamrider": 363.9,
    "berzerk": 123.7, "bowling": 23.1, "boxing": 0.1, "breakout": 1.7, "centipede": 2090.9,
    "choppercommand": 811.0, "crazyclimber": 10780.5, "demonattack": 152.1,
    "doubledunk": -18.6, "enduro": 0.0, "fishingderby": -91.7, "freeway": 0.0,
    "frostbite": 65.2, "gopher": 257.6, "gravitar": 173.0, "hero": 1027.0,
    "icehockey": -11.2, "jamesbond": 29.0, "kangaroo": 52.0, "krull": 1598.0,
    "kungfumaster": 258.5, "montezumarevenge": 0.0, "mspacman": 307.3,
    "namethisgame": 2292.3, "phoenix": 761.4, "pitfall": -229.4, "pong": -20.7,
    "privateeye": 24.9, "qbert": 163.9, "riverraid": 1338.5, "roadrunner": 11.5,
    "robotank": 2.2, "seaquest": 68.4, "skiing": -17098.1, "solaris": 1236.3,
    "spaceinvaders": 148.0, "stargunner": 664.0, "tennis": -23.8, "timepilot": 3568.0,
    "tutankham": 11.4, "upndown": 533.4, "venture": 0.0, "videopinball": 0.0,
    "wizardofwor": 563.5, "yarsrevenge": 3092.9, "zaxxon": 32.5,
}


def score_key(game: str) -> str:
  """'bank_heist', 'BankHeist', 'Bank Heist' → 'bankheist' (the tables' keys)."""
  key = "".join(ch for ch in game.lower() if ch.isalnum())
  if key not in HUMAN_SCORES:
    raise KeyError(f"no human/random score for game {game!r}")
  return key


def human_normalized(game: str, score):
  """(score − random) / (human − random) for one game; `score` a float or an array."""
  k = score_key(game)
  return (np.asarray(score, np.float64) - RANDOM_SCORES[k]) / (
      HUMAN_SCORES[k] - RANDOM_SCORES[k])


def hns_matrix(scores: Mapping[str, Sequence[float]]) -> tuple[list, np.ndarray]:
  """{game: [score per run]} → (games, HNS `[runs, games]`); every game needs equal runs."""
  games = sorted(scores)
  runs = {len(scores[g]) for g in games}
  if len(runs) != 1:
    raise ValueError(f"every game needs the same number of runs, got {sorted(runs)}")
  return games, np.stack([human_normalized(g, scores[g]) for g in games], axis=1)


def aggregate_mean(hns: np.ndarray) -> float:
  return float(np.mean(np.mean(hns, axis=0)))


def aggregate_median(hns: np.ndarray) -> float:
  return float(np.median(np.mean(hns, axis=0)))


def aggregate_iqm(hns: np.ndarray) -> float:
  return float(scipy.stats.trim_mean(hns, proportiontocut=0.25, axis=None))


def count_above_human(hns: np.ndarray) -> int:
  return int(np.sum(np.mean(hns, axis=0) > 1.0))


def count_above_random(hns: np.ndarray) -> int:
  return int(np.sum(np.mean(hns, axis=0) > 0.0))


AGGREGATES: dict[str, Callable[[np.ndarray], float]] = {
    "median": aggregate_median, "iqm": aggregate_iqm, "mean": aggregate_mean}


def stratified_bootstrap_ci(hns: np.ndarray, fn: Callable[[np.ndarray], float],
                            reps: int = 2000, alpha: float = 0.05, seed: int = 0):
  """Percentile `1 − alpha` interval of `fn` under run resampling within each game."""
  rng = np.random.default_rng(seed)
  runs, games = hns.shape
  values = np.empty(reps)
  cols = np.arange(games)[None, :]
  for r in range(reps):
    idx = rng.integers(0, runs, size=(runs, games))  # each game's runs resampled on its own
    values[r] = fn(hns[idx, cols])
  return (float(np.percentile(values, 100 * alpha / 2)),
          float(np.percentile(values, 100 * (1 - alpha / 2))))


def summarize(scores: Mapping[str, Sequence[float]], reps: int = 2000, seed: int = 0) -> dict:
  """Point estimates, 95% stratified-bootstrap intervals and the counts of Table 2."""
  _, hns = hns_matrix(scores)
  out = {"games": hns.shape[1], "runs": hns.shape[0],
         "above_human": count_above_human(hns), "above_random": count_above_random(hns)}
  for name, fn in AGGREGATES.items():
    out[name] = fn(hns)
    out[name + "_ci"] = stratified_bootstrap_ci(hns, fn, reps, seed=seed)
  return out


def results_markdown(scores: Mapping[str, Sequence[float]], title: str,
                     reps: int = 2000) -> str:
  """A Table-2-style `results.md`: per-game scores, then the HNS aggregates."""
  s = summarize(scores, reps)
  lines = [f"# {title}", "",
           f"{s['games']} games × {s['runs']} runs; HNS = (score − random)/(human − random); "
           "95% stratified-bootstrap intervals (rliable's protocol).", "",
           "| game | random | human | score (mean over runs) | HNS |",
           "|---|---:|---:|---:|---:|"]
  for g in sorted(scores):
    k = score_key(g)
    mean = float(np.mean(scores[g]))
    lines.append(f"| {g} | {RANDOM_SCORES[k]:g} | {HUMAN_SCORES[k]:g} | {mean:.1f} | "
                 f"{float(human_normalized(g, mean)):.3f} |")
  lines += ["", "| aggregate | value | 95% CI |", "|---|---:|---|"]
  for name in AGGREGATES:
    lo, hi = s[name + "_ci"]
    lines.append(f"| {name} HNS | {s[name]:.3f} | [{lo:.3f}, {hi:.3f}] |")
  lines.append(f"| #games > human | {s['above_human']} | |")
  lines.append(f"| #games > 0 (random) | {s['above_random']} | |")
  return "\n".join(lines) + "\n"
