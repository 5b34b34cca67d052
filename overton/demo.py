"""``overton demo``: the whole job on the bundled sample, offline, in a couple of seconds.

Creates a workspace, ingests the sample corpus shipped in :mod:`overton.sample` (speeches in the
GPTJ-Overton dump format, encyclopedia articles in JSON Lines, questions and answers in CSV) and
builds the first dataset version. The sample holds planted exact duplicates, HTML leftovers,
empty texts and "Source :" lines, so every build step has something to do.
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path

from overton.corpus.errors import UserError
from overton.corpus.report import counts_table
from overton.corpus.workspace import Workspace
from overton.pipelines.build import build
from overton.spiders.ingest import ingest

#: (file in overton/sample, source name, licence for records that carry none)
SAMPLE = (
    ("speeches.json", "speeches", "CC0-1.0"),
    ("encyclopedia.jsonl", "encyclopedia", "CC0-1.0"),
    ("questions.csv", "questions", "CC0-1.0"),
)


def sample_dir() -> Path:
    return Path(str(resources.files("overton.sample")))


def run_demo(root: Path | None, jobs: int | None, say=print) -> int:
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="overton-demo-"))
    elif (root / "overton.toml").exists():
        raise UserError(f"{root} is already a workspace: pass a new folder to --workspace")
    workspace = Workspace.init(root)
    say(f"workspace: {workspace.root}")
    refused = 0
    for filename, source, licence in SAMPLE:
        report = ingest(workspace, [sample_dir() / filename], source, default_license=licence)
        refused += report.refused_count
        say(f"ingested {report.imported:>3} documents from {filename} into raw/{source}/{report.run_id}")
    result = build(workspace, jobs=jobs, progress=False)
    version = result.version
    say(f"built {version.path.relative_to(workspace.root)}:")
    for line in counts_table(version.manifest["counts"]):
        say(line)
    steps = version.manifest["steps"]
    say(f"  normalisation: {steps['normalize'].get('html_stripped', 0)} HTML texts cleaned, "
        f"{steps['normalize'].get('source_lines_moved', 0)} 'Source :' lines moved to meta")
    language, pii = steps.get("language", {}), steps.get("pii", {})
    quality = sum(n for key, n in steps.get("quality", {}).items() if key.startswith("rejected_"))
    say(f"  language: {language.get('rejected_not_french', 0)} documents not in French, "
        f"{language.get('paragraphs_dropped', 0)} foreign paragraphs removed; quality: {quality} documents rejected")
    say(f"  personal data: {pii.get('emails_redacted', 0)} e-mail addresses and {pii.get('phones_redacted', 0)} "
        f"phone numbers redacted in {pii.get('documents_redacted', 0)} documents")
    near = steps.get("near_dedup", {})
    say(f"  near-dedup: {near.get('clusters', 0)} clusters of near duplicates, "
        f"{near.get('rejected_near_duplicate', 0)} documents removed")
    say(f"kept documents:     {version.path / 'data'}")
    say(f"rejected documents: {version.path / 'rejected'} (each with reject_reason and reject_detail)")
    say(f"manifest:           {version.path / 'manifest.json'}")
    say(f"next: overton inspect {version.path}")
    return 1 if refused else 0
