"""Quality filter: Gopher / FineWeb-2 French signals, per-profile thresholds, replayable decisions."""

from __future__ import annotations

import csv
import random
from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from overton.corpus.config import BUILTIN_PROFILES, QualityRules
from overton.corpus.schema import DOCUMENT_SCHEMA, text_sha256
from overton.corpus.text import clean_whitespace, html_to_text
from overton.pipelines import quality
from overton.pipelines.quality import QualityFilter, measure, tokenize
from overton.pipelines.step import run_steps, to_work_batch, work_schema
from tests.conftest import shared_file

# Written for these tests: ordinary French prose, 4 paragraphs, no phrase repeated.
PROSE = (
    "Le gouvernement a présenté mercredi un projet de loi destiné à simplifier les démarches des petites "
    "entreprises. Selon le ministre, les formalités administratives coûtent chaque année plusieurs milliards "
    "d'euros aux artisans et aux commerçants.\n\n"
    "L'opposition reproche au texte son manque d'ambition. Plusieurs députés estiment qu'il faudrait d'abord "
    "réduire les délais de paiement, qui fragilisent la trésorerie des fournisseurs.\n\n"
    "Les syndicats, eux, s'inquiètent des conséquences pour les salariés : la suppression de certains "
    "registres pourrait compliquer le contrôle du temps de travail dans les ateliers.\n\n"
    "Le débat commencera en commission la semaine prochaine, avant un examen en séance publique prévu au "
    "printemps. Le rapporteur espère un vote rapide."
)
# Words of PROSE without punctuation, for texts built to fail one rule.
PLAIN_WORDS = [w.strip(".,:'") for w in PROSE.split() if w.strip(".,:'")]


def work_batch(texts: list[str], profile: str = "web", step: QualityFilter | None = None) -> pa.RecordBatch:
    rows = [
        {"id": f"src:{i}", "source": "src", "text": text, "content_sha256": text_sha256(text)}
        for i, text in enumerate(texts)
    ]
    raw = pa.RecordBatch.from_pylist(rows, schema=DOCUMENT_SCHEMA)
    return to_work_batch(raw, work_schema([step or QualityFilter()]), profile)


def judge(texts: list[str], step: QualityFilter, profile: str = "web") -> list[Any]:
    batch = step.signals(work_batch(texts, profile, step))
    return step.decide(batch)


def default(attribute: str, profile: str = "web") -> Any:
    return getattr(BUILTIN_PROFILES[profile].quality, attribute)


def only(attribute: str, profile: str = "web") -> QualityFilter:
    """A filter whose web profile has every rule off but one, which keeps the profile's default value."""
    return QualityFilter({"web": QualityRules(**{attribute: default(attribute, profile)})})


# --- the keep document ------------------------------------------------------------------------


def test_ordinary_prose_passes_every_web_rule():
    step = QualityFilter()
    batch = step.signals(work_batch([PROSE], step=step))
    assert step.decide(batch) == [None]
    signals = batch.to_pylist()[0]
    assert signals["quality_words"] >= 100
    assert 4 < signals["quality_mean_word_len"] < 6
    assert signals["quality_stop_words"] >= 20
    assert signals["quality_dup_line_frac"] == 0
    assert signals["quality_dup_5gram"] == 0
    assert signals["quality_line_punct_ratio"] == 1.0  # blank lines between paragraphs are not lines


# --- one keep and one reject document per web rule ------------------------------------------------


def _repeat_passage(n_words: int, times: int) -> str:
    passage = " ".join(PLAIN_WORDS[:n_words])
    return PROSE + "\n\n" + " ".join([passage + "."] * times)


WEB_REJECTS: dict[str, str] = {
    "min_words": "Le gouvernement a présenté son budget.",
    "max_words": " ".join(f"mot{i}" for i in range(100_001)),
    "min_mean_word_len": " ".join("a b c d e f g h i j".split() * 6) + ".",
    "max_mean_word_len": " ".join(["anticonstitutionnellement"] * 60) + ".",
    # a table of figures: numbers and punctuation, few words with letters
    "min_alpha_ratio": "Dépenses : "
    + " ; ".join(f"{2000 + i} : {i * 37 % 900} {i * 53 % 1000:03d}" for i in range(30)),
    # "#" inside words, so the share of tokens with a letter stays high
    "max_symbol_ratio/hash": " ".join(w + "#1" for w in PLAIN_WORDS),
    # "..." after every sixth word, no other punctuation
    "max_symbol_ratio/ellipsis": " ".join(
        " ".join(PLAIN_WORDS[i : i + 6]) + "..." for i in range(0, len(PLAIN_WORDS), 6)
    ),
    "min_stop_words": " ".join(
        "Gouvernement budget réforme retraites syndicats grève députés sénateurs ministre commission "
        "amendement scrutin majorité opposition rapporteur séance hémicycle motion censure vote "
        "finances recettes dépenses déficit dette croissance emploi chômage inflation salaires "
        "entreprises artisans commerçants agriculteurs territoires régions départements communes maires "
        "préfets police justice tribunaux prisons écoles lycées universités hôpitaux médecins infirmiers "
        "transports routes".split()
    ) + ".",
    "max_lorem_ipsum": PROSE + "\n\nLorem ipsum dolor sit amet, consectetur adipiscing elit.",
    "max_boilerplate_lines": PROSE + "\nAccueil | Actualités | Contact\n"
    "Ce site utilise des cookies pour améliorer votre navigation.\nTous droits réservés © 2024\n"
    "Mentions légales\nSe connecter",
    "max_bullet_lines": "\n".join(f"- {' '.join(PLAIN_WORDS[i : i + 8])}." for i in range(0, 96, 8)),
    "max_ellipsis_lines": PROSE.replace("travail dans les ateliers.", "travail dans les ateliers…").replace(
        "vote rapide.", "vote rapide..."
    ),
    "max_dup_line_frac": PROSE + "\n\n" + "\n\n".join(PROSE.split("\n\n")[1:3]),
    # one long line repeated once among many short ones: few repeated lines, many repeated characters
    "max_dup_line_char_frac": PROSE.split("\n\n")[1] + "\n" + "\n".join(
        f"{' '.join(PLAIN_WORDS[i * 5 : i * 5 + 5])}." for i in range(12)
    ) + "\n" + PROSE.split("\n\n")[1],
    "max_top_2gram": "Le gouvernement est là. " + " ".join(["très bien"] * 40) + ".",
    "max_top_3gram": _repeat_passage(3, 30),
    "max_top_4gram": _repeat_passage(4, 30),
    # a 30-word passage of the prose twice more: every n-gram of it repeats, none dominates
    **{f"max_dup_{n}gram": _repeat_passage(30, 2) for n in quality.DUP_NGRAMS},
    # lines without final punctuation: a list of headings
    "min_line_punct_ratio": "\n".join(" ".join(PLAIN_WORDS[i : i + 9]) for i in range(0, 99, 9)),
    # one word per line
    "max_newline_ratio": "\n".join(PLAIN_WORDS[:60]) + ".",
}
_REASONS = {"max_symbol_ratio/hash": "hash_ratio", "max_symbol_ratio/ellipsis": "ellipsis_ratio"}


def _reason(key: str) -> str:
    if key in _REASONS:
        return _REASONS[key]
    rule = next(rule for rule, _, _, attribute in quality._RULES if attribute == key)
    return rule


@pytest.mark.parametrize("key", list(WEB_REJECTS))
def test_each_web_rule_keeps_prose_and_rejects_its_document(key: str):
    """With only this rule on, at its FineWeb-2 / Gopher default, prose is kept and the document is not."""
    attribute = key.split("/")[0]
    step = only(attribute)
    kept, rejected = judge([PROSE, WEB_REJECTS[key]], step)
    assert kept is None
    assert rejected is not None, f"{key} document was kept"
    reason, detail = rejected
    assert reason == f"quality_{_reason(key)}"
    assert detail["threshold"] == default(attribute)
    assert detail["value"] != detail["threshold"]


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("min_words", "quality_min_words"),
        ("max_words", "quality_max_words"),
        ("min_stop_words", "quality_stop_words"),
        ("max_lorem_ipsum", "quality_lorem_ipsum"),
        ("max_boilerplate_lines", "quality_boilerplate"),
        ("max_dup_line_frac", "quality_dup_line_frac"),
        ("max_dup_line_char_frac", "quality_dup_line_char_frac"),
        ("max_top_2gram", "quality_top_2gram"),
        ("max_dup_5gram", "quality_dup_5gram"),
        ("min_line_punct_ratio", "quality_line_punct"),
    ],
)
def test_with_all_web_rules_the_first_failing_rule_names_the_rejection(key: str, reason: str):
    [rejection] = judge([WEB_REJECTS[key]], QualityFilter())
    assert rejection is not None and rejection[0] == reason


def test_the_n_gram_rules_measure_what_gopher_measures():
    """Against a plain re-implementation of Gopher's definitions on the same tokens (random repetitive texts)."""
    rng = random.Random(7)
    vocab = "le la de et un est , . a b c d".split()
    texts = []
    for _ in range(120):
        words = [rng.choice(vocab[: rng.randint(2, len(vocab))]) for _ in range(rng.randint(1, 60))]
        texts.append(" ".join(w + rng.choice(["", "", "\n"]) for w in words).strip() or "x")
    texts += ["Un deux trois quatre cinq.", "Rien ne se répète ici, vraiment rien du tout !", PROSE]
    measured = measure(pa.array(texts))
    for i, text in enumerate(texts):
        tokens = [t for t in tokenize(pa.array([text])).to_pylist()[0] if t]
        for n in quality.TOP_NGRAMS:
            grams = Counter(tuple(tokens[j : j + n]) for j in range(len(tokens) - n + 1))
            top = (len(" ".join(grams.most_common(1)[0][0])) * grams.most_common(1)[0][1]) if grams else 0
            assert measured[f"top_{n}gram"][i] == pytest.approx(top / len(text)), (text, n)
        for n in quality.DUP_NGRAMS:
            seen, repeated, j = set(), 0, 0
            while j < len(tokens) - n + 1:
                gram = tuple(tokens[j : j + n])
                if gram in seen:
                    repeated += len("".join(gram))
                    j += n
                else:
                    seen.add(gram)
                    j += 1
            assert measured[f"dup_{n}gram"][i] == pytest.approx(repeated / len(text)), (text, n)


def test_top_n_gram_of_a_text_without_repeats_is_its_first_n_gram():
    """As with ``Counter.most_common(1)``, even when no n-gram repeats anywhere in the batch."""
    text = "Un deux trois quatre cinq."
    values = measure(pa.array([text]))
    assert [values[f"top_{n}gram"][0] for n in (2, 3, 4)] == pytest.approx(
        [len("Un deux") / len(text), len("Un deux trois") / len(text), len("Un deux trois quatre") / len(text)]
    )


def test_top_n_gram_without_packed_sort_gives_the_same_values(monkeypatch: pytest.MonkeyPatch):
    texts = pa.array([PROSE, WEB_REJECTS["max_top_2gram"], WEB_REJECTS["max_dup_5gram"], "Un deux trois quatre."])
    packed = measure(texts)
    monkeypatch.setattr(quality, "_PACK_BITS", 0)  # too big to pack: the lexsort path
    unpacked = measure(texts)
    for n in quality.TOP_NGRAMS:
        assert unpacked[f"top_{n}gram"].tolist() == packed[f"top_{n}gram"].tolist()
    assert packed["top_2gram"][1] > 0.5


def test_grouping_falls_back_when_high_bits_collide(monkeypatch):
    """Keys equal in their high bits but different are still told apart (the exact slow path), segment by
    segment of whole rows when the rows are cut into several."""
    keys = np.array([5 << 40 | 1, 5 << 40 | 2, 5 << 40 | 1, 7 << 40, 5 << 40 | 2], dtype=np.uint64)
    order, same = quality._group(keys, np.zeros(len(keys), np.int64))
    assert keys[order].tolist() == sorted(keys.tolist())
    assert order.tolist() == [0, 2, 1, 4, 3]
    assert same.tolist() == [False, True, False, True, False]
    monkeypatch.setattr(quality, "_SEGMENT", 4)
    rows = np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])
    order, same = quality._group(np.concatenate([keys, keys]), rows)
    assert order.tolist() == [0, 2, 1, 4, 3, 5, 7, 6, 9, 8]
    assert same.tolist() == [False, True, False, True, False] * 2


# --- stop words, elisions, tokens -------------------------------------------------------------


@pytest.mark.parametrize("apostrophe", ["'", "\u2019"])
@pytest.mark.parametrize(
    ("text", "stop_words"),
    [
        ("l'État", 1),  # l' = le/la
        ("L'État", 1),
        ("d'une", 2),  # de + une
        ("qu'il", 2),  # que + il
        ("Qu'il", 2),
        ("j'ai", 1),  # je
        ("n'est", 2),  # ne + est
        ("s'est", 2),  # se + est
        ("c'est", 2),  # ce + est
        ("jusqu'à", 1),  # à
        ("aujourd'hui", 0),  # not an elision
        ("prud'hommes", 0),
    ],
)
def test_elided_stop_words_count_with_both_apostrophes(text: str, stop_words: int, apostrophe: str):
    text = text.replace("'", apostrophe)
    assert measure(pa.array([text]))["stop_words"].tolist() == [stop_words]


def test_stop_words_before_no_break_space_punctuation():
    text = "Qu\u2019est-ce que c\u2019est\u00a0? Il est\u202f! Et\u00a0: le"
    # qu' que c' est | il est | et le  (est-ce stays one token)
    assert measure(pa.array([text]))["stop_words"].tolist() == [8]


def test_tokens_split_punctuation_and_elisions_but_keep_numbers_whole():
    text = "L'État, (voir l’article 49.3 du 12.03.2020)... Aujourd'hui : 1 200 000 euros\u00a0!"
    assert tokenize(pa.array([text])).to_pylist()[0] == [
        "L'", "État", ",", "(", "voir", "l’", "article", "49.3", "du", "12.03.2020", ")...",
        "Aujourd'hui", ":", "1", "200", "000", "euros", "!",
    ]


# The definition of the tokens, written out: three RE2 passes, then a split on ASCII white space.
_W = r" \t\r\n"
_DEFINITION = (
    (rf"(^|[{_W}])([^{_W}\pL\pN]+)", r"\1\2 "),
    (rf"([^{_W}\pL\pN]+)([{_W}]|$)", r" \1\2"),
    (rf"\b((?i:[cdjlmnst]|qu|jusqu|lorsqu|puisqu|quoiqu|presqu)['’])([^{_W}])", r"\1 \2"),
)


def defined_tokens(texts: pa.Array) -> pa.Array:
    texts = pc.replace_substring(pc.replace_substring(texts, "\u00a0", " "), "\u202f", " ")
    for pattern, replacement in _DEFINITION:
        texts = pc.replace_substring_regex(texts, pattern=pattern, replacement=replacement)
    return pc.ascii_split_whitespace(pc.ascii_trim_whitespace(texts))


# What the byte rules must get right: ASCII word characters next to other letters (RE2's \b), both apostrophes
# after every kind of elided prefix, punctuation runs of one and several characters (some of them multi-byte),
# every kind of white space (\v and \f are punctuation to the passes), combining marks, and the characters
# that share a byte with × ÷ ſ (C3 97, C3 B7, C5 BF): another lead byte before 97, B7 or BF (ė · ¿ ķ), or C5 (œ).
_PIECES = [
    *"cdjlmnstuCDJLMNSTUaZk09_", "é", "É", "à", "ç", "œ", "Œ", "α", "Ж", "中", "😀", "\u0301", "∈", "✨",
    "×", "÷", "ė", "·", "¿", "ķ",
    "'", "’", "'", "’", "qu", "jusqu", "lorsqu", "Qu", "presqu", "QUOIQU", "jus", "pres",
    *".,;:!?«»()-–…#\"/%", " ", " ", " ", "\t", "\n", "\r", "\v", "\f", "\u00a0", "\u202f",
]
_EDGE_CASES = ["", " ", "\v", "l'", "'x", "l'l'l'x", "d'qu'x", "_l'x", "(l'x", "él'x", "3l'x", "a\v.b", "a.\v", "\v(a",
               "l'\vx", "jusqu’à", "ajusqu'x", "«\u00a0Qu’il\u202f!\u00a0»", "x×y ÷", "...",
               "ajus", "qu'x", "jus", "qu’y", "l", "'x", "(", "a"]  # the last ones: elisions across two texts


@pytest.mark.parametrize("chunk", [quality._CHUNK, 64])
def test_tokens_are_those_of_the_regex_definition(monkeypatch: pytest.MonkeyPatch, chunk: int):
    # chunk 64: most batches are cut into many chunks of a few texts, each tokenised on its own
    monkeypatch.setattr(quality, "_CHUNK", chunk)
    monkeypatch.setattr(quality, "_tokenize_regex", None)  # the byte rules decide every batch here
    rng = random.Random(7)
    for batch in range(60):
        texts = [
            "".join(rng.choice(_PIECES) for _ in range(rng.choice([0, 1, 2, 3, 5, 8, 13, 21, 60])))
            for _ in range(rng.choice([1, 10, 100, 300]))
        ]
        if batch == 0:
            texts += _EDGE_CASES
        for array in (pa.array(texts, pa.string()), pa.array([""] + texts, pa.large_string()).slice(1)):
            tokens = tokenize(array)
            assert tokens.to_pylist() == defined_tokens(array).to_pylist()
            assert tokens.type == pa.list_(array.type)


def test_batches_with_nulls_or_a_long_s_are_tokenised_by_the_definition():
    # RE2's (?i) folds ſ to "s" (so "juſqu'" is elided) and \b does not take it for a letter
    for texts in (["juſqu'à", "ſ'il", "aſ'x"], ["l'État", None, ""]):
        assert tokenize(pa.array(texts)).to_pylist() == defined_tokens(pa.array(texts)).to_pylist()


def test_stop_word_list_is_configurable():
    fineweb2 = ["de", "la", "le", "et", "à", "en", "l'", "des", "du", "les", "est", "d'", "un", "une", "il",
                "dans", "par", "au"]
    text = "qu'il c'est j'ai l'État"
    assert measure(pa.array([text]), fineweb2)["stop_words"].tolist() == [3]  # il, est, l'
    assert measure(pa.array([text]))["stop_words"].tolist() == [6]


def test_boilerplate_needs_a_phrase_not_a_topic():
    topic = "Un cookie est un petit fichier texte qu'un site web enregistre dans le navigateur du visiteur."
    banner = "En poursuivant votre navigation, vous acceptez l'utilisation de cookies."
    values = measure(pa.array([topic, banner, "JavaScript est un langage de programmation."]))
    assert values["boilerplate_lines"].tolist() == [0.0, 1.0, 0.0]


# --- families -----------------------------------------------------------------------------------

DEBATE = "\n".join(
    ["La séance est ouverte."]
    + [
        line
        for i in range(12)
        for line in ("La parole est à Mme la ministre.", " ".join(PLAIN_WORDS[i * 9 : i * 9 + 12]) + ".")
    ]
    + ["La séance est levée."]
)


def test_a_debate_is_kept_by_its_profile_though_web_rules_would_reject_it():
    step = QualityFilter()
    assert judge([DEBATE], step, profile="debate") == [None]
    assert judge([DEBATE], step, profile="speech") == [None]
    [web] = judge([DEBATE], step, profile="web")
    assert web is not None and web[0] == "quality_dup_line_frac"


CURATED_REJECTS = {
    "min_words": "Mesdames et Messieurs,",
    "min_mean_word_len": " ".join("a b c d e f g h i j".split() * 6) + ".",
    "max_mean_word_len": " ".join(["anticonstitutionnellement"] * 60) + ".",
    "min_alpha_ratio": WEB_REJECTS["min_alpha_ratio"],
    "max_symbol_ratio": WEB_REJECTS["max_symbol_ratio/hash"],
}


@pytest.mark.parametrize("attribute", list(CURATED_REJECTS))
def test_each_speech_rule_keeps_a_speech_and_rejects_its_document(attribute: str):
    step = QualityFilter()
    kept, rejected = judge([DEBATE, CURATED_REJECTS[attribute]], step, profile="speech")
    assert kept is None
    assert rejected is not None
    reason, detail = rejected
    rule = next(rule for rule, _, _, attr in quality._RULES if attr == attribute)
    assert reason == f"quality_{rule}"
    assert detail["threshold"] == default(attribute, "speech")


@pytest.mark.parametrize("profile", ["speech", "debate"])
def test_speech_and_debate_profiles_have_no_repetition_or_layout_rules(profile: str):
    rules = {name for name, value in BUILTIN_PROFILES[profile].quality.model_dump().items() if value is not None}
    assert rules == {"min_words", "min_mean_word_len", "max_mean_word_len", "min_alpha_ratio", "max_symbol_ratio"}
    web_only = ["max_dup_line_frac", "max_top_2gram", "max_dup_5gram", "min_line_punct_ratio", "max_boilerplate_lines",
                "max_lorem_ipsum"]
    texts = [WEB_REJECTS[key] for key in web_only]
    assert judge(texts, QualityFilter(), profile=profile) == [None] * len(texts)


# --- replaying decisions -----------------------------------------------------------------------


def test_decide_replays_new_thresholds_on_stored_signals_without_measuring(monkeypatch: pytest.MonkeyPatch):
    texts = [PROSE, WEB_REJECTS["min_words"], WEB_REJECTS["max_dup_line_frac"]]
    step = QualityFilter()
    batch = step.signals(work_batch(texts, step=step))
    assert [r and r[0] for r in step.decide(batch)] == [None, "quality_min_words", "quality_dup_line_frac"]

    def no_measuring(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("decide must not measure")

    monkeypatch.setattr(quality, "measure", no_measuring)
    monkeypatch.setattr(quality, "tokenize", no_measuring)
    blank = batch.set_column(batch.schema.get_field_index("text"), "text", pa.array([""] * 3))
    assert QualityFilter({"web": QualityRules()}).decide(blank) == [None, None, None]
    stricter = QualityFilter({"web": QualityRules(min_words=1000)})
    assert [r and r[0] for r in stricter.decide(blank)] == ["quality_min_words"] * 3
    as_speech = QualityFilter({"web": BUILTIN_PROFILES["speech"].quality})
    assert as_speech.decide(blank) == [None, None, None]
    stricter_speech = QualityFilter({"web": BUILTIN_PROFILES["speech"].quality.model_copy(update={"min_words": 10})})
    assert stricter_speech.decide(blank) == [None, ("quality_min_words", {"value": 6, "threshold": 10}), None]


def test_apply_in_a_step_chain_keeps_signals_and_rejects_with_json_detail():
    step = QualityFilter()
    kept, rejected = run_steps([step], work_batch([PROSE, WEB_REJECTS["min_words"]], step=step))
    assert kept.num_rows == 1 and kept.column("quality_words").to_pylist()[0] > 100
    [row] = rejected[0].to_pylist()
    assert row["reject_step"] == "quality"
    assert row["reject_reason"] == "quality_min_words"
    assert row["reject_detail"] == '{"threshold": 50, "value": 6}'
    assert step.stats["rejected_quality_min_words"] == 1


def test_signal_columns_are_compact_and_declared():
    types = {field.type for field in QualityFilter.columns}
    assert types == {pa.int32(), pa.float32()}
    assert all(field.name.startswith("quality_") for field in QualityFilter.columns)
    measured = measure(pa.array([PROSE]))
    assert {f"quality_{name}" for name in measured} == {field.name for field in QualityFilter.columns}


def test_empty_and_punctuation_only_texts_do_not_crash():
    values = measure(pa.array(["", " ", "...", "\n\n"]))
    assert values["words"].tolist() == [0, 0, 0, 0]
    step = QualityFilter()
    reasons = [r[0] for r in judge(["", "...", "?"], step)]
    assert reasons == ["quality_min_words"] * 3


# --- real data ----------------------------------------------------------------------------------


def _statements() -> list[str]:
    path = shared_file("viepublique/statements-2020.csv")
    csv.field_size_limit(1 << 30)
    with path.open(encoding="utf-8", newline="") as f:
        rows = [row for row in csv.DictReader(f) if row["title"] != "title"]  # 12 repeated header rows
    assert len(rows) == 415
    return clean_whitespace([html_to_text(row["text"]) for row in rows])


def test_real_speeches_under_the_speech_profile_are_kept_but_empty_shells():
    """vie-publique speeches, 2020: only bodies of under 5 words go, and each is a failed scrape.

    The six are the interviewer's name alone ("ELIZABETH MARTICHOUX", four copies) and a bare
    salutation ("Mesdames et Messieurs,", two): the scraper kept the first paragraph only.
    """
    texts = _statements()
    rejections = judge(texts, QualityFilter(), profile="speech")
    rejected = Counter(texts[i] for i, r in enumerate(rejections) if r)
    assert {r[0] for r in rejections if r} == {"quality_min_words"}
    assert rejected == {"ELIZABETH MARTICHOUX": 4, "Mesdames et Messieurs,": 2}


def test_real_speeches_under_the_web_profile_lose_short_and_repetitive_ones():
    """The same 415 texts judged as web text: about half go, for reasons a speech corpus must not use.

    Measured: 111 under 50 words (truncated scrapes), 75 for repeated lines (interviews, where the
    interviewer's and minister's names head every other line), and 13 for repeated n-grams or other rules
    (council-of-ministers summaries that repeat ministers' titles, a transcript trailing off in ellipses).
    """
    texts = _statements()
    reasons = Counter(r[0] if r else None for r in judge(texts, QualityFilter(), profile="web"))
    assert 150 <= sum(n for reason, n in reasons.items() if reason) <= 250
    assert 100 <= reasons["quality_min_words"] <= 120
    assert 60 <= reasons["quality_dup_line_frac"] <= 90
    assert reasons.most_common(3)[0][0] is None


def test_real_debate_sentences_joined_per_sitting_are_kept_by_the_debate_profile():
    folder = shared_file("assemblee-sentences-2016-2017")
    texts = clean_whitespace([path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.txt"))])
    assert judge(texts, QualityFilter(), profile="debate") == [None] * len(texts) == [None] * 442


def test_line_share_rules_do_not_judge_short_answers_by_one_line():
    paragraphs = [p for p in PROSE.split("\n\n") if p][:3]
    short = "\n\n".join(paragraphs[:-1] + [paragraphs[-1].rstrip(".") + "…"])
    long = "\n\n".join([*paragraphs, *paragraphs[:2]]).replace(".\n\n", "…\n\n", 2)
    step = QualityFilter()
    batch = step.signals(work_batch([short, long], step=step))
    assert batch.column("quality_lines").to_pylist() == [3, 5]
    assert batch.column("quality_ellipsis_lines").to_pylist()[0] == pytest.approx(1 / 3)
    assert [r and r[0] for r in step.decide(batch)] == [None, "quality_ellipsis_lines"]
