"""The toy world: a tiny, deterministic universe of people, facts and questions.

Everything the later stages train on comes from here, generated from templates
in pure Python (no downloads):

* **people** with four attributes each: the city they live in, their pet, their
  favourite colour and their favourite food;
* **facts**, one short sentence per person and attribute ("ana lives in rome");
* **questions and answers** about every fact ("where does ana live" -> "ana
  lives in rome", short answer "rome");
* **general sentences** ("the small dog runs to the park") that give the speech
  stages (ASR: speech -> text, TTS: text -> speech) some variety, and optionally
  some word salad ("pizza blue runs the") that no template predicts;
* **speech splits**: which sentences are ever spoken aloud, as train/val/test.

Every string uses only :data:`CHARSET` (lowercase letters and single spaces)
because the toy synthesizer speaks text one character at a time.

Why are some facts text-only?  A share of the people (``text_only_share``) is
never spoken about: their facts and the questions about them appear in no speech
split.  The language model learns these facts from *text* only; at test time we
ask about them *by voice*.  If the model answers correctly, knowledge learned in
the text modality transferred to the speech modality -- the central promise of a
speech-language model built on top of an LLM.

Their *names* may still be heard (``names_heard``, the default): general
sentences such as "ana sees a big cat" draw on every name, as a real speech corpus
mentions many people it says nothing about.  A model that never heard a name
spoken cannot write it from audio; it writes a name it knows instead ("where does
lea live" -> "elena lives in lima"), and no fact learned from text can help
(tutorials/03_speech_qa.md measures both worlds).
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

from vita_mini.vocab import CHARSET
_LETTERS = frozenset(CHARSET)

# --- vocabulary (short words so that sentences fit in 28 characters) -------
NAMES = """ana bob eva tom max lea ben ida sam zoe leo mia kai noa ugo ola
ravi nina omar hugo lena igor vera yuki emil rosa tara finn kofi amir lars ines
jana mira oleg sven pablo rahul sofia elena marco diego hanna clara felix lucas
maya nora otto rita ruth theo vito wanda yara zara aiko boris carl dina enzo
gina hans jude kira liam olga""".split()
CITIES = "rome paris oslo lima cairo delhi tokyo berlin madrid dublin vienna prague kyiv seoul quito milan".split()
PETS = "cat dog fish bird frog rat hen duck goat pig cow horse mouse snake bat crab".split()
COLOURS = "red blue green pink black white grey brown gold teal navy purple orange yellow".split()
FOODS = "rice bread soup cake pasta pizza corn beans eggs salad honey figs plums nuts cheese pie".split()
ADJS = "small big old young happy sad fast slow quiet tiny".split()
PLACES = "park shop lake farm hill road town school".split()
MOVES = "runs walks goes hops rushes comes".split()
RESTS = "sleeps sits plays waits".split()
SOCIAL = "calls helps meets sees".split()
WEATHER = "cold hot warm wet sunny windy dry dark".split()
TIMES = "noon night dawn dusk".split()
WE_MOVE = "go walk run drive".split()

RELATIONS = ("city", "pet", "colour", "food")
VALUES = {"city": CITIES, "pet": PETS, "colour": COLOURS, "food": FOODS}
FACT_TEMPLATES = {"city": "{p} lives in {v}", "pet": "{p} has a {v}",
                  "colour": "{p} likes {v}", "food": "{p} eats {v}"}
QUESTION_TEMPLATES = {
    "city": ("where does {p} live", "what city does {p} live in"),
    "pet": ("what pet does {p} have", "what animal does {p} own"),
    "colour": ("what colour does {p} like", "which colour does {p} like"),
    "food": ("what does {p} eat", "what food does {p} eat"),
}
# General sentence templates: a format string and the word list for each slot.
# "name" slots are filled with every person (``names_heard``) or the spoken people only.
GENERAL_TEMPLATES = [
    ("the {a} {b} {c} to the {d}", (ADJS, PETS, MOVES, PLACES)),
    ("a {a} {b} eats {c}", (COLOURS, PETS, FOODS)),
    ("{a} {b} to {c}", ("name", MOVES, CITIES)),
    ("{a} sees a {b} {c}", ("name", ADJS, PETS)),
    ("{a} and {b} go to the {c}", ("name", "name", PLACES)),
    ("{a} {b} {c}", ("name", SOCIAL, "name")),
    ("the {a} is {b}", (PETS, ADJS + COLOURS)),
    ("it is {a} in {b} today", (WEATHER, CITIES)),
    ("the {a} {b} in the {c}", (PETS, RESTS, PLACES)),
    ("we {a} to the {b} at {c}", (WE_MOVE, PLACES, TIMES)),
]


def is_speakable(text: str) -> bool:
    """True if ``text`` is non-empty, uses only CHARSET, and has no double or edge spaces."""
    return (bool(text) and set(text) <= _LETTERS and text == text.strip()
            and "  " not in text)


@dataclass(frozen=True)
class Fact:
    id: int
    person: str
    relation: str   # "city" | "pet" | "colour" | "food"
    value: str
    text: str       # e.g. "ana lives in rome"
    spoken: bool    # False: this fact never appears in any speech split


@dataclass(frozen=True)
class QA:
    question: str      # "where does ana live"
    answer: str        # the fact sentence: "ana lives in rome"
    short_answer: str  # the value: "rome"
    fact_id: int
    spoken: bool


@dataclass
class World:
    people: list[str]
    facts: list[Fact]
    qa: list[QA]
    general_sentences: list[str]
    speech_sentences: dict[str, list[str]]  # "train" / "val" / "test"

    @property
    def text_only_people(self) -> list[str]:
        return [p for p in self.people if not self.facts_about(p)[0].spoken]

    @property
    def spoken_people(self) -> list[str]:
        return [p for p in self.people if self.facts_about(p)[0].spoken]

    def facts_about(self, person: str) -> list[Fact]:
        return [f for f in self.facts if f.person == person]

    def questions_about(self, fact_id: int) -> list[QA]:
        return [q for q in self.qa if q.fact_id == fact_id]


def general_sentence_space(names: list[str], max_chars: int) -> list[list[str]]:
    """All distinct sentences of every general template (one list per template)."""
    seen: set[str] = set()
    space = []
    for fmt, slots in GENERAL_TEMPLATES:
        words = [names if s == "name" else s for s in slots]
        out = []
        for combo in itertools.product(*words):
            if len(set(combo)) < len(combo) and "name" in slots:
                continue  # no "ana calls ana"
            text = fmt.format(**dict(zip("abcd", combo)))
            if len(text) <= max_chars and text not in seen:
                seen.add(text)
                out.append(text)
        space.append(out)
    return space


def word_salad(rng: random.Random, sentences: list[str], n: int, max_chars: int) -> list[str]:
    """``n`` sentences of words drawn at random from ``sentences``' vocabulary, 3 to 6 words,
    at most ``max_chars`` long: speech no template predicts."""
    vocab = sorted({w for s in sentences for w in s.split()})
    out: list[str] = []
    while len(out) < n:
        words = [rng.choice(vocab) for _ in range(rng.randint(3, 6))]
        while len(" ".join(words)) > max_chars:
            words.pop()
        out.append(" ".join(words))
    return out


def _facts_and_questions(rng: random.Random, people: list[str], text_only: set[str],
                         max_chars: int) -> tuple[list[Fact], list[QA]]:
    """One fact per person and relation (a value drawn by ``rng``), and its questions."""
    facts, qa = [], []
    for person in people:
        for rel in RELATIONS:
            value = rng.choice(VALUES[rel])
            fact = Fact(len(facts), person, rel, value, FACT_TEMPLATES[rel].format(p=person, v=value),
                        spoken=person not in text_only)
            facts.append(fact)
            for q in QUESTION_TEMPLATES[rel]:
                qa.append(QA(q.format(p=person), fact.text, value, fact.id, fact.spoken))
    too_long = [s for s in [f.text for f in facts] + [q.question for q in qa] if len(s) > max_chars]
    if too_long:
        raise ValueError(f"max_chars={max_chars} is too small for fact/question {too_long[0]!r}")
    return facts, qa


def _general_sentences(rng: random.Random, spoken_names: list[str], n: int, max_chars: int) -> list[str]:
    """``n`` template sentences: each template's sentences shuffled, then drawn round-robin across
    templates so that every template is represented, then shuffled together."""
    space = general_sentence_space(spoken_names, max_chars)
    total = sum(map(len, space))
    if n > total:
        raise ValueError(f"templates can make only {total} distinct general sentences with "
                         f"max_chars={max_chars} and {len(spoken_names)} spoken people; asked for {n}")
    for sentences in space:
        rng.shuffle(sentences)
    general: list[str] = []
    for round_ in itertools.zip_longest(*space):
        general.extend(s for s in round_ if s is not None)
        if len(general) >= n:
            break
    general = general[:n]
    rng.shuffle(general)
    return general


def build_world(seed: int = 0, n_people: int = 24, n_general_sentences: int = 1200,
                text_only_share: float = 0.25, max_chars: int = 40,
                n_val: int = 64, n_test: int = 64, salad_share: float = 0.0,
                names_heard: bool = True) -> World:
    """Build the world; the same arguments always give the same world.

    ``salad_share``: the share of the general *training* sentences replaced by word salad
    (``word_salad``). Template sentences are so predictable that an LLM can guess much of a
    sentence from its first words; salad makes it read the audio (ASR) and copy the text (TTS)
    instead. Validation and test sentences are always template sentences.

    ``names_heard``: general sentences may name text-only people too (never their facts)."""
    if not 0.0 <= salad_share < 1.0:
        raise ValueError(f"salad_share must be in [0, 1), got {salad_share}")
    if not 1 <= n_people <= len(NAMES):
        raise ValueError(f"n_people must be in 1..{len(NAMES)} (size of the name pool), got {n_people}")
    if not 0.0 <= text_only_share <= 1.0:
        raise ValueError(f"text_only_share must be in [0, 1], got {text_only_share}")
    rng = random.Random(seed)

    # People and which of them are text-only.
    people = rng.sample(NAMES, n_people)
    n_text_only = int(text_only_share * n_people + 0.5)
    if text_only_share > 0 and n_people >= 2:
        n_text_only = max(1, n_text_only)
    if text_only_share < 1:
        n_text_only = min(n_text_only, n_people - 1)  # keep someone to talk about
    text_only = set(rng.sample(people, n_text_only))

    facts, qa = _facts_and_questions(rng, people, text_only, max_chars)
    named = people if names_heard else [p for p in people if p not in text_only]
    general = _general_sentences(rng, named, n_general_sentences, max_chars)

    # Speech splits: val/test come from general sentences only, so every spoken
    # fact and question lands in train (later stages memorise them).
    if n_val + n_test >= len(general):
        raise ValueError(f"n_val + n_test = {n_val + n_test} must be smaller than "
                         f"n_general_sentences = {len(general)}")
    held_out = rng.sample(general, n_val + n_test)
    val, test = held_out[:n_val], held_out[n_val:]
    held = set(held_out)
    spoken_text = [f.text for f in facts if f.spoken] + [q.question for q in qa if q.spoken]
    general_train = [s for s in general if s not in held]
    n_salad = round(salad_share * len(general_train))
    salad = word_salad(rng, general_train, n_salad, max_chars)
    train = general_train[:len(general_train) - n_salad] + salad + spoken_text
    train = list(dict.fromkeys(train))  # dedupe, keep order
    rng.shuffle(train)
    return World(people, facts, qa, general, {"train": train, "val": val, "test": test})
