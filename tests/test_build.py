"""``overton build``: every document accounted for, deterministic, resumable after SIGKILL, incremental."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from overton.cli import main
from overton.corpus.dataset import Version
from overton.corpus.workspace import Workspace
from overton.demo import SAMPLE, sample_dir
from overton.pipelines.build import build
from overton.pipelines.stages import copies
from overton.spiders.ingest import ingest
from tests.conftest import french_text, shared_file, write_jsonl

_text = french_text


def _ingest(workspace: Workspace, source: str, records: list[dict], name: str = "in.jsonl",
            profile: str = "web") -> None:
    path = write_jsonl(workspace.root.parent / f"{source}-{name}", records)
    report = ingest(workspace, [path], source, profile=profile)
    assert report.refused_count == 0


def _rows(version: Version, kind: str) -> list[dict]:
    return [row for batch in version.iter_batches(kind) for row in batch.to_pylist()]


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_every_document_is_kept_or_rejected_with_its_reason(workspace: Workspace):
    rng = random.Random(1)
    speech = _text(rng, 80)
    speeches = [
        {"id": "b", "text": speech},
        {"id": "a", "text": "  " + speech.replace(" ", "  ") + "\r\n"},  # same after normalisation
        {"id": "c", "text": f"<p>{speech}</p>"},  # same once the HTML is stripped
        {"id": "d", "text": "<p> </p>\n<br>"},  # nothing left
        {"id": "e", "text": "Un texte abîmé \ufffd par un mauvais décodage."},
        {"id": "f", "text": "x" * 9_000_000},
        {"id": "g", "text": _text(rng, 50) + "\n\nSource : https://www.elysee.fr, le 5 octobre 2020"},
        {"id": "g", "text": _text(rng, 50)},  # same id, other text
        {"id": "h", "text": "Écrivez au cabinet : cabinet@ministere.gouv.fr. " + _text(rng, 20)},  # public: untouched
    ]
    other_g = speeches.pop(7)  # an ingest refuses an id twice: the second text comes in a later run
    _ingest(workspace, "speeches", speeches, profile="speech")
    _ingest(workspace, "speeches", [other_g], name="later.jsonl", profile="speech")
    english = ("The government must support the regions in the years to come, and the parliament will vote on the "
               "budget before the end of the year, with the social partners and the elected members of each town.")
    _ingest(workspace, "web", [
        {"id": "q1", "text": speech},
        {"id": "q2", "text": _text(rng, 60)},
        {"id": "q3", "text": english},
        {"id": "q4", "text": "Merci pour cette réponse, elle est très claire !"},
        {"id": "q5", "text": _text(rng, 60) + " Écrivez-moi : jean.dupont@example.org ou au 06 12 34 56 78."},
    ])
    version = build(workspace, jobs=1, progress=False).version

    kept = {row["id"]: row for row in _rows(version, "data")}
    rejected = {(row["id"], row["reject_reason"]): row for row in _rows(version, "rejected")}
    assert sorted(kept) == ["speeches:a", "speeches:g", "speeches:h", "web:q2", "web:q5"]
    assert sorted(rejected) == [
        ("speeches:b", "exact_duplicate"), ("speeches:c", "exact_duplicate"), ("speeches:d", "empty"),
        ("speeches:e", "invalid_utf8"), ("speeches:f", "too_large"), ("speeches:g", "duplicate_id"),
        ("web:q1", "exact_duplicate"), ("web:q3", "not_french"), ("web:q4", "quality_min_words"),
    ]
    # the kept copy of a duplicate cluster is the smallest id; the others name it
    for key in [("speeches:b", "exact_duplicate"), ("speeches:c", "exact_duplicate"),
                ("web:q1", "exact_duplicate")]:
        assert json.loads(rejected[key]["reject_detail"]) == {"duplicate_of": "speeches:a"}
    assert json.loads(rejected[("speeches:f", "too_large")]["reject_detail"]) == {
        "bytes": 9_000_000, "max_bytes": 8_000_000}
    assert len(rejected[("speeches:f", "too_large")]["text"]) == 9_000_000  # nothing is lost
    assert json.loads(rejected[("speeches:e", "invalid_utf8")]["reject_detail"])["replacement_chars"] == 1
    assert kept["speeches:a"]["text"] == speech
    assert json.loads(kept["speeches:g"]["meta"])["source_line"] == "https://www.elysee.fr, le 5 octobre 2020"
    assert "Source" not in kept["speeches:g"]["text"]
    assert json.loads(rejected[("web:q3", "not_french")]["reject_detail"]) == {"language": "en", "score": 0.0}
    assert json.loads(rejected[("web:q4", "quality_min_words")]["reject_detail"]) == {"threshold": 50, "value": 8}
    assert kept["web:q5"]["text"].endswith(" Écrivez-moi : <EMAIL> ou au <PHONE>.")
    assert (kept["web:q5"]["pii_emails"], kept["web:q5"]["pii_phones"]) == (1, 1)
    assert "cabinet@ministere.gouv.fr" in kept["speeches:h"]["text"] and kept["speeches:h"]["pii_emails"] is None
    assert kept["speeches:a"]["language"] == "fr" and kept["speeches:a"]["language_score"] == 1.0

    counts = version.manifest["counts"]
    assert counts["sources"]["speeches"] == {
        "input": 9, "kept": 3, "rejected": 6, "profiles": {"speech": 9},
        "reasons": {"duplicate_id": 1, "empty": 1, "exact_duplicate": 2, "invalid_utf8": 1, "too_large": 1},
        "steps": {"admission": 2, "dedup_content_sha256": 2, "dedup_id": 1, "too_large": 1}}
    assert counts["sources"]["web"] == {
        "input": 5, "kept": 2, "rejected": 3, "profiles": {"web": 5},
        "reasons": {"exact_duplicate": 1, "not_french": 1, "quality_min_words": 1},
        "steps": {"dedup_content_sha256": 1, "language": 1, "quality": 1}}
    for entry in [counts, *counts["sources"].values()]:
        assert entry["input"] == entry["kept"] + entry["rejected"] == entry["kept"] + sum(entry["reasons"].values())
    assert version.verify() == []
    assert {f["path"] for f in version.manifest["files"]} == {
        "data/speeches/part-00000.parquet", "data/web/part-00000.parquet", "rejected/part-00000.parquet"}


def _synthetic_corpus(workspace: Workspace, documents: int = 3000, seed: int = 7) -> None:
    """Enough rows for many build tasks (1 MB raw row groups), with duplicates and empties."""
    settings = workspace.settings_path.read_text().replace("row_group_mb = 8", "row_group_mb = 1")
    workspace.settings_path.write_text(settings.replace("row_group_mb = 32", "row_group_mb = 2"))
    rng = random.Random(seed)
    records = []
    for i in range(documents):
        if i % 10 == 9:
            text = records[rng.randrange(len(records))]["text"]
        elif i % 97 == 0:
            text = "<br>"
        else:
            text = _text(rng, rng.randint(200, 1200))
        records.append({"id": f"{i:05d}", "text": text, "title": f"Document {i}",
                        "published_at": f"20{10 + i % 14}-0{1 + i % 9}-1{i % 10}"})
    _ingest(workspace, "alpha", records[: documents // 2])
    _ingest(workspace, "beta", records[documents // 2:])


def _clone(workspace: Workspace, root: Path) -> Workspace:
    shutil.copytree(workspace.root, root)
    return Workspace.open(root)


def test_build_is_byte_identical_twice_and_whatever_the_jobs(workspace: Workspace, tmp_path: Path):
    _synthetic_corpus(workspace, documents=1500)
    other = _clone(workspace, tmp_path / "other")
    first = build(workspace, jobs=1, progress=False).version
    second = build(other, jobs=2, progress=False).version
    assert len(first.manifest["inputs"][0]["files"]) == 1
    tree = _tree(first.path)
    assert tree == _tree(second.path)
    assert first.manifest["counts"]["kept"] > 1000
    assert not (workspace.state / "build" / "overton" / "v0001").exists(), "work files are cleaned up"


def test_exact_copies_are_measured_once_and_inherit_what_their_original_got(workspace: Workspace, tmp_path: Path,
                                                                            monkeypatch):
    _synthetic_corpus(workspace, documents=1500)
    texts = [row["text"] for run in workspace.raw_runs() for part in run.parts()
             for row in pq.read_table(part, columns=["text"]).to_pylist()]
    # the same texts judged by another profile, or with other meta, are measured again
    _ingest(workspace, "gamma", [{"id": f"g{i}", "text": text} for i, text in enumerate(texts[:40])], profile="speech")
    _ingest(workspace, "delta", [{"id": f"d{i}", "text": text, "note": "other meta"}
                                 for i, text in enumerate(texts[:40])])
    reference, ranged = _clone(workspace, tmp_path / "reference"), _clone(workspace, tmp_path / "ranged")
    version = build(workspace, jobs=2, progress=False).version

    with monkeypatch.context() as patch:  # a key range per document task: the same copies, the same bytes
        patch.setattr("overton.pipelines.stages.work.TASKS_PER_RANGE", 1)
        many = build(ranged, jobs=2, progress=False)
    assert many.tasks["copies"]["tasks"] == many.tasks["documents"]["tasks"] > 3
    assert _tree(many.version.path) == _tree(version.path)

    with monkeypatch.context() as patch:  # every document its own original: all of them measured
        patch.setattr(copies, "copy_keys", lambda table, profile: os.urandom(16 * table.num_rows))
        measured_all = build(reference, jobs=1, progress=False).version

    tree, expected = _tree(version.path), _tree(measured_all.path)
    assert {k: v for k, v in tree.items() if k != "manifest.json"} == {
        k: v for k, v in expected.items() if k != "manifest.json"}
    manifest, full = version.manifest, measured_all.manifest
    assert {k: v for k, v in manifest.items() if k != "steps"} == {k: v for k, v in full.items() if k != "steps"}
    for step, counts in full["steps"].items():
        rejected = {k: v for k, v in counts.items() if k.startswith("rejected_")}
        assert rejected == {k: v for k, v in manifest["steps"][step].items() if k.startswith("rejected_")}, step
    inherited = len(texts) - len(set(texts)) + 2 * (40 - len(set(texts[:40])))  # and copies within gamma, delta
    assert inherited > 100
    assert manifest["steps"]["copies"] == {"documents": len(texts) + 80, "inherited": inherited}
    assert full["steps"]["copies"]["inherited"] == 0
    # documents a step measured: the original of each copy, never the copy
    assert manifest["steps"]["normalize"]["chars_removed"] < full["steps"]["normalize"]["chars_removed"]
    assert full["steps"]["quality"]["measured"] - manifest["steps"]["quality"]["measured"] > 100


def test_exact_dedup_in_many_key_ranges_decides_what_one_range_does(workspace: Workspace, tmp_path: Path,
                                                                     monkeypatch):
    _synthetic_corpus(workspace, documents=800)
    rng = random.Random(5)
    # the same ids with other texts (duplicate_id), and texts of the first run under new ids (exact_duplicate)
    _ingest(workspace, "alpha", [{"id": f"{i:05d}", "text": _text(rng, 300)} for i in range(0, 400, 7)], "again.jsonl")
    ranged = _clone(workspace, tmp_path / "ranged")
    one = build(workspace, jobs=1, progress=False)
    with monkeypatch.context() as patch:
        patch.setattr("overton.pipelines.stages.work.TASKS_PER_RANGE", 1)  # a range per document task
        many = build(ranged, jobs=1, progress=False)
    assert many.tasks["exact_hash"]["tasks"] == many.tasks["documents"]["tasks"] > 3
    assert one.tasks["exact_hash"]["tasks"] == 1
    reasons = one.version.manifest["counts"]["reasons"]
    assert reasons["duplicate_id"] > 20 and reasons["exact_duplicate"] > 50
    assert _tree(one.version.path) == _tree(many.version.path)

    texts = [row["text"] for row in _rows(one.version, "data")[:30]]  # a next version: copies of published texts
    _ingest(workspace, "beta", [{"id": f"n{i}", "text": text} for i, text in enumerate(texts)], "next.jsonl")
    ranged = _clone(workspace, tmp_path / "ranged-next")
    again = build(workspace, jobs=1, progress=False).version
    with monkeypatch.context() as patch:
        patch.setattr("overton.pipelines.stages.work.TASKS_PER_RANGE", 1)
        assert _tree(build(ranged, jobs=1, progress=False).version.path) == _tree(again.path)
    assert again.manifest["added"]["reasons"] == {"exact_duplicate": 30}


def test_a_raw_text_changed_behind_its_content_sha256_is_refused_not_inherited(workspace: Workspace, capsys):
    text = _text(random.Random(3), 300)
    _ingest(workspace, "speeches", [{"id": f"a{i}", "text": text} for i in range(3)])
    [run] = workspace.raw_runs()
    [part] = run.parts()
    table = pq.read_table(part)
    texts = table.column("text").to_pylist()
    texts[2] += " Un ajout."  # its content_sha256 still names the text of its two copies
    pq.write_table(table.set_column(table.schema.get_field_index("text"), "text", pa.array(texts)), part)
    assert main(["build", "--workspace", str(workspace.root), "--quiet"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "document speeches:a2: its text does not match its content_sha256" in err[0]
    assert not list((workspace.datasets / "overton").glob("v*/manifest.json"))


def _build_command(workspace: Workspace) -> list[str]:
    return [sys.executable, "-m", "overton", "build", "--workspace", str(workspace.root), "--jobs", "2", "--quiet"]


def _kill_when(workspace: Workspace, ready) -> bool:
    """Start a build, SIGKILL it (and its workers) once ``ready()`` holds; False if it finished first."""
    process = subprocess.Popen(_build_command(workspace), start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while process.poll() is None:
        if ready():
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.002)
    return False


def test_sigkill_at_any_point_then_rerun_equals_uninterrupted(workspace: Workspace, tmp_path: Path):
    _synthetic_corpus(workspace)
    reference = _clone(workspace, tmp_path / "reference")
    expected = _tree(build(reference, jobs=2, progress=False).version.path)

    work = workspace.state / "build" / "overton" / "v0001"
    version = workspace.datasets / "overton" / "v0001"
    kill_points = {
        "after planning": lambda: (work / "plan.json").exists(),
        "after some tasks": lambda: len(list((work / "tasks").glob("t-*.json"))) >= 3,
        "while copies inherit": lambda: any((work / "inherit").glob("t-*.json")),
        "while writing shards": lambda: version.exists() and any((version / "data").rglob("*")),
        "before the manifest": lambda: (version / "rejected").exists(),
    }
    killed = []
    for name, ready in kill_points.items():
        if _kill_when(workspace, ready):
            killed.append(name)
            assert not (version / "manifest.json").exists() or name == "before the manifest"
            if (version / "manifest.json").exists():
                break
    assert len(killed) >= 3, f"the build finished before most kill points: killed {killed}"
    done = subprocess.run(_build_command(workspace), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert _tree(version) == expected
    assert not any(p.name.startswith(".") for p in version.rglob("*")), "no temporary file is left"


# In a user namespace (no root needed): the workspace copied onto a tmpfs of $4 bytes, built there until the disk
# is full, then the same command again once the tmpfs has room, and the version copied out to $5.
_FULL_DISK = ('mount -t tmpfs -o size="$4" tmpfs "$1" && cp -r "$2" "$1/ws" && "$3" -m overton build -w "$1/ws" '
              '--quiet --jobs 2; echo "exit $?" >&2; mount -o remount,size=256m "$1" && '
              '"$3" -m overton build -w "$1/ws" --quiet && cp -r "$1/ws/datasets" "$5"')


def _disk_bytes(folder: Path) -> int:
    return sum(-(-p.stat().st_size // 4096) * 4096 for p in folder.rglob("*") if p.is_file())


def test_a_full_disk_stops_the_build_in_one_line_and_the_same_command_ends_it(workspace: Workspace, tmp_path: Path):
    """The disk fills up halfway through what the build writes (skipped where a tmpfs cannot be mounted without
    root): one line, exit 1, no traceback; with room again, the same command ends with the bytes of a build that
    never ran out."""
    for filename, source, profile, licence in SAMPLE:
        ingest(workspace, [sample_dir() / filename], source, default_license=licence, profile=profile)
    reference = _clone(workspace, tmp_path / "reference")
    expected = _tree(build(reference, jobs=1, progress=False).version.path)
    raw, built = _disk_bytes(workspace.root), _disk_bytes(reference.root)
    mount, out = tmp_path / "small", tmp_path / "out"
    mount.mkdir()
    try:
        done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", _FULL_DISK, "sh",
                               str(mount), str(workspace.root), sys.executable, str(raw + (built - raw) // 2),
                               str(out)], capture_output=True, text=True, timeout=300)
    except FileNotFoundError:
        pytest.skip("no small filesystem: the `unshare` command (util-linux) is not installed")
    if "unshare:" in done.stderr or "mount:" in done.stderr:
        pytest.skip(f"no small filesystem: a tmpfs cannot be mounted without root here ({done.stderr.strip()})")
    first, status = done.stderr.splitlines()[:2]
    assert re.fullmatch(rf"overton: error: build stopped: no space left on the device (writing|in) {mount}/ws\S* "
                        r"\(0\.\d MB free\); free some space and run the same command", first), done.stderr
    assert status == "exit 1" and done.returncode == 0, done.stderr
    assert _tree(out / "overton" / "v0001") == expected


_BATCHES_OF_ARRAYS = """
import resource, sys
import numpy as np
from overton.pipelines.executor.allocator import keep_freed_memory

if sys.argv[1] == "tuned":
    keep_freed_memory()

def batch():  # arrays of a batch's bytes and tokens, 0.3 to 26 MB, dropped at its end
    arrays = [np.ones(size, np.uint8) for size in (6_600_000, 300_000, 2_000_000, 26_000_000, 9_000_000, 12_000_000)]
    return sum(int(a[::4096].sum()) for a in arrays)

batch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    batch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_a_task_process_reuses_the_memory_of_its_last_batch_instead_of_faulting_it_in_again():
    """Every task first keeps freed memory in the heap: batches of the same arrays then cost next to no page faults
    instead of thousands (pages of 4 kB given back to the kernel and faulted in again, zero-filled, every batch)."""
    faults = {how: int(subprocess.run([sys.executable, "-c", _BATCHES_OF_ARRAYS, how], capture_output=True,
                                      text=True, check=True).stdout) for how in ("default", "tuned")}
    assert faults["default"] > 10 * 1_000  # at least 4 MB of every batch faulted in again
    assert faults["tuned"] < faults["default"] / 20


def test_incremental_build_keeps_old_files_and_dedups_against_them(workspace: Workspace):
    rng = random.Random(3)
    old = [{"id": f"o{i}", "text": _text(rng, 60)} for i in range(20)]
    _ingest(workspace, "speeches", old)
    v1 = build(workspace, jobs=1, progress=False).version
    new = [{"id": "a-new", "text": old[4]["text"]}, {"id": "z-new", "text": _text(rng, 60)},
           {"id": "o7", "text": _text(rng, 60)}]
    _ingest(workspace, "speeches", new, name="second.jsonl")
    v2 = build(workspace, jobs=1, progress=False).version

    assert v2.name == "v0002" and v2.manifest["parent"] == "v0001"
    assert [i["run"] for i in v2.manifest["inputs"]] == [workspace.raw_runs()[1].key]
    for entry in v1.manifest["files"]:  # not rewritten: the same file, linked into the new version
        assert os.path.samefile(v1.file_path(entry), v2.file_path(entry))
        assert entry in v2.manifest["files"]
    kept = {row["id"] for row in _rows(v2, "data")}
    assert kept == {f"speeches:o{i}" for i in range(20)} | {"speeches:z-new"}
    rejected = {row["id"]: (row["reject_reason"], json.loads(row["reject_detail"])) for row in _rows(v2, "rejected")}
    # the earlier document wins even though "a-new" sorts before "o4"
    assert rejected == {"speeches:a-new": ("exact_duplicate", {"duplicate_of": "speeches:o4"}),
                        "speeches:o7": ("duplicate_id", {"duplicate_of": "speeches:o7"})}
    assert v2.manifest["added"]["input"] == 3
    assert v2.manifest["counts"]["sources"]["speeches"] == {
        "input": 23, "kept": 21, "rejected": 2, "profiles": {"web": 23},
        "reasons": {"duplicate_id": 1, "exact_duplicate": 1}, "steps": {"dedup_content_sha256": 1, "dedup_id": 1}}
    assert v2.verify() == [] and v1.verify() == []
    assert build(workspace, progress=False).message.startswith("nothing new to build")


def test_statements_csv_exact_duplicates(workspace: Workspace):
    import csv

    path = shared_file("viepublique/statements-2020.csv")
    with open(path, encoding="utf-8", newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["title"] != "title"]
    assert len(rows) == 415
    full_row_duplicates = len(rows) - len({tuple(r.values()) for r in rows})
    distinct_texts = len({r["text"] for r in rows})
    assert full_row_duplicates == 91

    report = ingest(workspace, [path], "vie-publique", field_map={"thematics": "tags", "keywords": "topics"},
                    profile="speech")
    assert (report.imported, report.refused_count) == (415, 12)
    assert all("repeated header row" in r for r in report.refused)
    version = build(workspace, progress=False).version

    counts = version.manifest["counts"]
    # 12 distinct bodies (17 rows) are empty shells of interviews, the interviewer's name and a greeting
    # ("ALBA VENTURA\nBonjour Jean-Michel BLANQUER.") or "Mesdames et Messieurs,": not prose, rejected
    assert distinct_texts == 317 and counts["kept"] == 317 - 12
    assert counts["reasons"] == {"exact_duplicate": 415 - 317 - 5, "not_french": 15, "quality_min_words": 2}
    shells = [row for row in _rows(version, "rejected") if row["reject_reason"] != "exact_duplicate"]
    assert max(len(row["text"]) for row in shells) < 80
    kept = _rows(version, "data")
    assert len({row["content_sha256"] for row in kept}) == len(kept)
    assert not any("<br>" in row["text"] or "<p>" in row["text"] for row in kept)
    moved = [row for row in kept if "source_line" in json.loads(row["meta"] or "{}")]
    everywhere = [row for row in _rows(version, "data") + _rows(version, "rejected")
                  if "source_line" in json.loads(row["meta"] or "{}")]
    # the steps measure each distinct raw body once (the copies inherit what it got), and say so
    steps = version.manifest["steps"]
    assert len(moved) > 150 and len(everywhere) == 242 and steps["normalize"]["source_lines_moved"] == 200
    assert steps["copies"] == {"documents": 415, "inherited": 415 - distinct_texts}
    for row in moved:
        source_line = json.loads(row["meta"])["source_line"]
        assert source_line not in row["text"] and not row["text"].splitlines()[-1].startswith("Source")
    kept_ids = {row["id"] for row in kept}
    for row in _rows(version, "rejected"):
        if row["reject_reason"] == "exact_duplicate":
            assert json.loads(row["reject_detail"])["duplicate_of"] in kept_ids | {s["id"] for s in shells}
    assert Counter(kw for row in kept for kw in row["thematics"] or [])["Société"] > 0


def test_build_cli_reports_and_records_the_run(workspace: Workspace, capsys):
    text = "Mesdames et messieurs, je vous remercie de votre présence."
    _ingest(workspace, "speeches", [{"id": "1", "text": text}, {"id": "2", "text": text}], profile="speech")
    assert main(["build", "--workspace", str(workspace.root), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "built overton v0001" in out and "exact_duplicate 1" in out
    record = json.loads(next(workspace.runs.glob("*-build.json")).read_text())
    assert record["status"] == "ok" and record["exit_code"] == 0
    assert record["counts"]["kept"] == 1 and record["counts"]["rejected"] == 1
    assert main(["build", "--workspace", str(workspace.root), "--quiet"]) == 0
    assert "nothing new to build" in capsys.readouterr().out

    assert main(["inspect", "--workspace", str(workspace.root)]) == 0  # default: the workspace's dataset
    out = capsys.readouterr().out
    assert "overton v0001" in out and "speeches:1  [58 chars]" in out and "exact_duplicate 1" in out
    assert main(["verify", "--workspace", str(workspace.root)]) == 0
    assert "ok: 2 files match" in capsys.readouterr().out
    shard = workspace.datasets / "overton" / "v0001" / "rejected" / "part-00000.parquet"
    assert main(["inspect", str(shard)]) == 0
    out = capsys.readouterr().out
    assert "(1 rows in 1 row groups" in out and "reject_reason" in out and "speeches: 1" in out


def test_unreadable_raw_file_fails_with_one_clear_line(workspace: Workspace, capsys):
    _ingest(workspace, "speeches", [{"id": "1", "text": "Bonjour."}])
    part = workspace.raw_runs()[0].parts()[0]
    part.write_bytes(b"not parquet at all")
    assert main(["build", "--workspace", str(workspace.root), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(part) in err and "not a readable raw Parquet file" in err and "Traceback" not in err
    record = json.loads(next(workspace.runs.glob("*-build.json")).read_text())
    assert record["status"] == "failed"


def test_shards_stream_by_row_group(workspace: Workspace):
    _synthetic_corpus(workspace, documents=1500)
    version = build(workspace, jobs=2, progress=False).version
    for entry in version.files("data"):
        metadata = pq.ParquetFile(version.file_path(entry)).metadata
        assert metadata.num_row_groups == len(entry["row_groups"]) > 1
        assert all(metadata.row_group(g).total_byte_size < 3 * (1 << 20) for g in range(metadata.num_row_groups))


def test_repeated_sentences_of_real_debates_are_found(workspace: Workspace):
    """Sentences of 100 real Assemblée sittings as documents: every repeat ("La séance est ouverte.") found."""
    folder = shared_file("assemblee-sentences-2016-2017")
    sentences = [line for path in sorted(folder.glob("*.txt"))[:100]
                 for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    settings = workspace.settings_path.read_text()  # exact dedup alone: language, quality, PII, near-dedup off
    assert settings.count("enabled = true") == 4
    workspace.settings_path.write_text(settings.replace("enabled = true", "enabled = false"))
    _ingest(workspace, "assemblee", [{"id": str(i), "text": s} for i, s in enumerate(sentences)])
    version = build(workspace, progress=False).version

    normal = Counter(" ".join(s.split()) for s in sentences)
    counts = version.manifest["counts"]
    assert counts["kept"] == len(normal) and counts["reasons"] == {"exact_duplicate": len(sentences) - len(normal)}
    assert len(sentences) - len(normal) > 3000  # procedure sentences repeat across and within sittings
    opened = [row for row in _rows(version, "rejected") if row["text"] == "La séance est ouverte."]
    assert len(opened) == normal["La séance est ouverte."] - 1 >= 99
