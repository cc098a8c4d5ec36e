"""Published speech corpora, read from their own folder layouts into a Corpus (corpus_store.py).

``corpus.kind`` names the layout under ``corpus.root``:

    librispeech  LibriSpeech/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<n>.flac, 16 kHz FLAC,
                 beside <speaker>-<chapter>.trans.txt: one "<id> <TRANSCRIPT>" line per utterance
    libritts     LibriTTS/<subset>/<speaker>/<chapter>/<id>.wav, 24 kHz, beside <id>.normalized.txt
                 (the transcript used) and <id>.original.txt; LibriTTS-R is the same under LibriTTS_R/
    ljspeech     LJSpeech-1.1/wavs/<id>.wav, 22050 Hz, and LJSpeech-1.1/metadata.csv of
                 "<id>|<transcript>|<normalized transcript>" lines (the normalized one is used); one voice
    folder       your recordings: audio files (WAV, or FLAC with the extra) and a metadata.csv of
                 "<file>|<transcript>" lines, LJSpeech's format (a third, normalized column is used if
                 there); <file> is relative to the folder and may omit ".wav". Its speaker is its
                 first subfolder (alice/001.wav is alice's), or the folder's own name for files at the top

``corpus.subsets`` lists the LibriSpeech / LibriTTS subset folders to read, comma-separated
(default train-clean-100). torchaudio.datasets' classes (LIBRISPEECH, LIBRITTS, LJSPEECH) find
the utterances and download a corpus when ``corpus.download`` is true; their audio loading goes
through torchcodec, which this project does not use, so the audio is read by audio/audio_file.py.

Reading a corpus, ``load_real_corpus``:

1. scan: every utterance's id, audio file, transcript and speaker, from the layout alone. A
   folder in another layout, a missing transcript or a metadata line naming a missing file
   stops here with one line naming the folder or file.
2. the cache: the corpus is cached under ``cache_dir`` (corpus_store.py), named by a hash of the
   corpus section, the sample rate and the file list (paths, sizes, modification times, and the
   transcripts), so that editing the folder builds a new cache.
3. read: each transcript is normalised to ``corpus.alphabet`` (transcripts.py) and the audio
   read at ``audio.sample_rate``. An utterance with no text left, one longer than
   ``corpus.max_seconds`` and a file that cannot be read are skipped and counted (a log line
   names the first unreadable ones); if more than ``corpus.max_failed_share`` of the files
   cannot be read, it stops with one line. FLAC without its extra stops at once.
4. speakers: their names, sorted, numbered 0..S-1 (``Corpus.speaker_names``); splits:
   ``corpus.n_val`` and ``corpus.n_test`` utterances picked by a stable hash of their id (never
   at random), the rest train.

Everything is held in memory; corpus_store.py says what hundreds of hours would need instead.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tarfile
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from torchaudio.datasets import LIBRISPEECH, LIBRITTS, LJSPEECH
from tqdm import tqdm

from vita_mini.audio.audio_file import MissingExtra, read_audio
from vita_mini.config import Config
from vita_mini.data.corpus_store import Corpus, load_cached
from vita_mini.data.transcripts import describe_dropped, normalize_transcript
from vita_mini.errors import VitaError

CACHE_VERSION = 1  # bump when reading a corpus changes what comes out
LIBRISPEECH_LAYOUT = ("LibriSpeech's layout is LibriSpeech/<subset>/<speaker>/<chapter>/*.flac "
                      "beside <speaker>-<chapter>.trans.txt")
LIBRITTS_LAYOUT = ("LibriTTS's layout is LibriTTS/<subset>/<speaker>/<chapter>/<id>.wav beside "
                   "<id>.normalized.txt; LibriTTS-R's the same under LibriTTS_R/")
LJSPEECH_LAYOUT = "LJSpeech's layout is LJSpeech-1.1/wavs/<id>.wav and LJSpeech-1.1/metadata.csv"
METADATA_FORMAT = "lines of <file>|<transcript>, LJSpeech's format"


@dataclass(frozen=True)
class Entry:
    """One utterance found in a corpus folder, before its audio is read."""

    uid: str  # the corpus's own id: "103-1240-0000", "LJ001-0001", a file's name in a folder
    path: str  # its audio file
    text: str  # its transcript as published
    speaker: str  # its speaker's name in the corpus


# ---------------------------------------------------------------------------------------------
# 1. scan: the utterances of each layout


def _subsets(cfg: Config, default: str) -> list[str]:
    return [s.strip() for s in cfg.corpus.subsets.split(",") if s.strip()] or [default]


def _need_folder(cfg: Config, inner: str, layout: str) -> None:
    """``corpus.root``/``inner`` must be a folder, unless it is about to be downloaded."""
    root = cfg.corpus.root
    if cfg.corpus.download:
        os.makedirs(root, exist_ok=True)
    elif not os.path.isdir(root):
        raise VitaError(f"corpus.root={root}: no such folder")
    elif not os.path.isdir(os.path.join(root, inner)):
        top, _, rest = inner.partition(os.sep)
        inside = (f"; it looks like the {top} folder itself: corpus.root is the folder that holds {top}"
                  if os.path.isdir(os.path.join(root, rest)) else "")
        raise VitaError(f"corpus.root={root}: no {inner} folder ({layout}); download it with "
                        f"corpus.download=true or check corpus.root{inside}")


def _open_dataset(cfg: Config, what: str, make):
    """torchaudio's dataset ``make()`` (which downloads and unpacks with corpus.download=true),
    its failures as one line."""
    try:
        return make()
    except (OSError, RuntimeError, ValueError, tarfile.TarError) as e:  # URLError is an OSError
        doing = "downloading or unpacking" if cfg.corpus.download else "opening"
        raise VitaError(f"corpus.root={cfg.corpus.root}: {doing} {what} failed: {e}") from None


def scan_librispeech(cfg: Config) -> list[Entry]:
    root, entries = cfg.corpus.root, []
    for subset in _subsets(cfg, "train-clean-100"):
        _need_folder(cfg, os.path.join("LibriSpeech", subset), LIBRISPEECH_LAYOUT)
        dataset = _open_dataset(cfg, f"LibriSpeech {subset}", lambda: LIBRISPEECH(
            root, url=subset, download=cfg.corpus.download))
        for n in range(len(dataset)):
            try:
                path, _, text, speaker, _, _ = dataset.get_metadata(n)  # path: under LibriSpeech/
            except FileNotFoundError as e:
                if e.filename:  # the chapter's .trans.txt itself is missing
                    raise VitaError(f"LibriSpeech chapter folder {os.path.dirname(e.filename)} has no "
                                    f"{os.path.basename(e.filename)} (its transcripts)") from None
                raise VitaError(f"LibriSpeech {subset} under {root}: {e} in its chapter's .trans.txt") from None
            except ValueError:
                raise VitaError(f"LibriSpeech {subset} under {root}: a .trans.txt line is not "
                                f"'<id> <transcript>'") from None
            entries.append(Entry(Path(path).stem, os.path.join(root, "LibriSpeech", path), text, str(speaker)))
    return entries


def _first_line(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.readline().strip()
    except FileNotFoundError:
        raise VitaError(f"{what} has no {os.path.basename(path)} beside it (its transcript)") from None


def scan_libritts(cfg: Config) -> list[Entry]:
    root, entries = cfg.corpus.root, []
    for subset in _subsets(cfg, "train-clean-100"):
        r_only = (os.path.isdir(os.path.join(root, "LibriTTS_R", subset))
                  and not os.path.isdir(os.path.join(root, "LibriTTS", subset)))
        top = "LibriTTS_R" if r_only else "LibriTTS"
        _need_folder(cfg, os.path.join(top, subset), LIBRITTS_LAYOUT)
        dataset = _open_dataset(cfg, f"LibriTTS {subset}", lambda: LIBRITTS(
            root, url=subset, folder_in_archive=top, download=cfg.corpus.download))
        # torchaudio 2.11's LIBRITTS has no get_metadata: its file list, and its own path rule
        for uid in dataset._walker:
            parts = uid.split("_")
            audio = os.path.join(dataset._path, *parts[:2], f"{uid}.wav")
            if len(parts) != 4:
                raise VitaError(f"LibriTTS file {audio}: its name is not "
                                f"<speaker>_<chapter>_<paragraph>_<sentence>.wav")
            text = _first_line(os.path.join(os.path.dirname(audio), f"{uid}.normalized.txt"),
                               f"LibriTTS utterance {audio}")
            entries.append(Entry(uid, audio, text, parts[0]))
    return entries


def _metadata_entries(rows: list[list[str]], metadata: str, find_audio, speaker_of) -> list[Entry]:
    """The utterances of metadata.csv's ``rows`` (LJSpeech's format, "|"-separated):
    ``find_audio(name)`` is the file a line names (None if missing), ``speaker_of(name)`` its
    speaker. Blank lines are skipped; the transcript is the last column."""
    entries = []
    for line, row in enumerate(rows, 1):  # QUOTE_NONE: one row per line
        if not "".join(row).strip():
            continue
        if len(row) not in (2, 3):
            raise VitaError(f"{metadata} line {line}: expected <file>|<transcript> (or LJSpeech's "
                            f"<id>|<transcript>|<normalized transcript>), found {len(row)} column(s)")
        name = row[0].strip()
        path = find_audio(name)
        if path is None:
            raise VitaError(f"{metadata} line {line} names {name!r}, but there is no such audio file")
        entries.append(Entry(name, path, row[-1], speaker_of(name)))
    return entries


def _existing(*candidates: str) -> str | None:
    return next((p for p in candidates if os.path.isfile(p)), None)


def scan_ljspeech(cfg: Config) -> list[Entry]:
    _need_folder(cfg, os.path.join("LJSpeech-1.1", "wavs"), LJSPEECH_LAYOUT)
    metadata = os.path.join(cfg.corpus.root, "LJSpeech-1.1", "metadata.csv")
    if os.path.isdir(os.path.dirname(metadata)) and not os.path.isfile(metadata):
        raise VitaError(f"{os.path.dirname(metadata)} has no metadata.csv (LJSpeech's transcripts: "
                        f"<id>|<transcript>|<normalized transcript> lines)")
    dataset = _open_dataset(cfg, "LJSpeech", lambda: LJSPEECH(cfg.corpus.root, download=cfg.corpus.download))
    wavs = str(dataset._path)  # torchaudio 2.11's LJSPEECH has no get_metadata: its parsed metadata.csv
    return _metadata_entries(dataset._flist, metadata,
                             lambda name: _existing(os.path.join(wavs, f"{name}.wav")), lambda name: "LJ")


def scan_folder(cfg: Config) -> list[Entry]:
    root = cfg.corpus.root
    if not os.path.isdir(root):
        raise VitaError(f"corpus.root={root}: no such folder")
    metadata = os.path.join(root, "metadata.csv")
    if not os.path.isfile(metadata):
        raise VitaError(f"corpus.root={root}: no metadata.csv ({METADATA_FORMAT}: the transcripts)")
    with open(metadata, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE))
    top_speaker = os.path.basename(os.path.abspath(root))
    return _metadata_entries(
        rows, metadata, lambda name: _existing(os.path.join(root, name), os.path.join(root, f"{name}.wav")),
        lambda name: Path(name).parts[0] if len(Path(name).parts) > 1 else top_speaker)


SCANNERS = {"librispeech": scan_librispeech, "libritts": scan_libritts, "ljspeech": scan_ljspeech,
            "folder": scan_folder}


def scan_corpus(cfg: Config) -> list[Entry]:
    """Every utterance of the corpus that ``cfg.corpus`` names, in the corpus's own order."""
    entries = SCANNERS[cfg.corpus.kind](cfg)
    if not entries:
        raise VitaError(f"corpus.root={cfg.corpus.root}: no utterances found for corpus.kind={cfg.corpus.kind}"
                        + (f" (corpus.subsets={cfg.corpus.subsets})" if cfg.corpus.subsets else ""))
    return entries


# ---------------------------------------------------------------------------------------------
# 2. the cache


def _file_key(entry: Entry, root: str) -> list:
    try:
        st = os.stat(entry.path)
        size, mtime = st.st_size, st.st_mtime_ns
    except OSError:  # a broken link: reading it will fail and be counted
        size = mtime = -1
    return [os.path.relpath(entry.path, root), size, mtime, entry.uid, entry.speaker, entry.text]


def real_corpus_path(cfg: Config, entries: list[Entry] | None = None) -> str:
    """Where this corpus is cached: a hash of the corpus section, the sample rate and the file
    list (scanned here unless ``entries`` are given)."""
    entries = scan_corpus(cfg) if entries is None else entries
    section = {k: v for k, v in asdict(cfg.corpus).items() if k != "download"}  # changes no utterance
    key = json.dumps({"corpus": section, "sample_rate": cfg.audio.sample_rate, "version": CACHE_VERSION,
                      "files": [_file_key(e, cfg.corpus.root) for e in entries]}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    return os.path.join(cfg.cache_dir, f"{cfg.corpus.kind}-{digest}.npz")


def load_real_corpus(cfg: Config, log=print) -> Corpus:
    """The corpus ``cfg.corpus`` names, from the cache, or read from its folder and cached."""
    entries = scan_corpus(cfg)
    return load_cached(real_corpus_path(cfg, entries), lambda: read_corpus(cfg, entries, log),
                       what=f"the {cfg.corpus.kind} corpus", log=log)


# ---------------------------------------------------------------------------------------------
# 3 and 4. read the audio; speakers and splits


def assign_splits(uids: list[str], n_val: int, n_test: int) -> list[str]:
    """"train" / "val" / "test" for each id: the ``n_val`` ids first in the order of their SHA-1
    are val, the next ``n_test`` test. The same ids always get the same splits."""
    order = sorted(range(len(uids)), key=lambda i: (hashlib.sha1(uids[i].encode()).hexdigest(), uids[i]))
    splits = ["train"] * len(uids)
    for rank, i in enumerate(order[:n_val + n_test]):
        splits[i] = "val" if rank < n_val else "test"
    return splits


class _Reading:
    """What reading the files kept, skipped and dropped, for the summary line."""

    def __init__(self, n_files: int, max_failed_share: float):
        self.kept: list[tuple[Entry, str, np.ndarray]] = []  # entry, text, int16 audio [N]
        self.too_long = self.empty = 0
        self.failed: list[str] = []  # one line each
        self.dropped: Counter = Counter()
        self.n_files, self.max_failed_share = n_files, max_failed_share

    def fail(self, problem: str, root: str) -> None:
        self.failed.append(problem)
        if len(self.failed) > self.max_failed_share * self.n_files:
            raise VitaError(f"corpus.root={root}: {len(self.failed)} of its {self.n_files} audio files "
                            f"cannot be read, more than corpus.max_failed_share={self.max_failed_share}; "
                            f"the first: {self.failed[0]}")

    def summary(self, cfg: Config) -> str:
        more = "; ..." if len(self.failed) > 3 else ""
        first = f" ({'; '.join(self.failed[:3])}{more})" if self.failed else ""
        return (f"skipped {self.too_long} longer than corpus.max_seconds={cfg.corpus.max_seconds:g}, "
                f"{self.empty} with no text left in corpus.alphabet, {len(self.failed)} unreadable{first}")


def read_corpus(cfg: Config, entries: list[Entry], log=print) -> Corpus:
    """Read ``entries``' audio and transcripts into a Corpus (steps 3 and 4 of the module)."""
    c, rate = cfg.corpus, cfg.audio.sample_rate
    reading = _Reading(len(entries), c.max_failed_share)
    for entry in tqdm(entries, desc=f"reading {c.kind}", unit="file", disable=None, leave=False):
        text, dropped = normalize_transcript(entry.text, c.alphabet)
        reading.dropped.update(dropped)
        if not text:
            reading.empty += 1
            continue
        try:
            wav = read_audio(entry.path, rate)  # [N] float32
        except MissingExtra:
            raise
        except VitaError as e:
            reading.fail(str(e), c.root)
            continue
        if len(wav) > c.max_seconds * rate:
            reading.too_long += 1
            continue
        reading.kept.append((entry, text, np.round(wav * 32767).astype(np.int16)))
    kept = reading.kept
    if len(kept) <= c.n_val + c.n_test:
        raise VitaError(f"corpus.root={c.root}: {len(kept)} usable utterances, too few for corpus.n_val="
                        f"{c.n_val} + corpus.n_test={c.n_test} and a training split; {reading.summary(cfg)}")
    names = sorted({entry.speaker for entry, _, _ in kept})
    number = {name: s for s, name in enumerate(names)}
    corpus = Corpus.from_wavs([text for _, text, _ in kept], [number[e.speaker] for e, _, _ in kept],
                              assign_splits([e.uid for e, _, _ in kept], c.n_val, c.n_test),
                              [wav for _, _, wav in kept], names)
    log(f"read {len(kept)} of {len(entries)} {c.kind} utterances from {c.root} "
        f"({corpus.hours() * 60:.1f} min, {len(names)} speakers, "
        f"{len(corpus.indices('train'))} train / {c.n_val} val / {c.n_test} test); {reading.summary(cfg)}")
    log(f"transcripts: {describe_dropped(reading.dropped)}")
    return corpus
