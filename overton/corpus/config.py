"""``overton.toml``: every setting, its type and its default, validated on load.

The models below are the single source of truth; :data:`TEMPLATE` is the commented file that
``overton init`` writes and a test checks that it parses to exactly these defaults. Unknown keys and
ill-typed values are refused with one line naming the key and the expected type.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from overton.corpus.errors import UserError
from overton.corpus.shards import MB, ShardSettings


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class DatasetConfig(_Section):
    name: str = Field("overton", pattern=r"^[a-z0-9][a-z0-9._-]*$")


class ShardConfig(_Section):
    target_mb: int = Field(256, gt=0)
    row_group_mb: int = Field(32, gt=0)
    compression: str = Field("zstd", pattern=r"^(zstd|snappy|gzip|lz4|brotli|none)$")
    compression_level: int = 3

    def settings(self) -> ShardSettings:
        return ShardSettings(
            target_bytes=self.target_mb * MB,
            row_group_bytes=self.row_group_mb * MB,
            compression=self.compression,
            compression_level=self.compression_level,
        )


class NormalizeConfig(_Section):
    strip_html: bool = True
    source_line_to_meta: bool = True


#: Public political text (speeches, parliamentary debates and reports): edited and public by nature,
#: so it gets only the length and garbage quality rules and is not searched for personal data.
CURATED_SOURCES = ["vie-publique", "assemblee", "senat", "speeches", "debates"]

# FineWeb-2's French stop words (fra_Latn.yml: de la le et à en l' des du les est d' un une il dans par au),
# written as full words, plus the full forms behind the other elisions (qu' j' n' s' c' m' t'), so that
# "qu'il", "j'ai", "n'est", "c'est" count like "que il", "je ai", "ne est", "ce est".
FRENCH_STOP_WORDS = [
    "de", "la", "le", "et", "à", "en", "des", "du", "les", "est", "un", "une", "il", "dans", "par", "au",
    "que", "je", "ne", "se", "ce", "me", "te",
]


class LanguageConfig(_Section):
    """The French filter (``overton.pipelines.language``); every key is explained in :data:`TEMPLATE`."""

    enabled: bool = True
    min_score: float = Field(0.5, ge=0, le=1)
    backend: str = Field("langdetect", pattern=r"^(langdetect|lingua)$")
    seed: int = 0
    windows: int = Field(5, ge=1)
    window_chars: int = Field(1000, ge=100)
    paragraph_mode: bool = True
    paragraph_min_chars: int = Field(80, ge=0)
    paragraph_min_score: float = Field(0.5, ge=0, le=1)
    paragraph_pass_min_score: float = Field(0.1, ge=0, le=1)
    paragraph_lexical_french: float = Field(0.15, ge=0, le=1)
    lexical_french: float = Field(0.25, ge=0, le=1)
    lexical_foreign: float = Field(0.05, ge=0, le=1)
    veto_score: float = Field(0.15, ge=0, le=1)
    min_words: int = Field(8, ge=0)


class QualityWebConfig(_Section):
    """Web sources: FineWeb-2 French (fra_Latn.yml) where it tuned a value, else Gopher/FineWeb defaults.

    ``None`` (from code only; TOML has no null) turns a rule off. Comparisons are datatrove's: a
    document is rejected when its value is ``< min_*``, ``> max_*``, ``line_punct_ratio <=
    min_line_punct_ratio`` or ``dup_line_char_frac >= max_dup_line_char_frac``.
    """

    min_words: int | None = 50  # Gopher default, kept by FineWeb-2
    max_words: int | None = 100_000  # Gopher default
    min_mean_word_len: float | None = 2.0  # FineWeb-2 fr
    max_mean_word_len: float | None = 11.0  # FineWeb-2 fr
    min_alpha_ratio: float | None = 0.812  # FineWeb-2 fr (share of tokens with a letter)
    max_symbol_ratio: float | None = 0.1  # Gopher: "#" per token, and "..."/"…" per token
    min_stop_words: int | None = 2  # Gopher / FineWeb-2
    max_lorem_ipsum: int | None = 0  # C4: any "lorem ipsum" is a template, not text
    max_boilerplate_lines: float | None = 0.3  # ours: share of lines that are site furniture
    max_bullet_lines: float | None = 0.9  # Gopher
    max_ellipsis_lines: float | None = 0.3  # Gopher
    line_rules_min_lines: int | None = 5  # ours: the two rules above judge documents of this many lines or more
    max_dup_line_frac: float | None = 0.264  # FineWeb-2 fr (Gopher's count fraction of repeated lines)
    max_dup_line_char_frac: float | None = 0.1  # FineWeb-2 (FineWeb's char_dup_ratio, 0.01 in English)
    max_top_2gram: float | None = 0.161  # FineWeb-2 fr
    max_top_3gram: float | None = 0.149
    max_top_4gram: float | None = 0.134
    max_dup_5gram: float | None = 0.15  # FineWeb-2 fr
    max_dup_6gram: float | None = 0.141
    max_dup_7gram: float | None = 0.131
    max_dup_8gram: float | None = 0.121
    max_dup_9gram: float | None = 0.111
    max_dup_10gram: float | None = 0.1
    min_line_punct_ratio: float | None = 0.1  # FineWeb-2 fr (line_punct_thr)
    max_newline_ratio: float | None = 0.185  # FineWeb-2 fr (new_line_ratio)


class QualityCuratedConfig(_Section):
    """Curated sources (speeches, debates): length and garbage only, never repetition, layout or size.

    Values are deliberately loose: they catch empty shells (a speech body that is only the
    interviewer's name or "Mesdames et Messieurs,": a failed scrape), tables of figures, and markup or
    encoding debris, not style. There is no maximum length: a long sitting report is still good text
    (``build.max_doc_bytes`` bounds every document).
    """

    min_words: int | None = 5
    min_mean_word_len: float | None = 2.0
    max_mean_word_len: float | None = 15.0
    min_alpha_ratio: float | None = 0.5
    max_symbol_ratio: float | None = 0.1


class QualityConfig(_Section):
    enabled: bool = True
    curated_sources: list[str] = CURATED_SOURCES
    stop_words: list[str] = FRENCH_STOP_WORDS
    web: QualityWebConfig = QualityWebConfig()
    curated: QualityCuratedConfig = QualityCuratedConfig()


class PiiConfig(_Section):
    enabled: bool = True
    skip_sources: list[str] = CURATED_SOURCES


class NearDedupConfig(_Section):
    enabled: bool = True
    bands: int = Field(14, gt=0)
    rows: int = Field(8, gt=0)
    ngram: int = Field(5, gt=0)
    threshold: float = Field(0.8, ge=0, le=1)
    margin: float = Field(0.04, ge=0, le=1)
    seed: int = 1
    source_priority: list[str] = []


class BuildConfig(_Section):
    jobs: int = Field(0, ge=0)
    max_doc_bytes: int = Field(8_000_000, gt=0)
    max_replacement_chars: int = Field(0, ge=0)


class IngestConfig(_Section):
    part_mb: int = Field(128, gt=0)
    row_group_mb: int = Field(8, gt=0)


class ViePubliqueConfig(_Section):
    catalogue_url: str = "https://echanges.dila.gouv.fr/OPENDATA/DISCOURS_PUBLICS/vp_discours.json"
    mode: str = Field("catalogue", pattern=r"^(catalogue|listing)$")
    listing_url: str = "https://www.vie-publique.fr/discours"
    max_listing_pages: int = Field(50, ge=1)
    max_items: int = Field(0, ge=0)


class WebSite(_Section):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    start_urls: list[str] = []
    sitemaps: list[str] = []
    feeds: list[str] = []
    allowed_domains: list[str] = []
    allow: list[str] = []
    deny: list[str] = []
    max_pages: int = Field(1000, ge=1)
    license: str = "LicenseRef-not-licensed"


class WebConfig(_Section):
    sites: list[WebSite] = []


class CrawlConfig(_Section):
    user_agent: str = ""
    delay: float = Field(2.0, ge=0)
    autothrottle: bool = True
    batch_items: int = Field(100, ge=1)
    http_cache: bool = False
    max_challenges: int = Field(3, ge=1)
    vie_publique: ViePubliqueConfig = ViePubliqueConfig()
    web: WebConfig = WebConfig()


_DAY = r"^(\d{4}-\d{2}-\d{2})?$"


class TrainBudgetConfig(_Section):
    """The hardware ``overton train --dry-run`` plans for (``overton.train.budget``)."""

    gpu: str = "A100-40GB"
    gpus: int = Field(1, ge=1)
    mfu: float = Field(0.40, gt=0, le=1)
    price_per_gpu_hour: float = Field(0.0, ge=0)
    currency: str = "EUR"
    lora_rank: int = Field(8, ge=1)


class TrainConfig(_Section):
    """``overton train``: every key is explained in :data:`TEMPLATE`."""

    dataset: str = ""
    tokenizer: str = ""
    model: str = ""
    from_config: str = ""
    output: str = "train"
    seq_len: int = Field(1024, gt=1)
    micro_batch: int = Field(1, ge=1)
    global_batch: int = Field(8, ge=1)
    steps: int = Field(1000, ge=1)
    epochs: int = Field(0, ge=0)
    lr: float = Field(1e-5, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.95, ge=0, lt=1)
    clip: float = Field(1.0, gt=0)
    precision: str = Field("auto", pattern=r"^(auto|bf16|fp32)$")
    activation_checkpointing: bool = False
    seed: int = 0
    follow: bool = False
    follow_poll_seconds: float = Field(60.0, gt=0)
    loader_workers: int = Field(0, ge=0)
    log_every: int = Field(10, ge=1)
    eval_every: int = Field(200, ge=0)
    eval_batches: int = Field(50, ge=0)
    save_every: int = Field(500, ge=1)
    keep: int = Field(2, ge=2)
    tensorboard: bool = False
    peak_tflops: float = Field(0.0, ge=0)
    sources: list[str] = []
    since: str = Field("", pattern=_DAY)
    until: str = Field("", pattern=_DAY)
    speakers: list[str] = []
    weights: dict[str, float] = {}
    eval_fraction: float = Field(0.0, ge=0, lt=1)
    eval_since: str = Field("", pattern=_DAY)
    budget: TrainBudgetConfig = TrainBudgetConfig()


class Config(_Section):
    dataset: DatasetConfig = DatasetConfig()
    shards: ShardConfig = ShardConfig()
    normalize: NormalizeConfig = NormalizeConfig()
    build: BuildConfig = BuildConfig()
    language: LanguageConfig = LanguageConfig()
    quality: QualityConfig = QualityConfig()
    pii: PiiConfig = PiiConfig()
    near_dedup: NearDedupConfig = NearDedupConfig()
    ingest: IngestConfig = IngestConfig()
    crawl: CrawlConfig = CrawlConfig()
    train: TrainConfig = TrainConfig()


TEMPLATE = """\
# overton workspace settings. Every key is shown with its default; delete a line to keep the default.

[dataset]
# Name of the dataset this workspace builds: versions go to datasets/<name>/v0001, v0002, ...
name = "overton"

[shards]
# Target size of one Parquet file of a dataset version, in MB (compressed, on disk).
target_mb = 256
# Size of one row group before compression, in MB: the most a streaming reader holds in memory.
row_group_mb = 32
# Parquet compression codec (zstd, snappy, gzip, lz4, brotli, none) and its level.
compression = "zstd"
compression_level = 3

[normalize]
# Turn leftover HTML (<p>, <br>, entities) into plain text with paragraph breaks.
strip_html = true
# Move a trailing "Source : ..." line (vie-publique speeches) out of the text into meta.source_line.
source_line_to_meta = true

[build]
# Worker processes for `overton build` (0 = one per CPU core); `--jobs` overrides it.
jobs = 0
# Documents whose UTF-8 text is larger than this many bytes are rejected as too_large.
max_doc_bytes = 8000000
# Documents with more U+FFFD replacement characters (text that was not valid UTF-8 upstream)
# than this are rejected as invalid_utf8.
max_replacement_chars = 0

[language]
# Keep French documents (langdetect, seeded, with a lexical second opinion); see bench/language.py.
enabled = true
# Keep a document whose French score (length-weighted over its windows) is at least this.
min_score = 0.5
# Detector asked about doubtful texts: "langdetect" or "lingua" (extra `bench`).
backend = "langdetect"
# langdetect's seed: unseeded, it gives different answers run to run.
seed = 0
# A document is judged on at most this many windows of about this many characters, spread over it.
windows = 5
window_chars = 1000
# Drop the foreign paragraphs (blank-line separated) of documents found French; count removed characters.
paragraph_mode = true
# Shorter paragraphs (names, interjections, headings) are never dropped.
paragraph_min_chars = 80
# A doubtful paragraph is dropped below this French probability.
paragraph_min_score = 0.5
# Documents scoring below this are judged whole, without the paragraph pass.
paragraph_pass_min_score = 0.1
# Share of French function words from which a paragraph is French without asking the detector.
paragraph_lexical_french = 0.15
# Share of French function words from which a window is French without the detector ...
lexical_french = 0.25
# ... and up to which it is foreign without the detector.
lexical_foreign = 0.05
# The detector's "French" is overruled below this share (Latin, Irish, Yoruba look French to langdetect).
veto_score = 0.15
# Texts of fewer words always go to the detector.
min_words = 8

[quality]
# Gopher / FineWeb-2 quality signals, stored as quality_* columns; thresholds per source family.
enabled = true
# Sources that get the [quality.curated] rules; every other source gets [quality.web].
curated_sources = ["vie-publique", "assemblee", "senat", "speeches", "debates"]
# Stop words counted by min_stop_words (full words: "l'", "qu'", "j'"... count for the words they stand for).
stop_words = ["de", "la", "le", "et", "à", "en", "des", "du", "les", "est", "un", "une", "il", "dans", "par", "au",
              "que", "je", "ne", "se", "ce", "me", "te"]

[quality.web]
# FineWeb-2 French values. A document is rejected when a value is below min_* or above max_*.
# To turn a rule off, set a minimum to 0 or a maximum out of reach.
min_words = 50
max_words = 100000
min_mean_word_len = 2.0
max_mean_word_len = 11.0
# Share of tokens with a letter.
min_alpha_ratio = 0.812
# "#" per token, and "..." or "…" per token.
max_symbol_ratio = 0.1
min_stop_words = 2
max_lorem_ipsum = 0
# Shares of non-empty lines that are site furniture, bullets, or end in an ellipsis.
max_boilerplate_lines = 0.3
max_bullet_lines = 0.9
max_ellipsis_lines = 0.3
# The bullet and ellipsis line rules judge only documents with at least this many lines: in a short
# answer, one paragraph trailing off "…" is a third of the lines but not a list of teasers.
line_rules_min_lines = 5
# Repeated lines: their share of lines, and (rejected at or above) their share of characters.
max_dup_line_frac = 0.264
max_dup_line_char_frac = 0.1
# Characters covered by the most frequent 2-, 3-, 4-gram.
max_top_2gram = 0.161
max_top_3gram = 0.149
max_top_4gram = 0.134
# Characters covered by repeated 5- to 10-grams.
max_dup_5gram = 0.15
max_dup_6gram = 0.141
max_dup_7gram = 0.131
max_dup_8gram = 0.121
max_dup_9gram = 0.111
max_dup_10gram = 0.1
# Share of lines ending in terminal punctuation (rejected at or below), and line breaks per token.
min_line_punct_ratio = 0.1
max_newline_ratio = 0.185

[quality.curated]
# Speeches and debates: length and garbage only ("La séance est ouverte." is their nature).
min_words = 5
min_mean_word_len = 2.0
max_mean_word_len = 15.0
min_alpha_ratio = 0.5
max_symbol_ratio = 0.1

[pii]
# Replace e-mail addresses and phone numbers with <EMAIL> / <PHONE>, counted in pii_* columns.
enabled = true
# Sources left untouched: public speeches are public record.
skip_sources = ["vie-publique", "assemblee", "senat", "speeches", "debates"]

[near_dedup]
# MinHash LSH near-duplicate removal over the whole dataset, earlier versions included.
enabled = true
# bands x rows permutations; 14 x 8 finds about 92 % of pairs at Jaccard 0.8 in one try.
bands = 14
rows = 8
# Shingles are word n-grams of the text folded to lower case without diacritics and punctuation.
ngram = 5
# Near duplicates are pairs whose Jaccard similarity of shingles is at least this ...
threshold = 0.8
# ... and a candidate pair is accepted when its estimated Jaccard is at least threshold - margin: the
# estimate from 112 slots is off by 0.038 (one standard deviation) at 0.8, so verifying at the threshold
# itself would lose half the pairs that are exactly at it (bench/cleaning.py measures recall by band).
margin = 0.04
seed = 1
# Which copy of a cluster is kept: earlier versions first, then sources in this order (unlisted
# sources after, alike), then the earliest published_at, then the smallest id.
source_priority = []

[ingest]
# Size of one raw Parquet file written by `overton ingest`, in MB.
part_mb = 128
# Row group size of raw files, in MB: one build task reads one row group.
row_group_mb = 8

[crawl]
# Sent as the User-Agent of every request. Required, with a contact (an e-mail address or a URL)
# so that a site's operator can reach you, e.g. "overton/0.1 (+mailto:you@example.org)".
user_agent = ""
# Seconds between two requests to one site; AutoThrottle raises it when the site slows down.
delay = 2.0
autothrottle = true
# Documents per raw batch. Each batch is committed to raw/ and marked fetched on its own, so a
# killed crawl redoes at most one batch and never writes a document twice.
batch_items = 100
# Cache every response in state/httpcache (development: rerun a spider without fetching again).
http_cache = false
# Stop after this many bot-challenge pages, with a non-zero exit (a challenge is never worked around).
max_challenges = 3

[crawl.vie_publique]
# DILA's open-data catalogue of every speech's metadata (Licence Ouverte 2.0), rebuilt daily.
catalogue_url = "https://echanges.dila.gouv.fr/OPENDATA/DISCOURS_PUBLICS/vp_discours.json"
# "catalogue": fetch the catalogue (a conditional request), then the pages of new or changed speeches;
# "listing": walk the site's listing pages instead, newest first, until a page holds nothing new.
mode = "catalogue"
listing_url = "https://www.vie-publique.fr/discours"
max_listing_pages = 50
# Speech pages fetched per run at most (0 = all): a backfill of 150,000 pages at 2 s each takes
# three and a half days, so split it over nights.
max_items = 0

[crawl.web]
# Sites for the generic collector (`overton crawl web`): replace `sites = []` below with one
# table per site:
# [[crawl.web.sites]]
# name = "exemple-presse"              # source name of its documents
# start_urls = ["https://www.exemple.fr/politique/"]
# sitemaps = ["https://www.exemple.fr/sitemap.xml"]
# feeds = ["https://www.exemple.fr/politique/rss.xml"]
# allowed_domains = ["www.exemple.fr"]
# allow = ["/politique/"]              # regular expressions a followed URL must match (any)
# deny = ["/abonnement/"]              # ... and must not match
# max_pages = 1000
# license = "LicenseRef-not-licensed"
sites = []

[train]
# `overton train`: fine-tune a GPT-J model on a dataset version, resumable after any stop.
# Dataset to train on: a dataset folder (its latest version), a version folder or an fsspec URL
# (s3://..., gs://...); "" is this workspace's dataset.
dataset = ""
# Tokenizer: a local folder with tokenizer.json (or, on a connected machine, a hub name such as
# "EleutherAI/gpt-j-6b"). Required.
tokenizer = ""
# Model to fine-tune: a local folder saved by save_pretrained (fr-boris, gpt-j-6b) or a hub name;
# or leave it "" and give from_config, a GPT-J config.json, to train a new model from scratch.
model = ""
from_config = ""
# Where checkpoints, metrics, the loss curve and the final model go (relative to the workspace).
output = "train"
# Tokens per sequence; sequences per device per forward pass; sequences per optimizer step over
# all devices (a multiple of micro_batch x devices: the rest is gradient accumulation). Keep
# global_batch when you resume on another number of devices: the data order is defined by it.
seq_len = 1024
micro_batch = 1
global_batch = 8
# Optimizer steps of the whole run; it ends earlier when `epochs` passes over the data are done
# (0: the data repeats, reshuffled, until `steps`).
steps = 1000
epochs = 0
# AdamW: peak learning rate after a linear warmup, then cosine decay down to lr x min_lr_ratio.
lr = 1e-5
min_lr_ratio = 0.1
warmup_steps = 100
weight_decay = 0.0
adam_beta1 = 0.9
adam_beta2 = 0.95
# Gradient clipping (global L2 norm).
clip = 1.0
# "auto": bf16 autocast on a GPU that supports it, fp32 elsewhere; or "bf16", "fp32".
precision = "auto"
# Recompute activations in the backward pass: less memory, about a third more compute.
activation_checkpointing = false
# Seed of the model initialisation (from model_config) and of the data order.
seed = 0
# After `epochs` passes over the dataset's latest version (epochs must be 1 or more), wait for newer
# versions and train on the documents each adds, checking every follow_poll_seconds (also `--follow`).
follow = false
follow_poll_seconds = 60.0
# DataLoader worker processes per device (0: read in the training process).
loader_workers = 0
# Log the first step, then every this many steps (console, metrics.jsonl, TensorBoard when enabled).
log_every = 10
# Evaluate every this many steps (0: never) on at most eval_batches micro-batches (0: all).
eval_every = 200
eval_batches = 50
# Save a checkpoint every this many steps; keep the newest `keep` (at least 2).
save_every = 500
keep = 2
# Also write TensorBoard logs to <output>/tensorboard (needs the tensorboard package).
tensorboard = false
# Peak FLOP/s of one device in TFLOP/s for the MFU figure; 0: known for A100, H100 and H200, and
# not reported on other devices.
peak_tflops = 0.0
# Documents to train on: sources (empty: all), published on or after `since` and before `until`
# ("YYYY-MM-DD", "" for no bound), with one of these speakers (empty: any).
sources = []
since = ""
until = ""
speakers = []
# How often each source counts per epoch, e.g. { vie-publique = 2.0, questions = 0.5 }.
weights = {}
# Held-out evaluation documents: this share of documents (by a hash of their id), and/or every
# document published on or after eval_since ("unseen recent speeches").
eval_fraction = 0.0
eval_since = ""

[train.budget]
# What `overton train --dry-run` plans for: the GPU (A100-40GB, A100-80GB, H100-80GB, H200-141GB),
# how many, the MFU to assume (replace it with the one training logs), and the price per GPU-hour
# (0: no cost shown).
gpu = "A100-40GB"
gpus = 1
mfu = 0.4
price_per_gpu_hour = 0.0
currency = "EUR"
lora_rank = 8
"""


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        return f"unknown setting '{key}'"
    expected = {
        "int_type": "an integer",
        "string_type": "a string",
        "bool_type": "true or false",
        "float_type": "a number",
        "model_type": "a table",
        "dict_type": "a table",
    }.get(kind)
    got = error.get("input")
    if expected:
        return f"setting '{key}' must be {expected}, got {got!r}"
    return f"setting '{key}': {error['msg']} (got {got!r})"


def parse_config(text: str, origin: str = "overton.toml") -> Config:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{origin}: not valid TOML: {exc}") from None
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{origin}: {_describe(exc.errors()[0])}") from None


def set_setting(text: str, section: str, key: str, value: str) -> str:
    """``text`` (an overton.toml) with ``key = value`` in ``[section]``, every comment and other line kept.

    ``value`` is TOML (``'"tokenizer"'``, ``"128"``). The key must be in the section already, as it is in
    :data:`TEMPLATE` which ``overton init`` writes; otherwise ``KeyError``.
    """
    pattern = rf"(?ms)^(\[{re.escape(section)}\]\n(?:(?!^\[).)*?^{re.escape(key)} = )[^\n]*"
    changed, count = re.subn(pattern, lambda match: match.group(1) + value, text, count=1)
    if count != 1:
        raise KeyError(f"no {key} in [{section}]")
    return changed


def load_config(path: Path) -> Config:
    if not path.is_file():
        raise UserError(f"{path}: no such settings file (create a workspace with `overton init DIR`)")
    return parse_config(path.read_text(encoding="utf-8"), origin=str(path))
