"""Normalisation: the text exact dedup hashes and the trainer reads."""

from __future__ import annotations

import random
import unicodedata

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from overton.corpus.text import _TRIM, _WHITESPACE_RULES, clean_whitespace, html_mask, html_to_text, split_source_line


def test_html_leftovers_become_paragraphs_and_lines():
    html = ("<p>Monsieur le Ministre,<br><br><br>\nJe suis tr&egrave;s heureux&nbsp;d&#8217;être ici.<br>\n"
            "CEDRIC O<br>\nMerci.</p><p>Deuxième <em>paragraphe</em>.</p><script>x()</script>")
    assert html_mask(pa.array([html, "l&#8217;État", "L&apos;État"])) == [True, True, True]
    assert clean_whitespace([html_to_text(html)]) == [
        "Monsieur le Ministre,\n\nJe suis très heureux\u00a0d\u2019être ici.\nCEDRIC O\nMerci.\n\n"
        "Deuxième paragraphe."
    ]


@pytest.mark.parametrize("text", ["a < b et c > d", "AT&T", "L'article 49.3 <sic>"])
def test_plain_text_with_angle_brackets_is_not_html(text: str):
    assert html_mask(pa.array([text])) == [False]


def test_whitespace_controls_and_invisible_characters():
    raw = "\ufeff  Un\u200b  texte\t\tavec\x07 des\r\nlignes   \r\n\r\n\r\n\r\nfin\u00ad. \u2028 "
    assert clean_whitespace([raw]) == ["Un texte avec des\nlignes\n\nfin."]


def test_nfc_and_french_no_break_spaces_are_kept():
    decomposed = "e\u0301lection\u00a0: oui\u202f!"
    assert clean_whitespace([decomposed]) == ["\u00e9lection\u00a0: oui\u202f!"]


@pytest.mark.parametrize(
    ("text", "source"),
    [
        ("Merci.\n\nSource : http://www.elysee.fr, le 5 octobre 2020", "http://www.elysee.fr, le 5 octobre 2020"),
        ("Merci.\nSource\u00a0: Service d'information du gouvernement", "Service d'information du gouvernement"),
        ("Merci.\n\nSource https://www.diplomatie.gouv.fr, le 24 septembre 2020",
         "https://www.diplomatie.gouv.fr, le 24 septembre 2020"),
        # 24 of the 415 real 2020 bodies write it in lower case
        ("Merci.\n\nsource : Service d'information du Gouvernement", "Service d'information du Gouvernement"),
        ("Merci.\n\nSOURCES : www.elysee.fr", "www.elysee.fr"),
    ],
)
def test_trailing_source_line_is_split_off(text: str, source: str):
    assert split_source_line(text) == ("Merci.", source)


@pytest.mark.parametrize(
    "text",
    [
        "Source : au début, pas à la fin.\n\nMerci.",
        "Merci.\n\nSources de financement du plan de relance européen",
        "Merci.\n\nSource : " + "x" * 500,
    ],
)
def test_other_source_mentions_stay_in_the_text(text: str):
    assert split_source_line(text) == (text, None)


def test_white_space_rules_each_do_their_part():
    texts = [
        "a\u2003\u2003b \tc\u3000d",  # exotic and mixed runs of horizontal space -> one space
        "ligne \u00a0\nsuite\n\u202f fin",  # no space at the ends of lines
        "x\x85y\u2028z\x0bw\x0cv\rt",  # every line break becomes \n
        "un\n\n\n\n\ndeux",  # at most one blank line
        "\x00\x1fctrl\x7f\x9f",  # C0 and C1 controls
        "\u00a0\u202f entouré \n\n",  # trimmed, no-break spaces included
        "",
    ]
    assert clean_whitespace(texts) == [
        "a b c d", "ligne\nsuite\nfin", "x\ny\nz\nw\nv\nt", "un\n\ndeux", "ctrl", "entouré", ""]


def test_white_space_rules_rewrite_only_what_they_match_in_a_mixed_batch():
    """Texts the rules leave alone skip them; the others go through them in order: every text of a random batch
    comes out as the rules applied one after the other to it alone would leave it."""

    def by_the_rules(text: str) -> str:
        array = pa.array([unicodedata.normalize("NFC", text)], pa.string())
        for pattern, replacement in _WHITESPACE_RULES:
            array = pc.replace_substring_regex(array, pattern=pattern, replacement=replacement)
        return pc.utf8_trim(array, characters=_TRIM)[0].as_py()

    draw = random.Random(7)
    alphabet = list("ab é \t\n\r\x0b\x0c\x85\u2028\u2029\x00\x1f\x7f\x9f\xad\u200b\ufeff\u2003\u3000\xa0\u202fe\u0301")
    texts = ["".join(draw.choice(alphabet) for _ in range(draw.randint(0, 30))) for _ in range(3000)]
    texts += ["Un texte propre.", "Deux lignes\n\npropres."] * 500  # most texts need no rule at all
    draw.shuffle(texts)
    assert clean_whitespace(texts) == [by_the_rules(text) for text in texts]
