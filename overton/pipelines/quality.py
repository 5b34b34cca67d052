"""Quality filter: Gopher and FineWeb(-2) heuristics for French, judged by each document's profile.

Signals are measured once per document and kept as columns (``quality_*``); :meth:`QualityFilter.decide`
judges from those columns and the thresholds of the document's ``profile`` only, so thresholds are
re-tuned without measuring again.

One set of thresholds cannot serve every kind of text, so each profile (``[profiles.NAME.quality]``)
has its own: speeches and debates are edited, human-written text whose nature is short, repetitive
turns ("La séance est ouverte.", "La parole est à M. ..."), so the web repetition rules would throw away
good text and they get only length and garbage rules; encyclopedia articles lose the rules that read
headings, lists and tables as junk; web pages get the FineWeb-2 French values (``configs/fra_Latn.yml``
of huggingface/fineweb-2) for the rules FineWeb-2 tuned per language, and the Gopher / FineWeb defaults
it kept for the others.

The definitions follow datatrove's ``GopherQualityFilter``, ``GopherRepetitionFilter`` and
``FineWebQualityFilter`` because the thresholds were fitted on exactly those quantities:

* "tokens" are spaCy-like word tokens where punctuation is its own token and elisions are split
  (``l'État`` -> ``l'`` ``État``); "words" are tokens with a letter or digit. The share of tokens with
  a letter, the ``#`` and ellipsis ratios and the newline ratio divide by *all* tokens, as datatrove
  does (0.812 was fitted with punctuation tokens in the denominator).
* n-gram duplication: ``dup_<n>gram`` is Gopher's ``find_all_duplicate`` (walk the n-grams, on a repeat
  count its characters and jump n tokens), over ``len(text)``; ``top_<n>gram`` is the most frequent
  n-gram's characters (tokens joined by single spaces) times its count, over ``len(text)``.
* lines: FineWeb ran on trafilatura output where paragraphs are single ``\\n``; our documents separate
  paragraphs with ``\\n\\n``, so every line rule counts *non-empty* lines (otherwise blank lines would
  halve the line-punctuation ratio and double the newline ratio).

Speed (the build aims at 5 MB/s per core): tokens are cut on the texts' UTF-8 bytes with numpy (the
same tokens as three RE2 passes, three times as fast); token features and line features run vectorised
over the whole batch (RE2 through ``pyarrow.compute``; per-token features are computed once per
distinct token); n-grams are 64-bit rolling hashes grouped by numpy sorts of a few rows at a time
(small enough to stay in the CPU's cache), and each length only looks at the positions whose shorter
n-gram repeated. Only Gopher's sequential "jump n
tokens after a repeat" walk stays in Python, and only over n-grams seen earlier in their document.
numpy comes with pyarrow's ecosystem and datasketch (a dependency already).
"""

from __future__ import annotations

import bisect
import string
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from overton.corpus.config import BUILTIN_PROFILES, FRENCH_STOP_WORDS, QualityRules
from overton.pipelines.step import Filter, Rejection, profile_names, set_column

DUP_NGRAMS = (5, 6, 7, 8, 9, 10)
TOP_NGRAMS = (2, 3, 4)

#: Elided forms and the words they stand for: an elided token is a stop word when one of them is.
ELISIONS = {
    "l'": ("le", "la"), "d'": ("de",), "qu'": ("que",), "j'": ("je",), "n'": ("ne",), "s'": ("se", "si"),
    "c'": ("ce",), "m'": ("me",), "t'": ("te",), "jusqu'": ("jusque",), "lorsqu'": ("lorsque",),
    "puisqu'": ("puisque",), "quoiqu'": ("quoique",), "presqu'": ("presque",),
}

# --- RE2 patterns (pyarrow.compute) ---------------------------------------------------------------
# The two no-break spaces become plain spaces first, so every class below is ASCII whitespace: RE2 runs
# several times faster on ASCII classes than on Unicode ones.
_W = r" \t\r\n"
# Punctuation becomes its own token where it starts or ends a word ("(voir", "État,", "est ?"), but
# stays inside numbers and words ("49.3", "12.03.2020", "aujourd'hui", "peut-être").
_SPLIT_LEADING = (rf"(^|[{_W}])([^{_W}\pL\pN]+)", r"\1\2 ")
_SPLIT_TRAILING = (rf"([^{_W}\pL\pN]+)([{_W}]|$)", r" \1\2")
# Elision: "l'État" -> "l' État", "Qu’il" -> "Qu’ il"; not "aujourd'hui" nor "prud'hommes" (no word
# boundary before the "d"). RE2's \b is ASCII: a letter such as "é" right before would also count as a
# boundary, which French spelling never produces in front of an elided word.
_SPLIT_ELISION = (rf"\b((?i:[cdjlmnst]|qu|jusqu|lorsqu|puisqu|quoiqu|presqu)['’])([^{_W}])", r"\1 \2")
_BULLETS = ["•", "‣", "◦", "▪", "●", "-", "–", "—"]  # Gopher's "•" and "-", and their typographic cousins
_ELLIPSIS_LINE = r"(?:\.\.\.|…)$"
# FineWeb's stop characters (. ' " ! ?) plus their French counterparts: closing quotes and the ellipsis.
_TERMINAL = [".", "!", "?", "'", '"', "…", "»", "”", "’"]
# Lines that are site furniture rather than text. Phrases, not single words: a Wikipedia article about
# HTTP cookies or JavaScript, or a debate on cookie consent, must not look like a cookie banner.
_BOILERPLATE_LINE = "(?i)" + "|".join(
    [
        # navigation: a line made only of short items separated by "|", or a breadcrumb
        r"^[^|]{1,40}(?:\|[^|]{0,40})+$",
        r"^(?:accueil|home)\s*[>»›/|]",
        # cookie banners and script warnings
        r"(?:accept|utilis|autoris|param[eéè]tr|g[eé]rer|refus|d[eé]p[oô]s|consent|we use|allow|manage)"
        r".{0,60}cookie",
        r"cookie.{0,60}(?:accept|consent|param[eéè]tr|polic|settings|pr[eé]f[eé]rences|navigation)",
        r"(?:activ|enabl|d[eé]sactiv|disabl|requi|n[eé]cessit|support).{0,40}javascript",
        r"javascript.{0,40}(?:activ|enabl|d[eé]sactiv|disabl|requi|n[eé]cessaire|navigateur|browser)",
        # legal footer, account and sharing widgets
        r"tous droits r[eé]serv[eé]s|all rights reserved|©\s*\d{4}|copyright\s*(?:©\s*)?\d{4}",
        r"mentions l[eé]gales|politique de confidentialit[eé]|conditions g[eé]n[eé]rales d['’]utilisation"
        r"|plan du site|contactez-nous|nous contacter",
        r"mot de passe oubli[eé]|se connecter|cr[eé]er un compte|s['’]identifier|mon compte|d[eé]connexion",
        r"newsletter|abonnez-vous|inscrivez-vous|suivez-nous|partager sur (?:facebook|twitter|linkedin|x\b)"
        r"|partager cet article",
        r"^(?:lire la suite|en savoir plus|voir aussi|lire aussi|haut de page|retour en haut|publicit[eé])\b",
    ]
)
# Literal parts every boilerplate line holds: the bounded repetitions above make RE2 fall back to its
# slow engine, so only the few lines that pass this fast pattern are tried against them.
_BOILERPLATE_HINT = (
    r"(?i)\||^(?:accueil|home|lire la suite|en savoir plus|voir aussi|lire aussi|haut de page|retour en haut"
    r"|publicit)|cookie|javascript|droits r|rights reserved|©|copyright|mentions l|confidentialit"
    r"|conditions g|plan du site|contactez-nous|nous contacter|mot de passe|se connecter|un compte"
    r"|identifier|mon compte|connexion|newsletter|abonnez-vous|inscrivez-vous|suivez-nous|partager "
)
_LOREM = r"(?i)lorem ipsum"


# (reason, signal column, comparison, threshold attribute), checked in this order; the first failing
# rule names the rejection. Cheap, obvious rules come first so the reason is the most telling one.
_RULES: tuple[tuple[str, str, str, str], ...] = (
    ("min_words", "quality_words", "lt", "min_words"),
    ("max_words", "quality_words", "gt", "max_words"),
    ("min_mean_word_len", "quality_mean_word_len", "lt", "min_mean_word_len"),
    ("max_mean_word_len", "quality_mean_word_len", "gt", "max_mean_word_len"),
    ("alpha_ratio", "quality_alpha_ratio", "lt", "min_alpha_ratio"),
    ("hash_ratio", "quality_hash_ratio", "gt", "max_symbol_ratio"),
    ("ellipsis_ratio", "quality_ellipsis_ratio", "gt", "max_symbol_ratio"),
    ("stop_words", "quality_stop_words", "lt", "min_stop_words"),
    ("lorem_ipsum", "quality_lorem_ipsum", "gt", "max_lorem_ipsum"),
    ("boilerplate", "quality_boilerplate_lines", "gt", "max_boilerplate_lines"),
    ("bullet_lines", "quality_bullet_lines", "gt", "max_bullet_lines"),
    ("ellipsis_lines", "quality_ellipsis_lines", "gt", "max_ellipsis_lines"),
    ("dup_line_frac", "quality_dup_line_frac", "gt", "max_dup_line_frac"),
    ("dup_line_char_frac", "quality_dup_line_char_frac", "ge", "max_dup_line_char_frac"),
    *((f"top_{n}gram", f"quality_top_{n}gram", "gt", f"max_top_{n}gram") for n in TOP_NGRAMS),
    *((f"dup_{n}gram", f"quality_dup_{n}gram", "gt", f"max_dup_{n}gram") for n in DUP_NGRAMS),
    ("line_punct", "quality_line_punct_ratio", "le", "min_line_punct_ratio"),
    ("newline_ratio", "quality_newline_ratio", "gt", "max_newline_ratio"),
)
#: Gopher's page-structure rules: one line in three is too large a share to judge a short answer by
#: (a three-paragraph reply whose last sentence trails off "…" is not a list of teasers).
_LINE_SHARE_RULES = frozenset({"bullet_lines", "ellipsis_lines"})
_COMPARE = {"lt": np.less, "gt": np.greater, "le": np.less_equal, "ge": np.greater_equal}

_I32, _F32 = pa.int32(), pa.float32()
COLUMNS = (
    pa.field("quality_words", _I32),  # tokens with a letter or digit
    pa.field("quality_chars", _I32),  # characters of the text
    pa.field("quality_mean_word_len", _F32),
    pa.field("quality_alpha_ratio", _F32),  # tokens with a letter / tokens
    pa.field("quality_hash_ratio", _F32),  # "#" / tokens
    pa.field("quality_ellipsis_ratio", _F32),  # ("..." + "…") / tokens
    pa.field("quality_stop_words", _I32),
    pa.field("quality_lorem_ipsum", _I32),
    pa.field("quality_lines", _I32),  # non-empty lines
    pa.field("quality_boilerplate_lines", _F32),  # share of non-empty lines
    pa.field("quality_bullet_lines", _F32),
    pa.field("quality_ellipsis_lines", _F32),
    pa.field("quality_dup_line_frac", _F32),  # repeated lines / lines
    pa.field("quality_dup_line_char_frac", _F32),  # characters of repeated lines / characters but "\n"
    *(pa.field(f"quality_top_{n}gram", _F32) for n in TOP_NGRAMS),
    *(pa.field(f"quality_dup_{n}gram", _F32) for n in DUP_NGRAMS),
    pa.field("quality_line_punct_ratio", _F32),  # lines ending in terminal punctuation / lines
    pa.field("quality_newline_ratio", _F32),  # line breaks between non-empty lines / tokens
)


# --- tokens ---------------------------------------------------------------------------------------
def _tokenize_regex(texts: pa.Array) -> pa.Array:
    """The definition of the tokens: the three RE2 passes above, then a split on ASCII white space. :func:`tokenize`
    computes the same tokens faster, and hands over the batches its byte rules do not cover."""
    texts = pc.replace_substring(pc.replace_substring(texts, "\u00a0", " "), "\u202f", " ")
    for pattern, replacement in (_SPLIT_LEADING, _SPLIT_TRAILING, _SPLIT_ELISION):
        texts = pc.replace_substring_regex(texts, pattern=pattern, replacement=replacement)
    return pc.ascii_split_whitespace(pc.ascii_trim_whitespace(texts))


# What each byte is to the tokens (bytes.translate: one table look-up a byte). Bytes of an odd class belong to
# tokens; those of a class from _BREAK up are looked at one by one.
_SPACE, _LETTER, _BREAK, _PUNCT, _CHECK, _LEAD = 0, 1, 2, 3, 5, 7
_BYTE_CLASSES = bytearray([_PUNCT]) * 256  # ASCII punctuation, symbols and control characters
_BYTE_CLASSES[0x80:0xC0] = bytes([_LETTER]) * 0x40  # continuation bytes: their lead byte tells
_BYTE_CLASSES[0xC0:] = bytes([_LEAD]) * 0x40  # lead bytes: the character is decoded
for _byte in (string.ascii_letters + string.digits).encode():
    _BYTE_CLASSES[_byte] = _LETTER
for _byte in b" \t\n\r":
    _BYTE_CLASSES[_byte] = _SPACE  # the definition's white space (_W)
_BYTE_CLASSES[0x0B] = _BYTE_CLASSES[0x0C] = _BREAK  # \v \f: punctuation to the RE2 passes, white space to the split
# C3 and C5 lead the letters French writes (é, à, ç, œ...). All their characters are letters to RE2 but × (C3 97)
# and ÷ (C3 B7); ſ (C5 BF) is one its (?i) folds to "s". The bytes 97, B7 and BF are checked for these three.
_BYTE_CLASSES[0xC3] = _BYTE_CLASSES[0xC5] = _LETTER
_BYTE_CLASSES[0x97] = _BYTE_CLASSES[0xB7] = _BYTE_CLASSES[0xBF] = _CHECK
_BYTE_CLASSES = bytes(_BYTE_CLASSES)
_SIGNS, _LONG_S = (0xC397, 0xC3B7), 0xC5BF  # ×, ÷ and ſ, lead byte first
_UTF8_WIDTH = np.array([1] * 0xC0 + [2] * 0x20 + [3] * 0x10 + [4] * 0x10, np.int64)  # by lead byte
_WORD_BYTE = np.zeros(256, bool)  # RE2's \w, which its \b reads
_WORD_BYTE[list((string.ascii_letters + string.digits + "_").encode())] = True
_ONE_LETTER = np.zeros(256, np.int64)  # elided one-letter words (lower case)
_ONE_LETTER[list(b"cdjlmnst")] = 1


def _before_apostrophe(prefix: bytes) -> tuple[int, int, int]:
    """(length, value, mask) matching ``prefix`` as the last bytes of the 8 bytes before an apostrophe, read as one
    little-endian int64 and lower-cased by setting bit 5 of every byte."""
    shift = 8 * (8 - len(prefix))
    value = int.from_bytes(prefix, "little") << shift
    return len(prefix), value - (1 << 64) if value >= 1 << 63 else value, -1 << shift


_ELIDED = [_before_apostrophe(w) for w in (b"qu", b"jusqu", b"lorsqu", b"puisqu", b"quoiqu", b"presqu")]
_PAD = 8  # bytes around a chunk, so that every byte has 8 readable bytes before and after it
_CHUNK = 1 << 19  # bytes of text handled at once: a chunk's arrays stay in the CPU's cache


_CHARACTER_KINDS: dict[int, int] = {}  # memo of _character_kinds: a character's class does not change


def _character_kinds(utf8: np.ndarray, seen: list[np.ndarray]) -> np.ndarray:
    """0 punctuation, 1 letter or digit, 2 no-break space: each character by its UTF-8 bytes (the first one
    lowest), in the definition's classes. ``seen`` holds the sorted characters met so far and their kinds: a
    chunk only sorts the characters it adds, and RE2 only sees characters new to the process."""
    known, kinds = seen
    at = np.searchsorted(known, utf8)
    if len(known) and np.array_equal(known[np.minimum(at, len(known) - 1)], utf8):
        return kinds[at]
    known = np.union1d(known, utf8)
    new = [key for key in known.tolist() if key not in _CHARACTER_KINDS]
    if new:
        characters = [key.to_bytes(4, "little").rstrip(b"\0").decode() for key in new]
        letters = pc.match_substring_regex(pa.array(characters, pa.string()), r"[\pL\pN]").to_pylist()
        _CHARACTER_KINDS.update((key, 2 if character in "\u00a0\u202f" else int(letter))
                                for key, character, letter in zip(new, characters, letters, strict=True))
    seen[:] = known, np.array([_CHARACTER_KINDS[key] for key in known.tolist()], np.uint8)
    return seen[1][np.searchsorted(known, utf8)]


def tokenize(texts: pa.Array) -> pa.Array:
    """spaCy-like French word tokens of every text (a list array): punctuation apart, elisions split.

    The tokens are those of :func:`_tokenize_regex`, cut on the texts' UTF-8 bytes with numpy, three times as
    fast. Its passes come to this. White space (space, tab, CR, LF and the no-break spaces) cuts a text into
    pieces; in a piece with a letter or digit, the run of punctuation it starts with and the one it ends with are
    tokens of their own; a token ends after an elision's apostrophe (:func:`_elisions`). Then the split also cuts
    at VT and FF, which the passes took for punctuation, and drops all white space.

    Rows are tokenised by chunks of about :data:`_CHUNK` bytes. A batch with a null or a ſ takes the definition.
    """
    if texts.null_count:
        return _tokenize_regex(texts)
    offset_type = np.dtype(np.int64 if pa.types.is_large_string(texts.type) else np.int32)
    offsets = np.frombuffer(texts.buffers()[1], offset_type, len(texts) + 1, texts.offset * offset_type.itemsize)
    offsets = offsets.astype(np.int64)
    data = texts.buffers()[2]
    rows = np.searchsorted(offsets, np.arange(offsets[0], offsets[-1], _CHUNK)[1:])
    rows = np.unique(np.concatenate([[0], rows, [len(texts)]]))
    # The result's buffers come from Arrow's memory pool, which keeps freed pages: fresh pages from the system
    # cost more than filling them. The tokens' bytes are the texts' bytes but white space.
    compact = pa.allocate_buffer(int(offsets[-1] - offsets[0]))
    ends, counts, size = [np.zeros(1, np.int64)], [], 0
    seen = [np.zeros(0, np.int64), np.zeros(0, np.uint8)]  # the batch's non-ASCII characters (_character_kinds)
    for first, last in zip(rows[:-1].tolist(), rows[1:].tolist(), strict=True):
        found = _chunk_tokens(data, offsets[first:last + 1], np.frombuffer(compact, np.uint8), size, seen)
        if found is None:
            return _tokenize_regex(texts)
        chunk_ends, chunk_counts, size = found
        ends.append(chunk_ends)
        counts.append(chunk_counts)
    tokens = sum(map(len, ends)) - 1
    value_offsets = pa.allocate_buffer((tokens + 1) * offset_type.itemsize)
    np.concatenate(ends, out=np.frombuffer(value_offsets, offset_type), casting="same_kind")
    list_offsets = pa.allocate_buffer((len(texts) + 1) * 4)
    np.cumsum(np.concatenate([[0], *counts]), out=np.frombuffer(list_offsets, np.int32))
    values = pa.Array.from_buffers(texts.type, tokens, [None, value_offsets, compact.slice(0, size)])
    return pa.Array.from_buffers(pa.list_(texts.type), len(texts), [None, list_offsets], children=[values])


def _chunk_tokens(data: pa.Buffer, offsets: np.ndarray, compact: np.ndarray, size: int,
                  seen: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int] | None:
    """The tokens of the texts between ``offsets`` (their bytes copied to ``compact`` from ``size`` on): where each
    ends in ``compact``, how many each text has, and the new size; None where the definition must decide."""
    length = int(offsets[-1] - offsets[0])
    padded = bytearray(length + 2 * _PAD)  # the chunk's bytes between _PAD zero bytes on each side
    if length:
        padded[_PAD:_PAD + length] = data[offsets[0]:offsets[-1]]
    offsets = offsets - offsets[0]
    raw = np.frombuffer(padded, np.uint8)[_PAD:_PAD + length]
    words = np.ndarray((length + _PAD,), "<i8", padded, strides=(1,))  # words[i + 8]: bytes i to i + 7, as one int
    classes = np.frombuffer(padded.translate(_BYTE_CLASSES), np.uint8)[_PAD:_PAD + length]
    kept = np.zeros(length + 2, np.uint8)
    np.bitwise_and(classes, 1, out=kept[1:-1])
    kept = kept.view(bool)  # kept[i + 1]: byte i belongs to a token
    marked = np.flatnonzero(classes >= _BREAK)
    punctuation = _punctuation(words, marked, classes[marked], kept, seen)
    if punctuation is None:
        return None
    # a token's last byte: before white space, at a text's end, or before a cut
    last_byte = kept[1:-1] > kept[2:]
    text_ends = offsets[1:-1][offsets[1:-1] > 0]
    last_byte[text_ends - 1] |= kept[text_ends]
    last_byte[_cuts(*punctuation, words, offsets, kept) - 1] = True
    # where tokens end among their bytes (mode "wrap": faster than the default's checked indexes)
    positions = np.flatnonzero(kept[1:-1])
    token_ends = np.flatnonzero(np.take(last_byte, positions, mode="wrap"))
    token_ends += size + 1
    text_starts = np.searchsorted(positions, offsets)
    text_starts += size
    counts = np.diff(np.searchsorted(token_ends, text_starts, "right"))
    empty = np.flatnonzero(counts == 0)
    if len(empty):  # a text without tokens has one empty token
        token_ends = np.insert(token_ends, np.cumsum(counts)[empty] - counts[empty], text_starts[empty])
        counts[empty] = 1
    np.take(raw, positions, out=compact[size:size + len(positions)], mode="wrap")
    return token_ends, counts, size + len(positions)


def _punctuation(words: np.ndarray, marked: np.ndarray, kinds: np.ndarray, kept: np.ndarray,
                 seen: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray] | None:
    """Where the punctuation characters start and end among the ``marked`` bytes (of class ``kinds``), clearing
    ``kept`` on no-break spaces; None on ſ. Each distinct non-ASCII character is classed once."""
    starts, ends = marked, marked + 1
    leads = np.flatnonzero(kinds == _LEAD)
    checks = np.flatnonzero(kinds == _CHECK)
    if not len(leads) and not len(checks):
        return starts, ends
    utf8 = words[marked[leads] + _PAD] & 0xFFFF_FFFF
    width = _UTF8_WIDTH[utf8 & 0xFF]
    utf8 &= np.left_shift(1, 8 * width) - 1
    kind = _character_kinds(utf8, seen)
    spaces = np.flatnonzero(kind == 2)
    if len(spaces):  # no token holds a byte of them
        for k in range(3):
            kept[marked[leads[spaces[width[spaces] > k]]] + k + 1] = False
    ends[leads] += width - 1
    other = leads[kind != 0]
    if len(checks):
        pairs = words[marked[checks] + _PAD - 1] & 0xFFFF
        pairs = (pairs & 0xFF) << 8 | pairs >> 8
        if (pairs == _LONG_S).any():
            return None
        signs = (pairs == _SIGNS[0]) | (pairs == _SIGNS[1])
        starts = marked.copy()
        starts[checks[signs]] -= 1
        other = np.concatenate([other, checks[~signs]])
    if len(other):
        keep = np.ones(len(marked), bool)
        keep[other] = False
        starts, ends = starts[keep], ends[keep]
    return starts, ends


def _cuts(starts: np.ndarray, ends: np.ndarray, words: np.ndarray, offsets: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Where tokens end without white space before: after a run of punctuation that starts a piece and before one
    that ends it, with a letter or digit on the other side (a text's edge counts as white space), and after an
    elision's apostrophe, which starts a run with letters or digits on both sides."""
    new_run = np.empty(len(starts) + 1, bool)
    new_run[0] = new_run[-1] = True
    np.not_equal(starts[1:], ends[:-1], out=new_run[1:-1])
    at_text_start = _indexes_of(starts, offsets)
    new_run[at_text_start] = True
    first, last = np.flatnonzero(new_run[:-1]), np.flatnonzero(new_run[1:])
    run_starts, run_ends = starts[first], ends[last]
    # bit 0: a letter or digit right before the run, bit 1: right after it
    sides = kept[run_starts].view(np.uint8) + (kept[run_ends + 1].view(np.uint8) << 1)
    sides[np.searchsorted(first, at_text_start)] &= 2
    sides[np.searchsorted(last, _indexes_of(ends, offsets))] &= 1
    # np.compress: several times faster than a boolean index where the mask has no long runs
    after_leading = np.compress(sides == 2, run_ends)
    elided = _elisions(words, np.compress(sides == 3, run_starts), offsets, after_leading)
    return np.concatenate([after_leading, np.compress(sides == 1, run_starts), elided])


def _indexes_of(positions: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The indexes of the (sorted) ``positions`` that are text starts."""
    at = np.searchsorted(positions, offsets)
    found = at < len(positions)
    at = at[found]
    return at[positions[at] == offsets[found]]


def _elisions(words: np.ndarray, inner: np.ndarray, offsets: np.ndarray, after_leading: np.ndarray) -> np.ndarray:
    """Where tokens end after an elision, among the starts of the runs of punctuation with letters or digits on
    both sides (``inner``; ``after_leading``: the tokens cut after a leading run).

    The definition's elision: ' or ’ right after c, d, j, l, m, n, s, t, qu, jusqu, lorsqu, puisqu, quoiqu or presqu
    (any case) at an ASCII word boundary (RE2's \\b), within one text. Its match also takes the character after the
    apostrophe, so an elision whose prefix starts there is not matched: in "l'l'x", only the first one.
    """
    head = words[inner + _PAD] & 0xFF_FFFF
    quote = (head & 0xFF) == 0x27
    apostrophe = quote | (head == 0x9980E2)  # ’: E2 80 99
    at = np.compress(apostrophe, inner)
    after = at + 3
    after -= np.compress(apostrophe, quote) * 2
    before = words[at]  # the 8 bytes before the apostrophe, the last one highest
    lower = before | 0x2020_2020_2020_2020
    last_letter = (lower >> 56) & 0xFF
    length = _ONE_LETTER[last_letter]
    text_start = offsets[np.searchsorted(offsets, at, "right") - 1]
    u = np.flatnonzero(last_letter == ord("u"))
    if len(u):  # the longest prefix in the text (the bytes before it are letters: no word boundary for a shorter one)
        lower_u, length_u, room = lower[u], length[u], at[u] - text_start[u]
        for n, value, mask in _ELIDED:
            length_u[((lower_u & mask) == value) & (room >= n)] = n
        length[u] = length_u
    prefix = at - length
    previous = (before >> (8 * (7 - length))) & 0xFF  # the byte before the prefix
    boundary = ~_WORD_BYTE[previous] | (prefix == text_start)
    underscore = np.flatnonzero(~boundary & (previous == ord("_")))
    if len(underscore):  # "_l'x": the leading pass put a space between "_" and "l"
        boundary[underscore] = np.isin(prefix[underscore], after_leading)
    found = (length > 0) & boundary
    after, prefix = np.compress(found, after), np.compress(found, prefix)
    chained = np.flatnonzero(prefix[1:] == after[:-1]) + 1
    if len(chained):  # the previous match took this prefix's first letter: every other one of a chain matches
        index = np.arange(len(after))
        link = np.zeros(len(after), bool)
        link[chained] = True
        chain_start = np.maximum.accumulate(np.where(link, 0, index))
        after = after[(index - chain_start) % 2 == 0]
    return after


# --- measuring -------------------------------------------------------------------------------------
def _rows(lists: pa.Array) -> np.ndarray:
    """The row of every item of a list array."""
    return np.repeat(np.arange(len(lists)), pc.list_value_length(lists).to_numpy(zero_copy_only=False))


def _per_row(rows: np.ndarray, n: int, weights: Any = None) -> np.ndarray:
    return np.bincount(rows, weights=weights, minlength=n)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros(len(num), np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _mask(array: pa.Array, pattern: str) -> np.ndarray:
    return pc.match_substring_regex(array, pattern).to_numpy(zero_copy_only=False)


def _is_in(array: pa.Array, values: list[str]) -> np.ndarray:
    return pc.is_in(array, value_set=pa.array(values, pa.string())).to_numpy(zero_copy_only=False)


def _boilerplate(lines: pa.Array) -> np.ndarray:
    mask = _mask(lines, _BOILERPLATE_HINT)
    hinted = np.nonzero(mask)[0]
    if len(hinted):
        mask[hinted] = _mask(lines.take(pa.array(hinted)), _BOILERPLATE_LINE)
    return mask


def _repeats(keys: np.ndarray) -> np.ndarray:
    """Whether each key equals an earlier one."""
    order = np.argsort(keys, kind="stable")
    repeat = np.zeros(len(keys), bool)
    repeat[order[1:]] = keys[order[1:]] == keys[order[:-1]]
    return repeat


def _line_signals(texts: pa.Array, n: int, chars: np.ndarray) -> dict[str, np.ndarray]:
    lists = pc.split_pattern(texts, "\n")
    lines, rows = pc.utf8_trim_whitespace(lists.flatten()), _rows(lists)
    lengths = pc.utf8_length(lines).to_numpy()
    real = lengths > 0  # blank lines are paragraph breaks: they count nowhere
    count = _per_row(rows, n, real)
    # A line repeats when the same line came earlier in the same document.
    line_ids = lines.dictionary_encode().indices.to_numpy().astype(np.int64)
    repeated = _repeats(rows * (int(line_ids.max(initial=0)) + 1) + line_ids) & real
    breaks = pc.list_value_length(lists).to_numpy() - 1
    first = pc.utf8_slice_codeunits(lines, 0, 1)
    last = pc.utf8_slice_codeunits(lines, -1)
    return {
        "boilerplate_lines": _ratio(_per_row(rows, n, _boilerplate(lines)), count),
        "bullet_lines": _ratio(_per_row(rows, n, _is_in(first, _BULLETS)), count),
        "ellipsis_lines": _ratio(_per_row(rows, n, _mask(lines, _ELLIPSIS_LINE)), count),
        "line_punct_ratio": _ratio(_per_row(rows, n, _is_in(last, _TERMINAL)), count),
        "dup_line_frac": _ratio(_per_row(rows, n, repeated), count),
        "dup_line_char_frac": _ratio(_per_row(rows, n, repeated * lengths), chars - breaks),
        "line_breaks": np.maximum(count - 1, 0),
        "lines": count,
    }


_M1, _M2, _STEP = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads the bits so rolling n-gram hashes do not collide by structure.

    Works in place (its callers pass a fresh array): two thirds of the temporary arrays of size n are saved.
    """
    x ^= x >> np.uint64(30)
    x *= _M1
    x ^= x >> np.uint64(27)
    x *= _M2
    x ^= x >> np.uint64(31)
    return x


class _Tokens:
    """The tokens of a batch as integers: vocabulary id, row, character length, and prefix sums."""

    def __init__(self, ids: np.ndarray, rows: np.ndarray, lengths: np.ndarray, n_rows: int):
        self.ids, self.rows, self.n_rows = ids, rows, n_rows
        self.cum = np.concatenate([[0], np.cumsum(lengths)])

    def chars(self, starts: np.ndarray, n: int) -> np.ndarray:
        """Characters of the n tokens from each start, without separators (Gopher's ``"".join``)."""
        return self.cum[starts + n] - self.cum[starts]


def _ngram_signals(tokens: _Tokens) -> dict[str, np.ndarray]:
    """Characters in the top n-gram (n = 2, 3, 4) and in repeated n-grams (n = 5..10) of every row.

    An n-gram can only repeat where its first n-1 tokens repeat, so each length only looks at the
    positions whose shorter n-gram repeated: the work shrinks fast with n. Grouping is a stable sort
    of 64-bit keys (row, tokens), so within a group positions stay in text order.
    """
    rows, size, n_rows = tokens.rows, len(tokens.ids), tokens.n_rows
    longest = max(DUP_NGRAMS)
    # Padded so that position + n - 1 never runs off the end: the padding's row matches no row.
    padded_rows = np.concatenate([rows, np.full(longest, -1, rows.dtype)])
    ids = np.concatenate([tokens.ids, np.zeros(longest, tokens.ids.dtype)]).astype(np.uint64)
    out = {f"top_{n}gram": np.zeros(n_rows) for n in TOP_NGRAMS}
    out.update({f"dup_{n}gram": np.zeros(n_rows) for n in DUP_NGRAMS})
    for n in TOP_NGRAMS:
        out[f"top_{n}gram"] = _first_ngram_chars(tokens, n)  # where no n-gram repeats, the first one wins
    positions = np.arange(size)
    keys = _mix(rows.astype(np.uint64) * _STEP + ids[:size])  # the row is in the key: no n-gram spans rows
    for n in range(2, longest + 1):
        valid = padded_rows[positions + (n - 1)] == rows[positions]
        positions, keys = positions[valid], keys[valid]
        if not len(positions):
            break
        keys = _mix(keys * _STEP + ids[positions + (n - 1)])
        order, same_as_previous = _group(keys, rows[positions])
        starts = np.flatnonzero(~same_as_previous)
        heads = positions[order[starts]]  # first position of every group, groups in key order
        if n in TOP_NGRAMS:
            counts = np.diff(np.append(starts, len(keys)))
            _top_ngram_chars(tokens, n, heads, counts, out[f"top_{n}gram"])
        if n in DUP_NGRAMS:
            # back to text order: the group of every position, and whether an earlier one shares it
            group_of = np.empty(len(keys), np.int64)
            group_of[order] = np.cumsum(~same_as_previous) - 1
            later = np.empty(len(keys), bool)
            later[order] = same_as_previous
            groups = group_of[later]
            out[f"dup_{n}gram"] = _all_duplicate_chars(tokens, n, positions[later], heads[groups], groups)
        repeated_sorted = same_as_previous.copy()
        repeated_sorted[:-1] |= same_as_previous[1:]
        repeated = np.empty(len(keys), bool)
        repeated[order] = repeated_sorted
        positions, keys = positions[repeated], keys[repeated]
    return out


_SEGMENT = 4096  # keys sorted at once: a few rows whose keys stay in the CPU's cache while they are sorted


def _group(keys: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort order of ``keys`` and, in that order, whether each key equals the one before, row by row.

    The keys of different rows never group together (the row is in every key), so the rows (``rows``, in
    order) are cut into segments of about :data:`_SEGMENT` keys, each sorted on its own: three times as fast
    as one sort of a whole batch's keys, which misses the cache at every step. Within a segment the sort is
    stable: the key's high bits and the index packed into one integer, sorted in place, then checked on
    the full keys; the rare high-bit collision between different keys falls back to a stable argsort, so the
    result is always exact.
    """
    bounds = _segments(rows)
    bits = np.uint64(max(len(keys).bit_length(), 1))
    packed = (keys >> bits) << bits | np.arange(len(keys), dtype=np.uint64)
    for start, stop in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        packed[start:stop].sort()
    order = (packed & ((np.uint64(1) << bits) - np.uint64(1))).view(np.int64)  # indexes: no copy needed
    sorted_keys = keys[order]
    same_as_previous = np.empty(len(keys), bool)
    np.equal(sorted_keys[1:], sorted_keys[:-1], out=same_as_previous[1:])
    same_high = np.empty(len(keys), bool)
    np.equal(packed[1:] >> bits, packed[:-1] >> bits, out=same_high[1:])
    same_as_previous[bounds[:-1]] = same_high[bounds[:-1]] = False  # a group never spans two segments
    if np.array_equal(same_high, same_as_previous):
        return order, same_as_previous
    segment = np.repeat(np.arange(len(bounds) - 1), np.diff(bounds))
    order = np.lexsort((keys, segment))
    sorted_keys = keys[order]
    np.equal(sorted_keys[1:], sorted_keys[:-1], out=same_as_previous[1:])
    same_as_previous[bounds[:-1]] = False
    return order, same_as_previous


def _segments(rows: np.ndarray) -> np.ndarray:
    """Bounds of consecutive segments of whole rows of about :data:`_SEGMENT` items (``rows`` non-decreasing)."""
    row_starts = np.flatnonzero(rows[1:] != rows[:-1]) + 1
    at = np.searchsorted(row_starts, np.arange(_SEGMENT, len(rows), _SEGMENT))
    return np.unique(np.concatenate([[0], row_starts[at[at < len(row_starts)]], [len(rows)]]))


def _first_ngram_chars(tokens: _Tokens, n: int) -> np.ndarray:
    """Characters of each row's first n-gram (single spaces between tokens); 0 for rows under n tokens."""
    out = np.zeros(tokens.n_rows)
    counts = _per_row(tokens.rows, tokens.n_rows)
    firsts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    long_enough = counts >= n
    out[long_enough] = tokens.chars(firsts[long_enough], n) + (n - 1)
    return out


_PACK_BITS = 63  # what a non-negative int64 holds


def _top_ngram_chars(tokens: _Tokens, n: int, heads: np.ndarray, counts: np.ndarray, out: np.ndarray) -> None:
    """Per row: the most frequent n-gram's characters times its count (first seen wins a tie), into ``out``.

    Like ``Counter.most_common(1)``: rows where no n-gram repeats keep their first n-gram (count 1).
    """
    repeated = counts >= 2
    heads, counts = heads[repeated], counts[repeated]
    if not len(heads):
        return
    group_rows = tokens.rows[heads]
    # Order by row, then most frequent, then first seen; one packed integer sort when it fits in 63 bits.
    head_bits, count_bits = int(heads.max()).bit_length(), int(counts.max()).bit_length()
    if head_bits + count_bits + int(group_rows.max()).bit_length() <= _PACK_BITS:
        packed = (group_rows << (count_bits + head_bits)) | (((1 << count_bits) - 1 - counts) << head_bits) | heads
        packed.sort()
        best_heads = packed & ((1 << head_bits) - 1)
        best_counts = (1 << count_bits) - 1 - ((packed >> head_bits) & ((1 << count_bits) - 1))
        best_rows = packed >> (count_bits + head_bits)
    else:
        best = np.lexsort((heads, -counts, group_rows))
        best_heads, best_counts, best_rows = heads[best], counts[best], group_rows[best]
    first = np.concatenate([[True], best_rows[1:] != best_rows[:-1]])
    winners = best_heads[first]
    out[best_rows[first]] = (tokens.chars(winners, n) + (n - 1)) * best_counts[first]


def _all_duplicate_chars(
    tokens: _Tokens, n: int, candidates: np.ndarray, heads: np.ndarray, groups: np.ndarray
) -> np.ndarray:
    """Gopher's ``find_all_duplicate`` for every row at once: characters of repeated n-grams.

    Gopher walks the n-grams of a text: one already in its set counts its characters and the walk
    jumps n tokens (the n-grams jumped over are never added); any other is added. An n-gram seen
    nowhere earlier is always new, so only the ``candidates`` (later occurrences, in text order) need
    the walk. A candidate's n-gram is in the set unless its first occurrence (``heads``) was jumped
    over and no earlier candidate of its group was added instead. Positions are token indexes in the
    batch; a jump never leaves its row, so one walk serves the whole batch.
    """
    out = np.zeros(tokens.n_rows)
    if not len(candidates):
        return out
    # A head can only have been jumped over if a candidate lies less than n tokens before it.
    maybe_jumped = np.searchsorted(candidates, heads - n + 1) < np.searchsorted(candidates, heads)
    added: set[int] = set()
    repeats: list[int] = []  # the repeated n-grams counted, which are also where the walk jumped from
    count = repeats.append
    next_position = 0
    for position, group, head, maybe in zip(
        candidates.tolist(), groups.tolist(), heads.tolist(), maybe_jumped.tolist(), strict=True
    ):
        if position < next_position:
            continue
        if maybe and group not in added:
            k = bisect.bisect_left(repeats, head) - 1
            if k >= 0 and head < repeats[k] + n:  # jumped over: the n-gram was never added
                added.add(group)
                next_position = position + 1
                continue
        count(position)
        next_position = position + n
    if repeats:
        at = np.array(repeats)
        np.add.at(out, tokens.rows[at], tokens.chars(at, n))
    return out


def measure(texts: pa.Array, stop_words: Iterable[str] = FRENCH_STOP_WORDS) -> dict[str, np.ndarray]:
    """Every quality signal of every text, as arrays keyed by column name without ``quality_``.

    Token features are computed once per distinct token (the batch's vocabulary), then spread to the
    tokens by their dictionary ids.
    """
    n = len(texts)
    chars = pc.utf8_length(texts).to_numpy().astype(np.float64)
    lists = tokenize(texts)
    encoded = lists.flatten().dictionary_encode()
    ids, vocab, rows = encoded.indices.to_numpy(), encoded.dictionary, _rows(lists)
    empty = pc.index(vocab, "").as_py()
    if empty >= 0:  # leading or trailing white space
        ids, rows = ids[ids != empty], rows[ids != empty]
    # One small code per distinct token: bit 0 has a letter or digit (a word), bit 1 has a letter,
    # bit 2 is a stop word; one bincount over (row, code) then gives all three counts per row.
    is_stop = _is_in(pc.replace_substring(pc.utf8_lower(vocab), "’", "'"), _stop_lookup(stop_words))
    is_word = _mask(vocab, r"[\pL\pN]")
    code = (is_word | _mask(vocab, r"\pL") << 1 | is_stop << 2).astype(np.int64)
    by_code = np.bincount(rows * 8 + code[ids], minlength=8 * n).reshape(n, 8)
    vocab_lengths = pc.utf8_length(vocab).to_numpy()
    lengths = vocab_lengths[ids]

    n_tokens = by_code.sum(axis=1)
    words = by_code[:, 1::2].sum(axis=1)
    # Every character but white space lies in exactly one token, and a run of dots is never split, so
    # counting "#" and ellipses per distinct token gives the counts over the text.
    hashes = _per_row(rows, n, pc.count_substring(vocab, "#").to_numpy()[ids])
    vocab_ellipses = pc.count_substring(vocab, "...").to_numpy() + pc.count_substring(vocab, "…").to_numpy()
    ellipses = _per_row(rows, n, vocab_ellipses[ids])
    lines = _line_signals(texts, n, chars)
    signals = {
        "words": words,
        "chars": chars,
        "mean_word_len": _ratio(_per_row(rows, n, (vocab_lengths * is_word)[ids]), words),
        "alpha_ratio": _ratio(by_code[:, [2, 3, 6, 7]].sum(axis=1), n_tokens),
        "hash_ratio": _ratio(hashes, n_tokens),
        "ellipsis_ratio": _ratio(ellipses, n_tokens),
        "stop_words": by_code[:, 4:].sum(axis=1),
        "lorem_ipsum": pc.count_substring_regex(texts, _LOREM).to_numpy(),
        "newline_ratio": _ratio(lines.pop("line_breaks"), n_tokens),
        **lines,
    }
    for name, value in _ngram_signals(_Tokens(ids, rows, lengths, n)).items():
        signals[name] = _ratio(value, chars)
    return signals


def _stop_lookup(stop_words: Iterable[str]) -> list[str]:
    words = {w.lower().replace("’", "'") for w in stop_words}
    return sorted(words | {elided for elided, full in ELISIONS.items() if words.intersection(full)})


# --- the step --------------------------------------------------------------------------------------
class QualityFilter(Filter):
    """Measure Gopher/FineWeb signals for every document; reject by the thresholds of its profile.

    ``profiles``: the thresholds of each profile (``[profiles.NAME.quality]`` of ``overton.toml``); a
    document is judged by those of its ``profile`` column (:func:`profile_names`).
    ``stop_words``: full words; elided forms (``l'``, ``qu'``...) count when a word they stand for is listed.
    """

    name = "quality"
    columns = COLUMNS

    def __init__(
        self,
        profiles: Mapping[str, QualityRules] | None = None,
        stop_words: Iterable[str] = FRENCH_STOP_WORDS,
    ):
        super().__init__()
        self.profiles = dict(profiles if profiles is not None else
                             {name: profile.quality for name, profile in BUILTIN_PROFILES.items()})
        self.stop_words = tuple(stop_words)

    def signals(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        values = measure(batch.column("text"), self.stop_words)
        self.stats["measured"] += batch.num_rows
        for field in COLUMNS:
            value = values[field.name.removeprefix("quality_")]
            if pa.types.is_integer(field.type):
                value = np.rint(value).astype(np.int32)
            batch = set_column(batch, field.name, pa.array(value.astype(np.float32) if field.type == _F32 else value))
        return batch

    def decide(self, batch: pa.RecordBatch) -> list[Rejection]:
        n = batch.num_rows
        names = profile_names(batch, self.profiles)
        families = [(names == name, rules) for name, rules in sorted(self.profiles.items())]
        decided = np.zeros(n, bool)
        rejections: list[Rejection] = [None] * n
        lines = batch.column("quality_lines").to_numpy(zero_copy_only=False)
        for rule, column, comparison, attribute in _RULES:
            values = batch.column(column).to_numpy(zero_copy_only=False)
            for members, thresholds in families:
                threshold = getattr(thresholds, attribute, None)
                if threshold is None:
                    continue
                failing = members & ~decided & _COMPARE[comparison](values, threshold)
                if rule in _LINE_SHARE_RULES and thresholds.line_rules_min_lines is not None:
                    failing &= lines >= thresholds.line_rules_min_lines
                for i in np.nonzero(failing)[0].tolist():
                    value = values[i].item()
                    value = round(value, 4) if isinstance(value, float) else value
                    rejections[i] = (f"quality_{rule}", {"value": value, "threshold": threshold})
                decided |= failing
        return rejections
