"""PII redaction: French (and international) phone numbers and e-mails out, political numbers untouched."""

from __future__ import annotations

import pyarrow as pa
import pytest

from overton.corpus.schema import DOCUMENT_SCHEMA, text_sha256
from overton.corpus.text import html_mask
from overton.pipelines.pii import EMAIL_PLACEHOLDER, PHONE_PLACEHOLDER, PiiRedactor, redact
from overton.pipelines.step import run_steps, set_column, to_work_batch, work_schema


def work_batch(docs: list[tuple[str, str]], step: PiiRedactor) -> pa.RecordBatch:
    """(profile, text) pairs as a batch of documents judged by those profiles."""
    rows = [
        {"id": f"src:{i}", "source": "src", "text": text, "content_sha256": text_sha256(text)}
        for i, (_, text) in enumerate(docs)
    ]
    batch = to_work_batch(pa.RecordBatch.from_pylist(rows, schema=DOCUMENT_SCHEMA), work_schema([step]))
    return set_column(batch, "profile", pa.array([profile for profile, _ in docs]))


PHONES = [
    "06 12 34 56 78",
    "06.12.34.56.78",
    "06-12-34-56-78",
    "0612345678",
    "06\u00a012\u00a034\u00a056\u00a078",  # no-break spaces, as French typography writes them
    "01 42 92 81 00",
    "02 99 12 34 56",
    "03 88 12 34 56",
    "04 91 12 34 56",
    "05 56 12 34 56",
    "07 81 23 45 67",
    "08 00 12 34 56",
    "09 72 12 34 56",
    "+33 6 12 34 56 78",
    "+33 (0)6 12 34 56 78",
    "+33(0)1 45 67 89 10",
    "+33612345678",
    "+33 1 45 67 89 10",
    "0033 6 12 34 56 78",
    "(+33) 6 12 34 56 78",
    "+44 20 7946 0958",
    "+1 (202) 456-1111",
    "+32 2 123 45 67",
    "+49 30 1234567",
]


@pytest.mark.parametrize("number", PHONES)
def test_phone_formats_are_redacted(number: str):
    text = f"Pour nous joindre, appelez le {number}, du lundi au vendredi."
    assert redact(text) == (f"Pour nous joindre, appelez le {PHONE_PLACEHOLDER}, du lundi au vendredi.", 0, 1)


@pytest.mark.parametrize(
    "address",
    ["jean.dupont@example.fr", "marie-claire+presse@sub.domaine.gouv.fr", "contact_2024@asso-exemple.org",
     "Prénom.Nom@example.com"],
)
def test_email_addresses_are_redacted(address: str):
    text = f"Écrivez à {address}."
    assert redact(text) == (f"Écrivez à {EMAIL_PLACEHOLDER}.", 1, 0)


@pytest.mark.parametrize(
    "text",
    [
        "Entre 2019 2020 et 2021, la dette a augmenté.",  # years
        "Le plan prévoit 1 200 000 euros et 12 345 678 euros de crédits.",  # amounts
        "Soit +150 000 000 euros et +1 200 000 emplois, +2,5 % par an.",  # signed amounts
        "Le Gouvernement a engagé sa responsabilité au titre de l'article 49.3.",  # article numbers
        "Vu les articles L. 2121-29 et R. 1617-24 du code général des collectivités territoriales.",
        "Le décret n° 2020-1310 du 29 octobre 2020 et la loi n° 85-1148.",
        "Réunion du 12.03.2020, puis du 01.02.2020 14h, puis du 01-06-2020.",  # dates
        "saison-26-08-2019-29-06-2020",  # dates glued together in a URL slug
        "Un taux de 0,5 % puis 3,14 et 0.25 point.",  # decimals
        "SIRET 362 521 879 00034, SIREN 362521879, code 75008 Paris.",  # company numbers, postcode
        "ISBN 978-2-07-036822-8.",
        "Les départements 01 02 03 04 05 06 07 sont concernés.",  # a list of numbers, not a phone
        "Un nombre de 0612345678901 chiffres.",  # too long to be a phone
        "Appelez le 3919 ou le 112.",  # public hotlines, not personal data
        "Suivez @EmmanuelMacron et @gouvernementFR.",  # handles, not addresses
    ],
)
def test_numbers_of_political_text_are_not_pii(text: str):
    assert redact(text) == (text, 0, 0)


def test_the_step_finds_every_format_through_its_batch_prefilter():
    """The RE2 hints that pick documents for the exact patterns must let every format through."""
    step = PiiRedactor()
    docs = [("web", f"Tél. {number}.") for number in PHONES] + [("web", "Écrire à x.y@example.fr.")]
    out = step.apply(work_batch(docs, step))
    assert out.column("text").to_pylist() == ["Tél. <PHONE>."] * len(PHONES) + ["Écrire à <EMAIL>."]
    assert step.stats["phones_redacted"] == len(PHONES) and step.stats["emails_redacted"] == 1


def test_counts_columns_hash_and_stats():
    step = PiiRedactor()
    texts = [
        ("web", "Contact : a.b@example.fr ou c@example.org, tél. 06 12 34 56 78 / 01.42.92.81.00 / +33 6 11 22 33 44."),
        ("web", "Le budget 2021 s'élève à 1 200 000 euros."),
    ]
    out = step.apply(work_batch(texts, step))
    rows = out.to_pylist()
    assert rows[0]["text"] == (
        "Contact : <EMAIL> ou <EMAIL>, tél. <PHONE> / <PHONE> / <PHONE>."
    )
    assert (rows[0]["pii_emails"], rows[0]["pii_phones"]) == (2, 3)
    assert rows[0]["content_sha256"] == text_sha256(rows[0]["text"])
    assert rows[1]["text"] == texts[1][1]
    assert (rows[1]["pii_emails"], rows[1]["pii_phones"]) == (0, 0)
    assert rows[1]["content_sha256"] == text_sha256(texts[1][1])
    assert out.schema.field("pii_emails").type == pa.int32()
    assert dict(step.stats) == {
        "documents": 2, "documents_skipped": 0, "documents_redacted": 1, "emails_redacted": 2, "phones_redacted": 3,
    }


def test_documents_of_skipped_profiles_are_left_untouched():
    speech = "Pour toute question : cabinet@ministere.gouv.fr ou le 01 42 75 80 00."
    step = PiiRedactor(skip_profiles=["speech"])
    out = step.apply(work_batch([("speech", speech), ("qa", speech)], step))
    public, private = out.to_pylist()
    assert public["text"] == speech and public["content_sha256"] == text_sha256(speech)
    assert public["pii_emails"] is None and public["pii_phones"] is None  # not examined, not "none found"
    assert private["text"] == "Pour toute question : <EMAIL> ou le <PHONE>."
    assert (private["pii_emails"], private["pii_phones"]) == (1, 1)
    assert step.stats["documents_skipped"] == 1 and step.stats["documents_redacted"] == 1


def test_redaction_is_idempotent_and_placeholders_are_not_markup():
    once, emails, phones = redact("Écrivez à x@example.fr ou appelez le 06 12 34 56 78.")
    assert (emails, phones) == (1, 1)
    assert redact(once) == (once, 0, 0)
    assert html_mask(pa.array([once])) == [False]  # a rebuild's Normalize step will not strip them


def test_in_a_step_chain_nothing_is_rejected():
    step = PiiRedactor()
    kept, rejected = run_steps([step], work_batch([("web", "Tél. 06 12 34 56 78."), ("web", "Rien.")], step))
    assert kept.num_rows == 2 and rejected == []
    assert kept.column("text").to_pylist() == ["Tél. <PHONE>.", "Rien."]
