"""Shared fixtures. Real third-party data is read from ../shared/data and skipped when absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from overton.corpus.workspace import Workspace

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_file(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (../shared/data is not beside the checkout)")
    return path


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace.init(tmp_path / "ws")


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


# Written for the tests: the parts of plain French sentences about public policy, so that a random
# document reads as French prose to the language filter and passes the web quality rules (stop words,
# punctuation, few repeated n-grams even over a thousand words), while two random documents share
# almost no 5-gram.
_NOUNS = (
    "le gouvernement", "la république", "les citoyens", "l'assemblée", "le budget", "la commune", "les territoires",
    "l'école", "la santé", "le travail", "la sécurité", "le logement", "la transition", "les entreprises",
    "le parlement", "la justice", "les agriculteurs", "la jeunesse", "les services", "la culture", "le pays",
    "l'europe", "les familles", "la recherche", "les élus", "la nation", "les retraites", "l'industrie",
    "les hôpitaux", "la police", "le climat", "la dette", "les impôts", "le sénat", "la région", "les maires",
    "le ministère", "la laïcité", "les salariés", "le commerce", "la défense", "les chercheurs", "le département",
    "la frontière", "les syndicats", "le quartier", "la ruralité", "les enseignants", "le numérique", "la mer",
)
_VERBS = (
    "soutient", "réforme", "protège", "finance", "accompagne", "renforce", "défend", "transforme", "écoute",
    "prépare", "garantit", "améliore", "simplifie", "organise", "modernise", "respecte", "construit", "évalue",
    "rassemble", "encourage", "contrôle", "répare", "rénove", "consulte", "informe", "mobilise", "engage",
    "valorise", "sécurise", "rapproche", "redresse", "libère", "unit", "forme", "aide", "relance", "dirige",
    "rejoint", "attend", "propose",
)
_ADJECTIVES = (
    "durable", "juste", "rapide", "solide", "efficace", "utile", "nécessaire", "possible", "simple", "moderne",
    "libre", "responsable", "stable", "équitable", "fiable", "visible", "accessible", "démocratique", "économique",
    "politique", "écologique", "historique", "unique", "large", "sobre", "ferme", "digne", "lucide",
)
_PREPOSITIONS = ("dans", "pour", "avec", "sans", "depuis", "grâce à", "face à", "selon", "contre", "parmi", "avant")


def french_text(rng, words: int) -> str:
    """Random French sentences (``rng``: a ``random.Random``) up to at least ``words`` words."""
    sentences, count = [], 0
    while count < words:
        sentence = (f"{rng.choice(_NOUNS)} {rng.choice(_VERBS)} {rng.choice(_NOUNS)} {rng.choice(_ADJECTIVES)} "
                    f"{rng.choice(_PREPOSITIONS)} {rng.choice(_NOUNS)}.")
        sentences.append(sentence[0].upper() + sentence[1:])
        count += len(sentence.split())
    return " ".join(sentences)


@pytest.fixture
def site():
    """A local HTTP server with configurable routes and fault replies (tests/sites.py), stopped after the test."""
    from tests.sites import Site

    with Site() as running:
        yield running


@pytest.fixture
def hub(monkeypatch, tmp_path):
    """The stand-in, with huggingface_hub pointed at it, speaking LFS, and holding its token."""
    import huggingface_hub.constants as constants

    from tests.hubstandin import HubStandin

    with HubStandin() as standin:
        monkeypatch.setattr(constants, "ENDPOINT", standin.url)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
        monkeypatch.setenv("HF_TOKEN", standin.token)
        yield standin
