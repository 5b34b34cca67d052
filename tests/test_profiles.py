"""Source profiles: which quality, PII and language rules judge a source's documents, never its name's spelling."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from overton.cli import main
from overton.corpus.config import BUILTIN_PROFILES, TEMPLATE, Config, parse_config
from overton.corpus.dataset import Version
from overton.corpus.workspace import Workspace
from overton.demo import sample_dir
from tests.conftest import shared_file

OVERTON = [sys.executable, "-m", "overton.cli"]


def overton(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*OVERTON, *args], capture_output=True, text=True, timeout=600)


def _set(workspace: Workspace, addition: str) -> None:
    workspace.settings_path.write_text(workspace.settings_path.read_text() + addition)


def _kept(version: Version, source: str) -> set[str]:
    return {row["id"] for batch in version.iter_batches("data", columns=["id", "source"])
            for row in batch.to_pylist() if row["source"] == source}


# --- settings -------------------------------------------------------------------------------------------


def test_the_template_lists_every_key_of_every_profile():
    assert parse_config(TEMPLATE).profiles == Config().profiles == BUILTIN_PROFILES
    assert set(BUILTIN_PROFILES) == {"speech", "debate", "encyclopedia", "qa", "web"}
    for name, profile in BUILTIN_PROFILES.items():
        for section, keys in ((f"profiles.{name}", ["pii"]),
                              (f"profiles.{name}.language", list(profile.language.model_dump())),
                              (f"profiles.{name}.quality", [k for k, v in profile.quality.model_dump().items()
                                                            if v is not None])):
            body = TEMPLATE.split(f"\n[{section}]\n")[1].split("\n[")[0]
            for key in keys:
                assert f"\n{key} = " in "\n" + body, f"{section}.{key} missing from the template"
            if section.endswith(".quality"):  # a rule the profile does not list is off: none is listed twice
                listed = [line.split(" = ")[0] for line in body.splitlines() if " = " in line and line[0] != "#"]
                assert sorted(listed) == sorted(keys)


def test_a_profile_table_changes_only_the_keys_it_gives_and_a_new_one_starts_from_its_base():
    config = parse_config('[profiles.web.quality]\nmin_words = 80\n'
                          '[profiles.press]\nbase = "web"\n[profiles.press.quality]\nmax_dup_line_frac = 0.5\n'
                          '[profiles.bare.quality]\nmin_words = 3\n'
                          '[sources.journal]\nprofile = "press"\n')
    web, press, bare = (config.profiles[name] for name in ("web", "press", "bare"))
    assert web.quality.min_words == 80 and web.quality.max_dup_5gram == 0.15
    assert press.quality.min_words == 80 and press.quality.max_dup_line_frac == 0.5 and press.pii
    assert bare.quality.model_dump(exclude_none=True) == {"min_words": 3} and bare.pii
    assert config.profiles["speech"] == BUILTIN_PROFILES["speech"]
    assert config.profile_of("journal", "web") == "press"  # [sources.NAME] wins over what was recorded
    assert config.profile_of("other", "speech") == "speech"
    assert config.profile_of("other", None) == "web"


def test_ingest_records_the_profile_and_refuses_an_unknown_one(tmp_path: Path, capsys):
    workspace = Workspace.init(tmp_path / "ws")
    path = tmp_path / "a.txt"
    path.write_text("Mesdames et Messieurs, la séance est ouverte.", encoding="utf-8")
    assert main(["ingest", str(path), "--source", "x", "--profile", "speach", "--workspace", str(workspace.root)]) == 2
    err = capsys.readouterr().err
    assert "no profile named 'speach' (profiles: debate, encyclopedia, qa, speech, web" in err
    assert main(["ingest", str(path), "--source", "x", "--profile", "speech", "--workspace", str(workspace.root)]) == 0
    assert "(profile speech)" in capsys.readouterr().out
    [run] = workspace.raw_runs()
    assert run.record()["profile"] == "speech"
    assert main(["ingest", str(path), "--source", "y", "--workspace", str(workspace.root)]) == 0
    assert "(profile web)" in capsys.readouterr().out
    # the GPTJ-Overton dump holds speeches: its format brings their profile
    dump = str(sample_dir() / "speeches.json")
    assert main(["ingest", dump, "--source", "z", "--workspace", str(workspace.root)]) == 0
    assert "(profile speech)" in capsys.readouterr().out


# --- real data --------------------------------------------------------------------------------------------


def test_debates_under_the_wrong_profile_warn_and_their_own_profile_keeps_them(tmp_path: Path):
    """The 25 real sittings of 2013 as web text all go (repeated lines are the genre): the build says so."""
    files = sorted(str(p) for p in shared_file("assemblee-2013/txt").glob("*.txt"))
    assert len(files) == 25
    workspace = Workspace.init(tmp_path / "ws")
    root = str(workspace.root)
    assert overton("ingest", *files, "--source", "assemblee-2013", "-w", root).returncode == 0
    done = overton("build", "--quiet", "-w", root)
    assert done.returncode == 0
    warning = ("warning: step quality rejected 25 of the 25 new documents of source assemblee-2013 (100%; profile "
               "web): if they are good, judge them by another profile ([sources.assemblee-2013] profile = ...)")
    assert warning in done.stderr.splitlines()
    [record] = [json.loads(p.read_text()) for p in workspace.runs.glob("*-build.json")]
    assert record["warnings"] == [warning.removeprefix("warning: ")] and record["exit_code"] == 0
    counts = Version.open(workspace.datasets / "overton").manifest["counts"]["sources"]["assemblee-2013"]
    assert counts["profiles"] == {"web": 25} and counts["steps"] == {"quality": 25}

    # naming their profile in overton.toml wins over what the ingest recorded; a refilter cannot undo PII
    # redaction (web redacts, debate does not): it names the setting and asks for a rebuild
    _set(workspace, '\n[sources.assemblee-2013]\nprofile = "debate"\n')
    refused = overton("build", "--refilter", "--quiet", "-w", root)
    assert refused.returncode == 2
    assert "(sources.assemblee-2013.profile); rebuild from raw instead" in refused.stderr
    fresh = Workspace.init(tmp_path / "fresh")
    fresh.settings_path.write_text(workspace.settings_path.read_text())
    assert overton("ingest", *files, "--source", "assemblee-2013", "-w", str(fresh.root)).returncode == 0
    done = overton("build", "--quiet", "-w", str(fresh.root))
    assert done.returncode == 0 and "warning" not in done.stderr
    version = Version.open(fresh.datasets / "overton")
    assert len(_kept(version, "assemblee-2013")) == 25
    assert version.manifest["counts"]["sources"]["assemblee-2013"]["profiles"] == {"debate": 25}
    assert version.manifest["inputs"][0]["profile"] == "debate"


def test_encyclopedia_profile_keeps_real_articles_and_still_rejects_the_sample_junk(tmp_path: Path):
    articles = sorted(str(p) for p in shared_file("wikipedia/html-cleaned").glob("*.txt"))
    assert len(articles) == 33
    workspace = Workspace.init(tmp_path / "ws")
    root = str(workspace.root)
    for source, profile in (("wiki", "encyclopedia"), ("wiki-as-web", "web")):
        assert overton("ingest", *articles, "--source", source, "--profile", profile, "-w", root).returncode == 0
    questions = str(sample_dir() / "questions.csv")
    assert overton("ingest", questions, "--source", "junk-test", "--profile", "encyclopedia",
                   "-w", root).returncode == 0
    assert overton("build", "--quiet", "-w", root).returncode == 0
    version = Version.open(workspace.datasets / "overton")
    sources = version.manifest["counts"]["sources"]

    def filtered(source: str) -> int:  # the two copies of each article are exact duplicates: count the filters only
        return sum(n for step, n in sources[source]["steps"].items() if step in ("language", "quality"))

    assert filtered("wiki") <= 0.05 * 33
    # the same articles judged as web pages: tables and dates fail the letter share, headings repeat
    assert filtered("wiki-as-web") >= 15
    rejected = {row["id"]: row["reject_reason"] for batch in version.iter_batches("rejected")
                for row in batch.to_pylist() if row["source"] == "junk-test"}
    # navigation boilerplate, symbols and emoji, one line repeated 30 times: still junk for an encyclopedia
    for junk in ("qa-1018", "qa-1025", "qa-1029"):
        assert rejected[f"junk-test:{junk}"] not in (None, "exact_duplicate")
