"""The decoder's voice from a short recording (codec.voice=reference): the speaker encoder, the
codec's two kinds of voice, a few steps of stage 0 with references, and generate.py's lines."""

import os

import numpy as np
import pytest
import torch

import generate
from vita_mini.audio.codec import AudioCodec
from vita_mini.audio.features import SILENCE, LogMel
from vita_mini.audio.speaker import SpeakerEncoder, speaker_contrast
from vita_mini.audio.wav import write_wav
from vita_mini.config import get_config
from vita_mini.data.corpus import speak_all
from vita_mini.data.synth import synthesize
from vita_mini.errors import VitaError
from vita_mini.runs import checkpoint_path, load_audio_models
from vita_mini.train.loop import train
from vita_mini.train.stage0 import Stage0Task

# the state_dict keys of the tiny codec with codec.voice=id, as every checkpoint before the
# reference option has them: the id path must keep them (and its weights and outputs) unchanged
ID_CODEC_KEYS = [
    "logmel.mel.spectrogram.window", "logmel.mel.mel_scale.fb", "mel_to_wav.inverse_mel.fb",
    "mel_to_wav.griffin_lim.window", "encoder.0.0.weight", "encoder.0.0.bias", "encoder.0.2.weight",
    "encoder.0.2.bias", "encoder.0.4.weight", "encoder.0.4.bias", "encoder.1.norm.weight",
    "encoder.1.norm.bias", "encoder.1.conv.weight", "encoder.1.conv.bias", "encoder.1.proj.weight",
    "encoder.1.proj.bias", "encoder.2.weight", "encoder.2.bias", "vq.codebook", "vq.ema_count",
    "vq.ema_sum", "vq.initialized", "ctc_head.0.weight", "ctc_head.0.bias", "ctc_head.2.weight",
    "ctc_head.2.bias", "decoder_in.weight", "decoder_in.bias", "voice.weight",
    "decoder.0.norm.weight", "decoder.0.norm.bias", "decoder.0.conv.weight", "decoder.0.conv.bias",
    "decoder.0.proj.weight", "decoder.0.proj.bias", "decoder.1.0.weight", "decoder.1.0.bias",
    "decoder.1.2.weight", "decoder.1.2.bias", "decoder.2.weight", "decoder.2.bias"]


def quiet(*_):
    pass


def mel_of(text: str, speaker: int) -> torch.Tensor:
    """log-mel [n_mels, F] of a synthesized sentence."""
    cfg = get_config("tiny")
    return LogMel(cfg.audio)(torch.from_numpy(synthesize(text, speaker).wav)[None])[0]


def test_speaker_encoder_shapes_and_norm():
    encoder = SpeakerEncoder(n_mels=80, channels=48, downsample=4)
    e = encoder(torch.randn(3, 80, 120), torch.tensor([120, 64, 36]))
    assert e.shape == (3, 48)  # one vector per recording, whatever its length
    assert torch.allclose(e.mean(-1), torch.zeros(3), atol=1e-5)  # layer-normed (at init: no affine yet)
    assert torch.allclose(e.std(-1, unbiased=False), torch.ones(3), atol=1e-3)
    assert encoder(torch.randn(1, 80, 57)).shape == (1, 48)  # no frames: all real


def test_padding_does_not_change_an_embedding():
    """A batch pads its shorter recordings with silence (stage0.py): how much does not matter."""
    encoder = SpeakerEncoder(n_mels=80, channels=48, downsample=4)
    mel = mel_of("ana lives in rome", 1)[:, :160][None]  # [1, 80, 160]
    some, more = (torch.cat([mel, torch.full((1, 80, n), SILENCE)], dim=-1) for n in (40, 240))
    frames = torch.tensor([160])
    assert torch.allclose(encoder(some, frames), encoder(more, frames), atol=1e-5)


def test_mean_pooling_forgets_the_order_and_the_length():
    """What is said lies in the order of the frames: swapping the two halves of a recording (the
    words in another order) or playing it twice (more words) leaves its embedding as it was, up
    to the few frames at the seams that the convolutions see across."""
    encoder = SpeakerEncoder(n_mels=80, channels=48, downsample=4)
    mel = mel_of("bob has a cat and ana has a dog", 2)
    mel = mel[:, :mel.shape[-1] // 8 * 8]  # two halves of whole 40 ms steps
    half = mel.shape[-1] // 2
    swapped = torch.cat([mel[:, half:], mel[:, :half]], dim=-1)
    twice = torch.cat([mel, mel], dim=-1)
    e, e_swapped, e_twice = (encoder(m[None])[0] for m in (mel, swapped, twice))
    cosine = torch.nn.functional.cosine_similarity
    assert cosine(e, e_swapped, dim=0) > 0.99 and cosine(e, e_twice, dim=0) > 0.99


def test_speaker_contrast_rewards_recordings_of_one_speaker_that_lie_together():
    a, b = torch.eye(4)[:2] * 3  # two directions
    embeddings = torch.stack([a, a, b, b])  # [4, C]
    grouped = torch.tensor([0, 0, 1, 1])
    mixed = torch.tensor([0, 1, 0, 1])
    same = lambda speakers: speakers[:, None] == speakers[None, :]  # noqa: E731
    assert speaker_contrast(embeddings, same(grouped)) < 0.01 < 5 < speaker_contrast(embeddings, same(mixed))
    lonely = torch.tensor([0, 0, 1, 2])  # speakers 1 and 2 have no other recording: their rows do not count
    assert speaker_contrast(embeddings, same(lonely)) < 0.01
    assert speaker_contrast(embeddings, same(torch.arange(4))) == 0


def test_voice_id_codec_keeps_its_keys_and_refuses_a_reference():
    cfg = get_config("tiny")
    codec = AudioCodec(cfg.codec, cfg.audio).eval()
    assert list(codec.state_dict()) == ID_CODEC_KEYS
    codes = torch.randint(0, cfg.codec.codebook_size, (5,))
    with pytest.raises(ValueError, match="knows only voice ids"):
        codec.decode(codes, torch.randn(16000) * 0.1)


def test_reference_codec_takes_a_waveform_or_its_embedding():
    cfg = get_config("tiny", ["codec.voice=reference"])
    codec = AudioCodec(cfg.codec, cfg.audio).eval()
    keys = list(codec.state_dict())
    assert "voice.weight" not in keys and any(k.startswith("speaker.") for k in keys)
    reference = torch.from_numpy(synthesize("hugo likes black cats", 3).wav)
    embedding = codec.speaker_embedding(reference)
    assert embedding.shape == (1, cfg.codec.channels)
    # only the first reference_seconds count
    longer = torch.cat([reference, torch.randn(3 * 16000) * 0.1, reference])
    assert torch.equal(codec.speaker_embedding(longer[:codec.reference_samples]), codec.speaker_embedding(longer))
    codes = torch.randint(0, cfg.codec.codebook_size, (6,))
    assert codec.decode_mel(codes, reference).shape == (cfg.audio.n_mels, 24)
    assert torch.equal(codec.decode_mel(codes, reference), codec.decode_mel(codes, embedding))
    assert codec.decode_mel(codes[None].expand(2, 6), embedding).shape == (2, cfg.audio.n_mels, 24)
    with pytest.raises(ValueError, match="not a voice id"):
        codec.decode(codes, 0)
    with pytest.raises(ValueError, match="at least 0.5 s"):
        codec.speaker_embedding(reference[:4000])


def test_tiny_stage0_with_reference_voices_trains_and_decodes(tmp_path):
    cfg = get_config("tiny", ["codec.voice=reference", "stage0.steps=4", "stage0.batch_size=4"])
    cfg.run_dir = str(tmp_path / "run")
    texts = ["ana has a cat", "bob lives in rome", "the dog eats fish", "we walk to the sea"]
    corpus = speak_all([t for t in texts for _ in range(3)], [v for _ in texts for v in range(3)],
                       ["val" if t == texts[-1] else "train" for t in texts for _ in range(3)], cfg, quiet)
    task = Stage0Task(cfg, corpus)
    for u in range(len(corpus)):  # each utterance is voiced by another one of its speaker
        r = task.reference_of(u)
        assert r != u and corpus.speakers[r] == corpus.speakers[u] and corpus.texts[r] != corpus.texts[u]
    rng = np.random.default_rng(0)
    assert len({task.reference_of(0, rng) for _ in range(20)}) == 2  # both others, drawn
    before = [p.detach().clone() for p in task.model.codec.speaker.parameters()]
    assert train(task, cfg, cfg.stage0, checkpoint_path(cfg, 0), torch.device("cpu"), log=quiet).finished
    after = list(task.model.codec.speaker.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after))  # trained with the codec

    codec, _ = load_audio_models(cfg)
    speech, voice = str(tmp_path / "speech.wav"), str(tmp_path / "voice.wav")
    write_wav(speech, corpus.wav(0))
    write_wav(voice, corpus.wav(4))
    out = str(tmp_path / "out.wav")
    common = ["--preset", "tiny", "--run-dir", cfg.run_dir, "--device", "cpu", "codec.voice=reference"]
    assert generate.main(["--task", "resynth", "--audio", speech, "--voice-wav", voice, "--out", out, *common]) == 0
    codes = codec.encode(torch.from_numpy(corpus.wav(0)))
    assert os.path.getsize(out) == 44 + 2 * len(codes) * codec.samples_per_token  # 16-bit PCM
    # tts and chat without --voice-wav speak in the reports' voice: the assistant's, as an embedding
    assert generate.decoder_voice(codec, None, cfg, torch.device("cpu")).shape == (1, cfg.codec.channels)


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    """Input speech and voice references, good and bad, as WAV files."""
    folder = tmp_path_factory.mktemp("voices")
    files = {"speech": synthesize("ana lives in rome", 1).wav, "short": torch.randn(4000) * 0.1,
             "silent": torch.zeros(16000),
             "late": torch.cat([torch.zeros(4 * 16000), torch.randn(16000) * 0.1])}  # sound after 4 s
    for name, wav in files.items():
        write_wav(str(folder / f"{name}.wav"), wav)
    return {name: str(folder / f"{name}.wav") for name in files}


@pytest.mark.parametrize("flags, overrides, message", [
    (["--voice-wav", "{short}"], ["codec.voice=reference"],
     "audio file '{short}' is 0.25 s long; a voice reference needs at least 0.5 s"),
    (["--voice-wav", "{silent}"], ["codec.voice=reference"], "audio file '{silent}' is silent"),
    (["--voice-wav", "{late}"], ["codec.voice=reference"],
     "audio file '{late}' is silent in its first 3 s, the part a voice reference is taken from"),
    (["--voice-wav", "{speech}"], [], "--voice-wav {speech}: this run's decoder knows only voice ids"),
    (["--speaker", "2"], ["codec.voice=reference"],
     "--speaker 2: this run's decoder takes its voice from a recording (codec.voice=reference)"),
])
def test_generate_refuses_a_bad_voice_in_one_line(wavs, tmp_path, flags, overrides, message):
    flags = [f.format(**wavs) for f in flags]
    argv = ["--task", "resynth", "--audio", wavs["speech"], "--out", str(tmp_path / "o.wav"), *flags,
            "--preset", "tiny", "--run-dir", str(tmp_path / "no_run"), *overrides]
    with pytest.raises(VitaError) as error:  # before any model is loaded: there is none here
        generate.main(argv)
    assert str(error.value).startswith(message.format(**wavs))
    assert "\n" not in str(error.value)


def test_voice_wav_is_for_the_tasks_that_speak(wavs, tmp_path):
    with pytest.raises(VitaError, match="--voice-wav is for the tasks that speak"):
        generate.main(["--task", "judge", "--audio", wavs["speech"], "--voice-wav", wavs["speech"],
                       "--preset", "tiny", "--run-dir", str(tmp_path / "no_run")])
