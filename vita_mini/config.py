"""Configuration: plain dataclasses and the presets built from them.

Presets (``get_config(name)``):
    tiny   the tests: every stage in seconds on a CPU (it learns next to nothing)
    quick  a lecture (work in progress): aims at every stage and the evaluation suite within 15
           minutes on a 2-core CPU without AMX; today it takes about 26 (README, issue 16)
    toy    the tutorials' default: every stage in about an hour on a 2-core CPU
    small  one consumer GPU

Every field can be overridden from the command line with ``section.field=value``
(``codec.codebook_size=256``, ``seed=3``). The resolved config is printed by ``train.py`` and
saved as ``config.json`` beside every checkpoint.

``get_config`` checks the whole configuration before any work starts (config_checks.py): a
value that cannot make a model or a run is refused with one line per problem, each naming the
field as ``section.field=value`` and saying what would be valid.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field

from vita_mini.config_checks import validate_config
from vita_mini.errors import VitaError
from vita_mini.vocab import INTERLEAVES


@dataclass
class WorldConfig:
    """The toy world (vita_mini/data/world.py) and how much of it is spoken."""

    seed: int = 0
    n_people: int = 24  # each person has a city, a pet, a colour and a food
    n_general_sentences: int = 2800  # template sentences, besides the facts, for ASR/TTS
    text_only_share: float = 0.25  # people whose facts never appear in speech
    names_heard: bool = True  # their names do, in general sentences (world.py; chapter 3)
    max_chars: int = 40  # longest spoken sentence, in characters
    salad_share: float = 0.0  # share of general training sentences replaced by word salad
    n_val: int = 64  # utterances in the validation split
    n_test: int = 64  # utterances in the test split


@dataclass
class SynthConfig:
    """The numpy speech synthesizer (vita_mini/data/synth.py)."""

    char_seconds: float = 0.11  # mean duration of one character at rate 1.0
    lead_seconds: float = 0.25  # silence before the first character
    tail_seconds: float = 0.15  # silence after the last character
    snr_db: float = 35.0  # background noise level
    n_speakers: int = 6  # the first n of the built-in voices
    assistant_voice: int = 0  # the voice the model answers in (TTS targets use only this voice)
    assistant_share: float = 0.5  # share of train/val sentences spoken by the assistant voice
    assistant_copies: bool = True  # also speak every other train/val sentence in that voice
    backend: str = "numpy"  # "numpy" (deterministic, built in) or "espeak" (needs espeak-ng on PATH)


@dataclass
class CorpusConfig:
    """Which speech stage 0 and stage 1 learn from (data/real_corpora.py; chapter "Scaling up").

    ``toy`` is the synthesized world of ``world`` and ``synth``. The others read a published
    corpus in its own layout under ``root`` (nothing is downloaded unless ``download`` is true):
    ``librispeech`` and ``libritts`` (``subsets``: their folder names, comma-separated, such as
    train-clean-100), ``ljspeech`` (one voice), and ``folder`` (your recordings: WAV files and a
    ``metadata.csv`` of ``file|transcript`` lines). Transcripts are lowercased and kept to
    ``alphabet``, the characters the CTC heads spell (data/transcripts.py says what is mapped)."""

    kind: str = "toy"
    root: str = ""
    subsets: str = ""  # librispeech/libritts folder names, comma-separated; "" = the usual ones
    download: bool = False
    alphabet: str = " abcdefghijklmnopqrstuvwxyz"  # CTC labels (blank aside), in label order
    n_val: int = 64  # utterances held out (by a stable hash of their id) for validation
    n_test: int = 64  # and for the test reports
    max_seconds: float = 20.0  # longer recordings are skipped (and counted)
    max_failed_share: float = 0.5  # stop with one line if more of the files cannot be read


@dataclass
class AudioConfig:
    """Waveform and log-mel front end shared by the codec and the judge."""

    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400  # 25 ms
    hop_length: int = 160  # 10 ms -> 100 mel frames per second
    n_mels: int = 80
    griffin_lim_iters: int = 32


@dataclass
class CodecConfig:
    """The audio tokenizer: conv encoder -> VQ (+ CTC head) -> conv decoder (audio/codec.py)."""

    channels: int = 192
    n_blocks: int = 3  # residual conv blocks in the encoder and in the decoder
    downsample: int = 4  # mel frames per token: 100 Hz / 4 = 25 Hz tokens
    code_dim: int = 64
    codebook_size: int = 128  # small: fewer codes per sound, tokens closer to 'semantic'
    n_voices: int = 6  # decoder voice embeddings (>= synth.n_speakers)
    lifter: int = 20  # encoder reads log-mel smoothed to this many cepstral coefficients; 0 = off
    # what the decoder is told about the voice: "id" (a learned embedding per built-in voice,
    # the toy world) or "reference" (an embedding computed from a short recording of the
    # speaker, audio/speaker.py: any voice, including ones never heard in training)
    voice: str = "id"
    reference_seconds: float = 3.0  # the reference recording used for a voice, at most this long
    ema_decay: float = 0.99
    commitment: float = 0.25
    dead_code_threshold: float = 0.5  # EMA count below which a code is restarted
    ctc_weight: float = 1.0
    mel_weight: float = 1.0


@dataclass
class JudgeConfig:
    """The judge ASR, a small CTC recognizer over log-mel with its own weights (audio/judge.py)."""

    channels: int = 128
    n_blocks: int = 4
    downsample: int = 2  # 50 Hz output frames
    # weight of a second CTC loss on the codec's decoded log-mel (detached): the judge must also
    # hear decoded speech right, the way the paper's Whisper hears its vocoder (stage0.py)
    decoded_weight: float = 1.0


@dataclass
class TrainConfig:
    """One training run of the shared loop (train/loop.py)."""

    steps: int = 360
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.01
    betas: tuple = (0.9, 0.95)
    warmup_share: float = 0.03
    min_lr_share: float = 0.1  # cosine decays to this share of lr
    grad_clip: float = 1.0
    eval_every: int = 180
    checkpoint_every: int = 90
    log_every: int = 10
    precision: str = "auto"  # bf16 autocast where native (CUDA, CPUs with AMX), else fp32; or bf16, fp32
    length_buckets: bool = False  # batch items of similar length (less padding; stage 0 only)
    grad_accum: int = 1  # micro-batches per optimizer step (each batch_size // grad_accum items)


@dataclass
class LLMConfig:
    """The Qwen2-style decoder (model/llm.py). vocab_size is derived from the token space."""

    d_model: int = 192
    n_layers: int = 6
    n_heads: int = 6
    n_kv_heads: int = 6  # = n_heads: plain multi-head, the limit case of GQA (small groups 12 by 4)
    d_ff: int = 512
    rope_theta: float = 10000.0
    rms_eps: float = 1e-6
    max_seq_len: int = 512


@dataclass
class AlignmentDataConfig:
    """Stage 1's samples (vita_mini/data/alignment.py, data/samples.py): their mix, copy samples
    and input noise, and the text/audio interleave of every spoken answer (stages 1-4).

    The four mix_ shares are weights: data/samples.py ``mixed_order`` divides each by their sum,
    so they need not sum to one (at least one must be above zero)."""

    # the training interleave t1,a1,t2,a2,... of every spoken answer, stages 1-4: "boost" (this
    # default) or "balance" (1,4,3,8,4,10) or any list; checkpoints record it, and generate.py and
    # the evaluation suite run the mode that matches it by default (infer/schedule.py)
    ratio: tuple = (1, 10, 4, 10)
    mix_asr: float = 0.4  # share of stage-1 samples that are ASR (speech in, text out)
    mix_tts: float = 0.4  # ... TTS (text in, interleaved text + speech out)
    mix_text: float = 0.2  # ... text only (facts and questions about the world)
    mix_copy: float = 0.0  # ... text copy (word salad in, the same text out)
    n_copy: int = 3000  # distinct copy samples
    input_noise: float = 0.15  # stage 1: share of ASR answers' text inputs replaced by random letters


@dataclass
class MCTPConfig:
    """The MCTP cascade (model/mctp.py): light modules that write tokens from LLM states."""

    n_modules: int = 10  # stage 3's cascade (stage 2 trains one)


@dataclass
class MCTPDataConfig:
    """The sample mix of stages 2 and 3: stage 1's samples (train/stage1.py), other shares.

    The paper trains the modules on stage-1 data. We keep the data and change the shares: in
    Boost the modules write every audio code of a spoken answer, and ASR samples teach them only
    a few text tokens each. With stage 1's shares (0.4, 0.4, 0.2) Boost's TTS judge CER was 14.4%
    against Vanilla's 1.7%; with these, 2.3-2.7% (tutorials/02_mctp_and_modes.md). A section of its
    own, so that changing it never invalidates stage 1."""

    mix_asr: float = 0.1
    mix_tts: float = 0.8
    mix_text: float = 0.1
    mix_copy: float = 0.0


@dataclass
class SpokenQAConfig:
    """Stage 4: spoken question answering (data/spoken_qa.py) and how it trains (train/stage4.py).

    A section of its own, so that changing a stage-4 knob never invalidates stages 0-3."""

    train_voices: int = 3  # voices that speak each training question; another one speaks the test
    text_questions: bool = True  # also train every question written as text (generate.py --text)
    n_test_seen: int = 48  # test questions about facts heard in training, each in an unheard voice
    replay_share: float = 0.3  # share of stage-4 samples replayed from stage 1 (ASR, TTS, text);
    # the paper's 5% let the toy model forget TTS (judge CER 2.8% -> 37.8%, tutorial chapter 3)
    replay_asr: float = 0.4  # the replay's own mix, as weights (stage 1's shares by default)
    replay_tts: float = 0.4
    replay_text: float = 0.2
    mctp_lr_scale: float = 10.0  # the MCTP modules' learning rate, as a multiple of the LLM's
    mctp_grad_to_llm: bool = True  # the modules' losses reach the LLM through its hidden states


@dataclass
class Config:
    """Every setting of a run: the top-level fields and one section per part of the pipeline."""

    preset: str = "toy"
    seed: int = 1234
    run_dir: str = ""  # default: runs/<preset>
    cache_dir: str = "cache"  # synthesized corpora, shared by runs
    device: str = "auto"  # auto = cuda > mps > cpu
    num_threads: int = 0  # torch CPU threads; 0 = torch's default
    compile: bool = False  # torch.compile the models' blocks (train/compile.py; train.py --compile)
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    world: WorldConfig = field(default_factory=WorldConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    audio: AudioConfig = field(default_factory=AudioConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    # stage 0 of toy (and tiny) stays in fp32: its measured numbers (README) are fp32's
    stage0: TrainConfig = field(default_factory=lambda: TrainConfig(precision="fp32"))
    llm: LLMConfig = field(default_factory=LLMConfig)
    alignment_data: AlignmentDataConfig = field(default_factory=AlignmentDataConfig)
    stage1: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=1800, batch_size=16, lr=3e-3, eval_every=600, checkpoint_every=200))
    mctp: MCTPConfig = field(default_factory=MCTPConfig)
    mctp_data: MCTPDataConfig = field(default_factory=MCTPDataConfig)
    # stages 2-4 take small batches (4 samples = about one packed row): on the same samples, more
    # steps taught the modules far more (tutorials/02_mctp_and_modes.md, tutorials/03_speech_qa.md)
    stage2: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=2400, batch_size=4, lr=1e-3, eval_every=1200, checkpoint_every=400))
    stage3: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=900, batch_size=4, lr=3e-3, eval_every=450, checkpoint_every=150))
    spoken_qa: SpokenQAConfig = field(default_factory=SpokenQAConfig)
    stage4: TrainConfig = field(default_factory=lambda: TrainConfig(
        steps=800, batch_size=8, lr=5e-4, eval_every=400, checkpoint_every=100))

    def resolved_run_dir(self) -> str:
        return self.run_dir or f"runs/{self.preset}"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _tiny() -> Config:
    cfg = Config(preset="tiny")
    cfg.world = WorldConfig(n_people=8, n_general_sentences=120, max_chars=28, n_val=16, n_test=16)
    cfg.synth = SynthConfig(n_speakers=4)
    cfg.codec = CodecConfig(channels=48, n_blocks=1, code_dim=16, codebook_size=64, ema_decay=0.9)
    cfg.judge = JudgeConfig(channels=48, n_blocks=2)
    cfg.stage0 = TrainConfig(steps=40, batch_size=8, lr=3e-3, eval_every=20, checkpoint_every=20,
                             log_every=5, precision="fp32")
    cfg.llm = LLMConfig(d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128, max_seq_len=256)
    cfg.stage1 = TrainConfig(steps=20, batch_size=8, lr=3e-3, eval_every=10, checkpoint_every=10,
                             log_every=5)
    cfg.stage2 = TrainConfig(steps=10, batch_size=8, lr=1e-3, eval_every=5, checkpoint_every=5,
                             log_every=5)
    cfg.stage3 = TrainConfig(steps=10, batch_size=8, lr=1e-3, eval_every=5, checkpoint_every=5,
                             log_every=5)
    cfg.spoken_qa = SpokenQAConfig(train_voices=2, n_test_seen=8)
    cfg.stage4 = TrainConfig(steps=10, batch_size=8, lr=1e-3, eval_every=5, checkpoint_every=5,
                             log_every=5)
    return cfg


def _quick() -> Config:
    """Every stage, and the evaluation suite, within one lecture on a 2-core CPU: a smaller world
    (12 people, shorter sentences), a smaller codec and LLM, and fewer steps than ``toy``.

    Measured on a 2-core AMD EPYC without AMX (fp32), fresh clone: 17 min 48 s for stages 0-4
    and 98 s for the suite, over the 15 minutes aimed at (README "Which preset", issue 16);
    ASR 29.5%, TTS Vanilla 45.0%, spoken QA on seen facts 45.8% (S2T = S2S). Fewer steps
    (stage 0 360 x 20, stage 1 560, stage 3 200, stage 4 320 x 4) took 16 min 6 s and learned
    almost nothing (spoken QA 12.5%)."""
    cfg = Config(preset="quick")
    cfg.world = WorldConfig(n_people=12, n_general_sentences=900, max_chars=32, n_val=32, n_test=24)
    cfg.synth = SynthConfig(n_speakers=4)
    cfg.codec = CodecConfig(channels=128, n_blocks=2, code_dim=32, codebook_size=64, n_voices=4)
    cfg.judge = JudgeConfig()  # toy's judge: a smaller one (96 x 3) could not hear the speech
    cfg.stage0 = TrainConfig(steps=400, batch_size=24, lr=3e-3, eval_every=200, checkpoint_every=100,
                             precision="fp32", length_buckets=True)
    cfg.llm = LLMConfig(d_model=128, n_layers=4, n_heads=4, n_kv_heads=4, d_ff=384, max_seq_len=320)
    cfg.stage1 = TrainConfig(steps=800, batch_size=16, lr=3e-3, eval_every=400, checkpoint_every=200)
    cfg.stage2 = TrainConfig(steps=400, batch_size=4, lr=1e-3, eval_every=200, checkpoint_every=200)
    cfg.stage3 = TrainConfig(steps=240, batch_size=4, lr=3e-3, eval_every=120, checkpoint_every=120)
    cfg.spoken_qa = SpokenQAConfig(n_test_seen=24)
    cfg.stage4 = TrainConfig(steps=360, batch_size=4, lr=5e-4, eval_every=180, checkpoint_every=90)
    return cfg


def _toy() -> Config:
    return Config(preset="toy")


def _small() -> Config:
    """One consumer GPU (8-12 GB), hours, on real speech (tutorials/04_scaling_up.md says why
    each number changed from ``toy``; nothing here was measured on a GPU yet, README).

    * corpus: LibriTTS-R's train-clean-100 (about 54 h, 247 speakers, 24 kHz read speech with
      clean sentence-level transcripts: good for ASR and TTS alike) under ``corpus.root=data``;
      ``corpus.kind=librispeech`` or ``folder`` work the same way (``corpus.download=true``
      to fetch LibriTTS into ``data/``; LibriTTS-R is read when it is there instead). English
      letters and the apostrophe are the CTC alphabet.
    * codec: 1024 codes (real speech has far more distinct sounds than the toy synthesizer; the
      paper's GLM-4-Voice has 16384 at 12.5 Hz) at 25 Hz, and voices from a reference recording
      (hundreds of speakers, and any voice at generation time).
    * interleave [1, 10, 8, 10]: text is bytes here, not BPE tokens. A chunk of 10 audio tokens
      holds 8 codes (0.32 s at 25 Hz); with 4 bytes per chunk the voice may spend at least 80 ms
      on a character, and read speech runs at about 15 characters a second (67 ms): the audio
      would overtake the text. 8 bytes a chunk allow 40 ms (data/synth.py ``text_stays_ahead``).
    * LLM: 12 layers of 768 (about 77M parameters, GPT-2 small's shape) with grouped-query
      attention, 1024 positions (40 s of audio); ten MCTP modules of one layer each.
    * batches: gradient accumulation keeps the batch while a micro-batch fits in memory
      (``train.py`` prints the estimate before each stage); bf16 autocast on CUDA (precision auto).
    * stage 4: the toy world's spoken questions, spoken in the synthesizer's voices (the only
      spoken-QA data we can make here; a user's own spoken-QA folder is future work).
    """
    cfg = Config(preset="small")
    cfg.corpus = CorpusConfig(kind="libritts", root="data", subsets="train-clean-100",
                              alphabet=" abcdefghijklmnopqrstuvwxyz'", n_val=200, n_test=200,
                              max_seconds=20.0)
    cfg.world = WorldConfig(n_people=64, n_general_sentences=8000, max_chars=60, n_val=256,
                            n_test=256)
    cfg.codec = CodecConfig(channels=384, n_blocks=6, code_dim=128, codebook_size=1024,
                            voice="reference")
    cfg.judge = JudgeConfig(channels=384, n_blocks=6)
    cfg.stage0 = TrainConfig(steps=20000, batch_size=64, lr=1e-3, eval_every=2000,
                             checkpoint_every=1000, length_buckets=True)
    cfg.llm = LLMConfig(d_model=768, n_layers=12, n_heads=12, n_kv_heads=4, d_ff=2048,
                        max_seq_len=1024)
    cfg.alignment_data = AlignmentDataConfig(ratio=(1, 10, 8, 10))
    cfg.stage1 = TrainConfig(steps=30000, batch_size=64, grad_accum=4, lr=6e-4, eval_every=2000,
                             checkpoint_every=1000)
    cfg.stage2 = TrainConfig(steps=4000, batch_size=32, grad_accum=2, lr=1e-3, eval_every=1000,
                             checkpoint_every=1000)
    cfg.stage3 = TrainConfig(steps=6000, batch_size=32, grad_accum=2, lr=1e-3, eval_every=1000,
                             checkpoint_every=1000)
    cfg.spoken_qa = SpokenQAConfig(n_test_seen=128)
    cfg.stage4 = TrainConfig(steps=4000, batch_size=32, grad_accum=4, lr=2e-4, eval_every=1000,
                             checkpoint_every=500)
    return cfg


def _base() -> Config:
    """Several GPUs (one node of 8, or several nodes) for days, on real speech, under torchrun
    (train/distributed.py; README "Several GPUs"). Built on ``small``; nothing here was
    measured on GPUs (README says what was).

    * corpus: LibriTTS-R's two clean training sets, train-clean-100 and -360 (about 245 h and
      1150 speakers). Building the corpus once holds its audio in memory as 16-bit samples
      (about 28 GB here, on rank 0 only; train-other-500 would add 57 GB), so it stops there.
    * codec: 4096 codes at 25 Hz (GLM-4-Voice has 16384 at 12.5 Hz), wider and deeper.
    * LLM: 24 layers of 1024 with 16 query and 4 key/value heads (280M parameters), 2048
      positions (80 s of audio); ten MCTP modules of one layer each.
    * batches: ``batch_size`` is the global batch, the same whatever the number of GPUs. An LLM
      micro-batch is 4 rows of 2048 tokens (``grad_accum=16``): a decoder layer keeps about
      12.5 d_model + 4.3 d_ff floats a token for the backward pass (chapter 4), about 20 GB
      for 8192 tokens in fp32, less under bf16. The 16 micro-batches are one per rank on 16
      GPUs, two on 8, four on 4, so a run can move between machine sizes and continue exactly
      (train/distributed.py).
    """
    cfg = _small()
    cfg.preset = "base"
    cfg.corpus.subsets = "train-clean-100,train-clean-360"
    cfg.codec = CodecConfig(channels=512, n_blocks=8, code_dim=128, codebook_size=4096,
                            voice="reference")
    cfg.judge = JudgeConfig(channels=512, n_blocks=8)
    cfg.stage0 = TrainConfig(steps=50000, batch_size=128, grad_accum=8, lr=1e-3, eval_every=5000,
                             checkpoint_every=1000, length_buckets=True)
    cfg.llm = LLMConfig(d_model=1024, n_layers=24, n_heads=16, n_kv_heads=4, d_ff=2816,
                        max_seq_len=2048)
    cfg.stage1 = TrainConfig(steps=20000, batch_size=64, grad_accum=16, lr=3e-4, eval_every=2000,
                             checkpoint_every=500)
    cfg.stage2 = TrainConfig(steps=4000, batch_size=64, grad_accum=16, lr=1e-3, eval_every=1000,
                             checkpoint_every=500)
    cfg.stage3 = TrainConfig(steps=6000, batch_size=64, grad_accum=16, lr=1e-3, eval_every=1000,
                             checkpoint_every=500)
    cfg.stage4 = TrainConfig(steps=4000, batch_size=64, grad_accum=16, lr=1e-4, eval_every=1000,
                             checkpoint_every=500)
    return cfg


PRESETS = {"tiny": _tiny, "quick": _quick, "toy": _toy, "small": _small, "base": _base}


# sections renamed for what they hold: old name -> new name (older config.json files use the old)
RENAMED_SECTIONS = {"data": "alignment_data", "sqa": "spoken_qa"}


def upgrade_config_dict(saved: dict) -> dict:
    """A copy of a saved config dict (an older run's config.json or checkpoint payload) with the
    old section names of ``RENAMED_SECTIONS`` replaced by the new ones, in place in key order.

    A section is renamed only if the dict does not hold the new name already; the input is not
    modified."""
    upgraded = {}
    for key, value in saved.items():
        new = RENAMED_SECTIONS.get(key)
        upgraded[new if new is not None and new not in saved else key] = copy.deepcopy(value)
    return upgraded


def get_config(preset: str = "toy", overrides: list[str] | None = None) -> Config:
    """Return the named preset with ``section.field=value`` overrides applied, checked by
    ``validate_config`` (a VitaError with one line per problem)."""
    if preset not in PRESETS:
        raise VitaError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    cfg = PRESETS[preset]()
    for item in overrides or []:
        apply_override(cfg, item)
    validate_config(cfg)
    return cfg


def _parse_value(text: str, current, name: str):
    if isinstance(current, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise VitaError(f"override {name}={text}: expected true or false")
    if name.endswith("ratio") and text.lower() in INTERLEAVES:  # an interleave by its name
        return type(current)(INTERLEAVES[text.lower()])
    if isinstance(current, (tuple, list)):
        parts = [p for p in text.strip("()[]").split(",") if p.strip()]
        return type(current)(_parse_value(p.strip(), current[0], name) for p in parts)
    try:
        if isinstance(current, int):
            return int(text)
        if isinstance(current, float):
            return float(text)
    except ValueError:
        kind = "an integer" if isinstance(current, int) else "a number"
        raise VitaError(f"override {name}={text}: expected {kind}") from None
    return text


def apply_override(cfg: Config, item: str) -> None:
    """Apply one ``section.field=value`` (or ``field=value``) override in place."""
    if "=" not in item:
        raise VitaError(f"override {item!r}: expected the form section.field=value")
    name, text = item.split("=", 1)
    target = cfg
    parts = name.strip().split(".")
    if len(parts) > 1 and parts[0] in RENAMED_SECTIONS:
        new = RENAMED_SECTIONS[parts[0]]
        raise VitaError(f"override {item!r}: section {parts[0]!r} is now called {new!r} "
                        f"(write {new}.{'.'.join(parts[1:])}={text.strip()})")
    for part in parts[:-1]:
        if not dataclasses.is_dataclass(getattr(target, part, None)):
            raise VitaError(f"override {item!r}: {part!r} is not a config section")
        target = getattr(target, part)
    leaf = parts[-1]
    names = [f.name for f in dataclasses.fields(target)]
    if leaf not in names or dataclasses.is_dataclass(getattr(target, leaf)):
        raise VitaError(f"override {item!r}: no field {leaf!r}; fields here are {', '.join(names)}")
    setattr(target, leaf, _parse_value(text.strip(), getattr(target, leaf), name))


# ----------------------------------------------------------------------------------------------
# Checks: the values every field must have for the config to make a model and a run. Each limit
# is the one the code that reads the field needs (named beside it); limits that depend on a
# higher layer's data (built-in voices, the name pool, sentence templates) are left to that layer.
