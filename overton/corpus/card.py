"""The data card: ``README.md`` with the YAML header the Hugging Face Hub reads, then what a reader needs to know.

Nothing in it is written by hand: the header and every table come from the statistics of the version
(:mod:`overton.corpus.stats`), the configs of the release, the licences its documents carry and the build's
manifest; the words around them come from the template ``card.md.j2`` (in ``data_cards/templates``) and from the
workspace's ``[card]`` and ``[sources.NAME] description`` settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from overton import __version__
from overton.corpus.atomic import write_bytes
from overton.corpus.licences import Licence, licence
from overton.corpus.templates import environment

README = "README.md"
LICENCE_FILE = "LICENSE.md"


@dataclass(frozen=True)
class Config:
    """One Hub config: a name, the Parquet files it reads (a glob relative to the release) and its rows."""

    name: str
    data_files: str
    rows: int
    default: bool = False


@dataclass(frozen=True)
class Publication:
    """Where the card goes: the version folder itself (``kind`` "version") or a release, public or private, with
    the reason text not licensed for redistribution is published anyway, if any. ``location`` is how readers
    name it in ``load_dataset``."""

    location: str
    kind: str  # "version" or "release"
    private: bool
    reason: str | None = None


@dataclass(frozen=True)
class Card:
    readme: str
    licence_file: str | None  # LICENSE.md, when documents differ in licence


_SIZES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B")]


def size_category(documents: int) -> str:
    """The Hub's size category of a dataset of ``documents`` rows."""
    return next((name for bound, name in _SIZES if documents < bound), "n>1T")


def _licence_counts(stats: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for source in stats["sources"].values():
        for name, count in source["licences"].items():
            counts[name] = counts.get(name, 0) + count
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def header(stats: dict[str, Any], configs: list[Config], pretty_name: str) -> dict[str, Any]:
    """The YAML header: what the Hub indexes and how ``load_dataset`` finds each config's files."""
    hub = sorted({licence(name).hub for name in _licence_counts(stats)})
    meta: dict[str, Any] = {"pretty_name": pretty_name, "language": ["fr"]}
    if len(hub) == 1 and hub[0] != "other":
        meta["license"] = hub[0]
    else:
        meta.update(license="other", license_name="overton-per-document", license_link=LICENCE_FILE)
    meta.update(
        task_categories=["text-generation"],
        size_categories=[size_category(stats["totals"]["documents"])],
        source_datasets=["original"],
        tags=["politics", "french", "overton"],
        configs=[{"config_name": c.name, "data_files": [{"split": "train", "path": c.data_files}],
                  **({"default": True} if c.default else {})} for c in configs],
    )
    return meta


def _origin(name: str, manifest: dict[str, Any], description: str) -> str:
    """The description the workspace gives the source, then how its raw runs were made (their job names)."""
    jobs = sorted({run["run"].split("-", 1)[1] for run in manifest.get("inputs", [])
                   if run["run"].split("/", 1)[0] == name and "-" in run["run"]})
    how = [f"imported with `overton {job}`" if job == "ingest" else
           f"collected with `overton crawl {job.removeprefix('crawl-')}`" for job in jobs]
    facts = "; ".join(how) or "carried over from earlier versions"
    return f"{description} ({facts})." if description else facts[0].upper() + facts[1:] + "."


def _processing(name: str, stats: dict[str, Any], manifest: dict[str, Any]) -> str:
    counts = manifest["counts"]["sources"].get(name)
    if not counts:
        return "carried over from earlier versions."
    reasons = ", ".join(f"{reason} {count:,}" for reason, count in sorted(stats["rejected"]["by_source"].get(
        name, {}).items(), key=lambda item: (-item[1], item[0])))
    return (f"{counts['input']:,} documents in this build, {counts['kept']:,} kept, {counts['rejected']:,} rejected"
            + (f" ({reasons})" if reasons else "") + "; normalised, language-checked, quality-scored, personal data "
            "redacted where its profile says so, exact and near duplicates removed.")


def _limitations(stats: dict[str, Any]) -> dict[str, list[str]]:
    """What the data shows of its balance, then what the filters cannot promise. Figures only: whether a share
    is too large depends on what the reader trains the model for."""
    imbalance, total = stats["imbalance"], stats["totals"]["documents"]
    shares = ", ".join(f"{name} {s['documents'] / total:.0%}" for name, s in
                       sorted(stats["sources"].items(), key=lambda item: (-item[1]["documents"], item[0])))
    lines = [f"Sources: {shares} of the documents." if total else "No document was kept."]
    if imbalance["top_year"]:
        year, share = imbalance["top_year"]
        undated = sum(s["undated"] for s in stats["sources"].values())
        lines.append(f"Periods: the busiest year, {year}, holds {share:.0%} of the dated documents"
                     + (f"; {undated:,} documents have no date." if undated else "."))
    speakers = stats["speakers"]
    if speakers["top"]:
        name, count = speakers["top"][0]
        lines.append(f"Speakers: {speakers['distinct']:,} distinct in {speakers['documents_with']:,} documents; the "
                     f"most frequent, {name}, speaks in {count:,} ({count / speakers['documents_with']:.0%}), the 10 "
                     f"most frequent in {imbalance['top10_speakers_share']:.0%}.")
        if speakers["roles"]:
            roles = ", ".join(f"{role} ({n:,})" for role, n in speakers["roles"][:5])
            lines.append(f"Speakers' roles, most frequent first: {roles}.")
    if imbalance["party"]:
        parties = ", ".join(f"{party} {count:,}" for party, count in imbalance["party"].items())
        lines.append(f"Parties: {parties}.")
    else:
        lines.append("Political parties are not recorded in the documents, so party balance is not measured.")
    return {"measured": lines, "general": [
        "Language and quality filters are statistical: some French text was rejected and some noise kept; the "
        "rejects are counted above by reason.",
        "Personal data: e-mail addresses and phone numbers are redacted where the profile asks for it; the names "
        "of public figures, and of people they mention, remain.",
        "Texts reflect the views of their authors and of the institutions that published them.",
    ]}


def _near(manifest: dict[str, Any]) -> str:
    near = manifest.get("parameters", {}).get("near_dedup", {})
    if not near.get("enabled"):
        return "not removed in this build."
    if near.get("mode") == "fineweb":
        return (f"MinHash over word {near['ngram']}-grams, FineWeb's 14 bands of 8 rows, documents sharing a band "
                "merged unverified into clusters of which one document is kept.")
    if "margin" in near:  # versions built before candidates were verified exactly
        return (f"MinHash over word {near['ngram']}-grams, {near['bands']} bands of {near['rows']} rows, pairs at "
                f"estimated Jaccard similarity {near['threshold']} or more (less {near['margin']} for the "
                "estimate's noise) merged into clusters of which one document is kept.")
    return (f"MinHash over word {near['ngram']}-grams, {near['bands']} bands of {near['rows']} rows, candidate pairs "
            f"whose shingles have a Jaccard similarity of {near['threshold']} or more (computed exactly from their "
            "texts) merged into clusters of which one document is kept.")


def render_card(stats: dict[str, Any], changes: dict[str, Any], configs: list[Config], plots: list,
                publication: Publication, withheld: dict[str, int], restricted: dict[str, int],
                credits: dict[str, list[str]], manifest: dict[str, Any], settings) -> Card:
    """The card of a version as ``publication`` presents it; ``settings`` is the workspace's configuration."""
    card = settings.card
    title = card.pretty_name or stats["name"]
    default = next((c for c in configs if c.default), configs[0] if configs else Config("all", "data/*/*.parquet", 0))
    licence_counts = _licence_counts(stats)
    licences: dict[str, Licence] = {name: licence(name) for name in licence_counts}

    def status(name: str) -> str:
        gone = withheld.get(name, 0)
        if not gone:
            return "all"
        return "none (metadata only)" if gone >= stats["sources"][name]["documents"] else f"all but {gone:,}"

    years = [s["years"] for s in stats["sources"].values() if s["years"]]
    summary = card.summary or (
        f"French political texts collected and cleaned by overton: {stats['totals']['documents']:,} documents "
        f"and {stats['totals']['words']:,} words from {len(stats['sources'])} sources, deduplicated, in French, "
        "each with its licence.")
    what = (f"This is version `{stats['version']}` of the dataset `{stats['name']}`"
            + (f" (built on `{stats['parent']}`)" if stats["parent"] else "") + ".")
    values = {
        "title": title, "summary": summary, "what": what, "stats": stats, "changes": changes, "configs": configs,
        "plots": plots, "publication": publication, "withheld_total": sum(withheld.values()),
        "restricted_total": sum(restricted.values()), "text_status": {name: status(name) for name in stats["sources"]},
        "all_years": [min(y[0] for y in years), max(y[1] for y in years)] if years else None,
        "origins": {name: _origin(name, manifest, settings.sources[name].description if name in settings.sources
                                  else "") for name in stats["sources"]},
        "processing": {name: _processing(name, stats, manifest) for name in stats["sources"]},
        "licences": licences, "licence_counts": licence_counts, "credits": credits,
        "near": _near(manifest), "limitations": _limitations(stats), "location": publication.location,
        "default_config": default.name, "default_files": default.data_files,
        "created_by": f"overton {__version__}",
        # the folder's name, not its path: a path on the publisher's machine means nothing to a reader
        "tokenizer_name": Path(stats["tokenizer"]).name if stats["tokenizer"] else None,
    }
    body = environment().get_template("card.md.j2").render(**values)
    yaml_header = yaml.safe_dump(header(stats, configs, title), sort_keys=False, allow_unicode=True, width=1000)
    readme = f"---\n{yaml_header}---\n\n{body.strip()}\n"
    licence_file = None
    if "license_link" in header(stats, configs, title):
        licence_file = environment().get_template("licences.md.j2").render(**values).strip() + "\n"
    return Card(readme, licence_file)


def write_card_files(folder: Path, card: Card) -> list[str]:
    """Write README.md (and LICENSE.md when licences differ) into ``folder``; the names written."""
    write_bytes(folder / README, card.readme.encode("utf-8"))
    written = [README]
    if card.licence_file:
        write_bytes(folder / LICENCE_FILE, card.licence_file.encode("utf-8"))
        written.append(LICENCE_FILE)
    return written
