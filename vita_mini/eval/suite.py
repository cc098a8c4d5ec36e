"""The evaluation suite: the paper's tables, on the test split, for the stage-4 model.

VITA-Audio reports (tutorials/paper.md §7), for one model: ASR error rates; TTS error rates (generated speech
transcribed by Whisper); spoken question answering speech-to-text and speech-to-speech; and the
speed of the inference modes (tokens/s, time to the first audio chunk). vita-mini's version,
every generation greedy, every mode on the same weights and the same prompts:

    ASR        CER of the LLM's transcripts of the test utterances (Vanilla: the LLM alone)
    TTS        judge CER of the speech it writes for the test sentences, per mode (and its two
               parts: the text it wrote vs the input, the judge vs that text; eval/tasks.py)
    spoken QA  accuracy speech->text and speech->speech, per mode, on seen facts (a voice never
               heard asking) and on text-only facts (cross-modal transfer; data/spoken_qa.py)
    MCTP       teacher-forced top-1 accuracy of the LLM and of every module on the seen-fact
               answers, audio and text targets apart (eval/mctp_accuracy.py)
    speed      tokens/s and mean time to the first audio chunk (its end-of-audio token, before
               decoding to sound), per mode, over the spoken-QA answers, on this machine

    python -m vita_mini.eval [--preset P] [--run-dir D] [--modes vanilla turbo] [--json F] [--figures DIR]

The model's training interleave (its checkpoint records it: runs.py ``trained_interleave``) names
its own mode, the one whose MCTP modules write exactly the audio chunks it was trained on (boost
for the default Boost interleave, balance for a model trained with alignment_data.ratio=balance).
The tables mark that mode with *, and say which of the other modes are out of step with it.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch

from vita_mini.audio.codec import AudioCodec
from vita_mini.audio.judge import JudgeASR
from vita_mini.checkpoint import save_json
from vita_mini.codes import corpus_tokens, spoken_qa_data
from vita_mini.config import Config
from vita_mini.data.corpus import corpus_path, load_corpus
from vita_mini.data.samples import pack
from vita_mini.data.spoken_qa import SpokenQAData
from vita_mini.eval.mctp_accuracy import format_accuracy, module_accuracy
from vita_mini.eval.tasks import asr_cer, s2s_ceiling, spoken_qa_report, tts_judge_cer
from vita_mini.infer.engine import Engine
from vita_mini.infer.schedule import MODES, own_mode, parse_schedule, step_note
from vita_mini.model.llm import LLM
from vita_mini.model.mctp import MCTP
from vita_mini.runs import load_audio_models, load_speech_lm, report_voice, trained_interleave

MODE_NAMES = tuple(MODES)  # vanilla, balance, boost, turbo


@dataclass
class SuiteData:
    """What the suite evaluates: the stage-4 model, stage 0's codec and judge, the test split."""

    cfg: Config  # with alignment_data.ratio = the interleave the model was trained on
    codec: AudioCodec
    judge: JudgeASR
    llm: LLM
    mctp: MCTP | None
    interleave: tuple
    test_codes: list[list[int]]  # the test utterances' audio codes
    test_texts: list[str]  # ... and their sentences
    corpus_codes: list[list[int]]  # every utterance's codes (the gallery's codebook usage)
    sqa: SpokenQAData  # spoken QA: test_seen, test_text (questions) and test_seen_samples
    voice: int | torch.Tensor  # the voice answers are decoded in (runs.report_voice)


def load_suite_data(cfg: Config, device: torch.device, log=print) -> SuiteData:
    codec, judge = load_audio_models(cfg, device)
    llm, mctp = load_speech_lm(cfg, 4, device)
    # the token shards beside stage 0 from training; the suite only reads the run (write=False)
    corpus = corpus_tokens(cfg, codec, corpus_path(cfg), lambda: load_corpus(cfg, log), write=False, log=log)
    test, codes = corpus.indices("test"), corpus.code_lists()
    interleave = trained_interleave(cfg, 4)
    # lay the seen-fact answers out as this model was trained (the teacher-forced table reads them),
    # whatever interleave the command line's config names
    cfg = copy.deepcopy(cfg)
    cfg.alignment_data.ratio = tuple(interleave)
    sqa = spoken_qa_data(cfg, codec, log, write=False)
    return SuiteData(cfg, codec, judge, llm, mctp, interleave, [codes[u] for u in test],
                     [corpus.texts[u] for u in test], codes, sqa, report_voice(cfg, codec))


def run_suite(cfg: Config, device: torch.device, modes=MODE_NAMES, log=print) -> dict:
    """Every table's numbers, as one JSON-ready dict."""
    t0 = time.perf_counter()
    for mode in modes:
        parse_schedule(mode)  # a bad mode fails now, not after minutes of work
    data = load_suite_data(cfg, device, log)
    cfg, codec, judge, llm, mctp = data.cfg, data.codec, data.judge, data.llm, data.mctp
    sqa, voice, interleave = data.sqa, data.voice, data.interleave
    test_codes, test_texts = data.test_codes, data.test_texts
    engine = Engine(llm, mctp)
    for mode in modes:
        engine.check_schedule(mode)  # ... and one the cascade cannot run before the first table
    notes = {mode: step_note(mode, interleave) for mode in modes}
    results = {"preset": cfg.preset, "run_dir": cfg.resolved_run_dir(), "modes": list(modes),
               "interleave": list(interleave), "own_mode": own_mode(interleave),
               "out_of_step": {mode: note for mode, note in notes.items() if note},
               "n_test_utterances": len(test_texts), "n_seen": len(sqa.test_seen), "n_text_only": len(sqa.test_text)}
    log(f"ASR on {len(test_texts)} test utterances ...")
    results["asr_cer"], _ = asr_cer(llm, test_codes, test_texts)
    results["tts"], results["spoken_qa"], results["speed"] = {}, {}, {}
    results["s2s_ceiling"] = s2s_ceiling(codec, judge, sqa.test_seen, voice)  # the same in every mode
    for mode in modes:
        log(f"{mode}: TTS of {len(test_texts)} sentences, spoken QA of "
            f"{len(sqa.test_seen) + len(sqa.test_text)} questions ...")
        tts = tts_judge_cer(llm, codec, judge, test_texts, voice, mctp=mctp, schedule=mode)
        results["tts"][mode] = {k: tts[k] for k in ("judge_cer", "copy_cer", "self_cer")}
        qa = spoken_qa_report(engine, codec, judge, sqa.test_seen, sqa.test_text, voice, mode)
        results["speed"][mode] = qa.pop("speed")
        results["spoken_qa"][mode] = qa
    results["mctp_accuracy"] = (module_accuracy(llm, mctp, pack(sqa.test_seen_samples, cfg.llm.max_seq_len).to(device))
                                if sqa.test_seen_samples else [])
    results["seconds"] = time.perf_counter() - t0
    return results


def percent(x: float | None) -> str:
    return "-" if x is None else f"{x * 100:.1f}%"


def mode_label(r: dict, mode: str) -> str:
    """The mode's name, with * for the model's own (results of older suites have no own_mode)."""
    return mode + " *" if mode == r.get("own_mode") else mode


def format_suite(r: dict) -> str:
    modes = r["modes"]
    lines = [f"vita-mini evaluation: the stage-4 model of {r['run_dir']} (preset {r['preset']}), "
             f"test split, greedy"]
    if "interleave" in r:
        lines.append(f"trained on the interleave {r['interleave']}: its own mode is {r['own_mode']} (*)")
        lines += list(r["out_of_step"].values())
    lines += ["",
             f"ASR, {r['n_test_utterances']} test utterances, Vanilla: CER {percent(r['asr_cer'])}",
             "",
             f"TTS, {r['n_test_utterances']} test sentences: CER of what the judge hears vs the input "
             f"(parts: text written vs input | judge vs text written)",
             f"  {'mode':<10} {'judge CER':>10} {'text':>8} {'audio':>8}"]
    for m in modes:
        t = r["tts"][m]
        lines.append(f"  {mode_label(r, m):<10} {percent(t['judge_cer']):>10} {percent(t['copy_cer']):>8} {percent(t['self_cer']):>8}")
    lines += ["",
              "Spoken QA accuracy (right = the short answer is a word of the answer; S2T = the text "
              "written, S2S = what the judge hears)",
              f"  {'':<10} {'seen facts (' + str(r['n_seen']) + ')':>19} "
              f"{'text-only facts (' + str(r['n_text_only']) + ')':>24}",
              f"  {'mode':<10} {'S2T':>9} {'S2S':>9} {'S2T':>12} {'S2S':>11}"]
    for m in modes:
        q = r["spoken_qa"][m]
        lines.append(f"  {mode_label(r, m):<10} {percent(q['seen']['s2t']):>9} {percent(q['seen']['s2s']):>9} "
                     f"{percent(q['text_only']['s2t']):>12} {percent(q['text_only']['s2s']):>11}")
    if r.get("s2s_ceiling") is not None:
        lines.append(f"  S2S ceiling: the judge hears {percent(r['s2s_ceiling'])} of the seen facts' recorded "
                     f"answers right (their own codes, decoded)")
    if r["mctp_accuracy"]:
        lines += ["", "MCTP teacher-forced top-1 accuracy on the seen-fact answers "
                      "(p = the LLM state a prediction starts from)", format_accuracy(r["mctp_accuracy"])]
    lines += ["", "Speed over the spoken-QA answers (this machine, batch 1; first audio chunk = its "
                  "end-of-audio token, before decoding)",
              f"  {'mode':<10} {'tokens/s':>9} {'first audio ms':>15} {'answers with audio':>19}"]
    for m in modes:
        s = r["speed"][m]
        first = "-" if s["first_audio_ms"] is None else f"{s['first_audio_ms']:.0f}"
        lines.append(f"  {mode_label(r, m):<10} {s['tokens_per_s']:>9.0f} {first:>15} "
                     f"{str(s['answers_with_audio']) + ' of ' + str(s['answers']):>19}")
    lines.append(f"\n(evaluated in {r['seconds']:.0f} s)")
    return "\n".join(lines)


def evaluate_and_report(cfg: Config, device: torch.device, modes=MODE_NAMES, json_path: str | None = None,
                        figures_dir: str | None = None, log=print) -> dict:
    """Run the suite, print its tables, and write the JSON and the figures if asked."""
    if figures_dir:
        from vita_mini.eval.figures import pyplot
        pyplot()  # without matplotlib, say so before minutes of evaluation
    results = run_suite(cfg, device, modes, log)
    log(format_suite(results))
    if json_path:
        save_json(json_path, results)
        log(f"wrote {json_path}")
    if figures_dir:
        from vita_mini.eval.figures import make_figures
        for path in make_figures(cfg, results, figures_dir):
            log(f"wrote {path}")
    return results
