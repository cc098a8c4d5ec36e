"""Stage 0: train the audio tokenizer (codec) and the judge ASR, from scratch.

VITA-Audio starts from GLM-4-Voice's pretrained tokenizer; vita-mini has to make its own, so this
stage comes before the paper's four. Both models read the same log-mel batches and have separate
weights; their losses are added, which trains them side by side in one loop:

    loss = codec (mel L1 + CTC on the tokens + VQ commitment) + judge (CTC on augmented log-mel)
           + judge.decoded_weight * judge (CTC on the codec's decoded log-mel, detached)
           [+ speaker_contrast, with codec.voice=reference]

The last term is ours: the judge later scores speech that comes out of the codec's decoder, so
it learns to hear that too (without it, it misheard 7 of the 72 recorded spoken-QA answers from
their own codes; tutorials/00_speech_and_tokens.md).

After training it reports what a tokenizer is judged by and saves it as ``metrics.json``:
codebook usage (perplexity, share of codes used), mel reconstruction error, the codec's own CER
(CTC head on the tokens), the judge's CER on validation audio and on *resynthesized* audio
(encode -> decode -> Griffin-Lim -> judge), and how far the tokens of one sentence move when
another voice speaks it (``voice_distance``). A few original/resynthesized WAV pairs go to
``samples/`` so you can listen to what the tokens keep.

With ``codec.voice=reference`` the decoder is told the voice by the speaker encoder
(audio/speaker.py), trained here with the codec. Each utterance's condition is computed from
*another* utterance of the same speaker (from the same split when it has one, else from the
training split; the utterance itself only for a speaker with no other), cut to
``codec.reference_seconds``: a reference that shared the words being reconstructed would let the
decoder read them from it instead of from the tokens. Training draws a new reference each time
(seeded by the batch, so a resumed run draws the same ones); validation and the report take a
fixed one. One more term joins the loss, ``speaker_contrast`` (audio/speaker.py) on the
embeddings of each utterance and of its reference, so the encoder learns early which recordings
share a voice. The report adds how alike the embeddings of two recordings are, by the same
speaker and by two different ones.
"""

from __future__ import annotations

import os
import time
from bisect import bisect_left
from collections import defaultdict
from dataclasses import asdict
from itertools import combinations

import numpy as np
import torch

from vita_mini.audio.codec import pad_mels
from vita_mini.audio.ctc import greedy_decode
from vita_mini.audio.speaker import speaker_contrast
from vita_mini.audio.features import LogMel
from vita_mini.audio.vq import codebook_usage
from vita_mini.audio.wav import write_wav
from vita_mini.config import Config
from vita_mini.data.corpus import Corpus, load_corpus, speak
from vita_mini.errors import VitaError
from vita_mini.eval.metrics import cer, edit_distance
from vita_mini.runs import AudioModels, stage_name
from vita_mini.train.loop import decay_groups


class Stage0Task:
    """Stage 0 for the shared loop and skeleton (train/run_stage.py)."""

    stage, name = 0, stage_name(0)
    config_sections = ["seed", "corpus", "world", "synth", "audio", "codec", "judge", "stage0"]  # to resume

    @classmethod
    def build(cls, cfg: Config, stage: int, device: torch.device, log=print) -> Stage0Task:
        corpus = load_corpus(cfg, log)
        n_speakers = int(corpus.speakers.max()) + 1 if len(corpus) else 0
        if cfg.codec.voice == "id" and n_speakers > cfg.codec.n_voices:  # one decoder voice each
            raise VitaError(f"corpus has {n_speakers} speakers but codec.n_voices={cfg.codec.n_voices}: use "
                            f"codec.voice=reference (a voice from a recording) or codec.n_voices={n_speakers}")
        log(f"corpus: {len(corpus.indices('train'))} train / {len(corpus.indices('val'))} val utterances, "
            f"{corpus.hours('train') * 60:.1f} min of training speech")
        return cls(cfg, corpus)

    def __init__(self, cfg: Config, corpus: Corpus):
        self.cfg, self.corpus = cfg, corpus
        torch.manual_seed(cfg.seed)  # initial weights depend on the seed only
        self.model = AudioModels(cfg)
        logmel = LogMel(cfg.audio)
        if cfg.corpus.kind == "toy":
            with torch.no_grad():  # [n_mels, F_u] per utterance, computed once, kept on the CPU
                self.mels = [logmel(torch.from_numpy(corpus.wav(u))[None])[0] for u in range(len(corpus))]
        else:  # hours of real speech: 32 kB of log-mel a second would not fit in memory
            self.mels = MelsOnDemand(corpus, logmel)
        self.train_ids = corpus.indices("train")
        self.val_ids = corpus.indices("val")
        self.n_train = len(self.train_ids)
        frames = (corpus.offsets[1:] - corpus.offsets[:-1]) // cfg.audio.hop_length  # [U] (LogMel's)
        self.lengths = [int(frames[u]) for u in self.train_ids]  # for length buckets
        self.by_voice = defaultdict(list)  # (split, speaker) -> its utterances, ascending
        for u in range(len(corpus)):
            self.by_voice[corpus.splits[u], corpus.speakers[u]].append(u)

    def param_groups(self) -> list[dict]:
        return decay_groups(self.model)

    def batch(self, utterances: list[int], device: torch.device, draw: bool = False):
        """(mel, frames, texts, the decoder's condition: ``voices``) of these utterances."""
        mel, frames = pad_mels([self.mels[u] for u in utterances], self.cfg.codec.downsample)
        return (mel.to(device), frames.to(device), [self.corpus.texts[u] for u in utterances],
                self.voices(utterances, device, draw))

    def voices(self, utterances: list[int], device: torch.device, draw: bool = False) -> torch.Tensor:
        """Voice ids [B] (codec.voice=id), or speaker embeddings [B, C] of another utterance of each
        one's speaker (reference; a random one if ``draw``), with gradients when they are enabled."""
        if self.cfg.codec.voice == "id":
            return torch.as_tensor(self.corpus.speakers[utterances], dtype=torch.long).to(device)
        # drawn from a generator seeded by the batch itself: a resumed run draws the same, and
        # torch's generator (VQ restarts, the judge's augmentation) runs as in a voice-id run
        rng = np.random.default_rng([self.cfg.seed % 2**32, *utterances]) if draw else None
        return self.embed([self.reference_of(u, rng) for u in utterances], device)

    def reference_of(self, u: int, rng: np.random.Generator | None = None) -> int:
        """Another utterance by u's speaker, from u's split, else from the training split, else u:
        the first after u (cyclic), or one drawn by ``rng``."""
        speaker = self.corpus.speakers[u]
        for pool in (self.by_voice[self.corpus.splits[u], speaker], self.by_voice["train", speaker]):
            j = bisect_left(pool, u)  # u's place in the pool: pool[j] is u, or the first after it
            has_u = j < len(pool) and pool[j] == u
            n = len(pool) - has_u  # the others
            if n:
                k = int(rng.integers(n)) if rng is not None else j % n  # k-th of the others
                return pool[k + (has_u and k >= j)]
        return u

    def embed(self, utterances: list[int], device: torch.device) -> torch.Tensor:
        """Speaker embeddings [B, C] of these utterances, each cut to codec.reference_seconds."""
        n = self.model.codec.reference_frames
        mel, frames = pad_mels([self.mels[u][:, :n] for u in utterances], self.cfg.codec.downsample)
        return self.model.codec.speaker(mel.to(device), frames.to(device))

    def contrast(self, utterances: list[int], references: torch.Tensor, device: torch.device) -> torch.Tensor:
        """The speaker encoder's own loss (audio/speaker.py): the embedding of each utterance and
        that of its reference [B, C] (the same speaker) together, the other speakers' apart."""
        speakers = self.corpus.speakers[utterances + utterances]
        same = torch.from_numpy(speakers[:, None] == speakers[None, :]).to(device)  # [2B, 2B]
        return speaker_contrast(torch.cat([references, self.embed(utterances, device)]), same)

    def loss(self, indices: list[int], device: torch.device) -> dict:
        utterances = [self.train_ids[i] for i in indices]
        mel, frames, texts, voices = self.batch(utterances, device, draw=True)
        codec = self.model.codec.training_loss(mel, frames, texts, voices)
        judge = self.model.judge.training_loss(mel, frames, texts)
        loss = codec["loss"] + judge["loss"]
        out = {k: v for k, v in codec.items() if k not in ("loss", "codes", "n_tokens", "recon")}
        if self.cfg.codec.voice == "reference":
            contrast = self.contrast(utterances, voices, device)
            loss = loss + contrast
            out["speaker_contrast"] = contrast.detach()
        if self.cfg.judge.decoded_weight > 0:
            # the judge also learns to hear the codec's decoded mel: speech-to-speech answers
            # reach it that way (codes -> decoded mel -> Griffin-Lim -> log-mel)
            decoded = self.model.judge.training_loss(codec["recon"], frames, texts)
            loss = loss + self.cfg.judge.decoded_weight * decoded["loss"]
            out["judge_decoded_ctc"] = decoded["judge_ctc"]
        out.update(judge_ctc=judge["judge_ctc"], loss=loss)
        return out

    @torch.no_grad()
    def evaluate(self, device: torch.device, batch_size: int = 32) -> dict:
        """Validation without Griffin-Lim: fast enough to run during training."""
        codec, judge = self.model.codec, self.model.judge
        refs, codec_hyps, judge_hyps, all_codes, l1_sum, l1_n = [], [], [], [], 0.0, 0
        for start in range(0, len(self.val_ids), batch_size):
            mel, frames, texts, voices = self.batch(self.val_ids[start:start + batch_size], device)
            n_tokens = frames // codec.cfg.downsample
            quantized, codes, _ = codec.quantize(mel, n_tokens)
            codec_hyps += greedy_decode(codec.ctc_logits(quantized), n_tokens, codec.alphabet)
            judge_hyps += judge.transcribe_mel(mel, frames)
            recon = codec.decode_mel(codes, voices).float()
            for i, n in enumerate(frames.tolist()):
                l1_sum += (recon[i, :, :n] - mel[i, :, :n]).abs().sum().item()
                l1_n += n * mel.shape[1]
                all_codes.append(codes[i, :n_tokens[i]].cpu())
            refs += texts
        perplexity, used = codebook_usage(torch.cat(all_codes), codec.cfg.codebook_size)
        return {"codec_cer": cer(refs, codec_hyps), "judge_cer": cer(refs, judge_hyps),
                "mel_l1": l1_sum / l1_n, "perplexity": perplexity, "codebook_used": used}

    def summary(self) -> str:
        n_codec = sum(p.numel() for p in self.model.codec.parameters())
        n_judge = sum(p.numel() for p in self.model.judge.parameters())
        return (f"codec: {n_codec / 1e6:.2f}M parameters, {self.model.codec.token_hz:g} tokens/s, "
                f"{self.cfg.codec.codebook_size} codes; judge: {n_judge / 1e6:.2f}M parameters")

    def report(self, device: torch.device, folder: str) -> dict:
        """Resynthesis through the judge (with WAV pairs in ``folder``/samples) and voice distance."""
        metrics = resynthesis_report(self, device, os.path.join(folder, "samples"))
        if self.cfg.corpus.kind == "toy":  # it speaks the sentences in the synthesizer's voices
            metrics["voice_distance"] = voice_distance(self, device)
        if self.cfg.codec.voice == "reference":
            metrics.update(speaker_similarity(self, device))
        return metrics

    def format_report(self, m: dict) -> str:
        lines = ["stage 0 results (validation split):",
                 f"  codebook: perplexity {m['perplexity']:.1f} of {self.cfg.codec.codebook_size}, "
                 f"{m['codebook_used'] * 100:.1f}% of codes used",
                 f"  mel reconstruction L1: {m['mel_l1']:.3f} (normalized log-mel units)",
                 f"  codec CER (CTC head on tokens): {m['codec_cer'] * 100:.2f}%",
                 f"  judge CER on validation audio: {m['judge_cer'] * 100:.2f}%",
                 f"  judge CER on resynthesized audio: {m['resynth_judge_cer'] * 100:.2f}%",
                 *([f"  voice distance (same sentence, two voices; 0 = same tokens): {m['voice_distance']:.2f}"]
                   if "voice_distance" in m else []),
                 *([f"  speaker embeddings, cosine of two recordings: same speaker {m['speaker_same']:.2f}, "
                    f"two speakers {m['speaker_other']:.2f}"] if "speaker_same" in m else []),
                 f"  wall time (corpus, training, evaluation): {m['wall_seconds']:.0f} s"]
        for ex in m["examples"][:2]:
            lines.append(f"  e.g. {ex['text']!r} -> resynth -> judge -> {ex['judge_on_resynth']!r}")
        return "\n".join(lines)


class MelsOnDemand:
    """``mels[u]``: the log-mel [n_mels, F_u] of corpus utterance u, computed when a batch asks
    for it (a real corpus; the toy one keeps them all, computed once)."""

    def __init__(self, corpus: Corpus, logmel: LogMel):
        self.corpus, self.logmel = corpus, logmel

    def __getitem__(self, u: int) -> torch.Tensor:
        with torch.no_grad():
            return self.logmel(torch.from_numpy(self.corpus.wav(u))[None])[0]


@torch.no_grad()
def resynthesis_report(task: Stage0Task, device: torch.device, sample_dir: str,
                       n_samples: int = 4) -> dict:
    """Judge CER on encode -> decode -> Griffin-Lim audio; writes original/resynth WAV pairs."""
    codec, judge = task.model.codec, task.model.judge
    refs, hyps = [], []
    start = time.perf_counter()
    for k, u in enumerate(task.val_ids):
        wav = torch.from_numpy(task.corpus.wav(u))
        resynth = codec.decode(codec.encode(wav.to(device)), task.voices([u], device))
        refs.append(task.corpus.texts[u])
        hyps.append(judge.transcribe(resynth.to(device)))
        if k < n_samples:
            write_wav(os.path.join(sample_dir, f"{k}_original.wav"), wav)
            write_wav(os.path.join(sample_dir, f"{k}_resynth.wav"), resynth)
    return {"resynth_judge_cer": cer(refs, hyps),
            "resynth_seconds_per_utt": (time.perf_counter() - start) / max(1, len(refs)),
            "examples": [{"text": r, "judge_on_resynth": h} for r, h in zip(refs[:n_samples], hyps)]}


@torch.no_grad()
def speaker_similarity(task: Stage0Task, device: torch.device) -> dict:
    """Mean cosine similarity of the speaker embeddings of two validation recordings, by the same
    speaker (``speaker_same``) and by two different ones (``speaker_other``; nan with one voice)."""
    val = task.val_ids
    e = torch.nn.functional.normalize(task.embed(val, device).float(), dim=-1)  # [U, C]
    cosine = e @ e.T  # [U, U]
    speakers = task.corpus.speakers[val]
    same = torch.from_numpy(speakers[:, None] == speakers[None, :])  # [U, U]
    pairs = ~torch.eye(len(val), dtype=torch.bool)
    return {"speaker_same": cosine[same & pairs].mean().item(),
            "speaker_other": cosine[~same].mean().item()}


@torch.no_grad()
def voice_distance(task: Stage0Task, device: torch.device, n_sentences: int = 12) -> float:
    """How much the tokens of one sentence change with the voice that speaks it.

    Each of the first ``n_sentences`` validation sentences is spoken by every voice and encoded;
    the result is the mean, over all pairs of voices, of edit distance / longer length of the two
    code sequences. 0 means voice-independent tokens; near 1, unrelated ones. Part of it is
    timing, not timbre: voices speak at different rates, so their sequences differ in length."""
    codec = task.model.codec
    distances = []
    for text in [task.corpus.texts[u] for u in task.val_ids[:n_sentences]]:
        codes = [codec.encode(torch.from_numpy(speak(text, v, asdict(task.cfg.synth)) / 32767.0)
                              .float().to(device)).tolist() for v in range(task.cfg.synth.n_speakers)]
        distances += [edit_distance(a, b) / max(len(a), len(b)) for a, b in combinations(codes, 2)]
    return sum(distances) / max(1, len(distances))
