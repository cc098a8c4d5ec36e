"""vita_mini/runs.py and vita_mini/codes.py: one loader keyed by stage, old run folders, and the
corpus-codes cache that a reader of a run never writes."""

import os

import pytest
import torch

from vita_mini import codes
from vita_mini.checkpoint import config_differences, load_checkpoint, save_checkpoint
from vita_mini.config import RENAMED_SECTIONS
from vita_mini.errors import VitaError
from vita_mini.runs import (STAGES, build_model, checkpoint_path, load_speech_lm, load_stage, stage_name,
                            stage_state)


def _finished(cfg, number: int, config: dict | None = None, **changes) -> str:
    """Write a finished checkpoint of stage ``number`` with fresh weights (``changes``: other
    payload fields); its path."""
    payload = {"stage": stage_name(number), "step": 1, "finished": True,
               "model": build_model(cfg, number).state_dict(), "config": config or cfg.to_dict()}
    payload.update(changes)
    path = checkpoint_path(cfg, number)
    save_checkpoint(path, payload)
    return path


def test_one_spelling_per_stage(tiny_cfg):
    assert STAGES == (0, 1, 2, 3, 4)
    assert stage_name(2) == "stage2"
    assert checkpoint_path(tiny_cfg, 2) == os.path.join(tiny_cfg.run_dir, "stage2", "checkpoint.pt")


@pytest.mark.parametrize("stage", [1, 2, 3, 4])
def test_load_speech_lm_gives_each_stages_model(tiny_cfg, stage):
    _finished(tiny_cfg, stage)
    llm, mctp = load_speech_lm(tiny_cfg, stage)
    assert not llm.training
    expected_modules = {1: None, 2: 1, 3: tiny_cfg.mctp.n_modules, 4: tiny_cfg.mctp.n_modules}[stage]
    assert (mctp if mctp is None else len(mctp)) == expected_modules


def test_missing_unfinished_and_foreign_checkpoints_say_what_to_run(tiny_cfg):
    with pytest.raises(VitaError, match=r"no stage 3 checkpoint .* run: python train.py --stage 3 --preset tiny"):
        load_stage(tiny_cfg, 3)
    assert stage_state(tiny_cfg, 3) is None
    _finished(tiny_cfg, 3, finished=False, step=4)
    assert stage_state(tiny_cfg, 3) is False
    with pytest.raises(VitaError, match=r"stage 3 in .* stopped at step 4; finish it: .* --resume"):
        load_stage(tiny_cfg, 3)
    _finished(tiny_cfg, 3, stage="stage2")
    with pytest.raises(VitaError, match="is a stage2 checkpoint, not stage3"):
        load_stage(tiny_cfg, 3)
    with pytest.raises(VitaError, match="stage 0 has no LLM"):
        load_speech_lm(tiny_cfg, 0)


def test_a_run_folder_from_before_the_section_renames_still_loads(tiny_cfg):
    """Checkpoints made when the sections were called ``data`` and ``sqa`` load as they are."""
    old = tiny_cfg.to_dict()
    for old_name, new_name in RENAMED_SECTIONS.items():
        old[old_name] = old.pop(new_name)
    _finished(tiny_cfg, 4, config=old)
    assert stage_state(tiny_cfg, 4) is True
    llm, mctp = load_speech_lm(tiny_cfg, 4)
    assert len(mctp) == tiny_cfg.mctp.n_modules
    # and a real difference under an old name is still caught, named by its new name
    old["data"]["ratio"] = [1, 5]
    path = _finished(tiny_cfg, 4, config=old)
    saved = load_checkpoint(path)["config"]
    assert config_differences(saved, tiny_cfg.to_dict(), ["alignment_data"]) == [
        "alignment_data.ratio: [1, 5] -> [1, 10, 4, 10]"]


def test_corpus_codes_are_cached_per_codec(tiny_cfg, monkeypatch):
    """The codes come back from stage 0's folder equal to a fresh encoding; another codec, or
    a broken cache file, encodes again."""
    from vita_mini.audio.codec import AudioCodec
    from vita_mini.data.corpus import corpus_path, load_corpus

    corpus = load_corpus(tiny_cfg, log=lambda *_: None).subset(list(range(6)))
    codec = AudioCodec(tiny_cfg.codec, tiny_cfg.audio).eval()
    fresh = codes.encode_corpus(codec, corpus)
    assert codes.corpus_codes(tiny_cfg, codec, corpus, corpus_path(tiny_cfg)) == fresh
    calls = []
    monkeypatch.setattr(codes, "encode_corpus", lambda c, corpus: calls.append(1) or [[0]] * len(corpus))
    assert codes.corpus_codes(tiny_cfg, codec, corpus, corpus_path(tiny_cfg)) == fresh
    assert calls == []  # read back, not encoded
    with torch.no_grad():
        next(codec.parameters()).add_(1.0)  # "stage 0 retrained"
    assert codes.corpus_codes(tiny_cfg, codec, corpus, corpus_path(tiny_cfg)) == [[0]] * len(corpus)
    (cache,) = [f for f in os.listdir(os.path.join(tiny_cfg.run_dir, "stage0")) if f.startswith("codes-")]
    with open(os.path.join(tiny_cfg.run_dir, "stage0", cache), "wb") as f:
        f.write(b"not a torch file")
    assert codes.corpus_codes(tiny_cfg, codec, corpus, corpus_path(tiny_cfg)) == [[0]] * len(corpus)
    assert calls == [1, 1]


def test_a_reader_never_writes_the_codes_cache(tiny_cfg):
    """``write=False`` (the evaluation suite): encoded in memory, nothing written to the run."""
    from vita_mini.audio.codec import AudioCodec
    from vita_mini.data.corpus import corpus_path, load_corpus

    corpus = load_corpus(tiny_cfg, log=lambda *_: None).subset(list(range(3)))
    codec = AudioCodec(tiny_cfg.codec, tiny_cfg.audio).eval()
    assert codes.corpus_codes(tiny_cfg, codec, corpus, corpus_path(tiny_cfg), write=False) == \
        codes.encode_corpus(codec, corpus)
    assert not os.path.exists(os.path.join(tiny_cfg.run_dir, "stage0"))
