"""French language filter: keep French documents, drop foreign paragraphs from mixed ones.

Why it is built this way:

* **A statistical detector alone is too slow and not precise enough.** Seeded langdetect takes 2 to 4 ms
  per call (a fixed cost of random sampling plus a pure-Python pass over the characters), which caps a
  build at well under 1 MB/s on short documents, and it calls Latin, Irish and Yoruba "French" because it
  has no profile for them (87 % French precision on 3-sentence paragraphs of 75 languages).
* **French announces itself through its function words.** ``les``, ``des``, ``une``, ``dans``, ``pour``,
  ``est``, the elisions ``l'`` ``d'`` ``qu'`` ... make up a third of any French prose and are rare
  elsewhere. A count of them (:func:`lexical_evidences`: the windows or paragraphs of a whole batch split
  at once on their UTF-8 bytes, one dict look-up per distinct token) settles most texts on its own: plainly
  French, or plainly not (95 % of the 3-sentence paragraphs). Only the doubtful rest goes to the detector,
  and when the detector answers "French" for a text with almost no French function words (Latin, Irish,
  Yoruba), the lexical evidence overrules it (the *second opinion*). Together: 100 % French precision and
  recall on those paragraphs, ``bench/language.py``.
* **Bounded cost per document.** A long document is judged on a few windows spread over it, cut at line
  breaks, never on all of it: a 200 KB speech costs at most ``windows`` detector calls.
* **Paragraph mode** handles mixed documents (an English quotation inside a French speech, a bilingual
  page): every paragraph gets the cheap lexical test, the doubtful ones the detector, and the paragraphs
  found foreign are removed; the rest of the text stays byte-identical.
* **Deterministic.** The lexical test is a pure function of the text. langdetect samples n-grams at
  random: it is seeded, and each call re-seeds its own generator, so an answer depends on the text only,
  never on what was detected before (nor on the process or the call order).
* **Pluggable detector.** :class:`LanguageDetector` is the interface; ``langdetect`` is the default and
  ``lingua`` (optional ``lingua-language-detector``) a second backend. Detectors are built once per
  process and shared; langdetect's profiles are read once and their n-grams turned into rows on first use.

``signals`` fills ``language`` (ISO 639-1 code, ``und`` when undetermined), ``language_score`` (how
French the kept text is, 0 to 1) and ``language_removed_chars``; ``decide`` compares the score with
the ``min_score`` of the document's profile only, so the threshold can be re-tuned without measuring
again. A profile with ``skip_undetermined`` (debates, encyclopedia articles) leaves the windows with no
function words of any language (a table, a list of names and dates) out of its documents' score: they
are part of such documents, and say nothing about their language.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, NamedTuple, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from overton.corpus.config import BUILTIN_PROFILES, LanguageConfig, ProfileLanguage
from overton.corpus.schema import text_sha256
from overton.pipelines.step import Filter, Rejection, profile_names, set_column

UNDETERMINED = "und"

# --- lexical evidence ---------------------------------------------------------------------------------

#: Frequent French words that are rare in other languages (elisions keep their apostrophe).
FRENCH_STRONG = frozenset(
    """
    les des du et est une dans pour pas sur aux avec cette ces ils elle elles nous vous sont été où leur leurs
    comme tout tous toute toutes très être avoir fait faire voir aussi ont était étaient avait aurait serait
    seront sommes êtes ses par à notre votre même sans depuis donc cela ça celui celle ceux dont sous chez
    après avant encore peut peuvent doit doivent faut veux veut voudrais pouvons pourrait devons alors ainsi
    contre selon vers pendant beaucoup moins autre autres avons avez plus lorsque puisque parce quand déjà
    quelques quelque chaque plusieurs certains certaines cet telle ici rien oui toujours jamais peu assez puis
    enfin ensuite abord également cependant toutefois pourtant surtout afin fois deux trois monsieur madame
    l' d' qu' j' n' s' c' m' jusqu' lorsqu' puisqu' quelqu' presqu' aujourd'
    """.split()
)
#: Frequent French words that other languages share (Italian ``il``, Spanish ``que``, Romanian ``au``,
#: Portuguese ``mais``, Vietnamese ``là`` ...): half a point each.
FRENCH_WEAK = frozenset(
    "le la de en un que qui a au il je ne se sa son ma mon mes tu on ou si y ce ai lui nos vos mais entre bien "
    "car sera suis tant là".split()
)
#: Function words of the languages most often met beside French (or mistaken for it), minus French words.
#: Each counts against French, and the language with most of them names a foreign text the detector was
#: not asked about.
FOREIGN_WORDS: dict[str, str] = {
    "en": "the of and to in is that for with was are this it be by from have has were which not at as an or "
          "but his her they their would will been had we shall",
    "de": "der die und das ist nicht mit auf den dem für von sich zu ein eine auch wird werden",
    "nl": "het een van niet dat op zijn voor met ook wordt worden",
    "es": "el los las y del por con una es para lo como más pero su sus fue está muy también cuando sobre hasta",
    "pt": "o os do da dos das em não um uma com mais foi ao seu sua são pelo pela",
    "it": "che di e per non della sono gli nel delle degli alla anche questo questa più è stato essere hanno "
          "dell' all' nell' un'",
    "ca": "els amb i és dels seva seves aquest aquesta aquests aquestes mateix mateixa però molt més també altre "
          "altres quals tots totes ha",
    "ro": "și în cu pe din este care nu fost sau mai cel cea",
    "la": "in ad cum sed quae quod ut ab ex enim autem etiam eius sunt erat esset ubi apud atque ac nec necnon "
          "inter hoc hac cuius quam quo qua",
}
_FOREIGN_LANGUAGES = tuple(FOREIGN_WORDS)
_PUNCTUATION = ',.;:!?()«»"-'


def _word_classes() -> dict[str, int]:
    """Word -> 0 (strong French), 1 (weak French) or 2 + index of a foreign language (first one wins)."""
    classes: dict[str, int] = {}
    for index, language in enumerate(_FOREIGN_LANGUAGES):
        for word in FOREIGN_WORDS[language].split():
            classes.setdefault(word, 2 + index)
    classes.update({word: 1 for word in FRENCH_WEAK})
    classes.update({word: 0 for word in FRENCH_STRONG})
    return classes


_CLASSES = _word_classes()


class Evidence(NamedTuple):
    """What the function words of a text say about it."""

    words: int
    #: (strong + weak / 2 - foreign) / words: about 0.3 to 0.6 for French prose, below 0.1 for almost
    #: everything else (Catalan, the closest, reaches 0.25 on short paragraphs).
    french: float
    #: strong / words: the part of the evidence no other language shares (Catalan's is mostly weak words
    #: and elisions).
    strong: float
    #: The foreign language whose function words clearly dominate (at least 15 % of the words and twice the
    #: runner-up), else "und": a label for texts the detector was not asked about, not a language detector.
    foreign_language: str


def lexical_evidence(text: str) -> Evidence:
    """What the function words of one text say: :func:`lexical_evidences` of a single text."""
    return lexical_evidences([text])[0]


def lexical_evidences(texts: Sequence[str]) -> list[Evidence]:
    """Count French and foreign function words in every text at once.

    Words are those of ``text.lower()`` split at white space (as ``str.split`` knows it) and at common
    punctuation and hyphens (``est-ce``, ``a-t-il``), and after apostrophes, typographic or not, which
    stay with their word: ``l'État`` gives ``l'`` and ``état``. Numbers are not words: a list of votes or
    amendment numbers would dilute the ratios.

    Splitting runs over the UTF-8 bytes of all the texts together (:func:`_tokens`, already cut into words),
    and the distinct words are lowered in one call and looked up once each (a batch's few tens of thousands
    of distinct words stand for millions), so no Python runs per word of the text, nor per text.
    """
    return _evidences(_word_counts(texts))


def _word_counts(texts: Sequence[str]) -> np.ndarray:
    """(texts, codes): how many words of each code (:func:`_word_codes`) every text has."""
    if not texts:
        return np.zeros((0, _CODES), np.int64)
    tokens, rows = _tokens(texts)
    encoded = tokens.dictionary_encode()
    codes = np.array(_word_codes(encoded.dictionary.to_pylist()), np.int64)
    counts = np.bincount(rows * _CODES + codes[encoded.indices.to_numpy()], minlength=len(texts) * _CODES)
    return counts.reshape(len(texts), _CODES)


_CLASS_COUNT = 2 + len(_FOREIGN_LANGUAGES)
_OTHER_WORD, _NUMBER = _CLASS_COUNT, _CLASS_COUNT + 1  # the codes after the classes
_CODES = _CLASS_COUNT + 2
#: White space as ``str.split`` knows it (all of it in the first 65,536 code points).
_SPACES = "".join(c for c in map(chr, range(0x10000)) if c.isspace())
_BREAKS = _SPACES + _PUNCTUATION
#: Breaks of two or three UTF-8 bytes (« », the no-break and wide spaces), and the first bytes of those and of
#: the typographic apostrophe.
_WIDE_BREAKS = np.array(sorted(ord(c) for c in _BREAKS if c >= "\x80"))
_RIGHT_QUOTE = 0x2019
_WORD_BYTE, _BREAK_BYTE, _LEAD_BYTE = 0, 1, 2
_BYTE_KIND = np.zeros(256, np.uint8)
_BYTE_KIND[[ord(c) for c in _BREAKS if c < "\x80"]] = _BREAK_BYTE
_BYTE_KIND[[chr(point).encode()[0] for point in [*_WIDE_BREAKS, _RIGHT_QUOTE]]] = _LEAD_BYTE


def _word_codes(words: list[str]) -> list[int]:
    """The code of every word: its class, else number or other word.

    The words are lowered together, joined by a line break: Python's ``str.lower`` looks at a letter's
    neighbours only for the Greek final sigma, and a line break ends that context as a word's end does.
    """
    lowered = "\n".join(words).lower().split("\n") if words else []
    return [_CLASSES.get(word, _NUMBER if word.isdigit() else _OTHER_WORD) for word in lowered]


def _tokens(texts: Sequence[str]) -> tuple[pa.Array, np.ndarray]:
    """The words of all ``texts`` (runs of bytes between breaks, never across two texts) and the text of each.

    Works on the texts' UTF-8 bytes: an ASCII break is one byte; a wider one is recognised by decoding
    the characters that start with one of its lead bytes (few in French text); a typographic apostrophe
    becomes ``'`` and two break bytes. A word also ends after an apostrophe, which it keeps (``l'`` ``état``,
    ``aujourd'`` ``hui``), as ``str.replace("'", "' ").split()`` would cut it. Lower-casing comes after
    splitting: no character's lower case is a break or an apostrophe.
    """
    array = pa.array(texts, pa.large_string())
    offsets = np.frombuffer(array.buffers()[1], np.int64, len(texts) + 1)
    size = int(offsets[-1])
    data = np.frombuffer(array.buffers()[2], np.uint8, size).copy() if size else np.zeros(0, np.uint8)
    kind = _BYTE_KIND[data]
    breaks = kind == _BREAK_BYTE
    leads = np.flatnonzero(kind == _LEAD_BYTE)
    if len(leads):
        following = np.concatenate([data, np.zeros(2, np.uint8)])
        first = data[leads].astype(np.int64)
        second = following[leads + 1].astype(np.int64) & 0x3F
        third = following[leads + 2].astype(np.int64) & 0x3F
        two_bytes = first < 0xE0
        points = np.where(two_bytes, (first & 0x1F) << 6 | second, (first & 0x0F) << 12 | second << 6 | third)
        wide = np.isin(points, _WIDE_BREAKS)
        breaks[leads[wide]] = breaks[leads[wide] + 1] = True
        breaks[leads[wide & ~two_bytes] + 2] = True
        quotes = leads[points == _RIGHT_QUOTE]
        data[quotes] = ord("'")
        breaks[quotes + 1] = breaks[quotes + 2] = True
    # a word starts at a word byte after a break, an apostrophe or at a text's start, and ends before a break,
    # at an apostrophe or before a text's end
    text_edge = np.zeros(size + 1, bool)
    text_edge[offsets] = True
    cut_around = np.zeros(size + 2, bool)
    cut_around[1:-1] = breaks
    word = ~breaks
    apostrophes = word & (data == ord("'"))
    ends = np.flatnonzero(word & (text_edge[1:] | cut_around[2:] | apostrophes))
    cut_around[1:-1] |= apostrophes
    starts = np.flatnonzero(word & (text_edge[:-1] | cut_around[:-2]))
    token_offsets = np.concatenate([[0], np.cumsum(ends - starts + 1)])
    tokens = pa.Array.from_buffers(pa.large_string(), len(starts),
                                   [None, pa.py_buffer(token_offsets), pa.py_buffer(np.compress(word, data))])
    per_text = np.diff(np.searchsorted(starts, offsets))
    return tokens, np.repeat(np.arange(len(texts)), per_text)


def _ratios(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The words, French score and strong share (:class:`Evidence`) of every row of word counts by code; both
    ratios are 0.0 for a row without words."""
    words = counts[:, :_NUMBER].sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        french = (counts[:, 0] + 0.5 * counts[:, 1] - counts[:, 2:_CLASS_COUNT].sum(axis=1)) / words
        strong = counts[:, 0] / words
    return words, np.where(words > 0, french, 0.0), np.where(words > 0, strong, 0.0)


def _evidences(counts: np.ndarray) -> list[Evidence]:
    """The :class:`Evidence` of every row of word counts by code, computed for all rows at once (the same
    float operations in the same order as one row at a time)."""
    words, french, strong = _ratios(counts)
    foreign = counts[:, 2:_CLASS_COUNT]
    second, first = np.sort(foreign, axis=1)[:, -2:].T
    guessed = (words > 0) & (first >= np.maximum(2, 0.15 * words)) & (first >= 2 * second)
    guesses = np.where(guessed, np.argmax(foreign, axis=1), -1).tolist()  # argmax: the first of equal counts
    return [Evidence(n, f, s, _FOREIGN_LANGUAGES[g] if g >= 0 else UNDETERMINED)
            for n, f, s, g in zip(words.tolist(), french.tolist(), strong.tolist(), guesses, strict=True)]


# --- detectors ----------------------------------------------------------------------------------------


class Detection(NamedTuple):
    #: ISO 639-1 code of the most probable language; "und" when the text has nothing to judge.
    language: str
    #: Probability that the text is French, 0 to 1.
    french: float


class LanguageDetector(Protocol):
    """A statistical language detector: the second stage, asked only about doubtful texts.

    Implementations must be deterministic (same text, same answer, whatever was asked before) and cheap
    to construct: share heavy models per process (see :func:`get_detector`).
    """

    name: str

    def detect(self, text: str) -> Detection: ...


class LangdetectDetector:
    """langdetect (a port of Google's language-detection: naive Bayes on character 1-3-grams, 55 languages).

    Seeded: each call re-seeds the detector's own ``random.Random`` with ``seed`` before sampling, so the
    answer for a text never depends on earlier calls. Unseeded, langdetect answers differently run to run.
    Its sampling loop runs on numpy rows (:func:`_sampling_detector_class`): the same probabilities, to the
    last bit, in half the time.
    """

    name = "langdetect"

    def __init__(self, seed: int = 0):
        self.seed = seed
        self._factory = _langdetect_factory(seed)

    def detect(self, text: str) -> Detection:
        from langdetect.lang_detect_exception import LangDetectException

        detector = _sampling_detector_class()(self._factory)
        detector.set_max_text_length(len(text) + 1)  # callers bound the text; never cut it silently
        detector.append(text)
        try:
            probabilities = detector.get_probabilities()
        except LangDetectException:  # no letters at all: digits, punctuation, an empty text
            return Detection(UNDETERMINED, 0.0)
        if not probabilities:
            return Detection(UNDETERMINED, 0.0)
        language = probabilities[0].lang.split("-")[0]  # zh-cn, zh-tw -> zh
        return Detection(language, sum(p.prob for p in probabilities if p.lang == "fr"))


@functools.cache
def _sampling_detector_class() -> type:
    """langdetect's ``Detector`` with its sampling loop on numpy rows: the same answers to the last bit.

    langdetect multiplies 55 language probabilities by the profile of a randomly drawn n-gram, one float at
    a time in Python, hundreds of times per trial and seven trials per call: most of a call's time on a
    doubtful text. Here each draw is one numpy multiplication of a row. The draws are the same (the
    detector's own seeded ``random.Random``, one ``choice`` per iteration), and so is every operation on
    every float, in the same order: ``(weight + p) * prob`` element by element, the sum of the
    normalisation in Python's left-to-right ``sum``, so the probabilities are bit for bit langdetect's.
    """
    from langdetect.detector import Detector
    from langdetect.lang_detect_exception import ErrorCode, LangDetectException

    class SamplingDetector(Detector):
        #: n-gram -> its profile as a float64 row, converted from langdetect's list on first use in the process
        profiles: ClassVar[dict[str, np.ndarray]] = {}

        def _profile(self, ngram: str) -> np.ndarray:
            row = self.profiles.get(ngram)
            if row is None:
                row = self.profiles[ngram] = np.array(self.word_lang_prob_map[ngram], np.float64)
            return row

        def _detect_block(self):
            self.cleaning_text()
            ngrams = self._extract_ngrams()
            if not ngrams:
                raise LangDetectException(ErrorCode.CantDetectError, "No features in text.")
            distinct = {ngram: row for row, ngram in enumerate(dict.fromkeys(ngrams))}
            profiles = np.array([self._profile(ngram) for ngram in distinct])
            rows = [distinct[ngram] for ngram in ngrams]  # drawing a row here draws that n-gram in langdetect
            langprob = np.zeros(len(self.langlist))
            self.random.seed(self.seed)
            for _ in range(self.n_trial):
                prob = np.full(len(self.langlist), 1.0 / len(self.langlist))
                alpha = self.alpha + self.random.gauss(0.0, 1.0) * self.ALPHA_WIDTH
                factors = alpha / self.BASE_FREQ + profiles
                i = 0
                while True:
                    prob *= factors[self.random.choice(rows)]
                    if i % 5 == 0:
                        prob /= sum(prob.tolist())
                        if prob.max() > self.CONV_THRESHOLD or i >= self.ITERATION_LIMIT:
                            break
                    i += 1
                langprob += prob / self.n_trial
            self.langprob = langprob.tolist()

    return SamplingDetector


class _NgramProfiles:
    """langdetect's map of n-gram -> probability in each language, each row computed on its first look-up.

    ``DetectorFactory.add_profile`` computes the rows of all 88k n-grams of the 55 profiles up front, in Python
    (0.4 s and 65 MB a process); a build's detector looks up a few thousand. A row here is the same list of
    floats, computed the same way (``1.0 * freq / n_words[length - 1]``, 0.0 where a language lacks the n-gram).
    """

    def __init__(self, profiles: list[tuple[dict[str, int], list[int]]]):
        self._profiles = profiles
        self._ngrams = set().union(*(freq for freq, _ in profiles))

    def __contains__(self, ngram: object) -> bool:
        return ngram in self._ngrams

    def __getitem__(self, ngram: str) -> list[float]:
        if ngram not in self._ngrams:
            raise KeyError(ngram)
        length = len(ngram)
        if not 1 <= length <= 3:  # listed, never weighted (langdetect keeps such a row at zeros)
            return [0.0] * len(self._profiles)
        return [1.0 * freq[ngram] / n_words[length - 1] if ngram in freq else 0.0 for freq, n_words in self._profiles]


@functools.cache
def _langdetect_factory(seed: int):
    """langdetect's factory over its profiles, read once per process and shared by every detector: the
    languages in ``DetectorFactory.load_profile``'s order (the folder's listing), their n-grams looked up lazily."""
    import json
    import os

    from langdetect import DetectorFactory
    from langdetect.detector_factory import PROFILES_DIRECTORY

    names, profiles = [], []
    for filename in os.listdir(PROFILES_DIRECTORY):
        path = os.path.join(PROFILES_DIRECTORY, filename)
        if filename.startswith(".") or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as handle:
            profile = json.load(handle)
        names.append(profile["name"])
        profiles.append((profile["freq"], profile["n_words"]))
    factory = DetectorFactory()
    factory.langlist, factory.word_lang_prob_map = names, _NgramProfiles(profiles)
    factory.set_seed(seed)  # on this factory only: the class-wide DetectorFactory.seed is left alone
    return factory


class LinguaDetector:
    """lingua (``pip install lingua-language-detector``): n-gram models of 75 languages, deterministic.

    More precise than langdetect on its own (it knows Latin, Irish and Yoruba) and faster on short texts,
    but a 100 MB install, and its first call loads every language model: about 10 s and 1 GB per process.
    """

    name = "lingua"

    def __init__(self, seed: int = 0):  # deterministic without a seed; the parameter keeps one signature
        self._detector = _lingua_detector()

    def detect(self, text: str) -> Detection:
        values = self._detector.compute_language_confidence_values(text)
        if not values or values[0].value <= 0.0:
            return Detection(UNDETERMINED, 0.0)
        french = next((v.value for v in values if v.language.iso_code_639_1.name == "FR"), 0.0)
        return Detection(values[0].language.iso_code_639_1.name.lower(), french)


@functools.cache
def _lingua_detector():
    try:
        from lingua import LanguageDetectorBuilder
    except ImportError as error:
        raise ValueError(
            "language backend 'lingua' needs the lingua-language-detector package: "
            "pip install lingua-language-detector"
        ) from error
    return LanguageDetectorBuilder.from_all_languages().build()


#: Backend name (as written in overton.toml) -> constructor taking the seed.
DETECTORS: dict[str, Callable[[int], LanguageDetector]] = {
    "langdetect": LangdetectDetector,
    "lingua": LinguaDetector,
}


@functools.cache
def get_detector(name: str, seed: int = 0) -> LanguageDetector:
    """The process-wide detector for a backend name; a clear error for an unknown one."""
    try:
        return DETECTORS[name](seed)
    except KeyError:
        raise ValueError(f"unknown language backend {name!r}: choose one of {', '.join(DETECTORS)}") from None


# --- windows and paragraphs -----------------------------------------------------------------------------


def windows(text: str, count: int, size: int) -> list[str]:
    """At most ``count`` slices of about ``size`` characters spread evenly from start to end.

    A text of up to ``size`` characters is its own single window. Otherwise a window starts after the
    first line break within half a window of its evenly spaced position (else after a space) and ends at
    the last white space before ``size`` characters, so no word and, where possible, no paragraph is cut.
    """
    length = len(text)
    if length <= size:
        return [text] if text.strip() else []
    k = max(1, min(count, math.ceil(length / size)))
    step = (length - size) / (k - 1) if k > 1 else 0
    slices = []
    for i in range(k):
        start = round(i * step)
        if start:
            newline = text.find("\n", start, start + size // 2)
            if newline >= 0:
                start = newline + 1
            else:
                space = text.find(" ", start, start + size // 2)
                start = space + 1 if space >= 0 else start
        end = min(length, start + size)
        if end < length:
            cut = max(text.rfind(" ", start, end), text.rfind("\n", start, end))
            end = cut if cut > start + size // 2 else end
        piece = text[start:end]
        if piece.strip():
            slices.append(piece)
    return slices


class Verdict(NamedTuple):
    language: str
    french: float
    detector_called: bool
    overruled: bool


# --- the step --------------------------------------------------------------------------------------------


class LanguageFilter(Filter):
    """Keep French documents; in paragraph mode, first remove the foreign paragraphs of mixed documents.

    Each window (or doubtful paragraph) is judged in two stages. The lexical test decides alone when the
    French function words are plainly there (score >= ``lexical_french``) or plainly absent (score <=
    ``lexical_foreign``); otherwise the detector is asked, and its "French" answer is overruled when the
    lexical score is below ``veto_score``. A document's score is the length-weighted mean of its windows'
    French probabilities (1 or 0 when the lexical test decided). Texts without French function words
    (tables, lists of names) therefore score 0: they are not prose a French language model learns from.

    Settings are the keys of ``[language]`` in ``overton.toml`` (:class:`LanguageConfig`, where the
    defaults measured with ``bench/language.py`` are explained), given as keyword arguments; ``profiles``
    holds what each profile keeps (``[profiles.NAME.language]``): ``decide`` reads only their ``min_score``.
    """

    name = "language"
    columns = (
        pa.field("language", pa.string()),
        pa.field("language_score", pa.float32()),
        pa.field("language_removed_chars", pa.int64()),
    )

    def __init__(self, profiles: Mapping[str, ProfileLanguage] | None = None, **settings: Any):
        super().__init__()
        self.settings = LanguageConfig(**settings)
        self.profiles = dict(profiles if profiles is not None else
                             {name: profile.language for name, profile in BUILTIN_PROFILES.items()})

    @functools.cached_property
    def detector(self) -> LanguageDetector:
        """Built on first use: a batch the lexical test settles alone never loads a model."""
        return get_detector(self.settings.backend, self.settings.seed)

    def __getstate__(self) -> dict:
        """Ship the settings, not the loaded detector, to worker processes (local pool or Ray)."""
        state = self.__dict__.copy()
        state.pop("detector", None)
        return state

    # -- measuring --

    def judge(self, text: str, *, paragraph: bool = False, evidence: Evidence | None = None) -> Verdict:
        """French probability of one window (or doubtful paragraph); at most ``window_chars`` reach the detector.
        ``evidence``: the text's :func:`lexical_evidence`, when it was measured with others'.

        A text with plenty of French-only words (``strong``) *and* of one foreign language's function words
        is mixed (a window across a French paragraph and an English one): the lexical test does not judge
        it and does not overrule the detector, which weighs both parts (and paragraph mode splits them).

        A paragraph is judged inside a document already found French, so it is trusted from a lower lexical
        score (``paragraph_lexical_french``, shared words count: "le rapporteur a la parole"), the lexical
        test rejects it alone only on positive evidence (the function words of one foreign language, as in
        an English quotation), and the detector's "French" is not overruled: a French list of votes or
        amendment numbers has few function words of any language.
        """
        evidence = lexical_evidence(text) if evidence is None else evidence
        french_words = evidence.strong >= self.settings.lexical_french / 2
        mixed = french_words and evidence.foreign_language != UNDETERMINED
        if self._plainly_french(evidence.words, evidence.french, evidence.strong, paragraph):
            return Verdict("fr", 1.0, False, False)
        if evidence.words >= self.settings.min_words:
            foreign_evidence = not paragraph or evidence.foreign_language != UNDETERMINED
            if evidence.french <= self.settings.lexical_foreign and foreign_evidence and not mixed:
                return Verdict(evidence.foreign_language, 0.0, False, False)
        detection = self.detector.detect(text[: self.settings.window_chars])
        if not paragraph and not mixed and detection.french >= 0.5 and evidence.french < self.settings.veto_score:
            return Verdict(evidence.foreign_language, 0.0, True, True)
        return Verdict(detection.language, detection.french, True, False)

    def score(self, text: str, skip_undetermined: bool = False) -> tuple[str, float]:
        """(language, French score) of a whole text from its windows; with ``skip_undetermined``, the windows
        without evidence of any language do not count."""
        return self.scores([text], [skip_undetermined])[0]

    def scores(self, texts: Sequence[str], skip_undetermined: Sequence[bool]) -> list[tuple[str, float]]:
        """:meth:`score` of every text, the lexical evidence of all their windows measured at once. A text whose
        windows the lexical test all calls French scores 1.0 without a call per window (what :meth:`_score`
        would find: no detector, every window weighing 1.0)."""
        pieces = [windows(text, self.settings.windows, self.settings.window_chars) for text in texts]
        counts = _word_counts([window for windows_ in pieces for window in windows_])
        settled = self._plainly_french(*_ratios(counts), paragraph=False)
        results, at = [], 0
        for windows_, skip in zip(pieces, skip_undetermined, strict=True):
            chosen = slice(at, at + len(windows_))
            at += len(windows_)
            if windows_ and settled[chosen].all():
                self.stats["windows_judged"] += len(windows_)
                results.append(("fr", 1.0))
            else:
                results.append(self._score(list(zip(windows_, _evidences(counts[chosen]), strict=True)), skip))
        return results

    def _plainly_french(self, words: Any, french: Any, strong: Any, paragraph: bool) -> Any:
        """Whether the lexical test alone calls a text French, from its :class:`Evidence` values (numbers, or
        arrays of them: :meth:`judge` asks for one text, :meth:`scores` and :meth:`drop_foreign_paragraphs` for
        all at once)."""
        settings = self.settings
        lexical = (french >= settings.lexical_french) & (strong >= settings.lexical_french / 2)
        if paragraph:  # a paragraph of a French document is trusted from a lower score
            lexical = lexical | (french >= settings.paragraph_lexical_french)
        return (words >= settings.min_words) & lexical

    def _score(self, measured: list[tuple[str, Evidence]], skip_undetermined: bool) -> tuple[str, float]:
        weights: dict[str, float] = {}
        total = french = 0.0
        for window, evidence in measured:
            verdict = self.judge(window, evidence=evidence)
            self._count(verdict, "windows")
            if skip_undetermined and verdict.language == UNDETERMINED:
                self.stats["windows_skipped"] += 1
                continue
            total += len(window)
            french += len(window) * verdict.french
            if verdict.french < 0.5:
                weights[verdict.language] = weights.get(verdict.language, 0.0) + len(window)
        if not total:
            return UNDETERMINED, 0.0
        score = french / total
        if score >= 0.5 or not weights:
            return "fr", score
        # the most represented foreign language; a determined one beats "und", ties go to the smaller code
        language = min(weights, key=lambda lang: (lang == UNDETERMINED, -weights[lang], lang))
        return language, score

    def drop_foreign_paragraphs(self, texts: Sequence[str]) -> list[str]:
        """Every text without the paragraphs the detector calls foreign; kept ones are left byte-identical, and a
        text that loses none is returned as it is (the same object).

        Short paragraphs (speaker names, interjections, headings) are never dropped, and the lexical test
        spares the detector the plainly French ones and the plainly English (Spanish, German ...) ones. A
        paragraph without function words of any language is dropped only on the detector's word, so a French
        list of votes or names is not lost for lacking them. (The price: a Latin motto inside a French speech
        is usually kept.) The lexical evidence of all the texts' paragraphs is measured at once.
        """
        minimum = self.settings.paragraph_min_chars
        split = [text.split("\n\n") for text in texts]
        judged = [[len(p) >= minimum for p in paragraphs] for paragraphs in split]
        counts = _word_counts([p for paragraphs in split for p in paragraphs if len(p) >= minimum])
        settled = self._plainly_french(*_ratios(counts), paragraph=True)  # kept at 1.0, as judge() keeps them
        doubtful = np.flatnonzero(~settled)
        evidences = dict(zip(doubtful.tolist(), _evidences(counts[doubtful]), strict=True))
        self.stats["paragraphs_checked"] += sum(map(len, split))
        self.stats["paragraphs_judged"] += int(settled.sum())
        out, at = [], 0
        for text, paragraphs, marks in zip(texts, split, judged, strict=True):
            first, at = at, at + sum(marks)
            if settled[first:at].all():
                out.append(text)
                continue
            kept, k = [], first
            for paragraph, mark in zip(paragraphs, marks, strict=True):
                if mark:
                    k += 1
                    if not settled[k - 1]:
                        verdict = self.judge(paragraph, paragraph=True, evidence=evidences[k - 1])
                        self._count(verdict, "paragraphs")
                        if verdict.french < self.settings.paragraph_min_score:
                            self.stats["paragraphs_dropped"] += 1
                            continue
                kept.append(paragraph)
            out.append(text if len(kept) == len(paragraphs) else "\n\n".join(kept))
        return out

    def _count(self, verdict: Verdict, unit: str) -> None:
        self.stats[f"{unit}_judged"] += 1
        if verdict.detector_called:
            self.stats["detector_calls"] += 1
        if verdict.overruled:
            self.stats["second_opinions"] += 1

    def measure(self, texts: Sequence[str], skip_undetermined: Sequence[bool]) -> list[tuple[str, str, float]]:
        """(text to keep, language, score) of every document."""
        results = [(text, *scored) for text, scored in zip(texts, self.scores(texts, skip_undetermined), strict=True)]
        if not self.settings.paragraph_mode:
            return results
        mixed = [i for i, (text, _, score) in enumerate(results)
                 if score >= self.settings.paragraph_pass_min_score and "\n\n" in text]
        kept = self.drop_foreign_paragraphs([texts[i] for i in mixed])
        changed = [(i, text) for i, text in zip(mixed, kept, strict=True) if text is not texts[i]]
        rescored = self.scores([text for _, text in changed], [skip_undetermined[i] for i, _ in changed])
        for (i, text), scored in zip(changed, rescored, strict=True):
            results[i] = (text, *scored)
        return results

    def signals(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        texts = [text or "" for text in batch.column("text").to_pylist()]
        hashes = batch.column("content_sha256").to_pylist()
        skip = [self.profiles[name].skip_undetermined for name in profile_names(batch, self.profiles)]
        languages, scores, removed = [], [], []
        rewritten = False
        for i, (text, (kept, language, score)) in enumerate(zip(texts, self.measure(texts, skip), strict=True)):
            self.stats["documents_checked"] += 1
            self.stats["chars_checked"] += len(text)
            if kept is not text:
                rewritten = True
                texts[i], hashes[i] = kept, text_sha256(kept)
                self.stats["documents_rewritten"] += 1
                self.stats["chars_removed"] += len(text) - len(kept)
                if not kept:
                    self.stats["documents_emptied"] += 1
            languages.append(language)
            scores.append(score)
            removed.append(len(text) - len(kept))
        if rewritten:
            batch = set_column(batch, "text", pa.array(texts, pa.string()))
            batch = set_column(batch, "content_sha256", pa.array(hashes, pa.string()))
        batch = set_column(batch, "language", pa.array(languages, pa.string()))
        batch = set_column(batch, "language_score", pa.array(scores, pa.float32()))
        return set_column(batch, "language_removed_chars", pa.array(removed, pa.int64()))

    # -- judging --

    def decide(self, batch: pa.RecordBatch) -> list[Rejection]:
        """Reject a document whose French score is below its profile's ``min_score``, or whose text paragraph mode
        emptied.

        Reads the signal columns and the text's length only (never the text itself), so re-deciding with
        another threshold is cheap.
        """
        empty = pc.equal(pc.binary_length(batch.column("text")), 0).to_pylist()
        languages = batch.column("language").to_pylist()
        scores = batch.column("language_score").to_pylist()
        minimums = [self.profiles[name].min_score for name in profile_names(batch, self.profiles)]
        rejections: list[Rejection] = []
        for language, score, is_empty, minimum in zip(languages, scores, empty, minimums, strict=True):
            if score is None or score < minimum or is_empty:
                rejections.append(("not_french", {"language": language, "score": round(float(score or 0.0), 4)}))
            else:
                rejections.append(None)
        return rejections

