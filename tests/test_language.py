"""French language filter: deterministic, bounded cost, paragraph mode, replayable decisions, real-data floors."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from langdetect.detector import Detector
from langdetect.detector_factory import PROFILES_DIRECTORY, DetectorFactory
from langdetect.lang_detect_exception import LangDetectException

from overton.corpus.config import ProfileLanguage
from overton.corpus.schema import DOCUMENT_SCHEMA, text_sha256
from overton.corpus.text import clean_whitespace
from overton.pipelines.language import (
    FOREIGN_WORDS,
    FRENCH_STRONG,
    FRENCH_WEAK,
    Detection,
    Evidence,
    LangdetectDetector,
    LanguageFilter,
    _langdetect_factory,
    _sampling_detector_class,
    get_detector,
    lexical_evidence,
    lexical_evidences,
    windows,
)
from overton.pipelines.step import run_steps, to_work_batch, work_schema
from tests.conftest import SHARED_DATA, shared_file

REPO = Path(__file__).resolve().parents[1]

FRENCH = [
    "Mesdames et messieurs les députés, le Gouvernement a présenté ce matin un projet de loi qui vise à "
    "ouvrir le mariage aux couples de personnes de même sexe. C'est une réforme de justice et d'égalité.",
    "Nous avons entendu les inquiétudes des maires, et je veux leur dire que la loi sera appliquée partout "
    "sur le territoire, dans le respect des convictions de chacun.",
    "La commission des lois s'est réunie à plusieurs reprises ; elle a examiné plus de cinq mille "
    "amendements, dont une grande partie portait sur la filiation et l'adoption.",
    "Je souhaite enfin rappeler que cette question n'est pas nouvelle : depuis plus de dix ans, des "
    "familles attendent que la République reconnaisse leur existence.",
]
ENGLISH_QUOTE = (
    "We shall fight on the beaches, we shall fight on the landing grounds, we shall fight in the fields "
    "and in the streets, we shall fight in the hills; we shall never surrender."
)
# Texts the lexical test cannot settle, so they reach the seeded detector: short lines, Latin (which
# langdetect calls French), lists of names, another Romance language, a few words.
DOUBTFUL = [
    "Incolae Brentenses appellantur. Incolae Burgomalenses appellantur.",
    "Alterum genus earum magnitudine et cantu distinguitur et cantu.",
    "Merci beaucoup, Madame Schreyer.",
    "Rapport Koch (A5-0105/1999)",
    "M. Philippe Gosselin, M. Patrick Hetzel et M. Laurent Wauquiez.",
    "La deuxième recommandation concerne la procédure pénale.",
    "Estem citats -ha dit- a un debat en profunditat que haurà de ser net.",
    "Grâce à vous !",
    "Tiene usted toda la razón, señor presidente.",
    "1848 ) * 1844 -",
]


def work_batch(texts: list[str], step: LanguageFilter) -> pa.RecordBatch:
    rows = [
        {"id": f"test:{i}", "source": "test", "text": text, "content_sha256": text_sha256(text)}
        for i, text in enumerate(texts)
    ]
    return to_work_batch(pa.RecordBatch.from_pylist(rows, schema=DOCUMENT_SCHEMA), work_schema([step]))


NOTHING = Detection("und", 0.0)


class CountingDetector:
    """Stands in for the detector to count calls and see what it is shown."""

    name = "counting"

    def __init__(self, answer: Detection = NOTHING):
        self.answer = answer
        self.texts: list[str] = []

    def detect(self, text: str) -> Detection:
        self.texts.append(text)
        return self.answer


# --- the lexical test ---------------------------------------------------------------------------------


def test_lexical_evidence_separates_french_from_its_neighbours():
    french = lexical_evidence(FRENCH[0])
    assert french.french > 0.3 and french.strong > 0.15
    text = "L’État, l'an 2012."
    assert lexical_evidence(text) == plain_evidence(text) == Evidence(4, 0.25, 0.5, "und")
    english = lexical_evidence(ENGLISH_QUOTE)
    assert english.french < 0 and english.foreign_language == "en"
    spanish = lexical_evidence("El gobierno ha presentado hoy un proyecto de ley para los ciudadanos y las empresas.")
    assert spanish.french < 0.05 and spanish.foreign_language == "es"
    # numbers are not words: a French list of votes keeps a French profile
    votes = lexical_evidence("Voici le résultat du scrutin : Nombre de votants 270 Nombre de suffrages exprimés 268")
    assert votes.words == 12 and votes.french > 0.15
    assert lexical_evidence("(1848, 1844 : 2012.)").words == 0


def plain_evidence(text: str) -> Evidence:
    """The lexical test as its definition reads, one text and one word at a time."""
    text = text.lower()
    for mark in ',.;:!?()«»"-':
        text = text.replace(mark, " ")
    tokens = text.replace("\u2019", "' ").replace("'", "' ").split()
    words = [t for t in tokens if not t.isdigit()]
    if not words:
        return Evidence(0, 0.0, 0.0, "und")
    strong, weak = sum(t in FRENCH_STRONG for t in words), sum(t in FRENCH_WEAK for t in words)
    foreign = Counter()
    for t in words:
        if t not in FRENCH_STRONG and t not in FRENCH_WEAK:
            foreign.update([next((lang for lang, ws in FOREIGN_WORDS.items() if t in ws.split()), None)])
    counts = [foreign[lang] for lang in FOREIGN_WORDS]
    first, second = sorted(counts)[-2:][::-1]
    guess = "und"
    if first >= max(2, 0.15 * len(words)) and first >= 2 * second:
        guess = list(FOREIGN_WORDS)[counts.index(first)]
    return Evidence(len(words), (strong + 0.5 * weak - sum(counts)) / len(words), strong / len(words), guess)


def test_lexical_evidence_of_a_batch_is_that_of_each_text_read_alone():
    """The batch splits UTF-8 bytes; the definition splits str. Same words on every white space str.split knows,
    both apostrophes, multi-byte punctuation, dotted capitals, texts that are empty or only breaks, and
    three-byte symbols whose bytes differ from a break's or the apostrophe's in the middle byte only."""
    rng = random.Random(7)
    pieces = ["les", "DES", "L'État", "qu’il", "aujourd'hui", "Der", "the", "und", "și", "în", "12", "3,5", "²", "٣",
              "İN", "ΑΣ.Β", "É", "œuvre", "日本", "\U0001F600", "''", "’’", "«", "»", "-", '"', "(", ")", "!", "?", ";",
              ":", ".", ","] + list(" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2009\u200a\u2028\u2029\u202f"
                                   "\u205f\u3000\u200b\ufeff\u2208\u2219\u2728\u2048")
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 30))) for _ in range(3000)]
    texts += ["", " ", "’", "'", "1", FRENCH[0], ENGLISH_QUOTE, *DOUBTFUL]
    assert lexical_evidences(texts) == [plain_evidence(text) for text in texts]
    # l' état l' an: two strong French words, one English ("an"); the year is not a word
    text = "L’État, l'an 2012."
    assert lexical_evidence(text) == plain_evidence(text) == Evidence(4, 0.25, 0.5, "und")
    assert lexical_evidences([]) == []


# --- determinism --------------------------------------------------------------------------------------


def test_detector_answers_depend_on_the_text_only():
    """langdetect samples at random: seeded and re-seeded per call, any order gives the same answers."""
    detector = LangdetectDetector(seed=0)
    texts = DOUBTFUL + FRENCH + [ENGLISH_QUOTE]
    first = [detector.detect(t) for t in texts]
    backwards = [detector.detect(t) for t in reversed(texts)][::-1]
    shuffled_order = list(range(len(texts)))
    random.Random(7).shuffle(shuffled_order)
    shuffled = dict(zip(shuffled_order, (detector.detect(texts[i]) for i in shuffled_order), strict=True))
    assert first == backwards == [shuffled[i] for i in range(len(texts))]
    assert first == [LangdetectDetector(seed=0).detect(t) for t in texts]
    assert get_detector("langdetect") is get_detector("langdetect")  # profiles loaded once per process
    assert first[0].french > 0.5  # Latin: langdetect has no profile for it and says French ...


def langdetect_probabilities(texts: list[str], factory, detector_class) -> list:
    """(language, probability) pairs of ``detector_class`` over ``factory``'s profiles, seed 0."""
    out = []
    for text in texts:
        detector = detector_class(factory)
        detector.set_max_text_length(len(text) + 1)
        detector.append(text)
        try:
            out.append([(p.lang, p.prob) for p in detector.get_probabilities()])
        except LangDetectException as error:
            out.append(str(error))
    return out


def test_numpy_sampling_over_lazy_profiles_gives_langdetects_probabilities_to_the_last_bit():
    """Same draws, same float operations in the same order: equal floats, not close ones, on every text, against
    langdetect's own detector over the profiles its factory loads."""
    texts = DOUBTFUL + FRENCH + [ENGLISH_QUOTE, "", "1848", "日本語のテキスト", "Привет, как дела?", "x" * 3]
    sentences = SHARED_DATA / "langid" / "sentences"
    for code in ("en", "es", "it", "ca", "pt", "ro", "la", "de", "ga", "yo", "el", "ru", "vi", "zh", "ar"):
        if (sentences / f"{code}.txt").is_file():  # real sentences where ../shared/data is present
            texts += (sentences / f"{code}.txt").read_text(encoding="utf-8").splitlines()[:8]
    own = DetectorFactory()
    own.load_profile(PROFILES_DIRECTORY)
    own.set_seed(0)
    lazy = _langdetect_factory(0)
    assert lazy.langlist == own.langlist
    for ngram in ("e", "é", "les", "th", "ß", "京", "zzz"):
        assert (ngram in lazy.word_lang_prob_map) == (ngram in own.word_lang_prob_map)
        if ngram in own.word_lang_prob_map:
            assert lazy.word_lang_prob_map[ngram] == own.word_lang_prob_map[ngram]
    expected = langdetect_probabilities(texts, own, Detector)
    assert langdetect_probabilities(texts, lazy, _sampling_detector_class()) == expected


def test_filter_results_are_identical_in_any_order_and_twice():
    texts = DOUBTFUL + FRENCH + [ENGLISH_QUOTE, "\n\n".join(FRENCH[:2] + [ENGLISH_QUOTE] + FRENCH[2:])]

    def run(order: list[int]) -> dict[int, tuple]:
        step = LanguageFilter()
        batch = step.signals(work_batch([texts[i] for i in order], step))
        rows = zip(batch.column("text").to_pylist(), batch.column("language").to_pylist(),
                   batch.column("language_score").to_pylist(), step.decide(batch), strict=True)
        return dict(zip(order, rows, strict=True))

    order = list(range(len(texts)))
    reference = run(order)
    assert run(order) == reference
    assert run(order[::-1]) == reference
    random.Random(3).shuffle(order)
    assert run(order) == reference
    assert reference[0][3] is not None  # ... and the lexical second opinion overrules it


def test_same_answers_in_another_process_with_another_hash_seed(tmp_path: Path):
    texts = DOUBTFUL + [ENGLISH_QUOTE]
    script = (
        "import json, sys\n"
        "from overton.pipelines.language import LanguageFilter\n"
        "texts = json.loads(sys.stdin.read())\n"
        "step = LanguageFilter()\n"
        "print(json.dumps([step.score(t) for t in reversed(texts)][::-1]))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run([sys.executable, "-c", script], input=json.dumps(texts), capture_output=True,
                            text=True, cwd=REPO, env=env, check=True)
    step = LanguageFilter()
    assert json.loads(result.stdout) == [list(step.score(t)) for t in texts]


# --- bounded cost on long documents -----------------------------------------------------------------------


def test_windows_spread_over_a_long_document_at_line_breaks():
    paragraphs = [f"Paragraphe {i}. " + FRENCH[i % len(FRENCH)] for i in range(1100)]
    text = "\n\n".join(paragraphs)
    assert len(text) > 200_000
    slices = windows(text, 5, 1000)
    assert len(slices) == 5
    assert all(500 <= len(s) <= 1000 for s in slices)
    assert text.startswith(slices[0]) and text.index(slices[-1]) > len(text) - 2000
    positions = [text.index(s) for s in slices]
    assert positions == sorted(positions)
    assert all(text[p - 1] == "\n" for p in positions[1:])  # each starts at a line or paragraph boundary
    gaps = [b - a for a, b in zip(positions, positions[1:], strict=False)]
    assert max(gaps) - min(gaps) < 2000  # evenly spread
    assert windows("Un texte court.", 5, 1000) == ["Un texte court."]
    assert windows("   \n\n  ", 5, 1000) == []
    assert len(windows("mot " * 600, 5, 1000)) == 3  # 2.4 KB: three windows, not five


def test_long_document_costs_at_most_a_few_bounded_detector_calls():
    doubtful = "Seul M. le rapporteur a la parole. "  # only words French shares with other languages
    text = "\n\n".join(doubtful * 20 for _ in range(300))  # 210 KB the lexical test cannot settle
    step = LanguageFilter(paragraph_mode=False)
    step.detector = CountingDetector(Detection("fr", 0.75))
    language, score = step.score(text)
    assert len(step.detector.texts) == 5
    assert max(map(len, step.detector.texts)) <= 1000
    assert (language, score) == ("fr", 0.75)


def test_french_documents_never_reach_the_detector():
    step = LanguageFilter()
    step.detector = CountingDetector()
    text = "\n\n".join(FRENCH * 50)
    batch = step.signals(work_batch([text, FRENCH[1]], step))
    assert step.detector.texts == []
    assert batch.column("language").to_pylist() == ["fr", "fr"]
    assert batch.column("language_score").to_pylist() == [1.0, 1.0]


# --- paragraph mode -----------------------------------------------------------------------------------


def test_paragraph_mode_drops_an_english_quotation_and_counts_its_characters():
    speech = "\n\n".join([
        "Mme Christiane Taubira, garde des sceaux",
        FRENCH[0],
        "Permettez-moi de citer Winston Churchill devant cette assemblée :",
        ENGLISH_QUOTE,
        FRENCH[1],
        "Applaudissements sur les bancs du groupe SRC.",
        FRENCH[2],
    ])
    expected = speech.replace("\n\n" + ENGLISH_QUOTE, "")
    step = LanguageFilter()
    batch = step.signals(work_batch([speech, FRENCH[3]], step))
    assert batch.column("text").to_pylist() == [expected, FRENCH[3]]  # the rest is byte-identical
    assert batch.column("content_sha256").to_pylist() == [text_sha256(expected), text_sha256(FRENCH[3])]
    assert batch.column("language_removed_chars").to_pylist() == [len(ENGLISH_QUOTE) + 2, 0]
    assert batch.column("language").to_pylist() == ["fr", "fr"]
    assert step.decide(batch) == [None, None]
    assert step.stats["paragraphs_dropped"] == 1
    assert step.stats["chars_removed"] == len(ENGLISH_QUOTE) + 2
    assert step.stats["documents_rewritten"] == 1 and step.stats["documents_checked"] == 2

    whole = LanguageFilter(paragraph_mode=False)
    batch = whole.signals(work_batch([speech], whole))
    assert batch.column("text").to_pylist() == [speech]
    assert batch.column("language_removed_chars").to_pylist() == [0]


def test_bilingual_page_keeps_its_french_half():
    page = "\n\n".join(p for pair in zip(FRENCH * 3, [ENGLISH_QUOTE] * 12, strict=False) for p in pair)
    step = LanguageFilter()
    batch = step.signals(work_batch([page], step))
    assert batch.column("text").to_pylist() == ["\n\n".join(FRENCH * 3)]
    assert batch.column("language_score").to_pylist() == [1.0]
    assert step.stats["paragraphs_dropped"] == 12


def test_a_document_emptied_by_paragraph_mode_is_rejected_whatever_the_threshold():
    text = ENGLISH_QUOTE + "\n\n" + ENGLISH_QUOTE
    step = LanguageFilter({"web": ProfileLanguage(min_score=0.0)}, paragraph_pass_min_score=0.0)
    batch = step.apply(work_batch([text], step))
    assert batch.column("text").to_pylist() == [""]
    assert batch.column("language_removed_chars").to_pylist() == [len(text)]
    assert batch.column("reject_reason").to_pylist() == ["not_french"]
    assert json.loads(batch.column("reject_detail")[0].as_py()) == {"language": "und", "score": 0.0}
    assert step.stats["documents_emptied"] == 1


# --- decisions replay from the columns --------------------------------------------------------------------


def test_decide_replays_with_another_threshold_without_measuring_again():
    text = "\n\n".join([FRENCH[0] * 4, ENGLISH_QUOTE * 6, FRENCH[1] * 4, FRENCH[2] * 4, FRENCH[3] * 4])
    step = LanguageFilter(paragraph_mode=False)
    batch = step.signals(work_batch([text, ENGLISH_QUOTE], step))
    score = batch.column("language_score")[0].as_py()
    assert 0.6 < score < 0.95
    stats = dict(step.stats)

    strict = LanguageFilter({"web": ProfileLanguage(min_score=0.95)}, paragraph_mode=False)
    strict.detector = CountingDetector()  # would record any measurement
    assert step.decide(batch)[0] is None
    rejection = strict.decide(batch)[0]
    assert rejection == ("not_french", {"language": "fr", "score": round(score, 4)})
    assert strict.decide(batch)[1] == step.decide(batch)[1] == ("not_french", {"language": "en", "score": 0.0})
    assert strict.detector.texts == [] and dict(strict.stats) == {} and dict(step.stats) == stats

    kept, rejected = run_steps([strict], work_batch([text], strict))
    assert kept.num_rows == 0 and rejected[0].column("reject_step").to_pylist() == ["language"]


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(ValueError, match="backend"):
        LanguageFilter(backend="cld9")
    with pytest.raises(ValueError, match="unknown language backend 'cld9': choose one of langdetect, lingua"):
        get_detector("cld9")


# --- real data: pinned floors ---------------------------------------------------------------------------


def langid_paragraphs() -> list[tuple[str, str]]:
    """Three consecutive sentences of one language per paragraph, 75 languages."""
    folder = shared_file("langid/sentences")
    paragraphs = []
    for path in sorted(folder.glob("*.txt")):
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        paragraphs += [(path.stem, " ".join(lines[i:i + 3])) for i in range(0, len(lines) - 2, 3)]
    return paragraphs


def test_french_precision_and_recall_on_three_sentence_paragraphs_of_75_languages():
    paragraphs = langid_paragraphs()
    assert len({lang for lang, _ in paragraphs}) == 75
    step = LanguageFilter()
    batch = step.apply(work_batch([text for _, text in paragraphs], step))
    kept = [reason is None for reason in batch.column("reject_reason").to_pylist()]
    positives = sum(lang == "fr" for lang, _ in paragraphs)
    true_positives = sum(k for (lang, _), k in zip(paragraphs, kept, strict=True) if lang == "fr")
    false_positives = Counter(lang for (lang, _), k in zip(paragraphs, kept, strict=True) if k and lang != "fr")
    missed = [text for (lang, text), k in zip(paragraphs, kept, strict=True) if lang == "fr" and not k]
    precision = true_positives / (true_positives + sum(false_positives.values()))
    recall = true_positives / positives
    print(f"\nFrench precision {precision:.4f}, recall {recall:.4f} on {len(paragraphs)} paragraphs;"
          f" kept non-French: {dict(false_positives)}; missed French: {missed}; stats: {dict(step.stats)}")
    assert precision >= 0.99, f"kept non-French paragraphs: {dict(false_positives)}"
    assert recall >= 0.99, f"missed French paragraphs: {missed}"
    assert step.stats["detector_calls"] < 0.1 * len(paragraphs)  # the lexical test settles most


def test_europarl_english_lines_rejected_and_french_lines_kept():
    folder = shared_file("europarl-fr-en")
    french = [s for s in (folder / "europarl-v7.fr-en.fr").read_text(encoding="utf-8").splitlines() if s.strip()]
    english = [s for s in (folder / "europarl-v7.fr-en.en").read_text(encoding="utf-8").splitlines() if s.strip()]
    step = LanguageFilter()
    minimum = step.profiles["web"].min_score
    kept_french = [s for s in french if step.score(s)[1] >= minimum]
    kept_english = [s for s in english if step.score(s)[1] >= minimum]
    long_french = [s for s in french if len(s) >= 40]
    kept_long = [s for s in kept_french if len(s) >= 40]
    print(f"\nEuroparl: French kept {len(kept_french)}/{len(french)} ({len(kept_long)}/{len(long_french)} of"
          f" >= 40 chars), English kept {len(kept_english)}/{len(english)};"
          f" lost French: {sorted(set(french) - set(kept_french))[:20]}")
    assert len(english) > 2900 and len(french) > 2900
    assert len(kept_english) / len(english) <= 0.002, kept_english
    assert len(kept_french) / len(french) >= 0.985  # measured 0.9896: lost lines are titles, "Rapport Koch (A5-..)"
    assert len(kept_long) / len(long_french) >= 0.995  # measured 0.9982


def test_real_speeches_keep_every_paragraph_and_lose_injected_english_ones():
    folder = shared_file("assemblee-2013/txt")
    english = (shared_file("europarl-fr-en") / "europarl-v7.fr-en.en").read_text(encoding="utf-8").splitlines()
    quotes = [" ".join(english[i:i + 3]) for i in range(100, 400, 3) if len(" ".join(english[i:i + 3])) > 200]
    speeches = clean_whitespace([p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.txt"))[:6]])
    rng = random.Random(0)
    mixed, injected = [], 0
    for speech in speeches:
        paragraphs = speech.split("\n\n")
        for position in sorted(rng.sample(range(1, len(paragraphs)), 10), reverse=True):
            paragraphs.insert(position, quotes[injected % len(quotes)])
            injected += 1
        mixed.append("\n\n".join(paragraphs))
    step = LanguageFilter()
    batch = step.apply(work_batch(speeches + mixed, step))
    texts = batch.column("text").to_pylist()
    assert batch.column("reject_reason").to_pylist() == [None] * 12
    assert batch.column("language").to_pylist() == ["fr"] * 12
    assert batch.column("language_removed_chars").to_pylist()[:6] == [0] * 6  # no French paragraph lost
    assert texts[6:] == speeches  # every injected English paragraph dropped, the rest byte-identical
    assert step.stats["paragraphs_dropped"] == injected == 60
