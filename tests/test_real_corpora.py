"""Real speech corpora in their published layouts (vita_mini/data/real_corpora.py): the readers,
the transcripts' normalisation, each bad input as one line, and tiny stages 0 and 1 on each kind.

The corpora are small fabrications in the exact layouts (tests/corpus_fixtures.py), built once
for the module; a test that breaks one works on its own copy.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections import Counter

import numpy as np
import pytest
import torch
from torchaudio.datasets import LIBRISPEECH, LIBRITTS, LJSPEECH

from corpus_fixtures import SENTENCES, make_folder, make_librispeech, make_libritts, make_ljspeech
from vita_mini.audio.audio_file import read_audio
from vita_mini.config import get_config
from vita_mini.data.alignment import AlignmentData
from vita_mini.data.corpus import cache_path, corpus_path, load_corpus
from vita_mini.data.real_corpora import assign_splits, real_corpus_path, scan_corpus
from vita_mini.data.transcripts import describe_dropped, normalize_transcript
from vita_mini.errors import VitaError
from vita_mini.train.run_stage import run_stage
from vita_mini.train.stage0 import Stage0Task

pytest.importorskip("soundfile")  # the dev extra: LibriSpeech's FLAC

MAKERS = {"librispeech": make_librispeech, "libritts": make_libritts, "ljspeech": make_ljspeech,
          "folder": make_folder}
SPEAKERS = {"librispeech": ["103", "19"], "libritts": ["1034", "84"], "ljspeech": ["LJ"],
            "folder": ["alice", "bob", "folder"]}
SPOKEN = [said for _, said in SENTENCES]
ALPHABET = " abcdefghijklmnopqrstuvwxyz"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tiny models run fastest on one thread: on a busy 2-core machine two threads wait on
    each other at every small op (greedy decoding of 130 tokens: 6.3 s against 0.22 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, str]:
    """kind -> the root of a 12-utterance corpus of that kind."""
    base = tmp_path_factory.mktemp("corpora")
    roots = {kind: str(base / kind) for kind in MAKERS}
    for kind, make in MAKERS.items():
        make(roots[kind])
    return roots


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("corpus_cache"))


def corpus_cfg(kind: str, root: str, cache: str, *more: str):
    return get_config("tiny", [f"corpus.kind={kind}", f"corpus.root={root}", "corpus.n_val=1",
                               "corpus.n_test=1", f"cache_dir={cache}", "device=cpu", *more])


def quiet(_line: str) -> None:
    pass


def copy_of(root: str, tmp_path) -> str:
    """A copy of a corpus folder, for a test that breaks it."""
    return shutil.copytree(root, tmp_path / "copy")


# ---- the fixtures are the published layouts ----------------------------------------------------


def test_the_fixtures_are_in_the_layouts_torchaudio_reads(corpora):
    librispeech = LIBRISPEECH(corpora["librispeech"])
    assert len(librispeech) == len(SENTENCES)
    path, rate, text, speaker, chapter, n = librispeech.get_metadata(0)
    assert (rate, speaker, chapter, n) == (16000, 103, 1240, 0) and text == text.upper()
    assert path == os.path.join("train-clean-100", "103", "1240", "103-1240-0000.flac")
    assert len(LIBRITTS(corpora["libritts"])) == len(SENTENCES)
    assert len(LJSPEECH(corpora["ljspeech"])) == len(SENTENCES)


# ---- the readers -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(corpora, cache):
    return {kind: load_corpus(corpus_cfg(kind, root, cache), quiet) for kind, root in corpora.items()}


@pytest.mark.parametrize("kind", list(MAKERS))
def test_each_kind_is_read_normalised_resampled_and_split(kind, loaded, corpora, cache):
    corpus = loaded[kind]
    assert sorted(corpus.texts) == sorted(SPOKEN)  # every transcript normalised to what was said
    assert Counter(corpus.splits.tolist()) == {"train": 10, "val": 1, "test": 1}
    assert corpus.speaker_names == SPEAKERS[kind]
    assert sorted(set(corpus.speakers.tolist())) == list(range(len(SPEAKERS[kind])))
    again = load_corpus(corpus_cfg(kind, corpora[kind], cache), quiet)  # from the cache
    assert again.texts == corpus.texts and again.speaker_names == corpus.speaker_names
    assert np.array_equal(again.audio, corpus.audio) and np.array_equal(again.splits, corpus.splits)


@pytest.mark.parametrize("kind, file, rate", [
    ("libritts", "LibriTTS/train-clean-100/84/121123/84_121123_000000_000000.wav", 24000),
    ("ljspeech", "LJSpeech-1.1/wavs/LJ001-0001.wav", 22050)])
def test_resampled_lengths_match_the_source(kind, file, rate, corpora, loaded):
    """A 24 kHz or 22050 Hz file read at 16 kHz keeps its duration to the sample."""
    corpus = loaded[kind]
    native = read_audio(os.path.join(corpora[kind], file), rate)
    u = corpus.texts.index(SPOKEN[0])
    assert abs(len(corpus.wav(u)) - round(len(native) * 16000 / rate)) <= 1


def test_several_subsets_and_libritts_r(corpora, tmp_path):
    root = copy_of(corpora["librispeech"], tmp_path / "ls")
    subsets = os.path.join(root, "LibriSpeech")
    shutil.copytree(os.path.join(subsets, "train-clean-100"), os.path.join(subsets, "dev-clean"))
    cfg = corpus_cfg("librispeech", root, "unused", "corpus.subsets=train-clean-100, dev-clean")
    assert len(scan_corpus(cfg)) == 2 * len(SENTENCES)
    root = copy_of(corpora["libritts"], tmp_path / "tts")
    os.rename(os.path.join(root, "LibriTTS"), os.path.join(root, "LibriTTS_R"))
    entries = scan_corpus(corpus_cfg("libritts", root, "unused"))
    assert len(entries) == len(SENTENCES) and all("LibriTTS_R" in e.path for e in entries)


def test_splits_come_from_a_stable_hash_of_the_ids():
    ids = [f"utt{n}" for n in range(50)]
    splits = assign_splits(ids, 5, 7)
    assert Counter(splits) == {"train": 38, "val": 5, "test": 7}
    shuffled = ids[::-1]
    assert dict(zip(shuffled, assign_splits(shuffled, 5, 7))) == dict(zip(ids, splits))


def test_a_real_corpus_gives_every_training_utterance_to_tts(loaded, corpora, cache):
    cfg = corpus_cfg("folder", corpora["folder"], cache)
    corpus = loaded["folder"]
    data = AlignmentData(cfg, corpus, [[1, 2, 3]] * len(corpus))
    assert len(data.samples["tts"]) == len(data.samples["asr"]) == 10  # all three voices
    assert len(data.test_texts) == 1 and data.too_long == 0


def test_the_cache_name_follows_the_folder_and_the_toy_name_is_unchanged(corpora, cache, tmp_path):
    root = copy_of(corpora["folder"], tmp_path)
    cfg = corpus_cfg("folder", root, cache)
    before = real_corpus_path(cfg)
    assert os.path.basename(before).startswith("folder-") and real_corpus_path(cfg) == before
    with open(os.path.join(root, "metadata.csv"), "a", encoding="utf-8") as f:
        f.write("take11|one more line\n")
    shutil.copy(os.path.join(root, "intro.wav"), os.path.join(root, "take11.wav"))
    assert real_corpus_path(cfg) != before
    librispeech = corpus_cfg("librispeech", corpora["librispeech"], cache)
    downloading = corpus_cfg("librispeech", corpora["librispeech"], cache, "corpus.download=true")
    assert real_corpus_path(downloading) == real_corpus_path(librispeech)  # present: nothing fetched
    toy = get_config("tiny", [f"cache_dir={cache}"])
    assert corpus_path(toy) == cache_path(toy, "corpus")
    assert os.path.basename(corpus_path(toy)).startswith("corpus-tiny-")


# ---- bad input: one line each ------------------------------------------------------------------


def one_line_error(cfg, match: str) -> str:
    with pytest.raises(VitaError, match=match) as e:
        load_corpus(cfg, quiet)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_a_folder_in_the_wrong_layout(corpora, cache):
    one_line_error(corpus_cfg("librispeech", corpora["ljspeech"], cache),
                   r"no LibriSpeech/train-clean-100 folder \(LibriSpeech's layout is .*corpus.download=true")
    inside = os.path.join(corpora["librispeech"], "LibriSpeech")
    one_line_error(corpus_cfg("librispeech", inside, cache), "looks like the LibriSpeech folder itself")
    one_line_error(corpus_cfg("libritts", corpora["librispeech"], cache), "no LibriTTS/train-clean-100 folder")
    one_line_error(corpus_cfg("ljspeech", corpora["folder"], cache), r"no LJSpeech-1.1/wavs folder")
    one_line_error(corpus_cfg("folder", corpora["folder"] + "-missing", cache), "no such folder")
    one_line_error(corpus_cfg("librispeech", corpora["librispeech"], cache, "corpus.subsets=dev-clean"),
                   "no LibriSpeech/dev-clean folder")


def test_missing_transcripts(corpora, cache, tmp_path):
    root = copy_of(corpora["librispeech"], tmp_path / "ls")
    os.remove(os.path.join(root, "LibriSpeech", "train-clean-100", "19", "198", "19-198.trans.txt"))
    one_line_error(corpus_cfg("librispeech", root, cache), r"chapter folder .*19/198 has no 19-198.trans.txt")

    root = copy_of(corpora["libritts"], tmp_path / "tts")
    chapter = os.path.join(root, "LibriTTS", "train-clean-100", "84", "121123")
    os.remove(os.path.join(chapter, "84_121123_000001_000001.normalized.txt"))
    one_line_error(corpus_cfg("libritts", root, cache),
                   r"84_121123_000001_000001.wav has no 84_121123_000001_000001.normalized.txt")

    root = copy_of(corpora["ljspeech"], tmp_path / "lj")
    os.remove(os.path.join(root, "LJSpeech-1.1", "metadata.csv"))
    one_line_error(corpus_cfg("ljspeech", root, cache), r"LJSpeech-1.1 has no metadata.csv")

    root = copy_of(corpora["folder"], tmp_path / "own")
    os.remove(os.path.join(root, "metadata.csv"))
    one_line_error(corpus_cfg("folder", root, cache), r"no metadata.csv \(lines of <file>\|<transcript>")


def test_a_metadata_line_naming_a_missing_file(corpora, cache, tmp_path):
    root = copy_of(corpora["folder"], tmp_path)
    with open(os.path.join(root, "metadata.csv"), "a", encoding="utf-8") as f:
        f.write("carol/009|hello there\n")
    one_line_error(corpus_cfg("folder", root, cache),
                   r"metadata.csv line 13 names 'carol/009', but there is no such audio file")
    with open(os.path.join(root, "metadata.csv"), "w", encoding="utf-8") as f:
        f.write("intro.wav\n")
    one_line_error(corpus_cfg("folder", root, cache), r"line 1: expected <file>\|<transcript>")


def test_flac_without_its_extra_stops_at_once(corpora, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "soundfile", None)  # import soundfile -> ImportError
    message = one_line_error(corpus_cfg("librispeech", corpora["librispeech"], str(tmp_path)),  # not cached
                             r'is FLAC, which needs the optional extra: pip install -e "\.\[flac\]" \(soundfile\)')
    assert message.startswith("audio file '") and ".flac'" in message


def test_unreadable_empty_and_long_utterances_are_skipped_and_counted(corpora, loaded, cache, tmp_path):
    root = copy_of(corpora["folder"], tmp_path)
    with open(os.path.join(root, "bob", "001.wav"), "wb") as f:
        f.write(b"not a wav file")
    with open(os.path.join(root, "metadata.csv"), "a", encoding="utf-8") as f:
        f.write("intro|1999\n")  # nothing left in the alphabet
    folder = loaded["folder"]  # the longest of those still readable is skipped
    longest = max(len(folder.wav(u)) for u in range(12) if folder.texts[u] != SPOKEN[2]) / 16000
    lines = []
    cfg = corpus_cfg("folder", root, cache, f"corpus.max_seconds={longest - 0.01}")
    corpus = load_corpus(cfg, lines.append)
    assert len(corpus) == 10  # 13 lines: one unreadable, one without text, one too long
    summary = next(line for line in lines if line.startswith("read "))
    assert "skipped 1 longer than corpus.max_seconds" in summary and "1 with no text left" in summary
    assert "1 unreadable (audio file '" in summary and "001.wav' is not a WAV file" in summary
    assert "transcripts: dropped 4 characters not in corpus.alphabet: '9' x3, '1' x1" in lines


def test_most_files_failing_is_one_line(corpora, cache, tmp_path):
    root = copy_of(corpora["folder"], tmp_path)
    for name in ["alice/001.wav", "alice/002.wav", "bob/001.wav", "bob/002.wav", "intro.wav",
                 "outro.wav", "take06.wav"]:
        with open(os.path.join(root, name), "wb") as f:
            f.write(b"RIFF")
    one_line_error(corpus_cfg("folder", root, cache),
                   r"7 of its 12 audio files cannot be read, more than corpus.max_failed_share=0.5; "
                   r"the first: audio file")


def test_too_few_utterances_and_unknown_formats_are_one_line(corpora, cache, tmp_path):
    one_line_error(corpus_cfg("folder", corpora["folder"], cache, "corpus.n_val=6", "corpus.n_test=6"),
                   r"12 usable utterances, too few for corpus.n_val=6 \+ corpus.n_test=6")
    with pytest.raises(VitaError, match=r"'x.mp3' is not a format this project reads \(.mp3\); "
                                        r"it reads .wav and .flac"):
        read_audio("x.mp3")


def test_stage0_needs_a_decoder_voice_per_speaker(corpora, loaded, cache, tmp_path):
    cfg = corpus_cfg("folder", corpora["folder"], cache, "synth.n_speakers=2", "codec.n_voices=2",
                     "spoken_qa.train_voices=1", f"run_dir={tmp_path}")
    with pytest.raises(VitaError, match="^corpus has 3 speakers but codec.n_voices=2: use codec.voice=reference "
                                        r"\(a voice from a recording\) or codec.n_voices=3$"):
        Stage0Task.build(cfg, 0, torch.device("cpu"), quiet)


# ---- transcripts -------------------------------------------------------------------------------


@pytest.mark.parametrize("text, normalised", [
    ("HELLO, WORLD!", "hello world"),  # casefold; punctuation becomes a space, the ends stripped
    ("Don\u2019t  stop", "dont stop"),  # apostrophes (curly too) dropped; runs of spaces collapse
    ("café naïve Ôlaf", "cafe naive olaf"),  # a letter's NFKD base letter
    ("well-known \u2014 fine\ttab", "well known fine tab"),  # hyphens, dashes, whitespace: a space
    ("\ufb01ne Stra\u00dfe \uff21", "fine strasse a"),  # NFKC (ligature, full width), casefold (ß)
    ("1999", ""),
])
def test_normalize_transcript_rules(text, normalised):
    assert normalize_transcript(text, ALPHABET)[0] == normalised


def test_what_is_dropped_is_counted_and_an_alphabet_can_keep_it():
    text, dropped = normalize_transcript("I have 3 cats & 2 æther", ALPHABET)
    assert text == "i have cats ther" and dropped == Counter({"3": 1, "2": 1, "æ": 1})
    assert describe_dropped(dropped) == "dropped 3 characters not in corpus.alphabet: '3' x1, '2' x1, 'æ' x1"
    assert describe_dropped(Counter()) == "dropped no characters"
    assert normalize_transcript("Don't 3 æther", ALPHABET + "'3æ")[0] == "don't 3 æther"
    russian = " абвгдеёжзийклмнопрстуфхцчшщъыьэюя"
    assert normalize_transcript("Привет, мир", russian) == ("привет мир", Counter())


# ---- tiny stages 0 and 1 on each kind ----------------------------------------------------------

# smaller than tiny: the reports' Griffin-Lim and greedy decoding dominate a 2-step stage
FAST = ["world.n_people=1", "codec.channels=16", "codec.code_dim=8", "judge.channels=16", "judge.n_blocks=1",
        "llm.d_model=32", "llm.n_layers=1", "llm.n_heads=2", "llm.n_kv_heads=1", "llm.d_ff=64",
        "llm.max_seq_len=168", "audio.griffin_lim_iters=1"]
STEPS = [f"stage{s}.{k}={v}" for s in (0, 1) for k, v in
         [("steps", 2), ("batch_size", 4), ("eval_every", 2), ("checkpoint_every", 2), ("log_every", 1)]]


@pytest.mark.parametrize("kind", list(MAKERS))
def test_tiny_stages_0_and_1_train_on_each_kind(kind, corpora, loaded, cache, tmp_path):
    cfg = corpus_cfg(kind, corpora[kind], cache, f"run_dir={tmp_path / 'run'}", *FAST, *STEPS)
    for stage, key in [(0, "judge_cer"), (1, "asr_cer")]:
        metrics = run_stage(cfg, stage, torch.device("cpu"), log=quiet)
        assert metrics["step"] == 2 and key in metrics
        assert os.path.exists(os.path.join(cfg.run_dir, f"stage{stage}", "metrics.json"))
