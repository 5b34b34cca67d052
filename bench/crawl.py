"""Benchmark: ``overton crawl vie-publique``, from one page's extraction to a whole nightly run.

Inputs come from ``../shared/data/viepublique/statements-2020.csv`` (skipped with a message when absent): the
415 real speeches of Sept-Nov 2020 (the 12 repeated header rows, whose title is ``title``, are left out), whose
``text`` column is the raw inner HTML of the vie-publique speech body. No saved vie-publique page is in the
shared data, so each body is wrapped in a page modelled on the site's speech pages (the DSFR header and
menu, breadcrumb, the title, date, speakers and themes, share links, the body inside
``<div class="field field--name-field-texte-integral">``, keywords, four "same rubric" teasers with other
speeches' titles, a newsletter box, the footer, a cookie banner and Drupal's settings JSON).

1. **Extraction alone, one core, in this process** (no network): over every page, after a warm-up on the
   first five, (a) overton's structured path ``extract_speech``, (b) trafilatura alone
   (``viepublique_page._trafilatura_body``, overton's fallback: ``trafilatura.extract`` with
   ``favor_precision`` and no comments, tables, images, links or formatting, then the same « Source » split),
   (c) both, as a spider that always ran trafilatura as a second opinion would. CPU time per page
   (``time.process_time``) and wall time; MB are 10^6 bytes of page HTML (UTF-8). Quality of (b) against (a),
   whose text is exactly the body element's, both in NFC: word recall and precision (multisets of case-folded
   ``\\w+`` words), per page and over all words; the structured paragraphs missing from trafilatura's text and
   the paragraphs it adds (white space collapsed, substring match); the pages where its text holds page
   furniture the body does not (date line, headings, menu, share links, footer, cookie banner).
2. **Fetch and extract end to end**: ``tests.sites.Site`` (the test suite's HTTP server, in a thread of this
   process, on 127.0.0.1) serves ``robots.txt``, a DILA-style catalogue (one record per CSV row, distinct ids,
   the catalogue's field names, page URLs on the local server, an ETag) and the pages. The real command
   ``python -m overton crawl vie-publique --quiet`` runs as a subprocess on a fresh workspace configured as the
   crawl tests configure theirs: a User-Agent with a contact, **politeness delay 0 and AutoThrottle off, for
   the benchmark only** (the defaults, 2 s and AutoThrottle, would make 415 pages take at least 14 minutes),
   default batch size (100). Wall time, CPU time of the crawl process and its children (``os.wait4``), peak
   RSS (the child's ``VmHWM`` read every 20 ms, or its sampled RSS), documents committed to ``raw/``, requests
   from the run record (``downloader/request_count``) and from the server's log.
3. **Nightly runs**: the same command again with nothing changed (the catalogue answers 304: no page may be
   fetched); then with 5 catalogue records changed (new title, new ETag: exactly those 5 pages must be
   fetched); then, unless ``--catalogue-records 0``, at DILA's scale: a rebuilt catalogue of 152,089 records
   (the size of the December 2025 catalogue; the 415 real records and synthetic ones built from them, every
   one already in the seen-store except 5 new), so the run downloads, parses and diffs the whole catalogue to
   fetch 5 pages.

Run: ``python bench/crawl.py [--rounds 3] [--catalogue-records N] [--no-crawl] [--keep]``. Prints markdown
tables and writes ``bench/results/crawl.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import html
import importlib.metadata
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from common import measure, save_results

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/crawl.py` puts bench/ first, not the repository
    sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data"
CSV_PATH = DATA / "viepublique" / "statements-2020.csv"
MB = 1_000_000
UA = "overton-bench/0.1 (+mailto:crawl-bench@example.org)"
CATALOGUE = "/OPENDATA/DISCOURS_PUBLICS/vp_discours.json"
FIRST_ID = 276001  # DILA ids of autumn 2020 speeches are around 276,000
SYNTHETIC_ID = 400001
DILA_RECORDS = 152_089  # records of the December 2025 catalogue (PROVENANCE-dila.md)
CHANGED = 5
WARMUP = 5


# ---------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Speech:
    title: str
    date: str  # ISO 8601
    body: str  # raw inner HTML of the speech body
    tags: list[str]
    topics: list[str]
    speakers: list[str]


def _list(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def read_speeches() -> list[Speech]:
    csv.field_size_limit(sys.maxsize)
    with CSV_PATH.open(encoding="utf-8", newline="") as handle:
        return [Speech(row["title"], row["date"], row["text"], _list(row["tags"]), _list(row["topics"]),
                       _list(row["speakers"]))
                for row in csv.DictReader(handle) if row["title"] != "title"]


def slug(title: str) -> str:
    folded = unicodedata.normalize("NFKD", title.lower()).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", folded).strip("-")[:80].strip("-")


def speech_path(key: str, speech: Speech) -> str:
    return f"/discours/{key}-{slug(speech.title)}"


_MENU = {
    "Actualités": ["En bref", "Éclairage", "Parole d'expert", "Vidéos", "Podcasts", "Chronologies"],
    "Panoramas": ["Panorama des lois", "Loi de finances", "Réformes en cours"],
    "Fiches": ["Institutions de la République", "Collectivités territoriales", "Finances publiques",
               "Union européenne", "Citoyenneté", "Justice", "Démocratie"],
    "Discours": ["Tous les discours", "Président de la République", "Premier ministre", "Gouvernement",
                 "Interviews"],
    "Rapports": ["Rapports publics", "Études", "Collections"],
    "Publications": ["Cahiers français", "Questions internationales", "Regards sur l'actualité",
                     "Découverte des institutions"],
    "Participation": ["Consultations publiques", "Débats citoyens", "Jeux et quiz"],
}
_FOOTER_LINKS = ("Plan du site", "Accessibilité : partiellement conforme", "Mentions légales",
                 "Données personnelles", "Gestion des cookies", "Nous contacter", "Foire aux questions",
                 "Espace presse", "Flux RSS", "Licence etalab-2.0")
_PARTNERS = ("legifrance.gouv.fr", "gouvernement.fr", "service-public.fr", "data.gouv.fr", "info.gouv.fr")
_LIBRARIES = ",".join(f"vp_theme/{name}" for name in (
    "global", "dsfr", "dsfr-icons", "discours", "share", "teasers", "newsletter", "tarteaucitron", "search",
    "breadcrumb", "print", "matomo", "at-internet", "autocomplete", "menu", "modal", "tooltip", "tabs")) * 4
#: Page furniture that must never reach a document; a marker found in trafilatura's text but not in the
#: structured text counts the page as leaking boilerplate.
FURNITURE = ("Mentions légales", "Partager sur", "lettre d'information", "Prononcé le", "Texte intégral",
             "Dans la même rubrique", "Mots-clés", "Accessibilité", "Au cœur du débat public", "Accueil",
             "cookies", "Licence etalab")


def page_html(key: str, speech: Speech, related: list[tuple[str, Speech]]) -> str:
    """A vie-publique speech page around the real body (structure modelled on the site's DSFR pages)."""
    e = html.escape
    title, date = e(speech.title), speech.date[:10]
    day = datetime.fromisoformat(date).strftime("%d/%m/%Y")
    plain = re.sub(r"<[^>]+>", " ", speech.body)
    description = e(re.sub(r"\s+", " ", html.unescape(plain)).strip()[:200])
    menu = "".join(
        f"<li class='fr-nav__item'><button class='fr-nav__btn' aria-expanded='false' aria-controls='menu-{i}'>"
        f"{e(section)}</button><div class='fr-collapse fr-menu' id='menu-{i}'><ul class='fr-menu__list'>"
        + "".join(f"<li><a class='fr-nav__link' href='/{slug(item)}'>{e(item)}</a></li>" for item in items)
        + "</ul></div></li>"
        for i, (section, items) in enumerate(_MENU.items()))
    speakers = "".join(f"<li class='vp-intervenant'><a href='/personnalite/{slug(name)}'>{e(name)}</a></li>"
                       for name in speech.speakers)
    tags = "".join(f"<li><a class='fr-tag' href='/thematique/{slug(t)}'>{e(t)}</a></li>" for t in speech.tags)
    topics = "".join(f"<li><a class='fr-tag fr-tag--sm' href='/recherche?f[0]=tags:{slug(t)}'>{e(t)}</a></li>"
                     for t in speech.topics)
    teasers = "".join(
        f"<div class='fr-card fr-enlarge-link vp-teaser'><div class='fr-card__body'><h3 class='fr-card__title'>"
        f"<a href='{speech_path(k, s)}'>{e(s.title)}</a></h3><p class='fr-card__detail'>Discours - "
        f"{datetime.fromisoformat(s.date[:10]).strftime('%d/%m/%Y')}</p></div></div>"
        for k, s in related)
    share = "".join(f"<li><a class='fr-share__link fr-share__link--{n}' title='Partager sur {label}' "
                    f"href='https://{n}.com/share?url=https://www.vie-publique.fr/discours/{key}' target='_blank' "
                    f"rel='noopener'>Partager sur {label}</a></li>"
                    for n, label in (("facebook", "Facebook"), ("twitter", "X (anciennement Twitter)"),
                                     ("linkedin", "LinkedIn")))
    settings = json.dumps({
        "path": {"baseUrl": "/", "pathPrefix": "", "currentPath": f"node/{key}", "currentLanguage": "fr",
                 "isFront": False},
        "pluralDelimiter": "\u0003", "suppressDeprecationErrors": True,
        "ajaxPageState": {"libraries": _LIBRARIES, "theme": "vp_theme", "theme_token": None},
        "matomo": {"siteId": 12, "trackerUrl": "https://stats.vie-publique.fr/", "trackMailto": True,
                   "customVariables": {"type": "discours", "node": key, "date": date}},
        "tarteaucitron": {"privacyUrl": "/donnees-personnelles", "hashtag": "#tarteaucitron", "orientation": "bottom",
                          "showAlertSmall": False, "cookieslist": True, "adblocker": False, "DenyAllCta": True},
        "user": {"uid": 0, "permissionsHash": "a1" * 32},
    }, ensure_ascii=False)
    return f"""<!DOCTYPE html>
<html lang="fr" dir="ltr" data-fr-scheme="system">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1.0">
<title>{title} | vie-publique.fr</title>
<meta name="description" content="{description}">
<link rel="canonical" href="https://www.vie-publique.fr/discours/{key}-{slug(speech.title)}">
<meta property="og:site_name" content="vie-publique.fr">
<meta property="og:type" content="article">
<meta property="og:title" content="{title}">
<meta property="og:description" content="{description}">
<meta property="article:published_time" content="{date}T12:00:00+0100">
<link rel="stylesheet" media="all" href="/themes/custom/vp_theme/dist/dsfr/dsfr.min.css?t4xq1e">
<link rel="stylesheet" media="all" href="/themes/custom/vp_theme/dist/css/global.css?t4xq1e">
<link rel="stylesheet" media="all" href="/themes/custom/vp_theme/dist/css/discours.css?t4xq1e">
<script type="application/json" data-drupal-selector="drupal-settings-json">{settings}</script>
<script src="/themes/custom/vp_theme/dist/js/tarteaucitron/tarteaucitron.js?t4xq1e"></script>
</head>
<body class="path-node page-node-type-discours">
<div class="fr-skiplinks"><nav role="navigation" aria-label="Accès rapide"><ul class="fr-skiplinks__list">
<li><a class="fr-link" href="#contenu">Contenu</a></li><li><a class="fr-link" href="#header-navigation">Menu</a></li>
<li><a class="fr-link" href="#header-search">Recherche</a></li>
<li><a class="fr-link" href="#footer">Pied de page</a></li>
</ul></nav></div>
<header role="banner" class="fr-header"><div class="fr-header__body"><div class="fr-container">
<div class="fr-header__brand"><p class="fr-logo">République<br>Française</p>
<div class="fr-header__service"><a href="/" title="Accueil - vie-publique.fr"><p class="fr-header__service-title">
vie-publique.fr</p></a><p class="fr-header__service-tagline">Au cœur du débat public</p></div></div>
<div class="fr-header__tools"><ul class="fr-btns-group"><li><a class="fr-btn" href="/lettres-information">
Lettres d'information</a></li><li><a class="fr-btn" href="/reseaux-sociaux">Sur les réseaux sociaux</a></li></ul>
<div class="fr-search-bar" id="header-search" role="search"><label class="fr-label" for="search-input">Rechercher
</label><input class="fr-input" placeholder="Rechercher" type="search" id="search-input" name="search">
<button class="fr-btn" title="Rechercher">Rechercher</button></div></div></div></div>
<div class="fr-header__menu"><div class="fr-container"><nav class="fr-nav" id="header-navigation" role="navigation"
aria-label="Menu principal"><ul class="fr-nav__list">{menu}</ul></nav></div></div></header>
<main role="main" id="contenu"><div class="fr-container">
<nav role="navigation" class="fr-breadcrumb" aria-label="vous êtes ici :"><ol class="fr-breadcrumb__list">
<li><a class="fr-breadcrumb__link" href="/">Accueil</a></li><li><a class="fr-breadcrumb__link" href="/discours">
Discours</a></li><li><a class="fr-breadcrumb__link" aria-current="page">{title}</a></li></ol></nav>
<article role="article" class="node node--type-discours node--view-mode-full vp-discours">
<div class="discour--desc"><h1 class="fr-h2">{title}</h1>
<p class="vp-discours__date">Prononcé le {day}</p>
<div class="vp-discours__intervenants"><h2 class="fr-h6">Personnalité, fonction</h2><ul>{speakers}</ul></div>
<div class="vp-discours__themes"><h2 class="fr-h6">Thèmes</h2><ul class="fr-tags-group">{tags}</ul></div>
<div class="fr-share"><p class="fr-share__title">Partager la page</p><ul class="fr-share__group">{share}
<li><button class="fr-share__link fr-share__link--copy" onclick="navigator.clipboard.writeText(window.location)">
Copier dans le presse-papier</button></li></ul></div></div>
<h2 class="fr-h4">Texte intégral</h2>
<div class="clearfix text-formatted field field--name-field-texte-integral field--type-text-long field--label-hidden \
field__item">{speech.body}</div>
<div class="vp-discours__mots-cles"><h2 class="fr-h6">Mots-clés</h2><ul class="fr-tags-group">{topics}</ul></div>
</article>
<section class="vp-related"><h2 class="fr-h3">Dans la même rubrique</h2><div class="fr-grid-row">{teasers}</div>
</section>
<div class="vp-newsletter fr-follow"><h2 class="fr-h5">Abonnez-vous à la lettre d'information</h2>
<p>Recevez chaque semaine l'essentiel de l'actualité des politiques publiques et du débat public.</p>
<form action="/lettres-information"><label class="fr-label" for="newsletter-email">Votre adresse électronique
</label><input class="fr-input" type="email" id="newsletter-email" name="email"><button class="fr-btn">S'abonner
</button></form></div>
</div></main>
<footer class="fr-footer" role="contentinfo" id="footer"><div class="fr-container"><div class="fr-footer__body">
<div class="fr-footer__content"><p class="fr-footer__content-desc">vie-publique.fr est un site d'information de
la Direction de l'information légale et administrative (DILA) qui donne des clés pour comprendre les politiques
publiques et les grands débats qui animent la société.</p><ul class="fr-footer__content-list">
{"".join(f"<li><a class='fr-footer__content-link' href='https://www.{p}'>{p}</a></li>" for p in _PARTNERS)}
</ul></div></div><div class="fr-footer__bottom"><ul class="fr-footer__bottom-list">
{"".join(f"<li><a class='fr-footer__bottom-link' href='/{slug(link)}'>{e(link)}</a></li>" for link in _FOOTER_LINKS)}
</ul><div class="fr-footer__bottom-copy"><p>Sauf mention contraire, tous les contenus de ce site sont sous
<a href="https://github.com/etalab/licence-ouverte/blob/master/LO.md">Licence etalab-2.0</a></p></div></div>
</div></footer>
<div id="tarteaucitronRoot" aria-hidden="true"><div id="tarteaucitronAlertBig" role="alert">
<span id="tarteaucitronDisclaimerAlert">Ce site utilise des cookies pour mesurer son audience. Vous pouvez
les accepter ou les refuser.</span><button id="tarteaucitronPersonalize2">Tout accepter</button>
<button id="tarteaucitronAllDenied2">Tout refuser</button></div></div>
<script src="/themes/custom/vp_theme/dist/dsfr/dsfr.module.min.js?t4xq1e" type="module"></script>
<script src="/themes/custom/vp_theme/dist/js/global.js?t4xq1e"></script>
</body>
</html>
"""


def catalogue_record(key: str, speech: Speech, url: str) -> dict[str, Any]:
    """A record with the field names of DILA's ``vp_discours.json`` (see dila-catalogue-record.json)."""
    kind = speech.title.split(" ", 1)[0]
    date = speech.date[:10]
    return {
        "id": key, "titre": speech.title, "url": url, "domaine": kind, "prononciation": date,
        "intervenants": [{"nom": name, "qualite": None, "qualite_long": None} for name in speech.speakers],
        "auteur_moral": [], "circonstance": None, "type_emetteur": None, "type_document": kind,
        "type_media": None, "media": None, "resume": None, "thematiques": speech.tags,
        "descripteurs": speech.topics, "mise_en_ligne": date, "mise_a_jour": date,
    }


# ---------------------------------------------------------------- 1. extraction alone


_WORDS = re.compile(r"\w+")
_SPACE = re.compile(r"\s+")


def words(text: str) -> Counter:
    return Counter(_WORDS.findall(text.casefold()))


def nfc(text: str) -> str:
    """trafilatura returns NFC; the structured path keeps the page's own form (the build's normalize step
    applies NFC later), and a few bodies spell « à » as a + U+0300. Compared in NFC, as the build will hold them."""
    return unicodedata.normalize("NFC", text)


def _timed(pages: list[tuple[str, str, str]], one, rounds: int) -> tuple[list[Any], list[float], float, float]:
    """The round with the least CPU time (the machine may be shared); outputs of the last round."""
    for page in pages[:WARMUP]:
        one(page)
    best = None
    for _ in range(rounds):
        outputs, cpu_each = [], []
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for page in pages:
            c = time.process_time()
            outputs.append(one(page))
            cpu_each.append(time.process_time() - c)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        if best is None or cpu < best[3]:
            best = (outputs, cpu_each, wall, cpu)
    return best


def extraction(pages: list[tuple[str, str, str]], rounds: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """``pages``: (url, title, html). Speed of the three ways, and trafilatura's text against the structured one."""
    from overton.corpus.text import split_source_line
    from overton.spiders.viepublique_page import _trafilatura_body, extract_speech

    def structured(page):
        return extract_speech(page[2], page[0])

    def fallback(page):
        return split_source_line(_trafilatura_body(page[2], page[0], page[1]))

    def both(page):
        return structured(page), fallback(page)

    html_mb = sum(len(p[2].encode("utf-8")) for p in pages) / MB
    rows, outputs = [], {}
    for name, label, fn in (("structured", "(a) overton structured (`extract_speech`)", structured),
                            ("trafilatura", "(b) trafilatura alone (overton's fallback settings)", fallback),
                            ("both", "(c) structured + trafilatura second opinion", both)):
        out, cpu_each, wall, cpu = _timed(pages, fn, rounds)
        outputs[name] = out
        ms = sorted(c * 1000 for c in cpu_each)
        slowest = max(range(len(pages)), key=cpu_each.__getitem__)
        rows.append({"method": name, "label": label, "pages": len(pages), "html_mb": round(html_mb, 2),
                     "cpu_seconds": round(cpu, 3), "seconds": round(wall, 3),
                     "pages_per_cpu_s": round(len(pages) / cpu, 1), "mb_per_cpu_s": round(html_mb / cpu, 2),
                     "ms_median": round(statistics.median(ms), 2), "ms_p95": round(ms[int(0.95 * (len(ms) - 1))], 2),
                     "ms_max": round(ms[-1], 2), "slowest_url": pages[slowest][0],
                     "slowest_html_kb": round(len(pages[slowest][2].encode("utf-8")) / 1000, 1)})
        print(f"  extraction {name}: {cpu:.2f} CPU s, {len(pages) / cpu:.0f} pages/CPU-s", file=sys.stderr)
    methods = Counter(p.method for p in outputs["structured"])
    text_mb = sum(len(p.text.encode("utf-8")) for p in outputs["structured"]) / MB
    return rows, quality(pages, outputs["structured"], outputs["trafilatura"], methods, text_mb)


def quality(pages, structured, fallback, methods: Counter, text_mb: float) -> dict[str, Any]:
    recalls, precisions, per_page = [], [], []
    pages_losing = lost_paragraphs = paragraphs = lost_chars = chars = 0
    lost_where, leaking, added = Counter(), Counter(), Counter()
    pages_leaking = pages_adding = added_paragraphs = empty = 0
    totals = Counter()
    for (url, _, _), page, (text, _) in zip(pages, structured, fallback, strict=True):
        ours, text = nfc(page.text), nfc(text)
        reference, candidate = words(ours), words(text)
        common = sum((reference & candidate).values())
        totals.update(common=common, reference=sum(reference.values()), candidate=sum(candidate.values()))
        recall = common / max(1, sum(reference.values()))
        precision = common / sum(candidate.values()) if candidate else 0.0
        recalls.append(recall)
        precisions.append(precision)
        empty += not text.strip()
        flat, ours_flat = _SPACE.sub(" ", text), _SPACE.sub(" ", ours)
        extra = [p for p in text.split("\n\n") if p.strip() and _SPACE.sub(" ", p) not in ours_flat]
        added_paragraphs += len(extra)
        pages_adding += bool(extra)
        added.update(re.sub(r"\d", "0", p)[:80] for p in extra)
        parts = [p for p in ours.split("\n\n") if p.strip()]
        lost = [i for i, p in enumerate(parts) if _SPACE.sub(" ", p) not in flat]
        paragraphs += len(parts)
        lost_paragraphs += len(lost)
        chars += sum(map(len, parts))
        lost_chars += sum(len(parts[i]) for i in lost)
        pages_losing += bool(lost)
        for i in lost:
            lost_where["first" if i == 0 else "last" if i == len(parts) - 1 else "middle"] += 1
        found = [m for m in FURNITURE if m.casefold() in text.casefold() and m.casefold() not in ours.casefold()]
        pages_leaking += bool(found)
        leaking.update(found)
        per_page.append({"url": url, "recall": round(recall, 4), "precision": round(precision, 4),
                         "paragraphs": len(parts), "lost": len(lost), "added": extra[:5], "furniture": found})
    n = len(pages)
    worst = sorted(per_page, key=lambda p: (p["recall"], p["precision"]))[:5]
    return {
        "pages": n, "structured_methods": dict(methods), "text_mb": round(text_mb, 2),
        "word_recall_mean": round(statistics.fmean(recalls), 4), "word_recall_min": round(min(recalls), 4),
        "word_recall_median": round(statistics.median(recalls), 4),
        "word_precision_mean": round(statistics.fmean(precisions), 4),
        "word_precision_min": round(min(precisions), 4),
        "word_recall_all_words": round(totals["common"] / totals["reference"], 4),
        "word_precision_all_words": round(totals["common"] / totals["candidate"], 4),
        "pages_adding_paragraphs": pages_adding, "paragraphs_added": added_paragraphs,
        "paragraphs_added_most_common": dict(added.most_common(10)),
        "pages_recall_below_0_99": sum(r < 0.99 for r in recalls),
        "pages_losing_paragraphs": pages_losing, "paragraphs": paragraphs, "paragraphs_lost": lost_paragraphs,
        "paragraphs_lost_where": dict(lost_where), "chars_lost_share": round(lost_chars / max(1, chars), 4),
        "pages_with_furniture": pages_leaking, "furniture_found": dict(leaking), "empty_outputs": empty,
        "worst_pages_by_recall": worst,
        "worst_pages_by_precision": sorted(per_page, key=lambda p: p["precision"])[:5],
    }


# ---------------------------------------------------------------- 2-3. the crawl


class Catalogue:
    """The catalogue route: JSON of ``records`` with ETag ``"v<version>"``; 304 when the client has it."""

    def __init__(self, records: list[dict[str, Any]]):
        self.records, self.version = records, 1
        self._body: tuple[int, bytes] | None = None
        self.served: list[int] = []

    def body(self) -> bytes:
        if self._body is None or self._body[0] != self.version:
            self._body = (self.version, json.dumps(self.records, ensure_ascii=False).encode("utf-8"))
        return self._body[1]

    def __call__(self, hit):
        from tests.sites import Reply

        etag = f'"catalogue-v{self.version}"'
        if hit.header("If-None-Match") == etag:
            self.served.append(304)
            return Reply(304, b"", {"ETag": etag})
        self.served.append(200)
        return Reply(200, self.body(), {"Content-Type": "application/json", "ETag": etag,
                                        "Last-Modified": "Mon, 23 Nov 2020 03:00:00 GMT"})


def configure(workspace, site) -> None:
    """The crawl tests' settings: a contact User-Agent, no delay nor AutoThrottle, local catalogue and listing."""
    text = workspace.settings_path.read_text()
    for old, new in [('user_agent = ""', f'user_agent = "{UA}"'), ("delay = 2.0", "delay = 0.0"),
                     ("autothrottle = true", "autothrottle = false"),
                     ('"https://echanges.dila.gouv.fr/OPENDATA/DISCOURS_PUBLICS/vp_discours.json"',
                      f'"{site.url(CATALOGUE)}"'),
                     ('"https://www.vie-publique.fr/discours"', f'"{site.url("/discours")}"')]:
        if old not in text:
            sys.exit(f"overton.toml has no {old!r}: the benchmark's settings edit is out of date")
        text = text.replace(old, new)
    workspace.settings_path.write_text(text)


def raw_count(workspace) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(part).metadata.num_rows for run in workspace.raw_runs() for part in run.parts())


def crawl_run(name: str, workspace, site, catalogue: Catalogue, records: int, warnings: list[str],
              expect_pages: int | None) -> dict[str, Any]:
    site.hits.clear()
    catalogue.served.clear()
    before = raw_count(workspace)
    argv = [sys.executable, "-m", "overton", "crawl", "vie-publique", "-w", str(workspace.root), "--quiet"]
    result = measure(argv, cwd=REPO)
    if result.returncode != 0:
        sys.exit(f"{name}: overton crawl exited {result.returncode}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")
    record = json.loads(sorted(workspace.runs.glob("*-crawl-vie-publique.json"))[-1].read_text())
    stats = record["stats"]
    pages = [h.path for h in site.hits if h.path.startswith("/discours/")]
    committed = raw_count(workspace) - before
    if expect_pages is not None and len(pages) != expect_pages:
        warnings.append(f"{name}: {len(pages)} speech pages fetched, expected {expect_pages}")
    if len(pages) != len(set(pages)):
        warnings.append(f"{name}: some speech pages were fetched more than once")
    if committed != stats.get("overton/documents_committed", 0):
        warnings.append(f"{name}: {committed} new raw rows but the stats say "
                        f"{stats.get('overton/documents_committed', 0)} documents committed")
    row = {
        "run": name, "catalogue_records": records, "catalogue_status": "/".join(map(str, catalogue.served)),
        "catalogue_mb": round(len(catalogue.body()) / MB, 2) if 200 in catalogue.served else 0.0,
        "pages_fetched": len(pages), "requests_run_record": stats.get("downloader/request_count", 0),
        "requests_server_log": len(site.hits),
        "server_log": dict(Counter("robots.txt" if h.path == "/robots.txt" else "catalogue" if h.path == CATALOGUE
                                   else "speech page" if h.path.startswith("/discours/") else "other"
                                   for h in site.hits)),
        "documents_committed": committed, "raw_documents_total": before + committed,
        "seconds": round(result.seconds, 3), "in_command_seconds": record.get("duration_s"),
        "cpu_seconds": round(result.cpu_seconds, 3), "server_cpu_seconds": round(result.own_cpu_seconds, 3),
        "pages_per_s_per_core": round(len(pages) / result.seconds, 1),
        "pages_per_cpu_s": round(len(pages) / result.cpu_seconds, 1) if result.cpu_seconds else None,
        "peak_rss_mb": round(result.peak_rss / MB, 1), "stdout": result.stdout.strip(),
        "stats": {k: v for k, v in stats.items() if k.startswith(("overton/", "downloader/", "item_", "response_",
                                                                  "finish_reason", "log_count/"))},
    }
    print(f"  {name}: {row['pages_fetched']} pages, {row['requests_run_record']} requests, "
          f"{result.seconds:.2f} s, catalogue {row['catalogue_status']}", file=sys.stderr)
    return row


def diff_stages(body: bytes, seen_path: Path) -> list[dict[str, Any]]:
    """The catalogue diff of ``parse_catalogue`` in this process, one stage more per row: ijson parsing, then
    ``record_key`` + ``record_hash``, then the seen-store lookup (every record is known: a quiet night)."""
    import io

    from overton.spiders.dila_catalogue import SOURCE, iter_records, record_hash, record_key
    from overton.spiders.seen import SeenStore

    seen = SeenStore(seen_path)

    def parse() -> int:
        return sum(1 for _ in iter_records(io.BytesIO(body)))

    def hashed() -> int:
        return sum(1 for r in iter_records(io.BytesIO(body)) if record_hash(r) and record_key(r))

    def diffed() -> int:
        return sum(seen.is_new_or_changed(SOURCE, record_key(r), record_hash(r))
                   for r in iter_records(io.BytesIO(body)))

    rows = []
    try:
        records = parse()
        for stage, fn in (("parse (ijson)", parse), ("+ record_key + record_hash", hashed),
                          ("+ seen-store lookup = the diff", diffed)):
            wall0, cpu0 = time.perf_counter(), time.process_time()
            count = fn()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            rows.append({"stage": stage, "records": records, "changed": count if fn is diffed else None,
                         "mb": round(len(body) / MB, 1), "seconds": round(wall, 3), "cpu_seconds": round(cpu, 3),
                         "mb_per_cpu_s": round(len(body) / MB / cpu, 1),
                         "us_per_record": round(cpu * 1e6 / records, 1)})
    finally:
        seen.close()
    return rows


def run_crawls(tmp: Path, speeches: list[Speech], scale: int,
               warnings: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from overton.corpus.workspace import Workspace
    from overton.spiders.dila_catalogue import SOURCE, record_hash
    from overton.spiders.seen import SeenStore
    from tests.sites import Reply, Site

    runs, stages = [], []
    with Site() as site:
        keys = [str(FIRST_ID + i) for i in range(len(speeches))]
        records = []
        for i, (key, speech) in enumerate(zip(keys, speeches, strict=True)):
            related = [(keys[j % len(keys)], speeches[j % len(keys)]) for j in range(i + 1, i + 5)]
            path = speech_path(key, speech)
            site.routes[path] = Reply(200, page_html(key, speech, related),
                                      {"Content-Type": "text/html; charset=utf-8"})
            records.append(catalogue_record(key, speech, site.url(path)))
        site.routes["/robots.txt"] = Reply(200, "User-agent: *\nDisallow: /admin/\n", {"Content-Type": "text/plain"})
        catalogue = Catalogue(records)
        site.routes[CATALOGUE] = catalogue
        workspace = Workspace.init(tmp / "ws")
        configure(workspace, site)
        n = len(records)

        runs.append(crawl_run(f"first run ({n} new speeches)", workspace, site, catalogue, n, warnings, n))
        runs.append(crawl_run("nightly, nothing changed (catalogue 304)", workspace, site, catalogue, n, warnings, 0))
        if runs[-1]["stats"].get("overton/catalogue_not_modified") != 1:
            warnings.append("the unchanged nightly run did not get a 304 for the catalogue")

        for i in range(CHANGED):  # DILA fixes 5 titles: those records' hashes and the catalogue's ETag change
            records[i * n // CHANGED]["titre"] += " (titre corrigé)"
        catalogue.version += 1
        runs.append(crawl_run(f"nightly, {CHANGED} records changed", workspace, site, catalogue, n, warnings,
                              CHANGED))

        if scale > n:
            # DILA's size: synthetic records cycling the real ones' metadata under new ids, all already in the
            # seen-store (put directly, as a previous run would have) but the last CHANGED, which are new.
            seen = SeenStore(workspace.state / "seen.sqlite3")
            with seen.batch():
                for j in range(scale - n):
                    key = str(SYNTHETIC_ID + j)
                    speech = speeches[j % len(speeches)]
                    path = f"/discours/{key}-{slug(speech.title)}"
                    record = catalogue_record(key, speech, site.url(path))
                    records.append(record)
                    if j >= scale - n - CHANGED:
                        original = records[j % n]
                        site.routes[path] = site.routes[original["url"].split(str(site.port), 1)[1]]
                    else:
                        seen.put(SOURCE, key, content_hash=record_hash(record), url=record["url"])
            seen.close()
            for record in records[:n]:
                record["mise_a_jour"] = "2020-11-24"  # DILA's daily rebuild; not a hashed field
            catalogue.version += 1
            mb = len(catalogue.body()) / MB
            print(f"  DILA-scale catalogue: {len(records)} records, {mb:.1f} MB", file=sys.stderr)
            runs.append(crawl_run(f"nightly at DILA's scale ({len(records):,} records, {CHANGED} new)", workspace,
                                  site, catalogue, len(records), warnings, CHANGED))
            stages = diff_stages(catalogue.body(), workspace.state / "seen.sqlite3")
            if stages[-1]["changed"]:
                warnings.append(f"the in-process diff found {stages[-1]['changed']} changed records, expected 0")
    return runs, stages


# ---------------------------------------------------------------- report


def markdown(extract_rows: list[dict[str, Any]], q: dict[str, Any], runs: list[dict[str, Any]],
             stages: list[dict[str, Any]]) -> str:
    pages, mb = extract_rows[0]["pages"], extract_rows[0]["html_mb"]
    lines = [f"Extraction alone, one core: {pages} real speech bodies in vie-publique-style pages, {mb:.1f} MB of "
             f"HTML ({q['text_mb']:.1f} MB of extracted text)", "",
             "| method | pages | HTML MB | CPU s | wall s | pages/CPU-s | MB/CPU-s | median ms | p95 ms | max ms |",
             "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
    for r in extract_rows:
        lines.append(f"| {r['label']} | {r['pages']} | {r['html_mb']:.2f} | {r['cpu_seconds']:.2f} | "
                     f"{r['seconds']:.2f} | {r['pages_per_cpu_s']:.0f} | {r['mb_per_cpu_s']:.2f} | "
                     f"{r['ms_median']:.2f} | {r['ms_p95']:.2f} | {r['ms_max']:.2f} |")
    cpu = {r["method"]: r["cpu_seconds"] for r in extract_rows}
    lines += ["", "| ratio | CPU time |", "|---|--:|",
              f"| trafilatura alone / structured | {cpu['trafilatura'] / cpu['structured']:.1f}x |",
              f"| structured + trafilatura / structured | {cpu['both'] / cpu['structured']:.1f}x |"]
    where = ", ".join(f"{k} {v}" for k, v in sorted(q["paragraphs_lost_where"].items())) or "-"
    added = ", ".join(f"« {k} » {v}" for k, v in list(q["paragraphs_added_most_common"].items())[:4]) or "-"
    lines += ["", "| trafilatura (b) against structured (a) | value |", "|---|--:|",
              f"| pages compared (structured path used on) | {q['pages']} "
              f"({q['structured_methods'].get('structured', 0)}) |",
              f"| word recall: mean / median / min | {q['word_recall_mean']:.3f} / {q['word_recall_median']:.3f} / "
              f"{q['word_recall_min']:.3f} |",
              f"| word precision: mean / min | {q['word_precision_mean']:.3f} / {q['word_precision_min']:.3f} |",
              f"| word recall / precision over all words | {q['word_recall_all_words']:.4f} / "
              f"{q['word_precision_all_words']:.4f} |",
              f"| pages with word recall < 0.99 | {q['pages_recall_below_0_99']} "
              f"({q['pages_recall_below_0_99'] / q['pages']:.0%}) |",
              f"| pages losing at least one paragraph | {q['pages_losing_paragraphs']} "
              f"({q['pages_losing_paragraphs'] / q['pages']:.0%}) |",
              f"| paragraphs lost (of all) / where | {q['paragraphs_lost']} of {q['paragraphs']} / {where} |",
              f"| characters of the structured text lost | {q['chars_lost_share']:.1%} |",
              f"| pages with paragraphs the body does not have / paragraphs added | {q['pages_adding_paragraphs']} "
              f"/ {q['paragraphs_added']} |",
              f"| most added (digits as 0) | {added} |",
              f"| pages with page furniture in the text (any of {len(FURNITURE)} markers) | "
              f"{q['pages_with_furniture']} |",
              f"| empty outputs | {q['empty_outputs']} |"]
    if runs:
        lines += ["", "`overton crawl vie-publique --quiet` against the local server, politeness delay 0 and "
                  "AutoThrottle off (benchmark only)", "",
                  "| run | catalogue | records | pages fetched | requests (run record / server log) "
                  "| documents committed | seconds | in-command s | CPU s | server CPU s | pages/s/core | pages/CPU-s "
                  "| peak RSS MB |",
                  "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"]
        for r in runs:
            status = r["catalogue_status"] + (f" ({r['catalogue_mb']:.1f} MB)" if r["catalogue_mb"] else "")
            lines.append(f"| {r['run']} | {status} | {r['catalogue_records']} | {r['pages_fetched']} | "
                         f"{r['requests_run_record']} / {r['requests_server_log']} | {r['documents_committed']} | "
                         f"{r['seconds']:.2f} | {r['in_command_seconds']:.2f} | {r['cpu_seconds']:.2f} | "
                         f"{r['server_cpu_seconds']:.2f} | {r['pages_per_s_per_core']:.1f} | "
                         f"{_cell(r['pages_per_cpu_s'])} | {r['peak_rss_mb']:.0f} |")
        first = runs[0]
        lines += ["", "| ratio | seconds |", "|---|--:|"]
        lines += [f"| first run / {r['run']} | {first['seconds'] / r['seconds']:.1f}x |" for r in runs[1:]]
    if stages:
        lines += ["", f"The DILA-scale catalogue diff alone, in process, one core ({stages[0]['records']:,} records, "
                  f"{stages[0]['mb']:.1f} MB, every record already seen)", "",
                  "| stage | records | seconds | CPU s | MB/CPU-s | µs/record |", "|---|--:|--:|--:|--:|--:|"]
        lines += [f"| {r['stage']} | {r['records']} | {r['seconds']:.2f} | {r['cpu_seconds']:.2f} | "
                  f"{r['mb_per_cpu_s']:.1f} | {r['us_per_record']:.1f} |" for r in stages]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return "" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)


def versions() -> dict[str, str]:
    found = {}
    for dist in ("scrapy", "twisted", "trafilatura", "lxml", "ijson", "pyarrow", "psutil"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[dist] = importlib.metadata.version(dist)
    with contextlib.suppress(ImportError):
        import ijson

        found["ijson_backend"] = ijson.backend
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalogue-records", type=int, default=DILA_RECORDS,
                        help=f"records of the DILA-scale catalogue run (default {DILA_RECORDS:,}; 0 skips it)")
    parser.add_argument("--rounds", type=int, default=3, help="extraction rounds, the fastest kept (default 3)")
    parser.add_argument("--no-crawl", action="store_true", help="measure the extraction only")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspace and print its path")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be >= 1")
    if not CSV_PATH.is_file():
        print(f"skipped: ../shared/data not found ({CSV_PATH})")
        return 0

    started = time.perf_counter()
    speeches = read_speeches()
    keys = [str(FIRST_ID + i) for i in range(len(speeches))]
    pages = []
    for i, (key, speech) in enumerate(zip(keys, speeches, strict=True)):
        related = [(keys[j % len(keys)], speeches[j % len(keys)]) for j in range(i + 1, i + 5)]
        pages.append((f"https://www.vie-publique.fr{speech_path(key, speech)}", speech.title,
                      page_html(key, speech, related)))
    print(f"inputs: {len(speeches)} speeches from {CSV_PATH.name}", file=sys.stderr)
    extract_rows, q = extraction(pages, args.rounds)

    warnings: list[str] = []
    runs: list[dict[str, Any]] = []
    stages: list[dict[str, Any]] = []
    if not args.no_crawl:
        print("crawl: politeness delay 0 and AutoThrottle off, for the benchmark only", file=sys.stderr)
        tmp = Path(tempfile.mkdtemp(prefix="overton-bench-crawl-"))
        try:
            runs, stages = run_crawls(tmp, speeches, args.catalogue_records, warnings)
        finally:
            if args.keep:
                print(f"kept {tmp}", file=sys.stderr)
            else:
                shutil.rmtree(tmp, ignore_errors=True)

    print(markdown(extract_rows, q, runs, stages))
    for warning in warnings:
        print(f"WARNING: {warning}")
    results = {
        "versions": versions(),
        "politeness": "delay 0 and AutoThrottle off for the benchmark only (defaults: delay 2 s, AutoThrottle on)",
        "inputs": {"csv": str(CSV_PATH.relative_to(DATA)), "speeches": len(speeches),
                   "page_html_mb": extract_rows[0]["html_mb"]},
        "extraction": extract_rows,
        "quality": q,
        "crawl": runs,
        "catalogue_diff_in_process": stages,
        "warnings": warnings,
        "seconds": round(time.perf_counter() - started, 1),
    }
    save_results("crawl", argv, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
