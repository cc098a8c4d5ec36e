"""The device's drafting depth (infer/depth.py): acceptance rates, expected tokens, the choice,
and the replayed engine, against hand computations and plain counting."""

import json

import pytest
import torch

from vita_mini.config import LLMConfig
from vita_mini.errors import VitaError
from vita_mini.infer.benchmark import random_engine
from vita_mini.infer.depth import (Cost, ReplayedEngine, acceptance_rates, best_depth, expected_tokens,
                                   format_depths, main, measure_costs, projected_speedup)

SMALL = LLMConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128)


def test_acceptance_rates_by_hand():
    # (drafted, accepted) per forward; (4, 4) ran out of drafts after 4: it says nothing of offset 4
    records = [(10, 3), (10, 0), (10, 10), (4, 4), (10, 1)]
    rates = acceptance_rates(records, 6)
    assert rates[:5] == pytest.approx([4 / 5, 3 / 4, 3 / 3, 2 / 3, 1 / 1])
    assert rates[5] == 1.0
    assert acceptance_rates([(2, 0)], 3) == [0.0, None, None]  # nobody reached offsets 1 and 2


@pytest.mark.parametrize("k", [1, 2, 5, 10])
def test_expected_tokens_is_the_mean_of_accepted_plus_one(k):
    # with every forward drafting 10, E_k = mean(min(a, k) + 1) exactly
    g = torch.Generator().manual_seed(k)
    accepted = torch.randint(0, 11, (200,), generator=g).tolist()
    rates = acceptance_rates([(10, a) for a in accepted], 10)
    assert expected_tokens(rates, k) == pytest.approx(sum(min(a, k) + 1 for a in accepted) / 200)


def test_the_chosen_depth_maximises_the_projected_speedup():
    rates = [0.9, 0.8, 0.3, 0.2] + [0.1] * 6
    costs = [Cost(k, 1 + 0.05 * k, 0.1) for k in range(1, 11)]
    # by hand: E_1 = 1.9, E_2 = 2.62, E_3 = 2.836; costs 1.15, 1.3, 1.45
    assert projected_speedup(rates, costs[0]) == pytest.approx(1.9 / 1.15)
    assert projected_speedup(rates, costs[1]) == pytest.approx(2.62 / 1.3)
    assert projected_speedup(rates, costs[2]) == pytest.approx(2.836 / 1.45)
    assert best_depth(rates, costs).k == 2
    assert "<- chosen" in format_depths(rates, costs).splitlines()[2]
    # where drafting costs nothing (c = 1, r = 0), every deeper draft adds tokens: the deepest wins
    free = [Cost(k, 1.0, 0.0) for k in range(1, 11)]
    assert best_depth(rates, free).k == 10


def test_the_replayed_engine_accepts_what_the_script_says():
    engine, prompt = random_engine(SMALL, 50, 8, 60, 3, engine_class=ReplayedEngine)
    engine.replay([2, 0, 5, 1])
    out = list(engine.generate(prompt, 60, (1, 3), stop=None))
    assert len(out) == 60
    # the first forward has no drafts; then accepted counts cycle through the script, capped at
    # the 3 drafts (the last forward may be cut short)
    script = [2, 0, 3, 1]
    checked = engine.acceptance[1:-1]
    assert engine.acceptance[0] == (0, 0)
    assert [a for _, a in checked] == [script[i % 4] for i in range(len(checked))]
    assert all(drafted == 3 for drafted, _ in checked)
    assert sum(a + 1 for _, a in engine.acceptance) >= 60


def test_measure_costs_gives_every_depth():
    costs = measure_costs(SMALL, 50, [1, 2, 3], n_new=24)
    assert [c.k for c in costs] == [1, 2, 3]
    assert all(c.c > 0 and c.r > 0 for c in costs)


def test_the_command_prints_the_choice_and_the_replay(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("vita_mini.infer.depth.SIZES", [("small", SMALL)])  # seconds, not minutes
    path = tmp_path / "sq.json"
    # (0, 0): a prompt's first forward, with nothing to check; it leaves the rates and the replay alone
    path.write_text(json.dumps({"vocab_size": 60, "acceptance_records": [[0, 0], [3, 3], [3, 1], [3, 0], [3, 2]]}))
    assert main(["--acceptance", str(path), "--max-depth", "3", "--new", "24"]) == 0
    out = capsys.readouterr().out
    assert "0: 0.75  1: 0.67  2: 0.50" in out
    assert "<- chosen" in out and "measured speedup" in out


def test_a_file_that_is_not_a_results_file_is_one_line(tmp_path):
    path = tmp_path / "other.json"
    path.write_text("{}")
    with pytest.raises(VitaError, match="not a results file of python -m vita_mini.eval.speed_quality"):
        main(["--acceptance", str(path)])
    with pytest.raises(VitaError, match="missing.json: not a results file"):
        main(["--acceptance", str(tmp_path / "missing.json")])
