"""vie-publique collector, network-free half: speech pages to text, DILA catalogue records to fields."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from overton.corpus.schema import DOCUMENT_SCHEMA, documents_to_batch, load_meta
from overton.spiders.dila_catalogue import (
    LICENSE,
    clean_url,
    iter_records,
    record_hash,
    record_key,
    record_to_document_fields,
)
from overton.spiders.viepublique_page import SpeechPage, extract_speech, is_bot_challenge
from tests.conftest import shared_file

FIXTURES = Path(__file__).parent / "fixtures" / "vie-publique"
BOILERPLATE = ("Accueil", "En bref", "Fiches thématiques", "Mentions légales", "Rechercher", "cookies",
               "même thème", "À lire aussi", "Direction de l'information", "dataLayer", "xtsite")
TAG_OR_ENTITY = re.compile(r"</?[a-zA-Z][^>]*>|&(?:[a-zA-Z]{2,8}|#\d{2,6}|#x[0-9a-fA-F]{2,5});")


def _page(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def _assert_no_boilerplate(text: str) -> None:
    for phrase in BOILERPLATE:
        assert phrase not in text, phrase


# --- speech pages -------------------------------------------------------------------------------


def test_current_layout_keeps_only_the_texte_integral_field():
    page = extract_speech(_page("current-layout.html"))
    assert page.method == "structured" and not page.challenge and page.source_line is None
    assert page.title == (
        "Déclaration de Mme Claire Vasseur, ministre de la transition rurale, sur les services publics en milieu "
        "rural, à Aurillac le 12 mars 2024."
    )
    assert page.text.split("\n\n") == [
        "Monsieur le Préfet,",
        "Mesdames et Messieurs les élus,",
        "Je suis heureuse d’être parmi vous à Aurillac pour inaugurer cette maison France services,"
        " la\u00a0deux-centième du Massif central.",
        "Ici, un habitant peut faire renouveler sa carte grise, déclarer ses revenus ou préparer sa retraite sans"
        " faire cent kilomètres. C’est cela, l’égalité\u00a0: le même service, partout.",
        "Nous ouvrirons trente maisons de plus d’ici la fin de l’année & nous doublerons les heures d’accueil le"
        " samedi.",
        "Je vous remercie.",
    ]
    _assert_no_boilerplate(page.text)
    assert "Inauguration" not in page.text  # the circumstance field is metadata, not speech


def test_old_layout_br_separated_interview_with_lowercase_source():
    page = extract_speech(_page("old-layout.html"))
    assert page == SpeechPage(
        text="SOPHIE MARCHAL\n\nPaul Garnier, bonjour.\n\nPAUL GARNIER\n\nBonjour.\n\nSOPHIE MARCHAL\n\n"
        "Combien d'apprentis de plus cette année ?\n\nPAUL GARNIER\n\n"
        "Quarante mille de plus qu’en 2015, et c’est un record.",
        source_line="Service d'information du Gouvernement, le 8 juin 2016",
        method="structured",
        title="Interview de M. Paul Garnier, ministre du travail, à France Bleu le 7 juin 2016, sur l'apprentissage.",
        challenge=False,
    )


def test_source_line_after_br_run_is_split_off():
    page = extract_speech(_page("source-line.html"))
    assert page.method == "structured"
    assert page.source_line == "https://www.diplomatie.gouv.fr, le 3\u00a0février 2024"
    assert page.text.endswith("dans le cadre du mécanisme européen de protection civile.")
    assert page.text.count("\n\n") == 1 and "Source" not in page.text


@pytest.mark.parametrize(
    ("last", "source_line"),
    [
        ("Source : Service d'information du Gouvernement", "Service d'information du Gouvernement"),
        ("SOURCES\u00a0: Élysée, le 2 mars 2024", "Élysée, le 2 mars 2024"),
        ("source http://www.senat.fr, le 2 mars 2024", "http://www.senat.fr, le 2 mars 2024"),
        ("Sourcer la viande locale : un enjeu pour nos cantines.", None),  # a sentence, not a source
        ("Les sources : nos archives.", None),
    ],
)
def test_source_line_forms(last, source_line):
    html = f'<html><body><div class="field--name-field-texte-integral"><p>Merci.</p><p>{last}</p></div></body></html>'
    page = extract_speech(html)
    assert page.source_line == source_line
    assert page.text == ("Merci." if source_line else f"Merci.\n\n{last}")


def test_unknown_layout_falls_back_to_trafilatura_without_boilerplate():
    url = "https://www.vie-publique.fr/discours/300000-louis-ferrand-05092025-lecture"
    page = extract_speech(_page("unknown-layout.html"), url=url)
    assert page.method == "trafilatura" and not page.challenge
    paragraphs = page.text.split("\n\n")
    assert paragraphs[0] == "Mesdames et Messieurs les professeurs, chers élèves,"  # the h1 is the title, not text
    assert paragraphs[-1] == "Je vous remercie."
    assert len(paragraphs) == 5
    assert page.title.startswith("Discours de M. Louis Ferrand")
    _assert_no_boilerplate(page.text)


def test_blank_structured_field_falls_back_to_trafilatura():
    html = _page("unknown-layout.html").replace(
        '<div class="speech__body">',
        '<div class="field--name-field-texte-integral"><p>&nbsp;</p><br> </div><div class="speech__body">',
    )
    page = extract_speech(html)
    assert page.method == "trafilatura" and page.text.startswith("Mesdames et Messieurs les professeurs")


def test_bot_challenge_is_recognised_and_yields_nothing():
    html = _page("bot-challenge.html")
    assert is_bot_challenge(html)
    assert extract_speech(html) == SpeechPage("", None, "none", None, True)


@pytest.mark.parametrize("name", ["current-layout.html", "old-layout.html", "source-line.html", "unknown-layout.html"])
def test_speech_pages_are_not_challenges(name):
    assert not is_bot_challenge(_page(name))


def test_js_required_message_counts_only_on_an_empty_page():
    shell = '<html><body><noscript>Please enable JavaScript to view this page.</noscript>{}</body></html>'
    assert is_bot_challenge(shell.format(""))
    assert extract_speech(shell.format("")).challenge
    # A real page with a <noscript> banner and no known layout is read, not taken for a challenge.
    article = "<article><p>" + "Mesdames et Messieurs, la République vous remercie de votre engagement. " * 30
    assert not is_bot_challenge(shell.format(article + "</p></article>"))
    # A page with the speech body is never a challenge, whatever it says about JavaScript.
    body = '<div class="field--name-field-texte-integral"><p>Bonjour.</p></div>'
    assert not is_bot_challenge(shell.format(body))


def test_empty_page_gives_no_text():
    assert extract_speech("") == SpeechPage("", None, "none", None, False)
    assert not is_bot_challenge("  ")


# --- real speech bodies (vie-publique.fr, autumn 2020) ------------------------------------------


def test_real_2020_bodies_in_current_layout():
    """415 real bodies scraped from vie-publique.fr in 2020 (raw inner HTML, <p> and <br>), wrapped in the
    current layout: every one gives text, without markup, without its « Source » line."""
    path = shared_file("viepublique/statements-2020.csv")
    csv.field_size_limit(1 << 30)
    with path.open(encoding="utf-8", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["title"] != "title"]  # 12 repeated header rows
    assert len(rows) == 415
    template = (
        '<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8"><title>{title}</title></head><body>'
        '<header><nav><a href="/discours">Discours</a></nav></header><main><h1>{title}</h1>'
        '<div class="clearfix text-formatted field field--name-field-texte-integral">{body}</div></main>'
        "<footer>Mentions légales</footer></body></html>"
    )
    pages = [extract_speech(template.format(title=row["title"], body=row["text"])) for row in rows]

    assert {page.method for page in pages} == {"structured"}
    assert not any(page.challenge for page in pages)
    for row, page in zip(rows, pages, strict=True):
        assert page.text, row["title"]
        assert not TAG_OR_ENTITY.search(page.text), row["title"]
        assert "\n\n\n" not in page.text and page.text == page.text.strip()
        last = page.text.rsplit("\n\n", 1)[-1]
        assert not re.match(r"(?i)sources?[\s:]", last), last
        assert "Mentions légales" not in page.text and not page.text.startswith("Discours\n")
        assert page.title == " ".join(row["title"].split())
    with_source = [page for page in pages if page.source_line]
    assert len(with_source) == 242  # 218 "Source ...", 24 "source ..."
    assert sum(page.source_line.startswith("https://www.diplomatie.gouv.fr") for page in with_source) > 50
    # Interviews: "<br>" between a speaker's name and the answer makes the name its own paragraph.
    assert any(page.text.startswith("JEAN-PAUL CHAPEL\n\n") or "\n\nOLIVIER DUSSOPT\n\n" in page.text
               for page in pages)
    assert sum("R&D" in page.text for page in pages) == 2  # "R&amp;D" decoded


# --- DILA catalogue ------------------------------------------------------------------------------


def _catalogue() -> list[dict]:
    with (FIXTURES / "catalogue.json").open("rb") as stream:
        return list(iter_records(stream))


def test_iter_records_parses_the_array_with_plain_numbers():
    records = _catalogue()
    assert [record_key(r) for r in records] == ["290001", "201647", "243000041", "180312"]
    odd = records[2]
    assert odd["id"] == 243000041 and type(odd["id"]) is int
    assert odd["duree"] == 12.5 and type(odd["duree"]) is float  # not Decimal
    assert odd["rang"] == 3 and type(odd["rang"]) is int
    json.dumps(odd)  # every value is plain JSON again


def test_iter_records_streams():
    class CountingStream(io.BytesIO):
        consumed = 0

        def read(self, size=-1):
            chunk = super().read(size)
            self.consumed += len(chunk)
            return chunk

    record = {"id": "1", "titre": "Déclaration " + "x" * 200, "descripteurs": ["Budget"]}
    payload = json.dumps([{**record, "id": str(i)} for i in range(20_000)]).encode()
    stream = CountingStream(payload)
    records = iter_records(stream)
    assert record_key(next(records)) == "0"
    assert stream.consumed < len(payload) / 20  # the first record came before the file was read
    assert sum(1 for _ in records) == 19_999


def test_record_to_document_fields_maps_every_column():
    fields = record_to_document_fields(_catalogue()[0])
    assert fields == {
        "id": "vie-publique:290001",
        "source": "vie-publique",
        "url": "https://www.vie-publique.fr/discours/290001-claire-vasseur-12032024-services-publics?page=2",
        "title": "Déclaration de Mme Claire Vasseur, ministre de la transition rurale, sur les services publics "
        "en milieu rural, à Aurillac le 12 mars 2024.",
        "published_at": datetime(2024, 3, 12, tzinfo=UTC),
        "speakers": [{"name": "Claire Vasseur", "role": "Ministre de la transition rurale"}],
        "kind": "Déclaration",
        "keywords": ["Services publics", "Ruralité"],  # the repeated descriptor once
        "thematics": ["Territoires", "Administration"],
        "license": "metadata: Licence Ouverte 2.0 (DILA); text: rights not managed by DILA",
        "redistributable": False,
        "meta": json.dumps(
            {
                "circonstance": "Inauguration d'une maison France services",
                "dila_id": "290001",
                "domaine": "Déclaration",
                "mise_en_ligne": "2024-03-14",
                "type_emetteur": "Gouvernement",
            },
            ensure_ascii=False,
            sort_keys=True,
            separators=(",", ":"),
        ),
    }
    assert fields["license"] == LICENSE
    # Once the spider adds the page's text, the row fits the corpus schema.
    row = {**fields, "text": "Monsieur le Préfet,", "content_sha256": "0" * 64}
    assert set(fields) | {"text", "content_sha256", "fetched_at"} == set(DOCUMENT_SCHEMA.names)
    assert documents_to_batch([row]).num_rows == 1


def test_record_to_document_fields_handles_odd_shapes():
    _, interview, odd, bad_date = (record_to_document_fields(r) for r in _catalogue())
    assert interview["published_at"] == datetime(2016, 6, 7, 6, 10, tzinfo=UTC)  # 08:10 in Paris
    assert interview["speakers"] == [
        {"name": "Paul Garnier", "role": "Ministre du travail"},
        {"name": "Sophie Marchal", "role": "Journaliste"},  # no qualite: qualite_long
    ]
    assert (interview["keywords"], interview["thematics"]) == (["Apprentissage"], [])  # a bare string, a null
    assert load_meta(interview["meta"])["media"] == "France Bleu"

    assert odd["id"] == "vie-publique:243000041"  # numeric id
    assert odd["title"].startswith("Communiqué du ministère") and odd["title"].endswith("2024.")
    assert (odd["url"], odd["published_at"]) == (None, None)
    assert odd["speakers"] == [{"name": "Ministère de l'Europe et des affaires étrangères", "role": None}]
    assert odd["kind"] == "Communiqué"  # no type_document: domaine
    assert (odd["keywords"], odd["thematics"]) == ([], ["International"])
    assert load_meta(odd["meta"]) == {
        "dila_id": "243000041",
        "domaine": "Communiqué",
        "auteur_moral": ["Ministère de l'Europe et des affaires étrangères"],
    }

    assert bad_date["published_at"] is None
    assert load_meta(bad_date["meta"]) == {"dila_id": "180312", "prononciation": "31/12/2018"}
    assert bad_date["speakers"] == [] and bad_date["kind"] == "Conférence de presse"


def test_record_key_refuses_a_record_without_id():
    with pytest.raises(ValueError, match="without an id"):
        record_key({"titre": "Déclaration sans identifiant"})


def test_record_hash_ignores_mise_a_jour_only():
    record = _catalogue()[0]
    digest = record_hash(record)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert record_hash(dict(reversed(record.items()))) == digest  # key order does not matter
    assert record_hash({**record, "mise_a_jour": "2026-01-01"}) == digest
    assert record_hash({**record, "champ_futur": "nouveau"}) == digest  # a field DILA adds later
    assert record_hash({**record, "titre": record["titre"] + " (rectificatif)"}) != digest
    assert record_hash({**record, "descripteurs": ["Services publics"]}) != digest
    assert record_hash({**record, "intervenants": [{**record["intervenants"][0], "qualite": "Ministre"}]}) != digest


def test_clean_url_strips_tracking_and_fragment_only():
    base = "https://www.vie-publique.fr/discours/290001-claire-vasseur"
    assert clean_url(base) == base
    assert clean_url(f"{base}?xtor=RSS-45") == base
    assert clean_url(f"{base}?utm_source=twitter&utm_medium=social&UTM_Campaign=x#texte") == base
    assert clean_url(f"{base}?at_medium=email&pk_campaign=lettre&mtm_source=a&fbclid=abc&gclid=def") == base
    assert clean_url(f"{base}?page=2&xtor=RSS-45&q=%C3%A9cole+rurale&flag") == f"{base}?page=2&q=%C3%A9cole+rurale&flag"
    assert clean_url(f"  {base}#main-content ") == base


# --- the real catalogue record (DILA vp_discours.json) ------------------------------------------


def test_real_catalogue_record():
    path = shared_file("viepublique/dila-catalogue-record.json")
    payload = b"[" + path.read_bytes() + b"]"  # the record alone, as an item of the catalogue's array
    (record,) = iter_records(io.BytesIO(payload))
    fields = record_to_document_fields(record)
    assert record_key(record) == "243000039"
    assert fields["id"] == "vie-publique:243000039"
    assert fields["url"] == record["url"]  # no tracking to strip
    assert fields["title"].startswith("Déclaration de Mme Élisabeth Borne, Première ministre")
    assert fields["published_at"] == datetime(2023, 12, 31, tzinfo=UTC)
    assert fields["speakers"] == [{"name": "Élisabeth Borne", "role": "Première ministre"}]
    assert fields["kind"] == "Déclaration"
    assert fields["thematics"] == ["Armée"]
    assert fields["keywords"] == ["Guyane", "Voeux", "Militaire", "Police", "Gendarmerie"]
    assert load_meta(fields["meta"]) == {
        "dila_id": "243000039",
        "domaine": "Déclaration",
        "type_emetteur": "Premier ministre",
        "mise_en_ligne": "2024-01-04",
    }
    assert fields["redistributable"] is False
    assert record_hash({**record, "mise_a_jour": "2026-09-05"}) == record_hash(record)
