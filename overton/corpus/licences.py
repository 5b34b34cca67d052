"""What each licence a document carries allows a release to do with it.

Documents carry their licence as a string (an SPDX id, a ``LicenseRef-...`` or the collector's own words) and
a ``redistributable`` flag set by whoever knew (a collector, ``ingest``'s input). Publishing needs three facts
per licence: may the text be published, must it be credited, and how the Hugging Face Hub names it. The flag
wins when it is set; when it is not, only the licences listed here as open count as redistributable: an
unknown licence is treated as closed, since publishing what may not be published cannot be undone.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc


@dataclass(frozen=True)
class Licence:
    id: str
    name: str
    link: str | None
    hub: str  # the Hub's licence identifier; "other" when it has none
    open: bool  # the text may be redistributed
    attribution: bool  # whoever redistributes must credit the authors
    notice: str  # what the data card says of it


DILA_TEXTS = "metadata: Licence Ouverte 2.0 (DILA); text: rights not managed by DILA"
ETALAB = "https://www.etalab.gouv.fr/licence-ouverte-open-licence/"

_KNOWN = [
    Licence("CC0-1.0", "CC0 1.0 (public domain dedication)", "https://creativecommons.org/publicdomain/zero/1.0/",
            "cc0-1.0", True, False, "No rights reserved: the texts may be used for any purpose without credit."),
    Licence("CC-BY-4.0", "CC BY 4.0", "https://creativecommons.org/licenses/by/4.0/", "cc-by-4.0", True, True,
            "Reuse must credit the authors (the `attribution` column) and indicate changes."),
    Licence("CC-BY-SA-4.0", "CC BY-SA 4.0", "https://creativecommons.org/licenses/by-sa/4.0/", "cc-by-sa-4.0", True,
            True, "Reuse must credit the authors (the `attribution` column names the article and its URL, whose "
            "history lists the contributors), indicate changes, and share adaptations under the same licence."),
    Licence("CC-BY-3.0", "CC BY 3.0", "https://creativecommons.org/licenses/by/3.0/", "cc-by-3.0", True, True,
            "Reuse must credit the authors (the `attribution` column) and indicate changes."),
    Licence("CC-BY-SA-3.0", "CC BY-SA 3.0", "https://creativecommons.org/licenses/by-sa/3.0/", "cc-by-sa-3.0", True,
            True, "Reuse must credit the authors (the `attribution` column) and share adaptations alike."),
    Licence("etalab-2.0", "Licence Ouverte / Open Licence 2.0", ETALAB, "etalab-2.0", True, True,
            "Reuse must mention the source and the date of its last update."),
    Licence(DILA_TEXTS, "Licence Ouverte 2.0 for the metadata; speech texts not licensed by DILA", ETALAB, "other",
            False, True, "Metadata (titles, dates, speakers, keywords, thematics): « Source : DILA, vie-publique.fr », "
            "Licence Ouverte / Open Licence 2.0. The texts of the speeches are not licensed by their publisher: "
            "they are not redistributed without an explicit decision of the publisher of the release."),
    Licence("LicenseRef-Quora-not-redistributable", "Quora terms of service (not licensed for redistribution)",
            "https://www.quora.com/about/tos", "other", False, False,
            "Questions and answers belong to their authors under Quora's terms: not redistributed without an "
            "explicit decision of the publisher of the release; authors appear as pseudonyms only."),
]
KNOWN = {licence.id: licence for licence in _KNOWN}


def licence(identifier: str | None) -> Licence:
    """The facts of a licence string; an unknown one is closed, needs no credit we can name, and is "other"."""
    if identifier in KNOWN:
        return KNOWN[identifier]
    name = identifier or "none recorded"
    return Licence(name, name, None, "other", False, False,
                   "Not a licence overton knows: treated as not redistributable unless documents say otherwise.")


def redistributable(table: pa.Table | pa.RecordBatch) -> pa.Array:
    """Per row: may its text be published? The ``redistributable`` flag where set, else the licence's openness."""
    flags = table.column("redistributable")
    licences = table.column("license").to_pylist()
    by_licence = pa.array([licence(name).open for name in licences], pa.bool_())
    return pc.fill_null(flags, by_licence)


def attribution(title: str | None, url: str | None, licence_id: str | None, meta_attribution: str | None) -> str | None:
    """The credit line a reuser must keep: the collector's own (Wikipedia's names the article and its licence),
    else one made of the title, URL and licence when the licence asks for credit, else none."""
    if meta_attribution:
        return meta_attribution
    facts = licence(licence_id)
    if not facts.attribution:
        return None
    parts = [f"« {title} »" if title else None, url, facts.name]
    return ", ".join(part for part in parts if part)
