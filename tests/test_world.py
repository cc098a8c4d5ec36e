import pytest

from vita_mini.data import world as W
from vita_mini.data.world import build_world, is_speakable
from vita_mini.vocab import CHARSET

TINY = dict(n_people=8, n_general_sentences=120, max_chars=28, n_val=16, n_test=16)


def all_strings(w):
    yield from w.people
    for f in w.facts:
        yield from (f.person, f.relation, f.value, f.text)
    for q in w.qa:
        yield from (q.question, q.answer, q.short_answer)
    yield from w.general_sentences
    for split in w.speech_sentences.values():
        yield from split


def test_charset_and_is_speakable():
    assert CHARSET == " abcdefghijklmnopqrstuvwxyz"
    assert is_speakable("ana lives in rome")
    for bad in ["", " ana", "ana ", "ana  bob", "Ana", "ana.", "ana 2"]:
        assert not is_speakable(bad)


def test_vocabulary_is_speakable_and_names_are_not_words():
    assert len(W.NAMES) >= 64 and len(set(W.NAMES)) == len(W.NAMES)
    assert all(3 <= len(n) <= 5 for n in W.NAMES)
    words = set()
    for fmt, slots in W.GENERAL_TEMPLATES:
        words |= set(fmt.replace("{", " ").replace("}", " ").split()) - set("abcd")
        words |= {x for s in slots if s != "name" for x in s}
    for rel in W.RELATIONS:
        words |= set(W.VALUES[rel])
        for t in (W.FACT_TEMPLATES[rel], *W.QUESTION_TEMPLATES[rel]):
            words |= set(t.split()) - {"{p}", "{v}"}
    assert all(is_speakable(x) for x in words | set(W.NAMES))
    assert not words & set(W.NAMES)


def test_longest_fact_and_question_fit_28_chars():
    longest = max(W.NAMES, key=len)
    for rel in W.RELATIONS:
        for v in W.VALUES[rel]:
            assert len(W.FACT_TEMPLATES[rel].format(p=longest, v=v)) <= 28
        for q in W.QUESTION_TEMPLATES[rel]:
            assert len(q.format(p=longest)) <= 28


def test_deterministic():
    assert build_world(seed=3) == build_world(seed=3)
    assert build_world(seed=3, **TINY) == build_world(seed=3, **TINY)
    assert build_world(seed=3) != build_world(seed=4)


@pytest.mark.parametrize("kwargs", [{}, TINY], ids=["default", "tiny"])
def test_strings_charset_and_length(kwargs):
    w = build_world(**kwargs)
    max_chars = kwargs.get("max_chars", 40)
    for s in all_strings(w):
        assert is_speakable(s), s
        assert len(s) <= max_chars, s


@pytest.mark.parametrize("kwargs", [{}, TINY], ids=["default", "tiny"])
def test_structure_and_splits(kwargs):
    w = build_world(**kwargs)
    n_people = kwargs.get("n_people", 24)
    assert len(w.people) == len(set(w.people)) == n_people
    assert len(w.facts) == 4 * n_people and [f.id for f in w.facts] == list(range(len(w.facts)))
    assert len(w.general_sentences) == len(set(w.general_sentences)) == kwargs.get("n_general_sentences", 1200)

    # every fact has a QA whose answer is the fact and whose short answer is the value
    for f in w.facts:
        qs = w.questions_about(f.id)
        assert qs and all(q.answer == f.text and q.short_answer == f.value and q.spoken == f.spoken for q in qs)

    sp = w.speech_sentences
    train, val, test = (set(sp[k]) for k in ("train", "val", "test"))
    assert len(sp["val"]) == len(val) == kwargs.get("n_val", 64)
    assert len(sp["test"]) == len(test) == kwargs.get("n_test", 64)
    assert len(sp["train"]) == len(train)
    assert not (train & val or train & test or val & test)
    pool = set(w.general_sentences) | {f.text for f in w.facts if f.spoken} | {q.question for q in w.qa if q.spoken}
    assert train | val | test == pool

    # spoken facts all in train; text-only facts/questions never spoken
    assert {f.text for f in w.facts if f.spoken} <= train
    hidden = {f.text for f in w.facts if not f.spoken} | {q.question for q in w.qa if not q.spoken}
    assert not hidden & (train | val | test)
    text_only = set(w.text_only_people)
    assert set(w.spoken_people) | text_only == set(w.people)


@pytest.mark.parametrize("names_heard", [True, False])
def test_text_only_names_heard_or_not(names_heard):
    """names_heard: general sentences name text-only people too, but never say their facts."""
    w = build_world(names_heard=names_heard)
    spoken = set().union(*w.speech_sentences.values())
    text_only = set(w.text_only_people)
    naming = [s for s in spoken if set(s.split()) & text_only]
    assert bool(naming) == names_heard
    hidden = {f.text for f in w.facts if not f.spoken} | {q.question for q in w.qa if not q.spoken}
    assert not hidden & spoken
    assert all(s in w.general_sentences for s in naming)


@pytest.mark.parametrize("n_people,share,expected", [(24, 0.25, 6), (8, 0.25, 2), (2, 0.1, 1), (5, 0.0, 0), (1, 0.5, 0)])
def test_text_only_share(n_people, share, expected):
    w = build_world(n_people=n_people, text_only_share=share, n_general_sentences=200, n_val=8, n_test=8)
    assert len(w.text_only_people) == expected
    assert all(not f.spoken for p in w.text_only_people for f in w.facts_about(p))


def test_errors():
    with pytest.raises(ValueError, match="n_people"):
        build_world(n_people=len(W.NAMES) + 1)
    with pytest.raises(ValueError, match="distinct general sentences"):
        build_world(n_people=4, max_chars=28, n_general_sentences=10**6)
    with pytest.raises(ValueError):
        build_world(n_general_sentences=100, n_val=60, n_test=60)
    with pytest.raises(ValueError, match="max_chars"):
        build_world(max_chars=12)


def test_template_space_is_large():
    names = W.NAMES[:6]
    assert sum(map(len, W.general_sentence_space(names, 28))) >= 300
    assert sum(map(len, W.general_sentence_space(names, 40))) >= 5000


def test_small_preset_builds():
    w = build_world(n_people=64, n_general_sentences=8000, max_chars=60)
    assert len(w.general_sentences) == 8000 and len(w.facts) == 256
    assert len(w.text_only_people) == 16


def test_corpus_gives_every_training_sentence_an_assistant_take(tiny_cfg):
    from vita_mini.data.corpus import load_corpus

    corpus = load_corpus(tiny_cfg, log=lambda *_: None)
    a = tiny_cfg.synth.assistant_voice
    for split in ("train", "val"):
        texts = {corpus.texts[u] for u in corpus.indices(split)}
        by_assistant = {corpus.texts[u] for u in corpus.indices(split) if corpus.speakers[u] == a}
        assert by_assistant == texts  # every sentence has an assistant-voice take
    voices = {int(corpus.speakers[u]) for u in corpus.indices("train")}
    assert voices == set(range(tiny_cfg.synth.n_speakers))  # and the others speak too
    test = [corpus.texts[u] for u in corpus.indices("test")]
    assert len(test) == len(set(test))  # one take per test sentence, any voice
    assert len({int(corpus.speakers[u]) for u in corpus.indices("test")}) > 1


def test_word_salad_is_in_the_alphabet_and_fits():
    import random

    from vita_mini.data.world import is_speakable, word_salad

    salad = word_salad(random.Random(0), ["the red cat runs", "ana lives in rome"], 50, 20)
    assert len(salad) == 50 and all(is_speakable(s) and len(s) <= 20 for s in salad)
