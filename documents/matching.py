"""Test-data matching that survives disguise: a normalised match key, and the rule's SQL over it.

A submission stores, beside `submitted_by` and `title`, a match key for each, computed here in
Python when the model saves: Unicode NFKC, accents dropped, case folded, letters from other
scripts that look Latin mapped to their Latin look-alikes, zero-width and other format
characters removed, camel case and digits split from letters, every other separator turned
into one space, and a run of single letters ("T e s t", "T.E.S.T") joined back into a word.
The key is lower-case letters and digits in words separated by single spaces; when it is
stored, a word made of two configured pieces ("testuser") is split (`split_joined`). The
submitter's key is stored a second time bare, without its spaces and digits (`bare_key`),
which is what a name is compared with.

The rule then matches the configured names and words against the keys in SQL that means the
same on every engine (`IN` over the bare key, and a whole-word test that is a literal regular
expression on PostgreSQL and instr() on SQLite), so SQLite and PostgreSQL give the same verdict
for every input; `is_test_content` is the same decision in Python, which the property test
compares both engines with.

A word matches a whole word of the key ("a test", "TEST-42", "Test_User"), or a word joined
to another configured word or name part ("testuser", "SampleFake"); a name matches the whole
key, spaces and digits ignored ("Anonymous  User", "anonymoususer", "AnonymousUser2").
Words that merely contain a test word ("contest", "attestation", "Tess Tester") pass.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Expression, F, Lookup, Q
from django.db.models.lookups import Exact, In
from django.db.models.sql.compiler import SQLCompiler

# Letters of other scripts (and Latin variants NFKC keeps) that read as a Latin letter.
# Applied after case folding, so only lower-case forms are needed.
CONFUSABLES = str.maketrans(
    {
        # Cyrillic
        "\u0430": "a",  # cyrillic small letter a
        "\u0432": "b",  # cyrillic small letter ve
        "\u0435": "e",  # cyrillic small letter ie
        "\u0451": "e",  # cyrillic small letter io
        "\u043a": "k",  # cyrillic small letter ka
        "\u043c": "m",  # cyrillic small letter em
        "\u043d": "h",  # cyrillic small letter en
        "\u043e": "o",  # cyrillic small letter o
        "\u0440": "p",  # cyrillic small letter er
        "\u0441": "c",  # cyrillic small letter es
        "\u0442": "t",  # cyrillic small letter te
        "\u0443": "y",  # cyrillic small letter u
        "\u0445": "x",  # cyrillic small letter ha
        "\u0455": "s",  # cyrillic small letter dze
        "\u0456": "i",  # cyrillic small letter byelorussian-ukrainian i
        "\u0457": "i",  # cyrillic small letter yi
        "\u0458": "j",  # cyrillic small letter je
        "\u0501": "d",  # cyrillic small letter komi de
        "\u051b": "q",  # cyrillic small letter qa
        "\u051d": "w",  # cyrillic small letter we
        "\u04bb": "h",  # cyrillic small letter shha
        "\u04cf": "l",  # cyrillic small letter palochka
        "\u04af": "y",  # cyrillic small letter straight u
        "\u050d": "g",  # cyrillic small letter komi sje
        "\u0261": "g",  # latin small letter script g
        # Greek
        "\u03b1": "a",  # greek small letter alpha
        "\u03b2": "b",  # greek small letter beta
        "\u03b5": "e",  # greek small letter epsilon
        "\u03b7": "n",  # greek small letter eta
        "\u03b9": "i",  # greek small letter iota
        "\u03ba": "k",  # greek small letter kappa
        "\u03bd": "v",  # greek small letter nu
        "\u03bf": "o",  # greek small letter omicron
        "\u03c1": "p",  # greek small letter rho
        "\u03c4": "t",  # greek small letter tau
        "\u03c5": "u",  # greek small letter upsilon
        "\u03c7": "x",  # greek small letter chi
        "\u03b3": "y",  # greek small letter gamma
        "\u03c9": "w",  # greek small letter omega
        "\u03f2": "c",  # greek lunate sigma symbol
        "\u03f3": "j",  # greek letter yot
        "\u03c2": "c",  # greek small letter final sigma
        "\u03bc": "u",  # greek small letter mu
        # Latin letters that look like others
        "\u0131": "i",  # latin small letter dotless i
        "\u0237": "j",  # latin small letter dotless j
        "\u0142": "l",  # latin small letter l with stroke
        "\u00f8": "o",  # latin small letter o with stroke
        "\u0111": "d",  # latin small letter d with stroke
        "\u0127": "h",  # latin small letter h with stroke
        "\u0167": "t",  # latin small letter t with stroke
        "\u00df": "ss",  # latin small letter sharp s
        "\u00e6": "ae",  # latin small letter ae
        "\u0153": "oe",  # latin small ligature oe
        "\u00f0": "d",  # latin small letter eth
        "\u00fe": "p",  # latin small letter thorn
        "\u0269": "i",  # latin small letter iota
        "\u0280": "r",  # latin letter small capital r
        "\u0475": "v",  # cyrillic small letter izhitsa
        # Armenian
        "\u057d": "u",  # armenian small letter seh
        "\u0581": "g",  # armenian small letter co
        # Cherokee: case folding maps its small letters to these capitals
        "\u13a2": "t",  # cherokee letter i
        "\u13da": "s",  # cherokee letter du
        "\u13ac": "e",  # cherokee letter gv
        "\u13aa": "a",  # cherokee letter go
        "\u13d4": "w",  # cherokee letter ta
        "\u13bb": "h",  # cherokee letter mi
        "\u13de": "l",  # cherokee letter tle
        "\u13df": "c",  # cherokee letter tli
        "\u13e2": "p",  # cherokee letter tlv
        "\u13e6": "k",  # cherokee letter tso
        "\u13b7": "m",  # cherokee letter lu
        "\u13f4": "b",  # cherokee letter yv
    }
)

_CAMEL = re.compile(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])")
_WORD = re.compile(r"[^\W_]+")
_DIGITS = "0123456789"


def _split_camel(text: str) -> str:
    """A space where a lower-case letter meets an upper-case one ("testUser" -> "test User")."""
    out: list[str] = []
    for i, char in enumerate(text):
        if i and char.isupper() and text[i - 1].islower():
            out.append(" ")
        out.append(char)
    return "".join(out)


def _join_single_letters(words: list[str]) -> list[str]:
    """ "t e s t user" -> "test user": a run of two or more one-letter words is one word."""
    joined: list[str] = []
    run: list[str] = []
    for word in [*words, ""]:
        if len(word) == 1 and not word.isdigit():
            run.append(word)
            continue
        if len(run) > 1:
            joined.append("".join(run))
        else:
            joined += run
        run = []
        if word:
            joined.append(word)
    return joined


def match_key(text: str) -> str:
    """The normalised form the test-data rule matches against (see the module's docstring)."""
    text = unicodedata.normalize("NFKC", text or "")
    # Format characters (zero-width spaces and joiners, BOM, bidi marks) vanish, not separate.
    text = "".join(char for char in text if unicodedata.category(char) != "Cf")
    text = _split_camel(text)
    text = unicodedata.normalize("NFKD", text)
    text = "".join(char for char in text if not unicodedata.combining(char))
    text = unicodedata.normalize("NFKC", text.casefold()).translate(CONFUSABLES)
    text = _CAMEL.sub(" ", text)
    words = _WORD.findall(text)
    return " ".join(_join_single_letters(words))


DEFAULT_TEST_SUBMITTERS = ("Anonymous User", "test", "Test User")
DEFAULT_TEST_WORDS = ("test", "fake", "dummy", "sample", "example", "lorem")


def test_submitters() -> list[str]:
    return list(getattr(settings, "DOCUMENTS_TEST_SUBMITTERS", DEFAULT_TEST_SUBMITTERS))


def test_words() -> list[str]:
    return list(getattr(settings, "DOCUMENTS_TEST_WORDS", DEFAULT_TEST_WORDS))


def split_joined(key: str, *, names: Iterable[str], words: Iterable[str]) -> str:
    """ "testuser sampledoc" -> "test user sampledoc": a word made of two configured pieces (test
    words and name parts, one of them a test word) is split, so that SQL matches whole words only.

    Done when the key is stored, with the lists configured then: a word added to the settings
    later splits the joined forms of rows saved from then on (re-saving a row re-splits it).
    """
    _, keyed_words, parts = _vocabulary(names, words)
    split = []
    for word in key.split(" "):
        for cut in range(1, len(word)):
            head, tail = word[:cut], word[cut:]
            if head in parts and tail in parts and (head in keyed_words or tail in keyed_words):
                word = f"{head} {tail}"
                break
        split.append(word)
    return " ".join(split)


NO_WORDS = " "
"""The stored key of text without a word ("", "?!", an emoji): not empty, which means "never computed"."""


def stored_key(text: str) -> str:
    """What a row stores as a match key: joined test words split (split_joined, with the configured
    lists), and never empty, so that an empty one shows a write around the model."""
    return split_joined(match_key(text), names=test_submitters(), words=test_words()) or NO_WORDS


def _bare(key: str) -> str:
    """A key with its spaces and digits removed: what a name is compared as."""
    return "".join(char for char in key if char not in _DIGITS and char != " ")


def bare_key(key: str) -> str:
    """What a row stores as the bare form of its submitter's stored key: the key without spaces and
    digits, and never empty (NO_WORDS when nothing is left: it is no name), like the key itself."""
    return _bare(key) or NO_WORDS


def stored_keys(*, submitted_by: str, title: str) -> dict[str, str]:
    """Every match key a submission stores, by field name: what Submission.save() writes."""
    submitted_by_key = stored_key(submitted_by)
    return {
        "submitted_by_key": submitted_by_key,
        "submitted_by_bare_key": bare_key(submitted_by_key),
        "title_key": stored_key(title),
    }


def _vocabulary(names: Iterable[str], words: Iterable[str]) -> tuple[list[str], list[str], set[str]]:
    """The normalised names (bare), the words, and the pieces joined words are made of."""
    names, words = list(names), list(words)
    bare_names = sorted({_bare(match_key(name)) for name in names} - {""})
    keyed_words = sorted({match_key(word) for word in words} - {""})
    parts = {w for w in keyed_words if " " not in w} | {p for name in names for p in match_key(name).split()}
    return bare_names, keyed_words, parts


def is_test_content(submitted_by: str, title: str, *, names: Iterable[str], words: Iterable[str]) -> bool:
    """The rule's verdict, in Python, for a submitter and title (what the SQL decides)."""
    names, words = list(names), list(words)
    bare_names, keyed_words, _ = _vocabulary(names, words)
    by_key, title_key = (split_joined(match_key(t), names=names, words=words) for t in (submitted_by, title))
    if bare_key(by_key) in bare_names:
        return True
    return any(f" {word} " in f" {key} " for key in (by_key, title_key) for word in keyed_words)


Column = Callable[[str], Expression]


def test_content_condition(*, names: Iterable[str], words: Iterable[str], column: Column = F) -> Q:
    """The rows whose match keys hold a configured name or word (`column` names a field)."""
    bare_names, keyed_words, _ = _vocabulary(names, words)
    condition = Q(pk__in=[])  # matches nothing: empty lists must not flag every row
    if bare_names:
        condition |= Q(In(column("submitted_by_bare_key"), bare_names))
    if keyed_words:
        for field in ("submitted_by_key", "title_key"):
            condition |= Q(HasKeyWord(column(field), keyed_words))
    return condition


def missing_key_condition(column: Column = F) -> Q:
    """Rows without match keys: written around the model (SQL), so their text was never checked."""
    return (
        Q(Exact(column("submitted_by_key"), ""))
        | Q(Exact(column("submitted_by_bare_key"), ""))
        | Q(Exact(column("title_key"), ""))
    )


class HasKeyWord(Lookup):
    """A match key holds one of the words as a whole word: exact, case as given, on every engine.

    Keys and words are lower-case letters and digits separated by single spaces, so a plain
    substring test of " word " in " key " decides: PostgreSQL in one regular expression
    (no class, no case folding: literal characters only), SQLite with instr(), both native.
    SQLite tests the word alone first, which " word " in " key " implies.
    """

    lookup_name = "has_key_word"
    prepare_rhs = False

    def get_db_prep_lookup(self, value: Any, connection: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
        return "%s", [value]

    def _words(self) -> list[str]:
        words = list(self.rhs)
        if not words or not all(_WORD_OR_WORDS.fullmatch(word) for word in words):
            raise ValueError("has_key_word takes match keys: lower-case words separated by single spaces.")
        return words

    def as_sql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
        raise NotImplementedError(f"has_key_word supports SQLite and PostgreSQL, not {connection.vendor}.")

    def as_postgresql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        alternatives = "|".join(re.escape(word) for word in self._words())
        return f"({lhs})::text ~ %s", [*lhs_params, f"(^| )({alternatives})( |$)"]

    def as_sqlite(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper) -> tuple[str, list[Any]]:
        # The bare word first: most keys lack it, and that test needs no padded copy of the key
        # (three times cheaper over a table than padding every key for every word).
        lhs, lhs_params = self.process_lhs(compiler, connection)
        words = self._words()
        clause = f"(instr({lhs}, %s) > 0 AND instr(' ' || {lhs} || ' ', %s) > 0)"
        params = [p for word in words for p in (*lhs_params, word, *lhs_params, f" {word} ")]
        return "(" + " OR ".join([clause] * len(words)) + ")", params


_WORD_OR_WORDS = re.compile(r"[^\W_]+( [^\W_]+)*")
