"""``overton demo``: the whole job on the bundled sample, offline, in a couple of seconds.

Creates a workspace, ingests the sample corpus shipped in :mod:`overton.sample` (speeches in the
GPTJ-Overton dump format, encyclopedia articles in JSON Lines, questions and answers in CSV) and
builds the first dataset version. The sample holds planted exact duplicates, HTML leftovers, empty
texts and "Source :" lines, so every build step has something to do.

Then, when the ``train`` extra is installed, it trains a tiny GPT-J on the built version for a few
seconds on the CPU (a byte-level BPE tokenizer trained on the corpus, a model of two layers: no
download), through the same ``overton train`` code and settings a real run uses, and prints one line
the model generates. A model this small, trained this briefly, writes French-looking syllables.
Last, it writes the version's data card, plots and release page (``overton card``).
"""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path

from overton.corpus.config import set_setting
from overton.corpus.errors import UserError
from overton.corpus.publish import write_card
from overton.corpus.report import counts_table
from overton.corpus.workspace import Workspace
from overton.pipelines.build import build
from overton.pipelines.pii import redact
from overton.spiders.ingest import ingest

#: (file in overton/sample, source name, its profile, licence for records that carry none)
SAMPLE = (
    ("speeches.json", "speeches", "speech", "CC0-1.0"),
    ("encyclopedia.jsonl", "encyclopedia", "encyclopedia", "CC0-1.0"),
    ("questions.csv", "questions", "qa", "CC0-1.0"),
)


def sample_dir() -> Path:
    return Path(str(resources.files("overton.sample")))


#: The demo's [train] settings: a tiny model, a short run, every feature on (evaluation, checkpoints).
DEMO_TRAIN = {"tokenizer": '"tokenizer"', "from_config": '"tiny-gptj.json"', "seq_len": "128", "micro_batch": "4",
              "global_batch": "8", "steps": "60", "lr": "3e-3", "warmup_steps": "6", "log_every": "20",
              "eval_every": "30", "save_every": "30", "eval_fraction": "0.1"}
PROMPT = "Mesdames et Messieurs,"


def train_tiny_model(workspace: Workspace, version, say=print) -> str | None:
    """Train the tiny GPT-J on ``version`` with ``overton train``'s code; the line it generates."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        say("training skipped: install the train extra (pip install 'overton[train]') to train a tiny GPT-J here")
        return None
    from overton.train.loader import Tokenizer
    from overton.train.tiny import train_tokenizer, write_gptj_config
    from overton.train.trainer import train

    texts = [row["text"] for batch in version.iter_batches("data", columns=["text"]) for row in batch.to_pylist()]
    folder = train_tokenizer(workspace.root / "tokenizer", texts, vocab_size=512)
    write_gptj_config(workspace.root / "tiny-gptj.json", vocab_size=512, eos_id=Tokenizer(str(folder)).eos_id,
                      n_layer=2, n_embd=128, n_head=4, n_positions=128)
    text = workspace.settings_path.read_text(encoding="utf-8")
    for key, value in DEMO_TRAIN.items():
        text = set_setting(text, "train", key, value)
    workspace.settings_path.write_text(text, encoding="utf-8")
    settings = workspace.config().train
    outcome = train(workspace, settings, progress=False)
    model = AutoModelForCausalLM.from_pretrained(outcome.export)
    tokenizer = AutoTokenizer.from_pretrained(outcome.export)
    torch.manual_seed(0)
    prompt = tokenizer(PROMPT, return_tensors="pt").input_ids
    generated = model.generate(prompt, max_new_tokens=40, do_sample=True, temperature=0.8, top_k=40,
                               pad_token_id=tokenizer.eos_token_id)
    line = tokenizer.decode(generated[0], skip_special_tokens=True).replace("\n", " ")
    say(f"generated: {line}")
    return line


def run_demo(root: Path | None, jobs: int | None, say=print) -> int:
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="overton-demo-"))
    elif (root / "overton.toml").exists():
        raise UserError(f"{root} is already a workspace: pass a new folder to --workspace")
    workspace = Workspace.init(root)
    say(f"workspace: {workspace.root}")
    refused = 0
    for filename, source, profile, licence in SAMPLE:
        report = ingest(workspace, [sample_dir() / filename], source, default_license=licence, profile=profile)
        refused += report.refused_count
        say(f"ingested {report.imported:>3} documents from {filename} into raw/{source}/{report.run_id} "
            f"(profile {profile})")
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
    say("training a tiny GPT-J on it (CPU, a few seconds):")
    train_tiny_model(workspace, version, say)
    written = write_card(workspace, version.path, redact=lambda text: redact(text)[0])
    say(f"data card:          {version.path / 'README.md'} ({len(written)} files: the card, "
        f"{sum(p.suffix == '.png' for p in written)} plots, the page)")
    say(f"release page:       {version.path / 'index.html'} (open it in a browser)")
    say("next: overton publish --to FOLDER (or s3://..., hf://datasets/OWNER/NAME --public)")
    return 1 if refused else 0
