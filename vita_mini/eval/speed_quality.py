"""Speed against quality for every way of decoding with MCTP: the paper's modes, verified drafts
and adaptive depth, on the trained stage-4 model (beyond the paper; tutorials/02_mctp_and_modes.md §7).

    python -m vita_mini.eval.speed_quality                       # toy preset, runs/toy
    python -m vita_mini.eval.speed_quality --thresholds 0.5 0.9 --limit 8 --figures figures/

Settings (each greedy, on the same weights and prompts):

    vanilla                  the LLM writes every token
    boost, turbo             the paper's modes: MCTP tokens accepted unchecked (infer/engine.py)
    <mode> adaptive t        a module writes only when its top probability is at least t; below,
                             the LLM takes the turn (Engine's min_confidence); a threshold given
                             as text,audio (0.9,0.3) sets one per kind of the module's top token
    verified <mode>          the mode's MCTP tokens are drafts the LLM checks (infer/verified.py):
                             the output is Vanilla's, token for token
    verified turbo adaptive t   both
    verified 1,k (device)    verified drafting k deep, k chosen for this machine from verified
                             Turbo's acceptance rates and the costs c_k, r_k measured here
                             (infer/depth.py); timed in a second round beside Vanilla again

Prompts: the test split's sentences read aloud (TTS) and the spoken questions about seen facts
(eval/suite.py). For every prompt the settings take turns, so that a machine whose speed drifts
slows them all alike. Per setting:

    tok/s       generated tokens / generation seconds, over every prompt
    speedup     Vanilla's seconds / the setting's, over the same prompts and round
    first ms    mean time to the first audio chunk's end-of-audio token, over every answer with audio
    tok/fwd     generated tokens / LLM forwards (Vanilla: 1)
    = vanilla   prompts whose output equals Vanilla's token for token
    TTS CER     what the judge hears against the input sentence (the paper's TTS metric)
    S2T, S2S    spoken-QA accuracy of the written answer and of what the judge hears

and, for verified settings, the acceptance rate of every module offset j (infer/depth.py's
alpha_j). The JSON keeps verified Turbo's per-forward records, from which
``python -m vita_mini.infer.depth`` projects the speedup at a bigger model size.
"""

from __future__ import annotations

import argparse
import os
import platform
from dataclasses import asdict, dataclass, field

import torch

from vita_mini.checkpoint import save_json
from vita_mini.cli import add_run_arguments, run_config, run_main, threshold_arg
from vita_mini.data.spoken_qa import answer_is_right
from vita_mini.errors import VitaError
from vita_mini.eval.metrics import cer
from vita_mini.eval.tasks import hear, timed_generation
from vita_mini.eval.suite import SuiteData, load_suite_data, percent
from vita_mini.infer.depth import acceptance_rates, best_depth, format_depths, measure_costs
from vita_mini.infer.engine import Engine, check_confidence
from vita_mini.infer.verified import VerifiedEngine
from vita_mini.runs import pick_device
from vita_mini.vocab import SPOKEN_ANSWER_INSTRUCTION, TTS_INSTRUCTION, decode_text, prompt_tokens, text_ids


@dataclass(frozen=True)
class Setting:
    schedule: str  # a mode name or a schedule such as "1,3"
    verified: bool = False
    min_confidence: float | tuple[float, float] = 0.0  # or (text, audio)
    label: str = ""  # added to the name, e.g. "(device)"

    @property
    def name(self) -> str:
        words = (["verified"] if self.verified else []) + [self.schedule]
        if isinstance(self.min_confidence, tuple):
            words += [f"adaptive text {self.min_confidence[0]:g} audio {self.min_confidence[1]:g}"]
        elif self.min_confidence:
            words += [f"adaptive {self.min_confidence:g}"]
        return " ".join(words + ([self.label] if self.label else []))


def default_settings(thresholds) -> list[Setting]:
    settings = [Setting("vanilla"), Setting("boost"), Setting("turbo")]
    settings += [Setting(mode, min_confidence=t) for mode in ("boost", "turbo") for t in thresholds]
    settings += [Setting("boost", True), Setting("turbo", True)]
    settings += [Setting("turbo", True, t) for t in thresholds]
    return settings


@dataclass
class Tally:
    """One setting's generations, summed over prompts."""

    seconds: float = 0.0
    tokens: int = 0
    llm_forwards: int = 0
    first_audio: list[float] = field(default_factory=list)
    outputs: list[list[int]] = field(default_factory=list)  # per prompt
    records: list[tuple[int, int]] = field(default_factory=list)  # verified: (drafted, accepted) per forward


def generate_timed(engine: Engine, prompt: list[int], max_new: int, setting: Setting, tally: Tally) -> None:
    """Generate greedily by ``setting`` and add the output, its time and its LLM forwards to ``tally``."""
    tokens, seconds, first = timed_generation(engine, prompt, max_new, setting.schedule, setting.min_confidence)
    tally.seconds += seconds
    tally.tokens += len(tokens)
    tally.outputs.append([t.id for t in tokens])
    if first is not None:
        tally.first_audio.append(first)
    if setting.verified:  # each forward yields its accepted drafts and one token of its own
        tally.llm_forwards += len(engine.acceptance)
        tally.records += engine.acceptance
    else:
        tally.llm_forwards += sum(t.source < 0 for t in tokens)


def run_round(data: SuiteData, prompts: list[tuple[list[int], int]], settings: list[Setting],
              log=print) -> dict[Setting, Tally]:
    """Every setting on every prompt, the settings taking turns prompt by prompt."""
    plain, verified = Engine(data.llm, data.mctp), VerifiedEngine(data.llm, data.mctp)
    for setting in settings:
        (verified if setting.verified else plain).check_schedule(setting.schedule)
        generate_timed(verified if setting.verified else plain, prompts[0][0], 8, setting, Tally())  # warm-up
    tallies = {setting: Tally() for setting in settings}
    for i, (prompt, max_new) in enumerate(prompts):
        turn = settings[i % len(settings):] + settings[:i % len(settings)]  # who goes first rotates
        for setting in turn:
            generate_timed(verified if setting.verified else plain, prompt, max_new, setting, tallies[setting])
        if (i + 1) % 10 == 0:
            log(f"  {i + 1} of {len(prompts)} prompts")
    return tallies


def score(data: SuiteData, setting: Setting, tally: Tally, n_tts: int, questions, vanilla: Tally | None,
          vanilla_seconds: float, heard_before: dict) -> dict:
    """One table row: speed from ``tally``, quality from the judge (after the clock stopped).
    ``heard_before``: output ids -> what the judge heard, shared by the rows, so that an output
    several settings wrote (every verified one writes Vanilla's) is transcribed once."""
    heard = []
    for ids in tally.outputs:
        if tuple(ids) not in heard_before:
            heard_before[tuple(ids)] = hear(data.codec, data.judge, ids, data.voice)
        heard.append(heard_before[tuple(ids)])
    texts = data.test_texts[:n_tts]
    qa_written = [decode_text(ids).strip() for ids in tally.outputs[n_tts:]]
    n_qa = max(1, len(questions))
    row = {"name": setting.name, **asdict(setting),
           "tokens_per_s": tally.tokens / tally.seconds, "speedup": vanilla_seconds / tally.seconds,
           "first_audio_ms": 1000 * sum(tally.first_audio) / len(tally.first_audio) if tally.first_audio else None,
           "tokens_per_forward": tally.tokens / max(1, tally.llm_forwards),
           "same_as_vanilla": None if vanilla is None else sum(a == b for a, b in zip(tally.outputs, vanilla.outputs)),
           "prompts": len(tally.outputs),
           "tts_cer": cer(texts, heard[:n_tts]) if texts else None,
           "s2t": sum(answer_is_right(q.short_answer, a) for q, a in zip(questions, qa_written)) / n_qa,
           "s2s": sum(answer_is_right(q.short_answer, a) for q, a in zip(questions, heard[n_tts:])) / n_qa,
           "acceptance": None}
    deepest = max((drafted for drafted, _ in tally.records), default=0)
    if deepest:  # verified, with drafts checked (an adaptive threshold may stop every run at 0)
        row["acceptance"] = acceptance_rates(tally.records, deepest)
    return row


def pareto(rows: list[dict]) -> list[str]:
    """Names of the rows no other row beats: at least as fast, as low a TTS CER and as high an S2S
    accuracy, and better in one of the three."""
    def key(r):
        return r["speedup"], -(r["tts_cer"] or 0.0), r["s2s"]

    def beats(a, b):
        return all(x >= y for x, y in zip(key(a), key(b))) and key(a) != key(b)

    return [r["name"] for r in rows if not any(beats(o, r) for o in rows)]


def frontier_claims(rows: list[dict]) -> list[str]:
    """Adaptive settings (verified or not) faster than Boost at Boost's quality, or better than
    Turbo at Turbo's speed: quality = TTS CER and S2S accuracy, both at least as good."""
    by_name = {r["name"]: r for r in rows}
    boost, turbo = by_name.get("boost"), by_name.get("turbo")

    def as_good(r, other):
        return r["tts_cer"] <= other["tts_cer"] and r["s2s"] >= other["s2s"]

    def versus(r, other):
        return (f"{r['speedup']:.2f}x against {other['speedup']:.2f}x; TTS CER {percent(r['tts_cer'])} against "
                f"{percent(other['tts_cer'])}, S2S {percent(r['s2s'])} against {percent(other['s2s'])}")

    claims = []
    for r in rows:
        if not r["min_confidence"]:
            continue
        if boost and r["speedup"] > boost["speedup"] and as_good(r, boost):
            claims.append(f"{r['name']}: faster than boost at boost's quality or better ({versus(r, boost)})")
        if turbo and r["speedup"] >= turbo["speedup"] and as_good(r, turbo) \
                and (r["tts_cer"], r["s2s"]) != (turbo["tts_cer"], turbo["s2s"]):
            claims.append(f"{r['name']}: better than turbo at turbo's speed or more ({versus(r, turbo)})")
    return claims


def format_rows(rows: list[dict]) -> str:
    width = max(len(r["name"]) for r in rows)
    head = (f"  {'setting':<{width}} {'tok/s':>6} {'speedup':>8} {'first ms':>9} {'tok/fwd':>8} {'= vanilla':>10} "
            f"{'TTS CER':>8} {'S2T':>7} {'S2S':>7}")
    lines = [head]
    for r in rows:
        first = "-" if r["first_audio_ms"] is None else f"{r['first_audio_ms']:.0f}"
        same = "-" if r["same_as_vanilla"] is None else f"{r['same_as_vanilla']}/{r['prompts']}"
        lines.append(f"  {r['name']:<{width}} {r['tokens_per_s']:>6.0f} {r['speedup']:>7.2f}x {first:>9} "
                     f"{r['tokens_per_forward']:>8.2f} {same:>10} {percent(r['tts_cer']):>8} "
                     f"{percent(r['s2t']):>7} {percent(r['s2s']):>7}")
    return "\n".join(lines)


def format_acceptance(rows: list[dict]) -> str:
    lines, width = [], max(len(r["name"]) for r in rows)
    for r in rows:
        if r["acceptance"]:
            rates = " ".join("-" if a is None else f"{a:.2f}" for a in r["acceptance"])
            lines.append(f"  {r['name']:<{width}} {rates}")
    return "\n".join(lines)


def cpu_name() -> str:
    """The CPU's model name as lscpu shows it (Linux), else platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def speed_quality(data: SuiteData, thresholds, limit: int | None = None, max_new: int | None = None,
                  log=print) -> dict:
    """Both rounds, scored -> the JSON-ready results. ``limit``: prompts of each task;
    ``max_new``: tokens per answer (default: up to the context length)."""
    if data.mctp is None:
        raise VitaError("the stage-4 checkpoint has no MCTP modules: nothing to compare with Vanilla")
    texts = data.test_texts[:limit]
    questions = data.sqa.test_seen[:limit]
    budget = max_new or data.llm.cfg.max_seq_len  # the engine caps it at the context length
    prompts = [(prompt_tokens(TTS_INSTRUCTION, text_ids(t)), budget) for t in texts]
    prompts += [(prompt_tokens(SPOKEN_ANSWER_INSTRUCTION, q.user), budget) for q in questions]
    settings = default_settings(thresholds)
    log(f"round 1: {len(settings)} settings on {len(texts)} TTS sentences and {len(questions)} spoken questions")
    tallies = run_round(data, prompts, settings, log)
    vanilla = tallies[settings[0]]
    heard: dict = {}
    rows = [score(data, s, t, len(texts), questions, vanilla, vanilla.seconds, heard) for s, t in tallies.items()]

    # the device's depth: verified Turbo's acceptance rates against the costs measured here
    records = tallies[Setting("turbo", True)].records
    n_modules = len(data.mctp)
    rates = acceptance_rates(records, n_modules)
    costs = measure_costs(data.llm.cfg, data.llm.vocab_size, range(1, n_modules + 1))
    log("the device's depth: verified Turbo's acceptance rates, costs measured here "
        "(infer/depth.py; random weights shaped as this model)")
    log(format_depths(rates, costs))
    depth = best_depth(rates, costs).k
    device = Setting(f"1,{depth}", True, label="(device)")
    log(f"round 2: vanilla and {device.name}")
    again = run_round(data, prompts, [Setting("vanilla"), device], log)
    rows.append(score(data, device, again[device], len(texts), questions, vanilla, again[Setting("vanilla")].seconds,
                      heard))
    return {"preset": data.cfg.preset, "run_dir": data.cfg.resolved_run_dir(), "cpu": cpu_name(),
            "threads": torch.get_num_threads(), "device": str(data.llm.lm_head.weight.device),
            "n_tts": len(texts), "n_questions": len(questions), "rows": rows,
            "frontier": pareto(rows), "claims": frontier_claims(rows),
            "vocab_size": data.llm.vocab_size, "acceptance_records": records,
            "depth_costs": [asdict(c) for c in costs], "device_depth": depth}


def format_results(r: dict) -> str:
    return "\n".join([
        f"speed and quality by decoding setting: the stage-4 model of {r['run_dir']} (preset {r['preset']}), "
        f"{r['n_tts']} TTS sentences + {r['n_questions']} spoken questions, greedy, "
        f"{r['cpu']}, {r['threads']} threads, {r['device']}",
        format_rows(r["rows"]),
        "  (speedup: against Vanilla in the same round; the (device) row ran in a second round beside Vanilla again)",
        "", "acceptance rate per module offset j = 0, 1, ... (verified settings)", format_acceptance(r["rows"]),
        "", "on the speed-quality frontier (speedup, TTS CER, S2S): " + ", ".join(r["frontier"]),
        *(["adaptive settings on the frontier:"] + ["  " + c for c in r["claims"]] if r["claims"]
          else ["no adaptive setting is faster than boost at its quality or better than turbo at its speed"]),
    ])


def draw(results: dict, folder: str) -> str:
    """speed_quality.png: speedup against TTS CER and against S2S accuracy, one point per setting
    (circles: the paper's modes, triangles: adaptive, squares: verified, whose output is Vanilla's)."""
    from vita_mini.eval.figures import pyplot, save
    plt = pyplot()
    rows = results["rows"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    for ax, key, label in ((axes[0], "tts_cer", "TTS judge CER (%), lower is better"),
                           (axes[1], "s2s", "spoken QA S2S accuracy (%), higher is better")):
        for r in rows:
            x, y = r["speedup"], 100 * (r[key] or 0)
            if r["verified"]:  # all at Vanilla's quality: short names, slanted, so they do not overlap
                ax.scatter(x, y, marker="s", color="C1")
                ax.annotate(r["name"].removeprefix("verified "), (x, y), fontsize=6, rotation=50,
                            xytext=(2, 5), textcoords="offset points")
            else:
                ax.scatter(x, y, marker="^" if r["min_confidence"] else "o", color="C2" if r["min_confidence"] else "C0")
                ax.annotate(r["name"], (x, y), fontsize=6, xytext=(3, -9), textcoords="offset points")
        ax.set(xlabel="speedup over Vanilla (same machine, same prompts)", ylabel=label)
        ax.margins(y=0.25)
    handles = [plt.Line2D([], [], marker=m, color=c, linestyle="") for m, c in (("o", "C0"), ("^", "C2"), ("s", "C1"))]
    axes[1].legend(handles, ["the paper's modes", "adaptive", "verified (Vanilla's output)"], fontsize=7,
                   loc="lower left")
    fig.suptitle(f"speed against quality, {results['preset']} model, {results['cpu']}, "
                 f"{results['n_tts']} TTS sentences + {results['n_questions']} spoken questions", fontsize=9)
    path = save(fig, os.path.join(folder, "speed_quality.png"))
    plt.close(fig)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vita_mini.eval.speed_quality", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_run_arguments(parser)
    parser.add_argument("--thresholds", type=threshold_arg, nargs="+", default=[0.5, 0.7, 0.9],
                        help="confidence thresholds of the adaptive settings, each in [0, 1), or "
                             "text,audio pairs such as 0.9,0.5")
    parser.add_argument("--limit", type=int, default=None, help="at most this many prompts of each task")
    parser.add_argument("--max-new", type=int, default=None,
                        help="at most this many tokens per answer (default: up to the context length)")
    parser.add_argument("--json", help="where to write the results (default: <run dir>/speed_quality.json)")
    parser.add_argument("--figures", help="also draw speed_quality.png into this folder (needs matplotlib)")
    args = parser.parse_intermixed_args(argv)
    for t in args.thresholds:
        check_confidence(t)
    for flag, value in (("--limit", args.limit), ("--max-new", args.max_new)):
        if value is not None and value < 1:
            raise VitaError(f"{flag} {value}: must be at least 1")
    cfg = run_config(args)
    if args.figures:
        from vita_mini.eval.figures import pyplot
        pyplot()  # without matplotlib, say so before minutes of work
    results = speed_quality(load_suite_data(cfg, pick_device(args.device)), args.thresholds, args.limit,
                            args.max_new)
    print(format_results(results))
    path = args.json or os.path.join(cfg.resolved_run_dir(), "speed_quality.json")
    save_json(path, results)
    print(f"wrote {path}")
    if args.figures:
        print(f"wrote {draw(results, args.figures)}")
    return 0


if __name__ == "__main__":
    run_main(main)
