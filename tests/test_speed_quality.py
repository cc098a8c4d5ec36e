"""python -m vita_mini.eval.speed_quality on the trained tiny model: every setting's row, the
device's depth, the JSON and the figure; bad input in one line."""

import json

import pytest

from vita_mini.errors import VitaError
from vita_mini.eval.speed_quality import frontier_claims, main, pareto


def test_every_setting_is_measured_and_verified_ones_equal_vanilla(tiny_full_run, tmp_path, capsys):
    run, _, _ = tiny_full_run
    path = tmp_path / "sq.json"
    figures = ["--figures", str(tmp_path / "figs")]
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        figures = []
    assert main(["--preset", "tiny", "--device", "cpu", "--run-dir", str(run / "run"), "--limit", "1", "--max-new", "40",
                 "--thresholds", "0.6", "--json", str(path), *figures, f"cache_dir={run / 'cache'}"]) == 0
    out = capsys.readouterr().out
    r = json.loads(path.read_text())
    names = [row["name"] for row in r["rows"]]
    assert names[:-1] == ["vanilla", "boost", "turbo", "boost adaptive 0.6", "turbo adaptive 0.6",
                          "verified boost", "verified turbo", "verified turbo adaptive 0.6"]
    assert names[-1] == f"verified 1,{r['device_depth']} (device)" and 1 <= r["device_depth"] <= 10
    for row in r["rows"]:
        assert row["prompts"] == 2 and row["tokens_per_s"] > 0 and row["name"] in out
        if row["verified"]:  # greedy verification gives Vanilla's output, token for token
            assert row["same_as_vanilla"] == 2, row["name"]
            assert row["tokens_per_forward"] >= 1
        if row["verified"] and not row["min_confidence"]:  # drafts were checked: rates per offset
            assert row["acceptance"] and all(0 <= a <= 1 for a in row["acceptance"] if a is not None)
    assert r["rows"][0]["same_as_vanilla"] == 2 and r["rows"][0]["tokens_per_forward"] == 1
    assert r["acceptance_records"] and r["vocab_size"] > 0 and len(r["depth_costs"]) == 10
    assert "<- chosen" in out and "on the speed-quality frontier" in out
    if figures:
        assert (tmp_path / "figs" / "speed_quality.png").read_bytes()[:4] == b"\x89PNG"


def row(name, speedup, tts_cer, s2s, min_confidence=0.0, verified=False):
    return {"name": name, "speedup": speedup, "tts_cer": tts_cer, "s2s": s2s,
            "min_confidence": min_confidence, "verified": verified}


def test_frontier_and_claims_by_hand():
    rows = [row("vanilla", 1.0, 0.05, 0.9), row("boost", 2.0, 0.10, 0.8), row("turbo", 3.0, 0.30, 0.5),
            row("boost adaptive 0.5", 2.2, 0.09, 0.8, 0.5),  # faster than boost, as good
            row("turbo adaptive 0.5", 3.0, 0.20, 0.5, 0.5),  # as fast as turbo, better
            row("turbo adaptive 0.9", 1.5, 0.12, 0.7, 0.9)]  # slower and worse than boost adaptive 0.5
    assert pareto(rows) == ["vanilla", "boost adaptive 0.5", "turbo adaptive 0.5"]
    claims = frontier_claims(rows)
    assert len(claims) == 2
    assert claims[0].startswith("boost adaptive 0.5: faster than boost")
    assert claims[1].startswith("turbo adaptive 0.5: better than turbo")


@pytest.mark.parametrize("flags, message", [
    (["--thresholds", "1.5"], "confidence threshold 1.5: must lie in"),
    (["--limit", "0"], "--limit 0: must be at least 1"),
    (["--max-new", "-3"], "--max-new -3: must be at least 1"),
])
def test_bad_arguments_are_one_line(flags, message):
    with pytest.raises(VitaError, match=message):
        main(flags)
