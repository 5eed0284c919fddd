"""HNS and aggregates: hand computations and published Atari 100k aggregates."""
import numpy as np
import pytest

from palm_jax.envs.atari import ATARI_100K_GAMES
from palm_jax.evaluation import atari_scores as S

# Per-game Atari 100k scores of DrQ (Kostrikov et al. 2020), SPR, CURL and SimPLe as
# published in Schwarzer et al. 2021 (SPR), Table 4, with that table's mean/median HNS:
# DrQ 0.357 / 0.268, SPR 0.704 / 0.415, CURL 0.381 / 0.175, SimPLe 0.443 / 0.144.
PUBLISHED = {  # game: (SimPLe, CURL, DrQ, SPR)
    "alien": (616.9, 558.2, 771.2, 801.5), "amidar": (88.0, 142.1, 102.8, 176.3),
    "assault": (527.2, 600.6, 452.4, 571.0), "asterix": (1128.3, 734.5, 603.5, 977.8),
    "bank_heist": (34.2, 131.6, 168.9, 380.9), "battle_zone": (5184.4, 14870.0, 12954.0, 16651.0),
    "boxing": (9.1, 1.2, 6.0, 35.8), "breakout": (16.4, 4.9, 16.1, 17.1),
    "chopper_command": (1246.9, 1058.5, 780.3, 974.8),
    "crazy_climber": (62583.6, 12146.5, 20516.5, 42923.6),
    "demon_attack": (208.1, 817.6, 1113.4, 545.2), "freeway": (20.3, 26.7, 9.8, 24.4),
    "frostbite": (254.7, 1181.3, 331.1, 1821.5), "gopher": (771.0, 669.3, 636.3, 715.2),
    "hero": (2656.6, 6279.3, 3736.3, 7019.2), "jamesbond": (125.3, 471.0, 236.0, 365.4),
    "kangaroo": (323.1, 872.5, 940.6, 3276.4), "krull": (4539.9, 4229.6, 4018.1, 3688.9),
    "kung_fu_master": (17257.2, 14307.8, 9111.0, 13192.7),
    "ms_pacman": (1480.0, 1465.5, 960.5, 1313.2), "pong": (12.8, -16.5, -8.5, -5.9),
    "private_eye": (58.3, 218.4, -13.6, 124.0), "qbert": (1288.8, 1042.4, 854.4, 669.1),
    "road_runner": (5640.6, 5661.0, 8895.1, 14220.5), "seaquest": (683.3, 384.5, 301.2, 583.1),
    "up_n_down": (3350.3, 2955.2, 3180.8, 28138.5),
}
AGGREGATES = {0: (0.443, 0.144), 1: (0.381, 0.175), 2: (0.357, 0.268), 3: (0.704, 0.415)}


def test_hand_computed_hns():
  assert S.human_normalized("Pong", 14.6) == pytest.approx(1.0)
  assert S.human_normalized("pong", -20.7) == pytest.approx(0.0)
  assert S.human_normalized("breakout", 16.1) == pytest.approx((16.1 - 1.7) / (30.5 - 1.7))
  assert S.human_normalized("BankHeist", 168.9) == pytest.approx((168.9 - 14.2) / 738.9)
  assert set(PUBLISHED) == set(ATARI_100K_GAMES)


@pytest.mark.parametrize("agent", sorted(AGGREGATES))
def test_reproduces_published_mean_and_median(agent):
  scores = {g: [v[agent]] for g, v in PUBLISHED.items()}
  _, hns = S.hns_matrix(scores)
  mean, median = AGGREGATES[agent]
  # Three decimals published, from per-game scores rounded to 0.1: SPR's mean is 0.7034.
  assert S.aggregate_mean(hns) == pytest.approx(mean, abs=1e-3)
  assert S.aggregate_median(hns) == pytest.approx(median, abs=1e-3)


def test_counts_iqm_and_bootstrap_by_hand():
  # 2 runs × 4 games of HNS: per-game means 0.5, 1.5, -0.25, 2.0.
  hns = np.array([[0.0, 1.0, -0.5, 2.0], [1.0, 2.0, 0.0, 2.0]])
  assert S.aggregate_mean(hns) == pytest.approx(0.9375)
  assert S.aggregate_median(hns) == pytest.approx(1.0)
  assert S.count_above_human(hns) == 2 and S.count_above_random(hns) == 3
  # IQM: the 8 values sorted are -0.5 0 0 1 1 2 2 2; drop 2 from each end: mean(0 1 1 2).
  assert S.aggregate_iqm(hns) == pytest.approx(1.0)
  # Identical runs: every stratified resample is the data itself.
  same = np.repeat(hns[:1], 3, axis=0)
  assert S.stratified_bootstrap_ci(same, S.aggregate_mean, reps=50) == pytest.approx(
      (S.aggregate_mean(same),) * 2)
  # Game 4 has equal runs, so it never moves; the mean's interval lies inside the range of
  # per-game means a resample can produce.
  lo, hi = S.stratified_bootstrap_ci(hns, S.aggregate_mean, reps=400)
  assert np.mean([0.0, 1.0, -0.5, 2.0]) <= lo < 0.9375 < hi <= np.mean([1.0, 2.0, 0.0, 2.0])


def test_results_markdown_lists_games_and_aggregates():
  scores = {g: [v[2], v[3]] for g, v in PUBLISHED.items()}
  md = S.results_markdown(scores, "DrQ vs SPR as two runs", reps=100)
  assert md.count("\n| ") >= 26 + 5 and "| median HNS |" in md and "#games > human" in md
  s = S.summarize(scores, reps=100)
  assert s["games"] == 26 and s["runs"] == 2
  assert s["median_ci"][0] <= s["median"] <= s["median_ci"][1]
