"""Source profiles on real text: the share of each real corpus that each profile keeps.

What a user would otherwise use is one set of web rules for everything (FineWeb-2's French values, the
``web`` profile). Each real corpus of ``../shared/data`` is ingested once per profile, as its own source,
and built once with ``overton build``; a document counts as kept by a profile when its admission, language and
quality steps keep it (the copies of one text under several profiles are exact duplicates of each other, so
the dedup steps are left out of the count). The profile a user should give each corpus is marked ``*``.

    .venv/bin/python bench/profiles.py        # about 3 minutes on 2 cores
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import measure, save_results
from ingest_build import DATA, overton_command

from overton.corpus.config import BUILTIN_PROFILES, set_setting

#: The steps whose decisions depend on the profile.
FILTER_STEPS = ("admission", "language", "quality")


@dataclass(frozen=True)
class Corpus:
    name: str
    folder: str
    pattern: str
    options: tuple[str, ...]
    profile: str  # the one that fits it

    def files(self) -> list[Path]:
        return sorted((DATA / self.folder).glob(self.pattern))


CORPORA = (
    Corpus("vie-publique speeches 2020", "viepublique", "statements-2020.csv",
           ("--format", "csv", "--field", "thematics=tags", "--field", "keywords=topics"), "speech"),
    Corpus("Assemblée sittings 2013", "assemblee-2013/txt", "*.txt", ("--format", "text"), "debate"),
    Corpus("Assemblée sittings 2016-2017", "assemblee-sentences-2016-2017", "*.txt", ("--format", "text"), "debate"),
    Corpus("Europarl, French lines", "europarl-fr-en", "*.fr", ("--format", "lines"), "debate"),
    Corpus("Wikipedia articles (reference text)", "wikipedia/html-cleaned", "*.txt", ("--format", "text"),
           "encyclopedia"),
    Corpus("Wikipedia articles (from wikitext)", "wikipedia/code-cleaned", "*.txt", ("--format", "text"),
           "encyclopedia"),
)


def main() -> None:
    missing = [c.folder for c in CORPORA if not c.files()]
    if missing:
        print(f"skipped: ../shared/data has no {', '.join(missing)} ({DATA})")
        return
    overton = overton_command()
    profiles = sorted(BUILTIN_PROFILES)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="overton-bench-profiles-") as tmp:
        workspace = Path(tmp) / "ws"
        measure([*overton, "init", str(workspace)]).check()
        settings = workspace / "overton.toml"  # near-dedup would only pair the copies of one text across profiles
        settings.write_text(set_setting(settings.read_text(), "near_dedup", "enabled", "false"))
        sources = {}
        for number, corpus in enumerate(CORPORA):
            for profile in profiles:
                source = f"c{number}.{profile}"
                sources[source] = (corpus, profile)
                measure([*overton, "ingest", "-w", str(workspace), "--source", source, "--profile", profile,
                         *corpus.options, *map(str, corpus.files())]).check(allowed=(0, 1))
        build = measure([*overton, "build", "-w", str(workspace), "--jobs", "2", "--quiet"]).check()
        manifest = json.loads(next(workspace.glob("datasets/overton/v*/manifest.json")).read_text())
    counts = manifest["counts"]["sources"]
    rows = []
    for number, corpus in enumerate(CORPORA):
        row = {"corpus": corpus.name, "fits": corpus.profile, "kept": {}}
        for profile in profiles:
            entry = counts[f"c{number}.{profile}"]
            filtered = sum(entry["steps"].get(step, 0) for step in FILTER_STEPS)
            row["documents"] = entry["input"]
            row["kept"][profile] = round(1 - filtered / entry["input"], 4)
            row.setdefault("reasons", {})[profile] = {reason: n for reason, n in entry["reasons"].items()
                                                      if not reason.endswith("duplicate") and reason != "duplicate_id"}
        rows.append(row)
    print(f"| corpus | documents | {' | '.join(profiles)} |")
    print("|---|--:|" + "--:|" * len(profiles))
    for row in rows:
        cells = [f"{100 * row['kept'][p]:.0f} %{' *' if p == row['fits'] else ''}" for p in profiles]
        print(f"| {row['corpus']} | {row['documents']} | {' | '.join(cells)} |")
    print(f"\nbuild of {sum(c['input'] for c in counts.values())} documents: {build.seconds:.0f} s")
    save_results("profiles", sys.argv[1:], {"seconds": round(time.perf_counter() - started, 1), "rows": rows})


if __name__ == "__main__":
    main()
