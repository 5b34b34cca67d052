"""The release page: samples chosen by a fixed rule from a real built version, and ``index.html`` checked in a real
headless Chromium, served by a real HTTP server and from file:// (tests/browser.py)."""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import urllib.request
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from PIL import Image, ImageStat

from overton.corpus.dataset import Version
from overton.corpus.errors import Refused
from overton.corpus.page import write_page
from overton.corpus.plots import write_plots
from overton.corpus.samples import collect_samples
from overton.corpus.stats import version_stats
from overton.corpus.workspace import Workspace
from overton.pipelines.build import build
from overton.pipelines.pii import redact
from overton.spiders.ingest import ingest
from tests.browser import headless, serve
from tests.conftest import french_text, write_jsonl

TITLE = "Corpus d'essai v0001"
SCRIPT = "<script>document.title = 'pwned'</script>"
IMG = "<img src=x onerror=\"document.title = 'pwned'\">"
HIDDEN = "Vertigineusement"  # a word only the gated source's texts hold
CARD = f"""---
license: other
pretty_name: test
---
# {TITLE}

A card written for the test, with <b>raw HTML</b> that must show as text.

| source | documents |
|---|---:|
| speeches | 5 |

![Documents per year](plots/documents_per_year.png)
"""


def _shows_text(row: dict) -> bool:
    return row["source"] != "private"


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> SimpleNamespace:
    """A version built from documents written here (a duplicate cluster with an exact and a near copy, a text
    holding markup, a gated source, rejects of several reasons) and a release folder with its page."""
    root = tmp_path_factory.mktemp("page")
    workspace = Workspace.init(root / "ws")
    rng = random.Random(3)
    base = french_text(rng, 300)
    near = base.rsplit(".", 2)[0] + ". " + french_text(rng, 12)
    speeches = [{"id": f"s{i}", "title": f"Discours {i}", "text": french_text(rng, 120),
                 "published_at": f"{2015 + i % 3}-03-01"} for i in range(5)]
    speeches += [{"id": "a-kept", "title": "Discours original", "text": base},
                 {"id": "b-copy", "title": "Copie exacte", "text": base},
                 {"id": "c-near", "title": "Copie proche", "text": near},
                 {"id": "empty", "title": "Vide", "text": "<p> </p>"}]
    web = [{"id": "markup", "title": "Balises <b>grasses</b>", "url": "javascript:alert(1)",
            # entities: the build decodes them, so the kept text holds the markup itself
            "text": "Le texte &lt;script&gt;document.title = 'pwned'&lt;/script&gt; et "
                    "&lt;img src=x onerror=\"document.title = 'pwned'\"&gt; " + french_text(rng, 60)},
           {"id": "english", "text": "The government must support the regions in the years to come, and the parliament "
                                     "will vote on the budget before the end of the year, with the social partners. "
                                     "Write to jean.dupont@example.org for the details."}]
    private = [{"id": f"p{i}", "url": f"https://example.org/p{i}", "text": f"{HIDDEN} " + french_text(rng, 80)}
               for i in range(2)]
    for source, records, profile, licence in [("speeches", speeches, "speech", "CC0-1.0"),
                                              ("web", web, "web", "CC-BY-4.0"),
                                              ("private", private, "web", "LicenseRef-not-redistributable")]:
        path = write_jsonl(root / f"{source}.jsonl", records)
        assert ingest(workspace, [path], source, profile=profile, default_license=licence).refused_count == 0
    version = build(workspace, jobs=1, progress=False).version

    folder = root / "release"
    shards = [entry["path"] for entry in version.files("data")]
    for path in shards:
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        os.link(version.path / path, folder / path)
    plots = write_plots(version_stats(version), folder)
    samples = collect_samples(version, _shows_text, per_group=3, clusters=5, excerpt_chars=300)
    page = write_page(folder, CARD, plots, samples, shards)
    return SimpleNamespace(version=version, folder=folder, page=page, samples=samples, shards=shards, plots=plots)


def _rows(version: Version, kind: str) -> dict[str, dict]:
    return {row["id"]: row for batch in version.iter_batches(kind) for row in batch.to_pylist()}


def _smallest_sha256(ids, count: int = 3) -> list[str]:
    return sorted(ids, key=lambda i: hashlib.sha256(i.encode()).digest())[:count]


def test_samples_are_chosen_by_a_fixed_rule_with_their_evidence_and_clusters(release):
    kept, rejected = _rows(release.version, "data"), _rows(release.version, "rejected")
    samples = release.samples
    assert "<script>" in kept["web:markup"]["text"]  # what the page must show as text
    assert sorted(samples["kept"]) == ["private", "speeches", "web"]
    for source, docs in samples["kept"].items():
        assert [d["id"] for d in docs] == _smallest_sha256(i for i, r in kept.items() if r["source"] == source)
        for doc in docs:
            row = kept[doc["id"]]
            assert (doc["title"], doc["url"], doc["license"], doc["characters"]) == (
                row["title"], row["url"], row["license"], len(row["text"]))
            if source == "private":
                assert doc["text"] is None
            else:
                assert row["text"].startswith(doc["text"].removesuffix(" …")) and len(doc["text"]) <= 302
    assert {reason: [d["id"] for d in docs] for reason, docs in samples["rejected"].items()} == {
        "empty": ["speeches:empty"], "exact_duplicate": ["speeches:b-copy"], "near_duplicate": ["speeches:c-near"],
        "not_french": ["web:english"]}
    english = samples["rejected"]["not_french"][0]
    assert (english["reason"], english["step"], english["detail"]) == (
        "not_french", "language", json.loads(rejected["web:english"]["reject_detail"]))
    near = samples["rejected"]["near_duplicate"][0]
    assert near["detail"]["duplicate_of"] == "speeches:a-kept" and 0.8 <= near["jaccard"] < 1

    [cluster] = samples["clusters"]
    assert cluster["kept"]["id"] == "speeches:a-kept" and cluster["size"] == 3
    assert {(d["id"], d["reason"], d["jaccard"]) for d in cluster["removed"]} == {
        ("speeches:b-copy", "exact_duplicate", None), ("speeches:c-near", "near_duplicate", near["jaccard"])}
    assert collect_samples(release.version, _shows_text, per_group=3, clusters=5, excerpt_chars=300) == samples


def test_samples_redact_the_text_of_rejects_that_left_before_the_pii_step(release):
    [english] = release.samples["rejected"]["not_french"]
    assert "jean.dupont@example.org" in english["text"]  # rejected by the language step, before PII
    redacted = collect_samples(release.version, _shows_text, excerpt_chars=300, redact=lambda t: redact(t)[0])
    assert redacted["rejected"]["not_french"][0]["text"] == english["text"].replace("jean.dupont@example.org",
                                                                                     "<EMAIL>")


def test_samples_refuse_a_damaged_file(release, tmp_path: Path):
    copy = tmp_path / release.version.name
    shutil.copytree(release.version.path, copy)
    damaged = copy / release.shards[0]
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size: only the checksum can tell
    damaged.write_bytes(bytes(data))
    with pytest.raises(Refused, match=f"{release.shards[0]}: sha256 differs from manifest"):
        collect_samples(Version.open(copy), _shows_text)


def test_page_is_static_escaped_and_gated(release):
    html = release.page.read_text(encoding="utf-8")
    assert release.page == release.folder / "index.html"
    assert "&lt;script&gt;document.title = &#39;pwned&#39;&lt;/script&gt;" in html and SCRIPT not in html
    assert "<b>" not in html and "&lt;b&gt;raw HTML&lt;/b&gt;" in html  # raw HTML in the card: text too
    assert "pretty_name" not in html  # the YAML header is left out
    assert 'href="javascript:' not in html
    assert HIDDEN not in html and "private:p0" in html and "private:p1" in html
    for plot in release.plots:  # the card shows one, the page the others: each once
        assert html.count(f'<img src="{plot.file}"') == 1


def _loaded_images(driver) -> list:
    return driver.execute_script(
        "return Array.from(document.images, i => [i.getAttribute('src'), i.complete, i.naturalWidth])")


def _check_page(driver, release) -> None:
    """What a reader must see wherever the page is opened from."""
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []
    assert driver.title == TITLE  # neither the script nor the image's onerror in a document ran
    assert driver.execute_script("return document.scripts.length") == 0
    body = driver.execute_script("return document.body.textContent")
    assert SCRIPT in body and IMG in body and HIDDEN not in body
    gated = [a.get_attribute("textContent") for a in driver.find_elements("css selector", "article.doc")
             if "private:" in a.get_attribute("textContent")]
    assert gated and all("not published here" in text for text in gated)
    images = _loaded_images(driver)
    assert sorted(src for src, _, _ in images) == sorted(p.file for p in release.plots)
    assert all(complete and width > 0 for _, complete, width in images), images
    loads = driver.execute_script(
        "return Array.from(document.querySelectorAll('[src], link[href]'), e => e.getAttribute('src') || e.href)")
    assert all(url.startswith(("plots/", "data:")) for url in loads), loads  # nothing fetched from elsewhere


def test_page_in_headless_chromium(release, tmp_path: Path):
    sizes = {path: (release.folder / path).stat().st_size for path in release.shards}
    with headless(1280, 900) as driver, serve(release.folder) as server:
        driver.get(f"{server.base}/index.html")
        _check_page(driver, release)
        links = driver.execute_script("return Array.from(document.querySelectorAll('a.shard'), a => a.href)")
        assert sorted(links) == sorted(f"{server.base}/{path}" for path in release.shards)
        for link in links:
            with urllib.request.urlopen(link) as response:
                assert response.status == 200 and len(response.read()) == sizes[urlsplit(link).path[1:]]
        assert all(status == 200 for _, status in server.requests), server.requests

        shot = tmp_path / "page.png"
        assert driver.save_screenshot(str(shot))
        viewport = driver.execute_script("return [innerWidth * devicePixelRatio, innerHeight * devicePixelRatio]")
        with Image.open(shot) as image:
            assert list(image.size) == viewport and image.size[0] == 1280
            stat = ImageStat.Stat(image.convert("L"))
            assert stat.stddev[0] > 20  # text, tables and borders, not a blank page
            assert len(image.convert("RGB").getcolors(1 << 20)) > 50

        driver.get(release.page.as_uri())
        _check_page(driver, release)
        links = driver.execute_script("return Array.from(document.querySelectorAll('a.shard'), a => a.href)")
        assert sorted(links) == sorted((release.folder / path).as_uri() for path in release.shards)
