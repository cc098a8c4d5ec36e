"""Transcripts of real speech, written in the characters the CTC heads spell.

A published corpus writes its transcripts its own way: LibriSpeech in capitals, LibriTTS and
LJSpeech with punctuation, numbers spelled out or not, accented letters, curly apostrophes. The
codec's and the judge's CTC heads spell a fixed alphabet (``corpus.alphabet``, by default the toy
world's `` abcdefghijklmnopqrstuvwxyz``), so ``normalize_transcript`` maps every transcript into
it, character by character, by these rules (any language's UTF-8 letters: put them in the
alphabet and they are kept):

1. Unicode NFKC (compatibility forms: the ligature "ﬁ" -> "fi", full-width "Ａ" -> "A"), then
   casefold (lower case, and "ß" -> "ss").
2. A character in the alphabet is kept.
3. A letter not in it whose NFKD base letters are ("é" -> "e", "ü" -> "u", "ñ" -> "n") is
   mapped to them (accents and other combining marks dropped).
4. An apostrophe ("'", "’", "ʼ") is dropped ("don't" -> "dont"), or written "'" when that is
   in the alphabet.
5. Hyphens, dashes, other punctuation and whitespace become a space, the word separator
   ("well-known" -> "well known"; dropped if the alphabet has no space).
6. Anything else (digits, symbols, letters with no base in the alphabet such as "æ" or "ж" with
   the default alphabet) is dropped and counted, so that the corpus reader can say what it lost.
7. Runs of spaces collapse into one, and the ends are stripped.

A transcript with nothing left (all digits, say) is empty, and the corpus reader skips it.
"""

from __future__ import annotations

import unicodedata
from collections import Counter

APOSTROPHES = "'\u2019\u02bc"  # ' ’ ʼ


def _base_letters(ch: str) -> str:
    """The letters of ``ch`` without their combining marks: "é" -> "e"; "æ" -> "æ"."""
    return "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.category(c).startswith("M"))


def normalize_transcript(text: str, alphabet: str) -> tuple[str, Counter]:
    """``text`` in the characters of ``alphabet`` (the module's rules), and a Counter of the
    characters dropped by rule 6."""
    keep = set(alphabet)
    separator = " " if " " in keep else ""
    apostrophe = "'" if "'" in keep else ""
    out, dropped = [], Counter()
    for ch in unicodedata.normalize("NFKC", text).casefold():
        category = unicodedata.category(ch)
        if ch in keep:
            out.append(ch)
        elif ch in APOSTROPHES:
            out.append(apostrophe)
        elif category.startswith("L") and (base := _base_letters(ch)) and set(base) <= keep:
            out.append(base)
        elif category.startswith(("P", "Z")) or ch.isspace():
            out.append(separator)
        else:
            dropped[ch] += 1
    return " ".join(word for word in "".join(out).split(" ") if word), dropped


def describe_dropped(dropped: Counter, limit: int = 8) -> str:
    """One short line: 'dropped 17 characters not in corpus.alphabet: '1' x9, '%' x3, ...'."""
    if not dropped:
        return "dropped no characters"
    shown = ", ".join(f"{ch!r} x{n}" for ch, n in dropped.most_common(limit))
    more = f" and {len(dropped) - limit} other kinds" if len(dropped) > limit else ""
    return f"dropped {sum(dropped.values())} characters not in corpus.alphabet: {shown}{more}"
