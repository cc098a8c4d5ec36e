"""The configuration is checked before any work starts (vita_mini/config_checks.py ``config_problems``).

Each refused configuration gives one line that names the field as ``section.field=value`` and
says what would be valid; several problems give several lines; every preset passes. Also the
renamed sections (``data`` -> ``alignment_data``, ``sqa`` -> ``spoken_qa``): old run folders'
config dicts are upgraded, old override names are refused with a line naming the new section.

Imports only vita_mini.config and vita_mini.errors, so it runs whatever else is being edited.
"""

import ast
import dataclasses
import re

import pytest

from vita_mini import config
from vita_mini.config import (PRESETS, RENAMED_SECTIONS, AlignmentDataConfig, Config, SpokenQAConfig, get_config,
                              upgrade_config_dict)
from vita_mini.config_checks import config_problems, validate_config
from vita_mini.errors import VitaError

LINE = re.compile(r"^[a-z_0-9]+\.[a-z_0-9+]+=\S*: \S")  # section.field=value: rule


def refusal(overrides: list[str], preset: str = "toy") -> list[str]:
    """The lines of the VitaError that get_config raises for these overrides."""
    with pytest.raises(VitaError) as info:
        get_config(preset, overrides)
    return str(info.value).split("\n")


# --- every preset passes ------------------------------------------------------------------------

@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_passes(preset):
    cfg = PRESETS[preset]()
    assert config_problems(cfg) == []
    validate_config(cfg)  # does not raise
    assert get_config(preset).to_dict() == cfg.to_dict()


@pytest.mark.parametrize("overrides", [
    ["alignment_data.mix_text=0"],  # shares are weights: they need not sum to one
    ["alignment_data.ratio=1,10"],  # Turbo's interleave
    ["alignment_data.ratio=1,3"],  # the smallest chunk: one text token, BOA, one code, EOA
    ["llm.n_kv_heads=1"], ["llm.n_kv_heads=3"], ["llm.n_heads=96", "llm.n_kv_heads=1"],
    ["mctp.n_modules=1"], ["spoken_qa.replay_share=0"], ["spoken_qa.n_test_seen=0"],
    ["codec.ctc_weight=0"], ["judge.decoded_weight=0"], ["codec.downsample=8"],
    ["synth.n_speakers=2", "spoken_qa.train_voices=1"],
    ["alignment_data.mix_copy=0.2", "mctp_data.mix_copy=0.1"],
    ["stage1.warmup_share=0", "stage1.min_lr_share=1", "stage1.betas=0,0.999"],
])
def test_unusual_but_sound_configs_pass(overrides):
    get_config("toy", overrides)


# --- one line per refused configuration -----------------------------------------------------------

TRAIN_SECTIONS = ["stage0", "stage1", "stage2", "stage3", "stage4"]
COUNTS = ["steps", "batch_size", "eval_every", "checkpoint_every", "log_every"]

REFUSED = [
    # llm: heads, sizes, sequence length (toy: d_model 192, n_heads 6, n_kv_heads 6, max_chars 40)
    (["llm.n_heads=5"], "llm.n_heads=5: llm.d_model=192 must be divisible by it (try 1, 2, 3, 4, 6, 8, ...)"),
    (["llm.n_heads=64"], "llm.n_heads=64: head_dim = llm.d_model / n_heads = 3 must be even for RoPE"),
    (["llm.n_kv_heads=4"], "llm.n_kv_heads=4: llm.n_heads=6 must be divisible by it (try 1, 2, 3, 6)"),
    (["llm.n_kv_heads=12"], "llm.n_kv_heads=12: llm.n_heads=6 must be divisible by it"),
    (["llm.d_model=191", "llm.n_heads=1", "llm.n_kv_heads=1"], "llm.d_model=191: must be even"),
    (["llm.d_model=0"], "llm.d_model=0: must be at least 1"),
    (["llm.n_heads=0"], "llm.n_heads=0: must be at least 1"),
    (["llm.n_kv_heads=0"], "llm.n_kv_heads=0: must be at least 1"),
    (["llm.n_layers=0"], "llm.n_layers=0: must be at least 1"),
    (["llm.d_ff=0"], "llm.d_ff=0: must be at least 1"),
    (["llm.rope_theta=0"], "llm.rope_theta=0.0: must be above 0"),
    (["llm.rms_eps=0"], "llm.rms_eps=0.0: must be above 0"),
    (["llm.max_seq_len=80"], "llm.max_seq_len=80: must be above 2 * world.max_chars = 80"),
    # world
    (["world.n_people=0"], "world.n_people=0: must be at least 1"),
    (["world.n_general_sentences=128"], "world.n_general_sentences=128: must be above world.n_val + world.n_test = 128"),
    (["world.text_only_share=1.5"], "world.text_only_share=1.5: must lie in [0, 1]"),
    (["world.max_chars=0"], "world.max_chars=0: must be at least 1"),
    (["world.salad_share=1"], "world.salad_share=1.0: must lie in [0, 1)"),
    (["world.n_val=0"], "world.n_val=0: must be at least 1"),
    (["world.n_test=0"], "world.n_test=0: must be at least 1"),
    # synth (toy: 6 speakers)
    (["synth.char_seconds=0"], "synth.char_seconds=0.0: must be above 0"),
    (["synth.lead_seconds=-0.1"], "synth.lead_seconds=-0.1: must be at least 0"),
    (["synth.tail_seconds=-1"], "synth.tail_seconds=-1.0: must be at least 0"),
    (["synth.n_speakers=0"], "synth.n_speakers=0: must be at least 1"),
    (["synth.assistant_voice=6"], "synth.assistant_voice=6: must lie in [0, synth.n_speakers=6)"),
    (["synth.assistant_voice=-1"], "synth.assistant_voice=-1: must lie in [0, synth.n_speakers=6)"),
    (["synth.assistant_share=1.1"], "synth.assistant_share=1.1: must lie in [0, 1]"),
    (["synth.backend=festival"], "synth.backend='festival': choose numpy or espeak"),
    # audio
    (["audio.sample_rate=0"], "audio.sample_rate=0: must be at least 1"),
    (["audio.n_fft=0"], "audio.n_fft=0: must be at least 1"),
    (["audio.win_length=600"], "audio.win_length=600: must lie in [1, audio.n_fft=512]"),
    (["audio.win_length=0"], "audio.win_length=0: must lie in [1, audio.n_fft=512]"),
    (["audio.hop_length=0"], "audio.hop_length=0: must be at least 1"),
    (["audio.n_mels=0"], "audio.n_mels=0: must be at least 1"),
    (["audio.griffin_lim_iters=-1"], "audio.griffin_lim_iters=-1: must be at least 0"),
    # codec
    (["codec.channels=0"], "codec.channels=0: must be at least 1"),
    (["codec.code_dim=0"], "codec.code_dim=0: must be at least 1"),
    (["codec.codebook_size=0"], "codec.codebook_size=0: must be at least 1"),
    (["codec.n_blocks=-1"], "codec.n_blocks=-1: must be at least 0"),
    (["codec.downsample=3"], "codec.downsample=3: must be a power of two"),
    (["codec.downsample=0"], "codec.downsample=0: must be a power of two"),
    (["codec.n_voices=4"], "codec.n_voices=4: synth.n_speakers=6 needs codec.n_voices >= 6"),
    (["codec.ema_decay=1"], "codec.ema_decay=1.0: must lie in [0, 1)"),
    (["codec.ema_decay=-0.5"], "codec.ema_decay=-0.5: must lie in [0, 1)"),
    (["codec.commitment=-1"], "codec.commitment=-1.0: must be at least 0"),
    (["codec.ctc_weight=-1"], "codec.ctc_weight=-1.0: must be at least 0"),
    (["codec.mel_weight=-1"], "codec.mel_weight=-1.0: must be at least 0"),
    # judge
    (["judge.channels=0"], "judge.channels=0: must be at least 1"),
    (["judge.n_blocks=-1"], "judge.n_blocks=-1: must be at least 0"),
    (["judge.downsample=6"], "judge.downsample=6: must be a power of two"),
    (["judge.decoded_weight=-1"], "judge.decoded_weight=-1.0: must be at least 0"),
    # training runs (the counts of every stage are below)
    (["stage0.steps=-5"], "stage0.steps=-5: must be at least 1"),
    (["stage1.lr=0"], "stage1.lr=0.0: must be above 0"),
    (["stage2.lr=-1e-3"], "stage2.lr=-0.001: must be above 0"),
    (["stage2.weight_decay=-0.1"], "stage2.weight_decay=-0.1: must be at least 0"),
    (["stage3.betas=0.9"], "stage3.betas=0.9: expected two numbers beta1,beta2, each in [0, 1)"),
    (["stage3.betas=0.9,1.0"], "stage3.betas=0.9,1.0: expected two numbers beta1,beta2, each in [0, 1)"),
    (["stage3.betas=0.9,0.95,0.99"], "stage3.betas=0.9,0.95,0.99: expected two numbers"),
    (["stage1.warmup_share=1.5"], "stage1.warmup_share=1.5: must lie in [0, 1]"),
    (["stage1.min_lr_share=-0.1"], "stage1.min_lr_share=-0.1: must lie in [0, 1]"),
    (["stage4.grad_clip=0"], "stage4.grad_clip=0.0: must be above 0"),
    (["stage1.precision=fp16"], "stage1.precision='fp16': choose auto, bf16 or fp32"),
    # alignment_data: the interleave ratio, the mix, copy samples, input noise
    (["alignment_data.ratio=1,10,4"], "alignment_data.ratio=1,10,4: needs an even number of entries"),
    (["alignment_data.ratio=()"], "alignment_data.ratio=(): needs an even number of entries"),
    (["alignment_data.ratio=0,10"], "alignment_data.ratio=0,10: every text count t must be >= 1 and every audio count a >= 3"),
    (["alignment_data.ratio=1,2"], "alignment_data.ratio=1,2: every text count t must be >= 1 and every audio count a >= 3"),
    (["alignment_data.ratio=1,10,4,2"], "alignment_data.ratio=1,10,4,2: every text count"),
    (["alignment_data.mix_asr=1.5"], "alignment_data.mix_asr=1.5: must lie in [0, 1]"),
    (["alignment_data.mix_tts=-0.1"], "alignment_data.mix_tts=-0.1: must lie in [0, 1]"),
    (["alignment_data.mix_asr=0", "alignment_data.mix_tts=0", "alignment_data.mix_text=0"],
     "alignment_data.mix_asr+mix_tts+mix_text+mix_copy=0: at least one share must be above 0"),
    (["alignment_data.n_copy=-1"], "alignment_data.n_copy=-1: must be at least 0"),
    (["alignment_data.mix_copy=0.2", "alignment_data.n_copy=0"],
     "alignment_data.n_copy=0: must be at least 1 when alignment_data.mix_copy=0.2"),
    (["alignment_data.input_noise=1.5"], "alignment_data.input_noise=1.5: must lie in [0, 1]"),
    # mctp, mctp_data
    (["mctp.n_modules=0"], "mctp.n_modules=0: must be at least 1"),
    (["mctp_data.mix_text=2"], "mctp_data.mix_text=2.0: must lie in [0, 1]"),
    (["mctp_data.mix_asr=0", "mctp_data.mix_tts=0", "mctp_data.mix_text=0"],
     "mctp_data.mix_asr+mix_tts+mix_text+mix_copy=0: at least one share must be above 0"),
    (["mctp_data.mix_copy=0.2"],
     "mctp_data.mix_copy=0.2: stages 2 and 3 get copy samples only when alignment_data.mix_copy > 0"),
    # spoken_qa (toy: 6 speakers)
    (["spoken_qa.train_voices=0"], "spoken_qa.train_voices=0: must lie in [1, synth.n_speakers=6)"),
    (["spoken_qa.train_voices=6"], "spoken_qa.train_voices=6: must lie in [1, synth.n_speakers=6)"),
    (["synth.n_speakers=1"], "spoken_qa.train_voices=3: stage 4 needs synth.n_speakers >= 2"),
    (["spoken_qa.n_test_seen=-1"], "spoken_qa.n_test_seen=-1: must be at least 0"),
    (["spoken_qa.replay_share=1"], "spoken_qa.replay_share=1.0: must lie in [0, 1)"),
    (["spoken_qa.replay_share=-0.1"], "spoken_qa.replay_share=-0.1: must lie in [0, 1)"),
    (["spoken_qa.mctp_lr_scale=-1"], "spoken_qa.mctp_lr_scale=-1.0: must be at least 0"),
    (["spoken_qa.replay_tts=1.5"], "spoken_qa.replay_tts=1.5: must lie in [0, 1]"),
    (["spoken_qa.replay_asr=0", "spoken_qa.replay_tts=0", "spoken_qa.replay_text=0"],
     "spoken_qa.replay_asr+replay_tts+replay_text=0: at least one must be above 0"),
] + [([f"{stage}.{count}=0"], f"{stage}.{count}=0: must be at least 1")
     for stage in TRAIN_SECTIONS for count in COUNTS]


@pytest.mark.parametrize("overrides, expected", REFUSED, ids=[" ".join(o) for o, _ in REFUSED])
def test_refused_configuration_gives_one_line_naming_the_field(overrides, expected):
    lines = refusal(overrides)
    assert len(lines) == 1, lines
    assert lines[0].startswith(expected), lines[0]
    assert LINE.match(lines[0]), lines[0]


def test_the_issue_examples():
    """`--preset tiny llm.n_heads=5` and `stage0.steps=-5` used to end in tracebacks."""
    assert refusal(["llm.n_heads=5"], "tiny") == [
        "llm.n_heads=5: llm.d_model=64 must be divisible by it (try 1, 2, 4, 8, 16, 32)"]
    assert refusal(["stage0.steps=-5"], "tiny") == ["stage0.steps=-5: must be at least 1"]


def test_several_problems_give_several_lines_in_section_order():
    lines = refusal(["llm.n_heads=5", "stage0.steps=-5", "synth.backend=festival",
                     "spoken_qa.replay_share=1", "stage3.lr=0"])
    assert [line.split(":")[0] for line in lines] == [
        "synth.backend='festival'", "stage0.steps=-5", "llm.n_heads=5", "stage3.lr=0.0",
        "spoken_qa.replay_share=1.0"]
    assert all(LINE.match(line) for line in lines), lines


def test_config_problems_lists_what_validate_config_raises():
    cfg = get_config("tiny")
    cfg.llm.n_layers, cfg.mctp.n_modules = 0, 0
    problems = config_problems(cfg)
    assert problems == ["llm.n_layers=0: must be at least 1", "mctp.n_modules=0: must be at least 1"]
    with pytest.raises(VitaError) as info:
        validate_config(cfg)
    assert str(info.value) == "\n".join(problems)


def test_values_of_the_wrong_type_set_in_code_are_problems_not_crashes():
    cfg = Config()
    cfg.llm.n_heads = "6"
    cfg.stage1.lr = None
    cfg.codec.downsample = 4.0
    cfg.alignment_data.ratio = (1.5, 10)
    cfg.world.n_val = True
    assert config_problems(cfg) == [
        "world.n_val=True: expected a whole number >= 1",
        "codec.downsample=4.0: must be a power of two (1, 2, 4, 8, ...): the encoder halves the "
        "frame rate with stride-2 convolutions",
        "llm.n_heads='6': expected a whole number >= 1",
        "alignment_data.ratio=1.5,10: expected whole numbers t1,a1,t2,a2,... (e.g. 1,10,4,10)",
        "stage1.lr=None: expected a number"]


# --- renamed sections ---------------------------------------------------------------------------

def test_renamed_sections():
    assert RENAMED_SECTIONS == {"data": "alignment_data", "sqa": "spoken_qa"}
    names = [f.name for f in dataclasses.fields(Config)]
    assert "alignment_data" in names and "spoken_qa" in names
    assert "data" not in names and "sqa" not in names
    assert not hasattr(config, "DataConfig") and not hasattr(config, "config_from_dict")


def test_renamed_sections_keep_their_fields_and_defaults():
    """Training must stay bit-identical: same field names, same defaults, same preset values."""
    assert dataclasses.asdict(AlignmentDataConfig()) == {
        "ratio": (1, 10, 4, 10), "mix_asr": 0.4, "mix_tts": 0.4, "mix_text": 0.2, "mix_copy": 0.0,
        "n_copy": 3000, "input_noise": 0.15}
    assert dataclasses.asdict(SpokenQAConfig()) == {
        "train_voices": 3, "text_questions": True, "n_test_seen": 48, "replay_share": 0.3,
        "replay_asr": 0.4, "replay_tts": 0.4, "replay_text": 0.2,
        "mctp_lr_scale": 10.0, "mctp_grad_to_llm": True}
    assert get_config("tiny").spoken_qa == SpokenQAConfig(train_voices=2, n_test_seen=8)
    assert get_config("small").spoken_qa == SpokenQAConfig(n_test_seen=128)
    for preset in PRESETS:  # small and base: text is bytes of real speech, 8 per chunk stay ahead of it
        ratio = (1, 10, 8, 10) if preset in ("small", "base") else (1, 10, 4, 10)
        assert get_config(preset).alignment_data == AlignmentDataConfig(ratio=ratio)


def old_style(saved: dict) -> dict:
    """``saved`` as an older vita-mini wrote it: the renamed sections under their old names."""
    new_to_old = {new: old for old, new in RENAMED_SECTIONS.items()}
    return {new_to_old.get(key, key): value for key, value in saved.items()}


def test_upgrade_config_dict_renames_old_sections_in_place():
    now = get_config("toy").to_dict()
    old = old_style(now)
    assert "data" in old and "sqa" in old and "alignment_data" not in old
    upgraded = upgrade_config_dict(old)
    assert upgraded == now
    assert list(upgraded) == list(now)  # same key order: the sections keep their places


def test_upgrade_config_dict_returns_a_copy_and_leaves_new_dicts_alone():
    now = get_config("tiny").to_dict()
    old = old_style(now)
    upgraded = upgrade_config_dict(old)
    upgraded["alignment_data"]["mix_copy"] = 0.5
    assert old["data"]["mix_copy"] == 0.0  # the input is not modified
    assert upgrade_config_dict(now) == now
    both = {"data": {"x": 1}, "alignment_data": {"x": 2}}
    assert upgrade_config_dict(both) == both  # the new name wins; nothing is overwritten


@pytest.mark.parametrize("item, old, new", [
    ("data.mix_asr=0.5", "data", "alignment_data.mix_asr=0.5"),
    ("data.ratio=1,10", "data", "alignment_data.ratio=1,10"),
    ("sqa.replay_share=0.1", "sqa", "spoken_qa.replay_share=0.1"),
])
def test_old_section_name_in_an_override_names_the_new_one(item, old, new):
    with pytest.raises(VitaError) as info:
        get_config("tiny", [item])
    message = str(info.value)
    assert "\n" not in message
    assert f"section '{old}' is now called '{RENAMED_SECTIONS[old]}'" in message
    assert f"write {new}" in message


# --- layering -----------------------------------------------------------------------------------

def test_config_imports_only_the_standard_library_and_errors():
    """config.py and config_checks.py are the bottom of the package (tests/test_layers.py has the
    rest): from vita_mini they use errors.py and, config.py, its checks and vocab.py's named
    interleaves (vocab.py, also at the bottom, imports nothing of the package)."""
    from vita_mini import config_checks

    for module, allowed in ((config, {"vita_mini.errors", "vita_mini.config_checks", "vita_mini.vocab"}),
                            (config_checks, {"vita_mini.errors"})):
        tree = ast.parse(open(module.__file__).read())
        modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        project = {m for m in modules if m.split(".")[0] == "vita_mini"}
        assert project == allowed, module.__name__
        assert modules - project <= {"__future__", "copy", "dataclasses", "json", "math", "re"}
