"""What makes a configuration valid: every value that cannot make a model or a run, one line each.

``config_problems(cfg)`` reads a ``Config`` (config.py) section by section and returns lines such
as ``llm.n_heads=5: llm.d_model=192 must be divisible by it (try 1, 2, 3, 4, 6, 8, ...)``;
``validate_config`` raises them as one VitaError (the command lines print one ``error:`` line
each). ``get_config`` calls it after the overrides, so nothing starts with a broken config.

Like config.py this is the bottom layer: it imports only the standard library and
vita_mini.errors (not even config.py: a section is recognised by its name, and every ``stage<N>``
section is a TrainConfig), so limits that live in higher layers (the number of built-in voices,
the name pool, the sentence templates) are left to those layers.
"""

from __future__ import annotations

import dataclasses
import math
import re

from vita_mini.errors import VitaError

PRECISIONS = ("auto", "bf16", "fp32")  # train/loop.py autocast
SYNTH_BACKENDS = ("numpy", "espeak")  # data/corpus.py check_synth
CORPUS_KINDS = ("toy", "librispeech", "libritts", "ljspeech", "folder")  # data/real_corpora.py
CODEC_VOICES = ("id", "reference")  # audio/codec.py: a voice id, or a reference recording
TRAIN_COUNTS = ("steps", "batch_size", "eval_every", "checkpoint_every", "log_every")
MIX_SHARES = ("mix_asr", "mix_tts", "mix_text", "mix_copy")
TRAIN_SECTION = re.compile(r"stage\d+")  # the sections of training settings, one per stage


def _show(value) -> str:
    """A value as an override writes it: 1,10,4,10 for a tuple; strings quoted."""
    if isinstance(value, (tuple, list)):
        return ",".join(_show(v) for v in value) or "()"
    return repr(value) if isinstance(value, str) else str(value)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _try(values: list, limit: int = 6) -> str:
    """'(try 1, 2, 3, 4, 6, 8, ...)': the first ``limit`` of ``values``."""
    more = ", ..." if len(values) > limit else ""
    return f"(try {', '.join(map(str, values[:limit]))}{more})"


def _divisors(n: int) -> list[int]:
    """The divisors of ``n`` >= 1, ascending."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return sorted(set(small + [n // d for d in small]))


class _Section:
    """Problem lines for one config section: ``name`` ("llm"), ``obj`` its dataclass.

    Each check appends '<section>.<field>=<value>: <what would be valid>' to ``problems`` when
    the field breaks its rule, and returns whether the field is valid, so that cross-field checks
    run on valid values only."""

    def __init__(self, name: str, obj, problems: list[str]):
        self.name, self.obj, self.problems = name, obj, problems

    def where(self, field: str) -> str:
        return f"{self.name}.{field}={_show(getattr(self.obj, field))}"

    def problem(self, field: str, rule: str) -> bool:
        self.problems.append(f"{self.where(field)}: {rule}")
        return False

    def integer(self, field: str, low: int, why: str = "") -> bool:
        """A whole number >= ``low``."""
        value = getattr(self.obj, field)
        if not _is_int(value):
            return self.problem(field, f"expected a whole number >= {low}")
        return value >= low or self.problem(field, f"must be at least {low}{why}")

    def number(self, field: str, low: float, why: str = "", above: bool = False) -> bool:
        """A number >= ``low`` (> ``low`` with ``above``)."""
        value = getattr(self.obj, field)
        if not _is_number(value):
            return self.problem(field, "expected a number")
        ok = value > low if above else value >= low
        return ok or self.problem(field, f"must be {'above' if above else 'at least'} {low}{why}")

    def share(self, field: str, open_top: bool = False, why: str = "") -> bool:
        """A number in [0, 1], or [0, 1) with ``open_top``."""
        value = getattr(self.obj, field)
        top = ")" if open_top else "]"
        if _is_number(value) and (0 <= value < 1 if open_top else 0 <= value <= 1):
            return True
        return self.problem(field, f"must lie in [0, 1{top}{why}")

    def choice(self, field: str, choices: tuple) -> bool:
        if getattr(self.obj, field) in choices:
            return True
        return self.problem(field, f"choose {', '.join(choices[:-1])} or {choices[-1]}")

    def power_of_two(self, field: str, why: str) -> bool:
        value = getattr(self.obj, field)
        if _is_int(value) and value >= 1 and value & (value - 1) == 0:
            return True
        return self.problem(field, f"must be a power of two (1, 2, 4, 8, ...): {why}")


def _world_problems(cfg, problems: list[str]) -> None:
    """vita_mini/data/world.py ``build_world``."""
    s = _Section("world", cfg.world, problems)
    s.integer("n_people", 1)
    n_general = s.integer("n_general_sentences", 1)
    s.share("text_only_share")
    s.integer("max_chars", 1)
    s.share("salad_share", open_top=True, why=" (a share of the general training sentences)")
    n_val = s.integer("n_val", 1, " (the validation split must not be empty)")
    n_test = s.integer("n_test", 1, " (the test split must not be empty)")
    w = cfg.world
    if n_general and n_val and n_test and w.n_general_sentences <= w.n_val + w.n_test:
        s.problem("n_general_sentences", f"must be above world.n_val + world.n_test = "
                  f"{w.n_val + w.n_test} (the val and test sentences are drawn from them)")


def _corpus_problems(cfg, problems: list[str]) -> None:
    """vita_mini/data/real_corpora.py and data/transcripts.py."""
    s = _Section("corpus", cfg.corpus, problems)
    kind = s.choice("kind", CORPUS_KINDS)
    if kind and cfg.corpus.kind != "toy" and not (isinstance(cfg.corpus.root, str) and cfg.corpus.root):
        s.problem("root", f"corpus.kind={cfg.corpus.kind} reads a corpus from a folder: give its path")
    alphabet = cfg.corpus.alphabet
    if not (isinstance(alphabet, str) and alphabet and len(set(alphabet)) == len(alphabet)):
        s.problem("alphabet", "expected the CTC heads' characters, each once (e.g. ' abc...z')")
    s.integer("n_val", 1, " (the validation split must not be empty)")
    s.integer("n_test", 1, " (the test split must not be empty)")
    s.number("max_seconds", 0, " (the longest recording kept)", above=True)
    s.share("max_failed_share", why=" (a share of the corpus's files)")


def _synth_problems(cfg, problems: list[str]) -> None:
    """vita_mini/data/synth.py ``synthesize`` and data/corpus.py ``check_synth``."""
    s = _Section("synth", cfg.synth, problems)
    s.number("char_seconds", 0, " (every character lasts a while)", above=True)
    s.number("lead_seconds", 0, " (seconds of silence)")
    s.number("tail_seconds", 0, " (seconds of silence)")
    speakers = s.integer("n_speakers", 1)
    voice = cfg.synth.assistant_voice
    if speakers and not (_is_int(voice) and 0 <= voice < cfg.synth.n_speakers):
        s.problem("assistant_voice", f"must lie in [0, synth.n_speakers={cfg.synth.n_speakers}) "
                  f"(one of the voices)")
    s.share("assistant_share")
    s.choice("backend", SYNTH_BACKENDS)


def _audio_problems(cfg, problems: list[str]) -> None:
    """vita_mini/audio/features.py (torchaudio's STFT, mel filters and Griffin-Lim)."""
    s = _Section("audio", cfg.audio, problems)
    for field in ("sample_rate", "hop_length", "n_mels"):
        s.integer(field, 1)
    n_fft = s.integer("n_fft", 1)
    win = cfg.audio.win_length
    if n_fft and not (_is_int(win) and 1 <= win <= cfg.audio.n_fft):
        s.problem("win_length", f"must lie in [1, audio.n_fft={cfg.audio.n_fft}] "
                  f"(the STFT window fits in one FFT)")
    s.integer("griffin_lim_iters", 0)


def _codec_problems(cfg, problems: list[str]) -> None:
    """vita_mini/audio/codec.py, audio/vq.py, audio/conv.py; n_voices: train/stage0.py."""
    s = _Section("codec", cfg.codec, problems)
    for field in ("channels", "code_dim", "codebook_size"):
        s.integer(field, 1)
    s.integer("n_blocks", 0)
    s.power_of_two("downsample", "the encoder halves the frame rate with stride-2 convolutions")
    voices = s.integer("n_voices", 1)
    speakers = cfg.synth.n_speakers
    if voices and _is_int(speakers) and cfg.codec.n_voices < speakers:
        s.problem("n_voices", f"synth.n_speakers={speakers} needs codec.n_voices >= {speakers} "
                  f"(one decoder voice per speaker)")
    s.choice("voice", CODEC_VOICES)
    s.number("reference_seconds", 0, " (seconds of a reference recording)", above=True)
    s.share("ema_decay", open_top=True, why=" (at 1 the codebook never moves)")
    for field in ("commitment", "ctc_weight", "mel_weight"):
        s.number(field, 0, " (a loss weight)")


def _judge_problems(cfg, problems: list[str]) -> None:
    """vita_mini/audio/judge.py and audio/conv.py."""
    s = _Section("judge", cfg.judge, problems)
    s.integer("channels", 1)
    s.integer("n_blocks", 0)
    s.power_of_two("downsample", "the judge halves the frame rate with stride-2 convolutions")
    s.number("decoded_weight", 0, " (a loss weight)")


def _train_problems(name: str, tcfg, problems: list[str]) -> None:
    """One stage's training run: vita_mini/train/loop.py (and torch's AdamW)."""
    s = _Section(name, tcfg, problems)
    for field in TRAIN_COUNTS:
        s.integer(field, 1)
    s.number("lr", 0, above=True)
    s.number("weight_decay", 0)
    betas = tcfg.betas
    if not (isinstance(betas, (tuple, list)) and len(betas) == 2
            and all(_is_number(b) and 0 <= b < 1 for b in betas)):
        s.problem("betas", "expected two numbers beta1,beta2, each in [0, 1) (e.g. 0.9,0.95)")
    s.share("warmup_share", why=" (a share of the steps)")
    s.share("min_lr_share", why=" (a share of lr)")
    s.number("grad_clip", 0, " (the largest gradient norm)", above=True)
    s.choice("precision", PRECISIONS)
    accum = s.integer("grad_accum", 1)
    if accum and _is_int(tcfg.batch_size) and tcfg.batch_size % tcfg.grad_accum:
        s.problem("grad_accum", f"must divide {name}.batch_size={tcfg.batch_size} (the batch is "
                  f"split into equal micro-batches) {_try(_divisors(tcfg.batch_size))}")


def _llm_heads_problems(s: _Section) -> None:
    """head_dim = d_model / n_heads must be whole and even (RoPE rotates pairs of dimensions), and
    n_heads a multiple of n_kv_heads (each k/v head serves n_heads / n_kv_heads query heads)."""
    c = s.obj
    d_model, n_heads = s.integer("d_model", 1), s.integer("n_heads", 1)
    if d_model and n_heads:
        heads = [h for h in _divisors(c.d_model) if (c.d_model // h) % 2 == 0]
        if not heads:
            s.problem("d_model", "must be even (head_dim = d_model / n_heads must be even for RoPE)")
        elif c.d_model % c.n_heads:
            n_heads = s.problem("n_heads", f"llm.d_model={c.d_model} must be divisible by it "
                                f"{_try(heads)}")
        elif (c.d_model // c.n_heads) % 2:
            n_heads = s.problem("n_heads", f"head_dim = llm.d_model / n_heads = "
                                f"{c.d_model // c.n_heads} must be even for RoPE {_try(heads)}")
    # checked against a valid n_heads only: a wrong n_heads is the one problem to fix first
    if s.integer("n_kv_heads", 1) and n_heads and c.n_heads % c.n_kv_heads:
        s.problem("n_kv_heads", f"llm.n_heads={c.n_heads} must be divisible by it "
                  f"{_try(_divisors(c.n_heads))}")


def _llm_problems(cfg, problems: list[str]) -> None:
    """vita_mini/model/llm.py; max_seq_len: data/samples.py ``pack`` (every sample fits a row)."""
    s = _Section("llm", cfg.llm, problems)
    _llm_heads_problems(s)
    s.integer("n_layers", 1)
    s.integer("d_ff", 1)
    s.number("rope_theta", 0, " (the RoPE base)", above=True)
    s.number("rms_eps", 0, " (it keeps RMSNorm's 1 / sqrt(mean(x^2) + eps) finite)", above=True)
    chars = cfg.world.max_chars
    if s.integer("max_seq_len", 1) and _is_int(chars) and cfg.llm.max_seq_len <= 2 * chars:
        s.problem("max_seq_len", f"must be above 2 * world.max_chars = {2 * chars}: a TTS sample "
                  f"holds its sentence twice (prompt and answer) besides its audio codes")


def _mix_problems(s: _Section) -> None:
    """The four sample shares of a mix: each in [0, 1], not all zero. data/samples.py
    ``mixed_order`` divides each by their sum, so they are weights and need not sum to one."""
    valid = [s.share(field) for field in MIX_SHARES]
    if all(valid) and sum(getattr(s.obj, field) for field in MIX_SHARES) <= 0:
        s.problems.append(f"{s.name}.mix_asr+mix_tts+mix_text+mix_copy=0: at least one share must "
                          f"be above 0 (they are weights: data/samples.py mixed_order divides "
                          f"each by their sum, so they need not sum to 1)")


def _ratio_problems(s: _Section) -> None:
    """The interleave [t1, a1, t2, a2, ...] (vita_mini/vocab.py ``check_ratio``): chunk i is t_i
    text tokens, then BOA, a_i - 2 audio codes, EOA."""
    ratio = s.obj.ratio
    if not (isinstance(ratio, (tuple, list)) and all(_is_int(x) for x in ratio)):
        s.problem("ratio", "expected whole numbers t1,a1,t2,a2,... (e.g. 1,10,4,10)")
    elif len(ratio) < 2 or len(ratio) % 2:
        s.problem("ratio", "needs an even number of entries t1,a1,t2,a2,... (pairs of text and "
                  "audio counts, e.g. 1,10,4,10)")
    elif any(t < 1 for t in ratio[0::2]) or any(a < 3 for a in ratio[1::2]):
        s.problem("ratio", "every text count t must be >= 1 and every audio count a >= 3 (a "
                  "includes BOA and EOA, so a chunk holds a - 2 >= 1 codes)")


def _alignment_data_problems(cfg, problems: list[str]) -> None:
    """vita_mini/data/alignment.py (stage 1's samples), data/samples.py, vocab.py."""
    s = _Section("alignment_data", cfg.alignment_data, problems)
    _ratio_problems(s)
    _mix_problems(s)
    data = cfg.alignment_data
    if s.integer("n_copy", 0) and data.n_copy < 1 and _is_number(data.mix_copy) and data.mix_copy > 0:
        s.problem("n_copy", f"must be at least 1 when alignment_data.mix_copy={data.mix_copy} "
                  f"draws copy samples")
    s.share("input_noise", why=" (a share of the ASR answers' input letters)")


def _mctp_problems(cfg, problems: list[str]) -> None:
    """vita_mini/model/mctp.py: a cascade needs a module."""
    _Section("mctp", cfg.mctp, problems).integer("n_modules", 1)


def _mctp_data_problems(cfg, problems: list[str]) -> None:
    """Stages 2 and 3 draw stage 1's samples (data/alignment.py), which hold copy samples only
    when alignment_data.mix_copy > 0; otherwise a copy share here would be silently dropped."""
    s = _Section("mctp_data", cfg.mctp_data, problems)
    _mix_problems(s)
    mine, stage1 = cfg.mctp_data.mix_copy, cfg.alignment_data.mix_copy
    if _is_number(mine) and _is_number(stage1) and mine > 0 and not stage1 > 0:
        s.problem("mix_copy", f"stages 2 and 3 get copy samples only when alignment_data.mix_copy "
                  f"> 0 (it is {stage1}); set mctp_data.mix_copy=0 or both above 0")


REPLAY_SHARES = ("replay_asr", "replay_tts", "replay_text")


def _spoken_qa_problems(cfg, problems: list[str]) -> None:
    """vita_mini/data/spoken_qa.py and train/stage4.py."""
    s = _Section("spoken_qa", cfg.spoken_qa, problems)
    voices, speakers = cfg.spoken_qa.train_voices, cfg.synth.n_speakers
    if _is_int(speakers) and speakers == 1:
        s.problem("train_voices", "stage 4 needs synth.n_speakers >= 2 (it is 1): another voice "
                  "speaks each test question")
    elif _is_int(speakers) and speakers > 1 and not (_is_int(voices) and 1 <= voices < speakers):
        s.problem("train_voices", f"must lie in [1, synth.n_speakers={speakers}): another voice "
                  f"speaks each test question")
    s.integer("n_test_seen", 0)
    s.share("replay_share", open_top=True, why=" (at 1 stage 4 would train on no spoken question)")
    weights = [s.share(field) for field in REPLAY_SHARES]
    if all(weights) and sum(getattr(s.obj, field) for field in REPLAY_SHARES) <= 0:
        problems.append("spoken_qa.replay_asr+replay_tts+replay_text=0: at least one must be above 0 "
                        "(they are the replay's weights; replay_share=0 turns the replay off)")
    s.number("mctp_lr_scale", 0, " (a multiple of the LLM's learning rate; 0 freezes the modules)")


_SECTION_CHECKS = {"corpus": _corpus_problems, "world": _world_problems, "synth": _synth_problems, "audio": _audio_problems,
                   "codec": _codec_problems, "judge": _judge_problems, "llm": _llm_problems,
                   "alignment_data": _alignment_data_problems, "mctp": _mctp_problems,
                   "mctp_data": _mctp_data_problems, "spoken_qa": _spoken_qa_problems}


def config_problems(cfg) -> list[str]:
    """Every value of ``cfg`` that cannot make a model or a run, one line each, in section order:
    '<section>.<field>=<value>: <what would be valid>'. Empty when the config is sound."""
    problems: list[str] = []
    for f in dataclasses.fields(cfg):
        section = getattr(cfg, f.name)
        if TRAIN_SECTION.fullmatch(f.name):  # stage0 ... stage4: TrainConfig
            _train_problems(f.name, section, problems)
        elif f.name in _SECTION_CHECKS:
            _SECTION_CHECKS[f.name](cfg, problems)
    return problems


def validate_config(cfg) -> None:
    """Raise VitaError listing ``config_problems(cfg)``, one per line, if there are any."""
    problems = config_problems(cfg)
    if problems:
        raise VitaError("\n".join(problems))
