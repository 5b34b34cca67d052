"""``overton.toml``: every setting, its type and its default, validated on load.

The models below are the single source of truth; :data:`TEMPLATE` is the commented file that
``overton init`` writes and a test checks that it parses to exactly these defaults. Unknown keys and
ill-typed values are refused with one line naming the key and the expected type.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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


# FineWeb-2's French stop words (fra_Latn.yml: de la le et à en l' des du les est d' un une il dans par au),
# written as full words, plus the full forms behind the other elisions (qu' j' n' s' c' m' t'), so that
# "qu'il", "j'ai", "n'est", "c'est" count like "que il", "je ai", "ne est", "ce est".
FRENCH_STOP_WORDS = [
    "de", "la", "le", "et", "à", "en", "des", "du", "les", "est", "un", "une", "il", "dans", "par", "au",
    "que", "je", "ne", "se", "ce", "me", "te",
]


class LanguageConfig(_Section):
    """How the French filter measures (``overton.pipelines.language``); every key is explained in
    :data:`TEMPLATE`. What it keeps (``min_score``) is a profile setting: :class:`ProfileLanguage`."""

    enabled: bool = True
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


class QualityConfig(_Section):
    enabled: bool = True
    stop_words: list[str] = FRENCH_STOP_WORDS


class PiiConfig(_Section):
    enabled: bool = True


# ---------------------------------------------------------------- source profiles


class QualityRules(_Section):
    """A profile's quality thresholds (``[profiles.NAME.quality]``). A rule left out of a profile is off.

    Comparisons are datatrove's: a document is rejected when its value is ``< min_*``, ``> max_*``,
    ``line_punct_ratio <= min_line_punct_ratio`` or ``dup_line_char_frac >= max_dup_line_char_frac``.
    """

    min_words: int | None = None
    max_words: int | None = None
    min_mean_word_len: float | None = None
    max_mean_word_len: float | None = None
    min_alpha_ratio: float | None = None  # share of tokens with a letter
    max_symbol_ratio: float | None = None  # "#" per token, and "..."/"…" per token
    min_stop_words: int | None = None
    max_lorem_ipsum: int | None = None
    max_boilerplate_lines: float | None = None  # share of lines that are site furniture
    max_bullet_lines: float | None = None
    max_ellipsis_lines: float | None = None
    line_rules_min_lines: int | None = None  # the two rules above judge documents of this many lines or more
    max_dup_line_frac: float | None = None
    max_dup_line_char_frac: float | None = None
    max_top_2gram: float | None = None
    max_top_3gram: float | None = None
    max_top_4gram: float | None = None
    max_dup_5gram: float | None = None
    max_dup_6gram: float | None = None
    max_dup_7gram: float | None = None
    max_dup_8gram: float | None = None
    max_dup_9gram: float | None = None
    max_dup_10gram: float | None = None
    min_line_punct_ratio: float | None = None
    max_newline_ratio: float | None = None


class ProfileLanguage(_Section):
    """What a profile keeps of the French filter's verdict (``[profiles.NAME.language]``)."""

    #: Keep a document whose French score is at least this (decided from the stored score: refilter-aware).
    min_score: float = Field(0.5, ge=0, le=1)
    #: Windows with no function words of any language (tables, lists of names and dates) do not count in the
    #: score, instead of counting as not French. Changes what is measured.
    skip_undetermined: bool = False


class Profile(_Section):
    """A named set of quality, PII and language settings that judges the documents of the sources given it."""

    #: A new profile starts from this one's settings (empty: from nothing: no quality rule, PII on).
    base: str = ""
    #: Replace e-mail addresses and phone numbers (off for public record: speeches, debates).
    pii: bool = True
    language: ProfileLanguage = ProfileLanguage()
    quality: QualityRules = QualityRules()


#: FineWeb-2 French (fra_Latn.yml) where it tuned a value, else Gopher/FineWeb defaults.
_WEB_RULES = QualityRules(
    min_words=50, max_words=100_000,  # Gopher
    min_mean_word_len=2.0, max_mean_word_len=11.0, min_alpha_ratio=0.812,  # FineWeb-2 fr
    max_symbol_ratio=0.1, min_stop_words=2,  # Gopher
    max_lorem_ipsum=0,  # C4: any "lorem ipsum" is a template, not text
    max_boilerplate_lines=0.3, line_rules_min_lines=5,  # ours
    max_bullet_lines=0.9, max_ellipsis_lines=0.3,  # Gopher
    max_dup_line_frac=0.264, max_dup_line_char_frac=0.1,  # FineWeb-2 fr; FineWeb's char_dup_ratio
    max_top_2gram=0.161, max_top_3gram=0.149, max_top_4gram=0.134,  # FineWeb-2 fr
    max_dup_5gram=0.15, max_dup_6gram=0.141, max_dup_7gram=0.131, max_dup_8gram=0.121, max_dup_9gram=0.111,
    max_dup_10gram=0.1,
    min_line_punct_ratio=0.1, max_newline_ratio=0.185,  # FineWeb-2 fr
)

#: Edited public text: length and garbage only. They catch empty shells (a speech body that is only the
#: interviewer's name: a failed scrape), tables of figures and markup or encoding debris, not style; no
#: maximum length (``build.max_doc_bytes`` bounds every document).
_EDITED_RULES = QualityRules(min_words=5, min_mean_word_len=2.0, max_mean_word_len=15.0, min_alpha_ratio=0.5,
                             max_symbol_ratio=0.1)

_WEB_RULE_VALUES = _WEB_RULES.model_dump()

#: The profiles every workspace has; ``[profiles.NAME]`` changes their keys or adds new ones.
BUILTIN_PROFILES: dict[str, Profile] = {
    # Speeches, interviews, press statements: edited, public, short repetitive formulas are their nature.
    "speech": Profile(pii=False, quality=_EDITED_RULES),
    # Parliamentary sittings and transcripts: as speeches; lists of votes and of names are part of the record.
    "debate": Profile(pii=False, quality=_EDITED_RULES, language=ProfileLanguage(skip_undetermined=True)),
    # Encyclopedia articles: the web rules without those that read a structured article as junk (headings
    # repeat, lists and tables have no final punctuation and few letters, "#" marks headings); a table of
    # figures is still rejected below half letters.
    "encyclopedia": Profile(
        quality=QualityRules(**{**_WEB_RULE_VALUES, "min_alpha_ratio": 0.5, "max_symbol_ratio": None,
                                "max_bullet_lines": None, "max_ellipsis_lines": None, "line_rules_min_lines": None,
                                "max_dup_line_frac": None, "max_dup_line_char_frac": None,
                                "min_line_punct_ratio": None, "max_newline_ratio": None}),
        language=ProfileLanguage(skip_undetermined=True)),
    # Questions and answers: the web rules, but a complete answer can be two sentences.
    "qa": Profile(quality=QualityRules(**{**_WEB_RULE_VALUES, "min_words": 20})),
    # Anything else from the web: FineWeb-2 French.
    "web": Profile(quality=_WEB_RULES),
}

#: The profile of documents whose source has none recorded and none set: the strictest.
DEFAULT_PROFILE = "web"

_NAME = r"^[a-z0-9][a-z0-9._-]*$"


class SourceConfig(_Section):
    """``[sources.NAME]``: settings of one source."""

    #: The profile its documents are judged by; wins over what the collector or ``ingest --profile`` recorded.
    profile: str = Field("", pattern=r"^([a-z0-9][a-z0-9._-]*)?$")
    #: Where its documents come from and anything a reader should know, in the data card's words.
    description: str = ""


class CardConfig(_Section):
    """``overton card`` and ``overton publish``: what the generated data card says beyond what it measures."""

    pretty_name: str = ""
    summary: str = ""
    tokenizer: str = ""


class NearDedupConfig(_Section):
    enabled: bool = True
    #: "verified": candidate pairs merged at a true Jaccard >= threshold; "fineweb": 14 x 8, merged unverified.
    mode: str = Field("verified", pattern=r"^(verified|fineweb)$")
    bands: int = Field(20, gt=0)
    rows: int = Field(5, gt=0)
    ngram: int = Field(5, gt=0)
    threshold: float = Field(0.8, ge=0, le=1)
    seed: int = 1
    source_priority: list[str] = []


class BuildConfig(_Section):
    jobs: int = Field(0, ge=0)
    executor: str = Field("local", pattern=r"^(local|ray)$")
    address: str = ""  # of a Ray cluster; empty: one started on this machine for the build
    max_doc_bytes: int = Field(8_000_000, gt=0)
    max_replacement_chars: int = Field(0, ge=0)
    warn_reject_fraction: float = Field(0.5, ge=0, le=1)


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
    profile: str = Field(DEFAULT_PROFILE, pattern=_NAME)


class WebConfig(_Section):
    sites: list[WebSite] = []


class WikipediaCategory(_Section):
    """A root category of the Wikipedia crawl and how many levels of subcategories to follow."""

    name: str = Field(min_length=1)
    depth: int = Field(2, ge=0)


class WikipediaConfig(_Section):
    """``overton crawl wikipedia``: articles of categories, through the MediaWiki API."""

    api_url: str = "https://fr.wikipedia.org/w/api.php"
    categories: list[WikipediaCategory] = [
        WikipediaCategory(name="Politique en France"),
        WikipediaCategory(name="Science politique"),
        WikipediaCategory(name="Idéologie politique"),
    ]
    max_pages: int = Field(0, ge=0)
    maxlag: int = Field(5, ge=0)
    tables: bool = False


class QuoraConfig(_Section):
    """``overton crawl quora``: question pages, only with a permission and where robots.txt allows them."""

    permission: str = ""
    base_url: str = Field("https://fr.quora.com", pattern=r"^https?://[^/?#]+$")
    start_urls: list[str] = []
    max_pages: int = Field(100, ge=1)


class CrawlConfig(_Section):
    user_agent: str = ""
    delay: float = Field(2.0, ge=0)
    autothrottle: bool = True
    batch_items: int = Field(100, ge=1)
    http_cache: bool = False
    max_challenges: int = Field(3, ge=1)
    vie_publique: ViePubliqueConfig = ViePubliqueConfig()
    web: WebConfig = WebConfig()
    wikipedia: WikipediaConfig = WikipediaConfig()
    quora: QuoraConfig = QuoraConfig()


_DAY = r"^(\d{4}-\d{2}-\d{2})?$"


class TrainBudgetConfig(_Section):
    """The hardware ``overton train --dry-run`` plans for (``overton.train.budget``)."""

    gpu: str = "A100-40GB"
    gpus: int = Field(1, ge=1)
    mfu: float = Field(0.40, gt=0, le=1)
    price_per_gpu_hour: float = Field(0.0, ge=0)
    currency: str = "EUR"


class TrainLoraConfig(_Section):
    """``[train] strategy = "lora"``: the adapters ``overton.train.strategies.lora`` trains (peft's LoraConfig)."""

    rank: int = Field(8, ge=1)
    alpha: int = Field(16, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(["q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_out"], min_length=1)
    merge: bool = True


#: How ``[train] task = "chat"`` writes a question-answer pair (the original project's markers), EOS after it.
CHAT_TEMPLATE = "=== QUESTION ===\n{question}\n=== REPONSE ===\n{answer}"


def check_chat_template(template: str) -> None:
    """ValueError unless ``template`` holds ``{question}`` once, then ``{answer}`` once: the prompt is what comes
    before ``{answer}``, so the question must be in it."""
    if template.count("{question}") != 1 or template.count("{answer}") != 1 or \
            template.index("{question}") > template.index("{answer}"):
        raise ValueError(f"setting 'train.chat_template' must hold {{question}} once and then {{answer}} once, "
                         f"got {template!r}")


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
    strategy: str = Field("auto", pattern=r"^(auto|ddp|fsdp|lora)$")
    offload: bool = False
    compile: bool = False
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
    task: str = Field("text", pattern=r"^(text|chat)$")
    chat_template: str = CHAT_TEMPLATE
    budget: TrainBudgetConfig = TrainBudgetConfig()
    lora: TrainLoraConfig = TrainLoraConfig()


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
    card: CardConfig = CardConfig()
    profiles: dict[str, Profile] = BUILTIN_PROFILES
    sources: dict[str, SourceConfig] = {}

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        """Settings that are each valid but contradict one another."""
        check_chat_template(self.train.chat_template)
        for name, profile in self.profiles.items():
            if not re.match(_NAME, name):
                raise ValueError(f"profile name {name!r} in [profiles]: use lower-case letters, digits, '.', '_' "
                                 "or '-'")
            if profile.base and profile.base not in self.profiles:
                raise ValueError(f"setting 'profiles.{name}.base': no profile named {profile.base!r}")
            rules = profile.quality
            for low, high in (("min_words", "max_words"), ("min_mean_word_len", "max_mean_word_len")):
                low_value, high_value = getattr(rules, low), getattr(rules, high)
                if low_value is not None and high_value is not None and low_value >= high_value:
                    raise ValueError(f"setting 'profiles.{name}.quality.{low}' ({low_value}) must be below "
                                     f"'profiles.{name}.quality.{high}' ({high_value})")
        for source, settings in self.sources.items():
            if settings.profile and settings.profile not in self.profiles:
                raise ValueError(f"setting 'sources.{source}.profile': no profile named {settings.profile!r} "
                                 f"(profiles: {', '.join(sorted(self.profiles))})")
        for site in self.crawl.web.sites:
            if site.profile not in self.profiles:
                raise ValueError(f"setting 'profile' of the web site {site.name!r}: no profile named "
                                 f"{site.profile!r} (profiles: {', '.join(sorted(self.profiles))})")
        return self

    def profile_of(self, source: str, recorded: str | None) -> str:
        """The profile that judges a source's documents: ``[sources.NAME] profile``, else the one its
        collector or ingest recorded, else :data:`DEFAULT_PROFILE`. A name without a definition is refused."""
        name = (self.sources[source].profile if source in self.sources else "") or recorded or DEFAULT_PROFILE
        if name not in self.profiles:
            raise UserError(f"source {source!r}: no profile named {name!r} in overton.toml "
                            f"(profiles: {', '.join(sorted(self.profiles))}); define [profiles.{name}] or set "
                            f"[sources.{source}] profile")
        return name


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
# Where the build's tasks run: "local" (processes of this machine) or "ray" (a Ray cluster, with the
# ray extra; the workspace must be at the same path on every node). `--executor` overrides it.
executor = "local"
# The Ray cluster ("HOST:6379", or "auto" for the one this machine joined); empty: a cluster of this
# machine, started for the build and stopped after it. `--address` overrides it.
address = ""
# Documents whose UTF-8 text is larger than this many bytes are rejected as too_large.
max_doc_bytes = 8000000
# Documents with more U+FFFD replacement characters (text that was not valid UTF-8 upstream)
# than this are rejected as invalid_utf8.
max_replacement_chars = 0
# Warn (and say so in the run record) when one step rejects more than this share of one source's new
# documents: a source judged by the wrong profile loses most of its documents, and says nothing else.
warn_reject_fraction = 0.5

[language]
# Measure how French each document is (langdetect, seeded, with a lexical second opinion); see
# bench/language.py. What is kept is decided by each profile's [profiles.NAME.language] min_score.
enabled = true
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
# Gopher / FineWeb-2 quality signals, stored as quality_* columns; each profile's [profiles.NAME.quality]
# thresholds decide.
enabled = true
# Stop words counted by min_stop_words (full words: "l'", "qu'", "j'"... count for the words they stand for).
stop_words = ["de", "la", "le", "et", "à", "en", "des", "du", "les", "est", "un", "une", "il", "dans", "par", "au",
              "que", "je", "ne", "se", "ce", "me", "te"]

[pii]
# Replace e-mail addresses and phone numbers with <EMAIL> / <PHONE>, counted in pii_* columns, in the
# documents of profiles with pii = true.
enabled = true

# Source profiles: which quality, PII and language rules judge a source's documents. A collector records
# the profile of what it fetches (vie-publique: speech, web: each site's profile), `overton ingest
# --profile NAME` that of your files (default web), and [sources.NAME] profile = "..." overrides both:
#
# [sources.assemblee-2013]
# profile = "debate"
#
# Change a profile's keys below, or add your own: [profiles.press] with base = "web" starts from web's
# settings. Quality rules: a document is rejected when a value is below min_* or above max_* (or, for
# min_line_punct_ratio, at or below it; for max_dup_line_char_frac, at or above it); a rule a profile
# does not list is off. To turn a listed rule off, set a minimum to 0 or a maximum out of reach.

[profiles.speech]
# Speeches, interviews, press statements: edited public text, where short repetitive formulas
# ("Mesdames et Messieurs,") are the genre. Length and garbage rules only; no PII search (public record).
pii = false

[profiles.speech.language]
# Keep a document whose French score (length-weighted over its windows) is at least this.
min_score = 0.5
# Windows with no function words of any language (tables, lists of names) do not count in the score,
# instead of counting as not French (this changes what is measured: rebuild, not refilter).
skip_undetermined = false

[profiles.speech.quality]
# Empty shells (a speech body that is only a greeting: a failed scrape), tables of figures, debris.
min_words = 5
min_mean_word_len = 2.0
max_mean_word_len = 15.0
# Share of tokens with a letter.
min_alpha_ratio = 0.5
# "#" per token, and "..." or "…" per token.
max_symbol_ratio = 0.1

[profiles.debate]
# Parliamentary sittings and transcripts: as speeches, and lists of votes and names are part of the record.
pii = false

[profiles.debate.language]
min_score = 0.5
skip_undetermined = true

[profiles.debate.quality]
min_words = 5
min_mean_word_len = 2.0
max_mean_word_len = 15.0
min_alpha_ratio = 0.5
max_symbol_ratio = 0.1

[profiles.encyclopedia]
# Encyclopedia articles: the web rules but those that read a structured article as junk (headings
# repeat, list items and table rows have no final punctuation and few letters, "#" marks headings).
pii = true

[profiles.encyclopedia.language]
min_score = 0.5
skip_undetermined = true

[profiles.encyclopedia.quality]
min_words = 50
max_words = 100000
min_mean_word_len = 2.0
max_mean_word_len = 11.0
# Below half letters, an "article" is a table of figures.
min_alpha_ratio = 0.5
min_stop_words = 2
max_lorem_ipsum = 0
max_boilerplate_lines = 0.3
max_top_2gram = 0.161
max_top_3gram = 0.149
max_top_4gram = 0.134
max_dup_5gram = 0.15
max_dup_6gram = 0.141
max_dup_7gram = 0.131
max_dup_8gram = 0.121
max_dup_9gram = 0.111
max_dup_10gram = 0.1

[profiles.qa]
# Questions and answers: the web rules, but a complete answer can be two sentences.
pii = true

[profiles.qa.language]
min_score = 0.5
skip_undetermined = false

[profiles.qa.quality]
min_words = 20
max_words = 100000
min_mean_word_len = 2.0
max_mean_word_len = 11.0
min_alpha_ratio = 0.812
max_symbol_ratio = 0.1
min_stop_words = 2
max_lorem_ipsum = 0
max_boilerplate_lines = 0.3
max_bullet_lines = 0.9
max_ellipsis_lines = 0.3
line_rules_min_lines = 5
max_dup_line_frac = 0.264
max_dup_line_char_frac = 0.1
max_top_2gram = 0.161
max_top_3gram = 0.149
max_top_4gram = 0.134
max_dup_5gram = 0.15
max_dup_6gram = 0.141
max_dup_7gram = 0.131
max_dup_8gram = 0.121
max_dup_9gram = 0.111
max_dup_10gram = 0.1
min_line_punct_ratio = 0.1
max_newline_ratio = 0.185

[profiles.web]
# Everything else from the web, and sources with no profile: FineWeb-2's French values.
pii = true

[profiles.web.language]
min_score = 0.5
skip_undetermined = false

[profiles.web.quality]
# Gopher's length bounds; FineWeb-2 French word length and share of tokens with a letter.
min_words = 50
max_words = 100000
min_mean_word_len = 2.0
max_mean_word_len = 11.0
min_alpha_ratio = 0.812
max_symbol_ratio = 0.1
min_stop_words = 2
# C4: any "lorem ipsum" is a template, not text.
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

[near_dedup]
# MinHash LSH near-duplicate removal over the whole dataset, earlier versions included.
enabled = true
# "verified": documents sharing a band are candidates, and a candidate pair is merged when the true
# Jaccard of the two texts' shingle sets (recomputed for candidate pairs only) is at least threshold.
# "fineweb": FineWeb's (datatrove's) published setting, 14 bands x 8 rows, every candidate pair merged
# unverified (bands, rows and threshold below are then not used).
mode = "verified"
# bands x rows permutations, chosen for recall: a pair at Jaccard j shares a band with probability
# 1 - (1 - j^rows)^bands, for 20 x 5 99.96 % at 0.8 and 97.5 % at 0.7 (14 x 8: 92 % and 56 %); the
# extra candidates below the threshold cost verification time, not precision. Rule for another
# threshold t: keep that probability at t above 0.95 (20 x 5 for t >= 0.7; 25 x 4 for t = 0.6).
bands = 20
rows = 5
# Shingles are word n-grams of the text folded to lower case without diacritics and punctuation.
ngram = 5
# Near duplicates are pairs whose Jaccard similarity of shingles is at least this.
threshold = 0.8
seed = 1
# Which copy of a cluster is kept: earlier versions first, then sources in this order (unlisted
# sources after, alike), then the earliest published_at, then the smallest id.
source_priority = []

[card]
# The data card that `overton card` and `overton publish` generate. Its name (default: the dataset's name)
# and a paragraph that opens it; the numbers, tables and plots are measured from the data.
pretty_name = ""
summary = ""
# Token counts per source use this tokenizer (a folder with tokenizer.json); empty: [train] tokenizer
# when that is a local folder, else no token counts.
tokenizer = ""

# A source's description (where its documents come from, in your words) appears in the card:
# [sources.NAME]
# description = "..."

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

[crawl.wikipedia]
# Articles of Wikipedia categories through the MediaWiki API (`overton crawl wikipedia`); every one is
# CC BY-SA 4.0 and is judged by the encyclopedia profile.
api_url = "https://fr.wikipedia.org/w/api.php"
# Root categories (without the "Catégorie:" prefix) and how many levels of subcategories to follow.
categories = [
    { name = "Politique en France", depth = 2 },
    { name = "Science politique", depth = 2 },
    { name = "Idéologie politique", depth = 2 },
]
# Articles fetched per run at most (0 = all).
max_pages = 0
# Sent with every API request: the servers answer "come back later" when their replication lag is
# above this many seconds (Wikimedia asks bots for 5).
maxlag = 5
# Keep the text of tables (one row per line, cells separated by " | ") instead of dropping them.
tables = false

[crawl.quora]
# Quora's terms of use forbid collecting its content, for AI training too, without a licence, and its
# robots.txt closes question pages to crawlers it does not name. `overton crawl quora` refuses to run
# until `permission` names the licence or agreement you hold (e.g. "Quora data licence 2025-014"), and
# even then fetches only what robots.txt allows its User-Agent. Documents are not redistributable.
permission = ""
# The site (scheme and host, no path).
base_url = "https://fr.quora.com"
# Pages to start from, absolute on base_url's host or paths: question pages ("/Faut-il-voter-blanc"),
# each fetched once, and topic pages ("/topic/Politique-française"), read every run for the question
# links they list (the questions Quora loads later through its own API are not followed).
start_urls = []
# Question pages fetched per run at most; the rest waits for the next run.
max_pages = 100

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
# profile = "web"                      # the source profile its documents are judged by
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
# How the model is spread over the devices: "ddp" (the whole model and AdamW on each), "fsdp"
# (sharded over them: for models whose training state does not fit one device), or "auto": the
# fastest that fits the GPUs present, as `overton train --dry-run` plans it (ddp on CPUs). Or
# "lora": the model frozen, LoRA adapters trained on it ([train.lora]); never chosen by "auto".
strategy = "auto"
# fsdp: keep the sharded parameters, gradients and AdamW states in CPU memory and step AdamW there
# (slower: for when even sharded they do not fit the GPUs). With "auto": allowed, as the last resort.
offload = false
# Compile each GPT-J block with torch.compile before training (a compilation at start; off until
# measured faster on GPUs).
compile = false
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
# "text": every document, whole. "chat": the documents that carry a question (meta.question, as
# Quora answers do) become question-answer pairs written with chat_template, and only the answer
# tokens (with the EOS after them) count in the loss.
task = "text"
chat_template = "=== QUESTION ===\\n{question}\\n=== REPONSE ===\\n{answer}"

[train.budget]
# What `overton train --dry-run` plans for: the GPU (A100-40GB, A100-80GB, H100-80GB, H200-141GB),
# how many, the MFU to assume (replace it with the one training logs), and the price per GPU-hour
# (0: no cost shown).
gpu = "A100-40GB"
gpus = 1
mfu = 0.4
price_per_gpu_hour = 0.0
currency = "EUR"

[train.lora]
# strategy = "lora": the base model stays frozen and LoRA adapters train on these GPT-J projections
# (attention q_proj, k_proj, v_proj, out_proj; MLP fc_in, fc_out), each adding rank x (in + out)
# parameters, scaled by alpha / rank. dropout > 0 drops adapter inputs in training, with masks drawn
# by each process: a resume on another number of processes then sees other masks.
rank = 8
alpha = 16
dropout = 0.0
target_modules = ["q_proj", "k_proj", "v_proj", "out_proj", "fc_in", "fc_out"]
# At the end, besides the adapters (<output>/adapter), write the base with the adapters merged into
# it (<output>/model, loadable without peft); false: the adapters only.
merge = true
"""


#: Settings of earlier versions and what replaced them.
_REPLACED = {
    "quality.curated_sources": "source profiles: set [sources.NAME] profile = \"speech\" (or debate, encyclopedia, qa, "
                               "web)",
    "quality.web": "[profiles.web.quality]",
    "quality.curated": "[profiles.speech.quality] and [profiles.debate.quality]",
    "pii.skip_sources": "the pii key of each profile ([profiles.NAME] pii = false) and [sources.NAME] profile",
    "language.min_score": "the min_score of each profile ([profiles.NAME.language] min_score)",
    "near_dedup.margin": "exact verification: candidate pairs are merged at a true Jaccard >= near_dedup.threshold "
                         "(delete the key)",
    "train.budget.lora_rank": "[train.lora] rank (the dry run prices the adapters [train.lora] describes)",
}


def _describe(error: dict) -> str:
    key = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        if key in _REPLACED:
            return f"setting '{key}' was replaced by {_REPLACED[key]}"
        return f"unknown setting '{key}'"
    if kind == "value_error" and not key:  # a check across settings: its message names them
        return error["msg"].removeprefix("Value error, ")
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
        _complete_profiles(raw)
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise UserError(f"{origin}: {_describe(exc.errors()[0])}") from None
    except ValueError as exc:
        raise UserError(f"{origin}: {exc}") from None


def _merged(base: dict, update: dict) -> dict:
    merged = dict(base)
    for key, value in update.items():
        merged[key] = _merged(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) \
            else value
    return merged


def _complete_profiles(raw: dict) -> None:
    """Make every ``[profiles.NAME]`` table whole, in place: the keys it gives over those of its ``base``, else
    of the built-in profile of that name, else of an empty profile. A table that is not one is left for the
    validation to name."""
    given = raw.get("profiles")
    if not isinstance(given, dict):
        return
    done: dict[str, dict] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> dict:
        if name in done:
            return done[name]
        if name in chain:
            raise ValueError(f"setting 'profiles.{name}.base': the profiles {' -> '.join((*chain, name))} "
                             "are each other's base")
        table = given.get(name)
        builtin = BUILTIN_PROFILES[name].model_dump() if name in BUILTIN_PROFILES else None
        if not isinstance(table, dict):
            return builtin if table is None and builtin is not None else table
        base = table.get("base")
        if isinstance(base, str) and base and (base in given or base in BUILTIN_PROFILES):
            start = {**resolve(base, (*chain, name)), "base": ""}
        else:
            start = builtin if builtin is not None else Profile().model_dump()
        done[name] = _merged(start, table)
        return done[name]

    raw["profiles"] = {**{name: p.model_dump() for name, p in BUILTIN_PROFILES.items()},
                       **{name: resolve(name, ()) for name in given}}


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
