"""The Wikipedia extractor: what it keeps and drops of both flavours of article HTML, the document it makes,
and its word F1 against the reference plain text of 33 real articles."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from overton.spiders.wikipedia_html import WikiArticle, article_document, extract, word_f1, words

# Written for the tests: an article as action=parse returns it (parser output, 2023 heading markup), with the
# apparatus the extractor drops around the text it keeps.
PARSE_OUTPUT = """<div class="mw-content-ltr mw-parser-output" lang="fr" dir="ltr">
<div class="bandeau-container metadata homonymie hatnote"><div class="bandeau-cell">
<p>Pour les articles homonymes, voir <a href="/wiki/Ailleurs">Ailleurs</a>.</p></div></div>
<table class="infobox_v2"><tbody><tr><td>Maire de Quimperlé</td></tr></tbody></table>
<p>Jeanne Durand<sup class="reference"><a href="#cite_note-1">[1]</a></sup> est une femme politique
française<sup class="need_ref_tag"><a href="/wiki/Aide">[réf. nécessaire]</a></sup>, née en 1950.</p>
<div class="bandeau-container bandeau-section metadata"><p>Article détaillé : Mairie.</p></div>
<h2><span class="mw-headline" id="Carri.C3.A8re">Carrière</span><span class="mw-editsection">
<span class="mw-editsection-bracket">[</span><a href="/w/index.php?action=edit">modifier</a>]</span></h2>
<p>Elle est élue maire<br>en 1989.</p>
<figure typeof="mw:File/Thumb"><img src="x.png"><figcaption>La mairie en hiver.</figcaption></figure>
<ul><li>Conseillère municipale
<ul><li>Adjointe à la culture</li></ul></li>
<li>Maire<sup class="reference"><a href="#cite_note-2">[2]</a></sup></li></ul>
<table class="wikitable"><caption>Résultats</caption><tbody><tr><th>Année</th><th>Voix</th></tr>
<tr><td>1989</td><td>4 120</td></tr></tbody></table>
<p>La formule <span class="mwe-math-element"><span class="mwe-math-mathml-inline" style="display: none;">
<math><semantics><mrow><msub><mi>x</mi><mn>1</mn></msub><mo>=</mo><mn>2</mn></mrow>
<annotation encoding="application/x-tex">{\\displaystyle x_{1}=2}</annotation></semantics></math></span>
<img class="mwe-math-fallback-image-inline" alt="{\\displaystyle x_{1}=2}"></span> vaut.</p>
<h2><span class="mw-headline" id="Notes_et_r.C3.A9f.C3.A9rences">Notes et références</span></h2>
<p>Texte de note.</p>
<div class="references-small"><ol class="references"><li>Un journal, 1989.</li></ol></div>
<h3><span class="mw-headline">Liens</span></h3>
<p>Sous-section des notes.</p>
<div class="navbox-container"><table class="navbox"><tr><td>Palette</td></tr></table></div>
<!-- Saved in parser cache with key frwiki:pcache:idhash:4242-0!canonical and timestamp 20231205211030 and revision
 id 777. Rendering was triggered because: page-view
 -->
</div>"""

PARSE_TEXT = """Jeanne Durand est une femme politique française, née en 1950.

Carrière

Elle est élue maire
en 1989.

Conseillère municipale
Adjointe à la culture
Maire

La formule x1=2 vaut."""

# Written for the tests: the same kind of article as Parsoid writes it (REST API, Enterprise dumps).
PARSOID = """<!DOCTYPE html>
<html prefix="dc: http://purl.org/dc/terms/ mw: http://mediawiki.org/rdf/"
 about="https://fr.wikipedia.org/wiki/Special:Redirect/revision/888"><head>
<meta charset="utf-8"/><meta property="mw:pageId" content="4343"/><meta property="mw:pageNamespace" content="0"/>
<meta property="dc:modified" content="2023-11-23T09:01:02.000Z"/>
<link rel="dc:isVersionOf" href="//fr.wikipedia.org/wiki/Conseil_d%27%C3%89tat_(test)"/>
<title>&lt;i>Conseil&lt;/i> d'État (test)</title></head>
<body lang="fr" class="mw-content-ltr mw-body-content parsoid-body mediawiki mw-parser-output">
<section data-mw-section-id="0"><div class="bandeau-container metadata ambox"><p>Cet article est une ébauche.</p>
</div><p>Le <b>Conseil d'État</b> conseille le gouvernement<sup class="mw-ref reference" typeof="mw:Extension/ref">
<a href="#cite_note-1"><span class="mw-reflink-text">[1]</span></a></sup>.</p>
<style data-mw-deduplicate="x">.infobox{}</style>
<link rel="mw:PageProp/Category" href="./Catégorie:Institution_de_test#Conseil"/>
<link rel="mw:PageProp/Category" href="./Catégorie:Droit_public"/></section>
<section data-mw-section-id="1"><h2 id="Rôle">Rôle</h2>
<div role="note" class="hatnote">Article détaillé : Juridiction.</div>
<dl><dt>Avis</dt><dd>Il rend des avis sur les projets de loi.</dd></dl>
<table class="wikitable"><tbody><tr><th>Section</th><th>Membres</th></tr><tr><td>Intérieur</td><td>30</td></tr>
</tbody></table></section>
<section data-mw-section-id="2"><h2 id="Voir_aussi">Voir aussi</h2>
<ul><li><a href="./Cour_des_comptes">Cour des comptes</a></li></ul>
<section data-mw-section-id="3"><h3 id="Liens_externes">Liens externes</h3><ul><li>Site officiel</li></ul></section>
</section></body></html>"""


def test_parse_output_text_and_metadata() -> None:
    article = extract(PARSE_OUTPUT)
    assert article.text == PARSE_TEXT
    assert (article.pageid, article.revid, article.lang) == (4242, 777, "fr")
    assert (article.title, article.url, article.categories, article.modified) == (None, None, [], None)


def test_parsoid_text_and_metadata() -> None:
    article = extract(PARSOID)
    assert article.text == ("Le Conseil d'État conseille le gouvernement.\n\nRôle\n\n"
                            "Avis\nIl rend des avis sur les projets de loi.")
    assert (article.pageid, article.revid, article.lang) == (4343, 888, "fr")
    assert article.title == "Conseil d'État (test)"
    assert article.url == "https://fr.wikipedia.org/wiki/Conseil_d%27%C3%89tat_(test)"
    assert article.categories == ["Institution de test", "Droit public"]
    assert article.modified == "2023-11-23T09:01:02.000Z"


def test_tables_kept_when_asked() -> None:
    assert "Résultats\nAnnée | Voix\n1989 | 4 120" in extract(PARSE_OUTPUT, tables=True).text
    assert extract(PARSE_OUTPUT, tables=True).text.replace("\n\nRésultats\nAnnée | Voix\n1989 | 4 120", "") \
        == PARSE_TEXT
    assert extract(PARSOID, tables=True).text.endswith("projets de loi.\n\nSection | Membres\nIntérieur | 30")


def test_article_document() -> None:
    fetched = datetime(2024, 1, 2, tzinfo=UTC)
    doc = article_document(extract(PARSOID), "wikipedia", "fr", fetched)
    url = "https://fr.wikipedia.org/wiki/Conseil_d%27%C3%89tat_(test)"
    assert doc["id"] == "wikipedia:fr:4343"
    assert (doc["source"], doc["url"], doc["kind"], doc["license"], doc["redistributable"]) == (
        "wikipedia", url, "article", "CC-BY-SA-4.0", True)
    assert doc["published_at"] == datetime(2023, 11, 23, 9, 1, 2, tzinfo=UTC)
    assert doc["fetched_at"] == fetched
    assert json.loads(doc["meta"]) == {
        "pageid": 4343, "revid": 888, "lang": "fr", "categories": ["Institution de test", "Droit public"],
        "attribution": f"Wikipédia, l'encyclopédie libre, {url}, CC BY-SA 4.0"}
    # parser output has no URL: the page-id URL still names the article
    assert article_document(extract(PARSE_OUTPUT), "wiki", "fr", fetched)["url"] == \
        "https://fr.wikipedia.org/?curid=4242"
    with pytest.raises(ValueError, match="no page id"):
        article_document(WikiArticle(None, "texte", None, None, None), "wikipedia", "fr", fetched)


def test_words_and_f1() -> None:
    assert words("Le XXᵉ siècle, l'État (1989)") == ["le", "xxe", "siècle", "l", "état", "1989"]
    assert word_f1("a b c d", "a b c d") == 1.0
    assert word_f1("a a b", "a b b") == pytest.approx(2 / 3)
    assert word_f1("", "a") == 0.0
