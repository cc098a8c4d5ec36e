import pytest

import torch

from vita_mini.data.samples import asr_sample, noisy_inputs, pack, text_sample, tts_sample
from vita_mini.vocab import CHARSET, IGNORE
from vita_mini.vocab import (ASSISTANT, AUDIO_OFFSET, BOA, END, EOA, N_BYTES, PAD, SPECIALS,
                             audio_ids, chat_tokens, check_ratio, decode_audio, decode_text,
                             expand_audio_placeholders, interleave, prompt_tokens, text_ids,
                             token_name, user_audio, vocab_size)

T = list("abcdefghijklmnopqrstuvwxyz")  # stand-ins: any hashable token works for interleave
A = [f"a{i}" for i in range(100)]


def reference_interleave(text, audio, ratio):
    """The rule of tutorials/paper.md §4, written independently: fill chunk by chunk, stop when one runs out."""
    pairs = [(ratio[i], ratio[i + 1]) for i in range(0, len(ratio), 2)]
    out, k = [], 0
    text, audio = list(text), list(audio)
    while True:
        t, a = pairs[min(k, len(pairs) - 1)]
        k += 1
        if len(text) <= t or len(audio) <= a - 2:
            return out + text + [BOA] + audio + [EOA]
        out += text[:t] + [BOA] + audio[:a - 2] + [EOA]
        text, audio = text[t:], audio[a - 2:]


def test_layout_of_the_token_space():
    assert PAD == N_BYTES == 256 and AUDIO_OFFSET == 256 + len(SPECIALS)
    assert vocab_size(512) == AUDIO_OFFSET + 512
    assert text_ids("hé") == [104, 0xC3, 0xA9] and decode_text(text_ids("hé") + [BOA]) == "hé"
    assert decode_audio(audio_ids([0, 5]) + [65]) == [0, 5]
    assert token_name(BOA) == "<|begin_of_audio|>" and token_name(AUDIO_OFFSET + 7) == "<a7>"


def test_boost_interleave_by_hand():
    text, audio = T[:9], A[:30]
    assert interleave(text, audio, (1, 10, 4, 10)) == (
        T[:1] + [BOA] + A[0:8] + [EOA] + T[1:5] + [BOA] + A[8:16] + [EOA]
        + T[5:9] + [BOA] + A[16:30] + [EOA])  # text runs out in chunk 3: it takes all the rest


@pytest.mark.parametrize("ratio", [(1, 10), (1, 10, 4, 10), (1, 4, 3, 8, 4, 10), (2, 3)])
@pytest.mark.parametrize("n_text, n_audio", [(0, 0), (0, 5), (5, 0), (3, 90), (26, 10), (26, 100),
                                             (1, 8), (5, 16), (13, 40)])
def test_interleave_matches_reference_and_keeps_everything(ratio, n_text, n_audio):
    text, audio = T[:n_text], A[:n_audio]
    out = interleave(text, audio, ratio)
    assert out == reference_interleave(text, audio, ratio)
    assert [x for x in out if x in T] == text and [x for x in out if x in A] == audio
    assert out.count(BOA) == out.count(EOA) >= 1 and out[-1] == EOA


def test_text_longer_than_audio_puts_the_rest_of_the_text_before_the_last_audio():
    out = interleave(T[:20], A[:10], (1, 10, 4, 10))
    assert out == T[:1] + [BOA] + A[:8] + [EOA] + T[1:20] + [BOA] + A[8:10] + [EOA]


def test_empty_audio_and_empty_text():
    assert interleave(T[:3], [], (1, 10)) == T[:3] + [BOA, EOA]
    assert interleave([], A[:3], (1, 10)) == [BOA] + A[:3] + [EOA]


@pytest.mark.parametrize("bad", [(), (1,), (1, 10, 4), (0, 10), (1, 2), (-1, 10)])
def test_bad_ratio_lists(bad):
    with pytest.raises(ValueError):
        check_ratio(bad)


def test_chat_sample_targets_only_the_answer_and_its_end():
    s = chat_tokens("answer", text_ids("hi"), text_ids("yo"))
    prompt = prompt_tokens("answer", text_ids("hi"))
    assert s.ids == prompt + text_ids("yo") + [END] and prompt[-1] == ASSISTANT
    assert s.target == [False] * len(prompt) + [True] * 3


def test_asr_tts_and_text_samples():
    asr = asr_sample([1, 2, 3], "ab")
    assert asr.ids[-3:] == text_ids("ab") + [END]
    assert user_audio([1, 2, 3]) == [BOA, AUDIO_OFFSET + 1, AUDIO_OFFSET + 2, AUDIO_OFFSET + 3, EOA]
    tts = tts_sample(list(range(20)), "abcdef", (1, 10, 4, 10))
    answer = [t for t, is_target in zip(tts.ids, tts.target) if is_target]
    assert answer == interleave(text_ids("abcdef"), audio_ids(range(20)), (1, 10, 4, 10)) + [END]
    assert sum(text_sample("q", "a").target) == 2


def test_pack_keeps_samples_apart_and_labels_only_targets():
    samples = [text_sample("q1", "answer one"), asr_sample([5] * 7, "abc"), text_sample("q", "a")]
    batch = pack(samples, row_len=64)
    assert batch.tokens.shape[1] == 64
    labelled = (batch.labels != IGNORE).sum().item()
    assert labelled == sum(sum(s.target) for s in samples)  # every target once, nothing else
    for r in range(batch.tokens.shape[0]):
        for i in range(63):
            if batch.labels[r, i] != IGNORE:
                assert batch.labels[r, i] == batch.tokens[r, i + 1]  # next token ...
                assert batch.doc_ids[r, i] == batch.doc_ids[r, i + 1]  # ... of the same sample
    assert (batch.tokens == PAD).any()  # padding is there, with a doc id of its own
    with pytest.raises(ValueError, match="does not fit"):
        pack(samples, row_len=10)


def test_input_noise_touches_only_the_answer_text_of_flagged_samples():
    samples = [asr_sample([5] * 30, "the cat sleeps in the park"), tts_sample([6] * 40, "a dog", (1, 10, 4, 10)),
               text_sample("where is the cat", "the cat is in the park")]
    batch = pack(samples, row_len=128, noisy=[True, False, False])
    assert torch.equal(noisy_inputs(batch, 0.0), batch.tokens)
    torch.manual_seed(0)
    noisy = noisy_inputs(batch, 1.0)  # every eligible input replaced
    changed = noisy != batch.tokens
    eligible = batch.noisy & (batch.labels != IGNORE) & (batch.tokens < N_BYTES)
    assert changed.any() and not (changed & ~eligible).any()  # nothing outside the ASR answer's text
    assert set(noisy[eligible].tolist()) <= set(CHARSET.encode())  # random letters or space
    answer = (batch.labels != IGNORE) & batch.noisy
    assert (batch.tokens[answer] >= N_BYTES).sum() == 1  # only <|assistant|> itself is not text
    assert batch.noisy.sum() == len(samples[0])  # one flag per position of the flagged sample
    torch.manual_seed(0)
    some = noisy_inputs(batch, 0.3)
    assert 0 < (some != batch.tokens).sum() < changed.sum()


def test_audio_placeholders():
    ids = expand_audio_placeholders("<|audio|> what", [[4, 5]])
    assert ids == user_audio([4, 5]) + text_ids(" what")
    with pytest.raises(ValueError):
        expand_audio_placeholders("<|audio|>", [])
