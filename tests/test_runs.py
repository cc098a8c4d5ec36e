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


def _tiny_corpus_and_codec(tiny_cfg, n):
    from vita_mini.audio.codec import AudioCodec
    from vita_mini.data.corpus import load_corpus

    corpus = load_corpus(tiny_cfg, log=lambda *_: None).subset(list(range(n)))
    return corpus, AudioCodec(tiny_cfg.codec, tiny_cfg.audio).eval()


def test_token_shards_are_written_once_and_refuse_another_codec(tiny_cfg, monkeypatch):
    """The codes come back from stage 0's shard set equal to a fresh encoding, without encoding
    again; a shard set made by another codec is one clear line; training stage 0 removes it."""
    from vita_mini.shards import remove_token_shards

    corpus, codec = _tiny_corpus_and_codec(tiny_cfg, 6)
    fresh = codes.encode_corpus(codec, corpus)
    tokens = codes.corpus_tokens(tiny_cfg, codec, "cache/corpus-x.npz", lambda: corpus, log=lambda *_: None)
    assert tokens.code_lists() == fresh and tokens.texts == corpus.texts
    assert list(tokens.indices("train")) == corpus.indices("train")
    monkeypatch.setattr(codes, "encode_corpus", lambda *a, **k: pytest.fail("encoded again"))
    again = codes.corpus_tokens(tiny_cfg, codec, "cache/corpus-x.npz", lambda: pytest.fail("audio read"))
    assert again.code_lists() == fresh  # read back from the shards: no audio, no encoding
    with torch.no_grad():
        next(codec.parameters()).add_(1.0)  # another codec
    with pytest.raises(VitaError, match="made by another codec") as err:
        codes.corpus_tokens(tiny_cfg, codec, "cache/corpus-x.npz", lambda: corpus)
    assert "\n" not in str(err.value) and "codes-corpus-x" in str(err.value)
    remove_token_shards(os.path.join(tiny_cfg.run_dir, "stage0"))  # what training stage 0 does
    assert not any(f.startswith("codes-") for f in os.listdir(os.path.join(tiny_cfg.run_dir, "stage0")))


def test_token_shards_resume_after_an_interruption(tiny_cfg):
    """Killed after its first chunk, the next run continues from there and ends with the same
    shards as one uninterrupted run."""
    from vita_mini.shards import write_shards

    corpus, codec = _tiny_corpus_and_codec(tiny_cfg, 7)
    folder = os.path.join(tiny_cfg.run_dir, "shards")
    whole = write_shards(folder + "-whole", corpus, "c", "d1", lambda a, b: codes.encode_corpus(
        codec, corpus, a, b), chunk=3, log=lambda *_: None).code_lists()
    calls = []

    def dies_at_second_chunk(start, stop):
        calls.append(start)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return codes.encode_corpus(codec, corpus, start, stop)

    with pytest.raises(KeyboardInterrupt):
        write_shards(folder, corpus, "c", "d1", dies_at_second_chunk, chunk=3, log=lambda *_: None)
    with open(os.path.join(folder, "codes.bin"), "ab") as f:
        f.write(b"\x01\x02\x03")  # a half-written tail the index never recorded
    resumed = write_shards(folder, corpus, "c", "d1", lambda a, b: calls.append(a) or
                           codes.encode_corpus(codec, corpus, a, b), chunk=3, log=lambda *_: None)
    assert calls == [0, 3, 3, 6] and resumed.code_lists() == whole


def test_a_reader_never_writes_the_codes_cache(tiny_cfg):
    """``write=False`` (the evaluation suite): encoded in memory, nothing written to the run."""
    corpus, codec = _tiny_corpus_and_codec(tiny_cfg, 3)
    tokens = codes.corpus_tokens(tiny_cfg, codec, "cache/corpus-x.npz", lambda: corpus, write=False)
    assert tokens.code_lists() == codes.encode_corpus(codec, corpus)
    assert not os.path.exists(os.path.join(tiny_cfg.run_dir, "stage0"))
