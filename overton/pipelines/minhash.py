"""MinHash signatures and LSH band keys, computed for a whole batch of documents at once.

Shingles are word n-grams (default 5) of the folded text: lower case, diacritics and punctuation
removed, so "l'État," and "l etat" are the same words. Words are cut on the texts' UTF-8 bytes with
numpy and only the distinct ones are folded (pyarrow kernels); each distinct word of the batch is hashed
once (blake2b, 64 bits, stable across processes); n-gram hashes are combined with numpy. The signature
is exactly datasketch's MinHash (scheme ``affine32``: MurmurHash3 finaliser, then ``a * h + b`` modulo
2^32, minimum over shingles) fed with those 32-bit shingle hashes, with datasketch's permutations for the
same seed (:func:`permutations`, drawn as datasketch draws them: importing datasketch would cost a build
process a second of scipy imports); only the per-shingle work is done for thousands of documents in one
numpy expression instead of a Python call per document. A test checks the equality with
``MinHash.update_batch``.

LSH uses explicit bands × rows (default 20 × 5 = 100 permutations): a pair at Jaccard j shares at
least one band with probability 1 - (1 - j^rows)^bands, 0.9996 at 0.8 and 0.975 at 0.7 (FineWeb's
14 × 8: 0.92 and 0.56). Candidates are verified exactly afterwards (:mod:`overton.pipelines.dedup_near`),
so the many more candidates below the threshold that a steep-early curve admits cost time, not
precision. Each band of a signature is reduced to one 64-bit key; documents sharing a key in any band
are candidate pairs.
"""

from __future__ import annotations

import hashlib
import string
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_FOLD_SPLIT = r"[^\p{L}\p{N}]+"
_WORD_CHARACTER = r"^[\p{L}\p{N}]$"
_MARKS = r"\p{Mn}+"
_ROWS_PER_CHUNK = 1 << 15  # shingles per numpy block: 32k x 100 permutations x 4 bytes = 13 MB
EMPTY = np.uint32(0xFFFFFFFF)  # every slot of a document without a single word


#: FineWeb's (datatrove's) published bands x rows, used unverified by ``[near_dedup] mode = "fineweb"``.
FINEWEB_BANDS_ROWS = (14, 8)


@dataclass(frozen=True)
class MinHashParams:
    bands: int = 20
    rows: int = 5
    ngram: int = 5
    seed: int = 1

    @property
    def num_perm(self) -> int:
        return self.bands * self.rows


def _fmix64(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fmix32(h: np.ndarray) -> np.ndarray:
    """datasketch's pre-mix for scheme affine32 (MurmurHash3 finaliser)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch's ``affine32`` permutations ``h -> a * h + b mod 2^32`` for ``seed`` (odd ``a``: a bijection)."""
    draw = np.random.RandomState(seed)
    a = draw.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    return a, draw.randint(0, 1 << 32, num_perm, dtype=np.uint32)


def _word_hash(word: str) -> int:
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


def _fold(texts: pa.Array) -> pa.Array:
    """Lower case without diacritics, of texts already in NFD."""
    return pc.replace_substring_regex(pc.utf8_lower(texts), _MARKS, "")


#: Texts as the functions below take them: a list, or an Arrow array (a column's, with no conversion to Python).
Texts = Sequence[str] | pa.Array | pa.ChunkedArray


def _large_strings(texts: Texts) -> pa.Array:
    """The texts as one ``large_string`` array whose offsets start at 0: what :func:`_split` reads the bytes of."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    elif not isinstance(texts, pa.Array):
        return pa.array(texts, pa.large_string())
    return pa.concat_arrays([texts.cast(pa.large_string())])  # a slice's bytes start at its first value


def fold_words(texts: Texts) -> tuple[pa.Array, np.ndarray]:
    """All folded words of the texts in one array (lower case, no diacritics, no punctuation),
    and the number of words of each text.

    The definition: each text in NFD, lower-cased, its non-spacing marks (``\\p{Mn}``) removed, then split at
    every run of characters that are neither letters nor digits (``[^\\p{L}\\p{N}]+``).
    """
    vocabulary, ids, lengths = _folded_words(texts)
    return vocabulary.take(pa.array(ids)), lengths


def _folded_words(texts: Texts) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """:func:`fold_words` as (distinct words, the index of every word among them, words per text).

    Done as the definition reads, the whole text's NFD (in Python) and the regular-expression split (RE2
    on Unicode classes) cost about three quarters of a signature. Here the words are found on the texts' UTF-8
    bytes instead (:func:`_split`), and only the distinct ones are folded: a few tens of thousands where a
    batch holds millions.
    """
    array = _large_strings(texts)
    split = _split(array)
    if split is None:
        words, lengths = _fold_and_split(array.to_pylist())
        encoded = words.dictionary_encode()
        return encoded.dictionary, encoded.indices.to_numpy(), lengths
    pieces, lengths = split
    encoded = pieces.dictionary_encode()
    decomposed = pa.array([unicodedata.normalize("NFD", p) for p in encoded.dictionary.to_pylist()], pa.string())
    return _fold(decomposed), encoded.indices.to_numpy(), lengths


def _fold_and_split(texts: list[str]) -> tuple[pa.Array, np.ndarray]:
    """:func:`fold_words` as its definition reads: for the batches :func:`_split` cannot cut."""
    stripped = _fold(pa.array([unicodedata.normalize("NFD", text) for text in texts], pa.string()))
    pieces = pc.split_pattern_regex(stripped, _FOLD_SPLIT)  # empty pieces where a text starts or ends
    flat = pc.list_flatten(pieces)
    nonempty = pc.greater(pc.binary_length(flat), 0)
    owner = pc.list_parent_indices(pieces).to_numpy()[nonempty.to_numpy(zero_copy_only=False)]
    return flat.filter(nonempty), np.bincount(owner, minlength=len(texts)).astype(np.int64)


_SEPARATOR, _WORD, _MARK = 0, 1, 2  # what a character is to the split: folds to a break, to letters, to nothing
_ASCII_KIND = np.full(256, _SEPARATOR, np.uint8)
_ASCII_KIND[[ord(c) for c in string.ascii_letters + string.digits]] = _WORD


def _split(array: pa.Array) -> tuple[pa.Array, np.ndarray] | None:
    """The unfolded words of all texts (each folds to one word of :func:`fold_words`) and the count per text;
    None when the batch holds a character this cannot handle.

    A character folds to letters and digits (a word character), to nothing (a non-spacing mark: the letters
    around it stay one word) or to a break, whatever text it is in: NFD, lower-casing and removing marks act
    on each character alone, but for NFD's canonical reordering of combining characters, which only moves
    marks and breaks among themselves (:func:`_character_kinds` checks it). So a word is a run of word
    characters and marks, holding at least one word character; each distinct non-ASCII character is folded
    and classed once, by the same RE2 classes as the definition.
    """
    offsets = np.frombuffer(array.buffers()[1], np.int64, len(array) + 1)
    size = int(offsets[-1])
    data = np.frombuffer(array.buffers()[2], np.uint8, size) if size else np.zeros(0, np.uint8)
    kind = _ASCII_KIND[data]
    leads = np.flatnonzero(data >= 0xC0)  # the first byte of every non-ASCII character
    if len(leads):
        padded = np.concatenate([data, np.zeros(3, np.uint8)])
        following = padded[leads[:, None] + np.arange(1, 4)].astype(np.int64) & 0x3F  # the next three bytes
        first = data[leads].astype(np.int64)
        width = 2 + (first >= 0xE0) + (first >= 0xF0)
        points = np.select([width == 2, width == 3],
                           [(first & 0x1F) << 6 | following[:, 0],
                            (first & 0x0F) << 12 | following[:, 0] << 6 | following[:, 1]],
                           (first & 0x07) << 18 | following[:, 0] << 12 | following[:, 1] << 6 | following[:, 2])
        seen = np.zeros(0x110000, bool)  # a look-up by code point: cheaper than sorting them (np.unique)
        seen[points] = True
        distinct = np.flatnonzero(seen)
        kinds = _character_kinds(distinct.tolist())
        if kinds is None:
            return None
        by_point = np.zeros(0x110000, np.uint8)
        by_point[distinct] = kinds
        for k in range(4):  # every byte of a character is of its kind
            kind[leads[width > k] + k] = by_point[points[width > k]]
        marks = bool((kinds == _MARK).any())
    else:
        marks = False
    in_word = kind != _SEPARATOR
    text_edge = np.zeros(size + 1, bool)
    text_edge[offsets] = True
    separator_around = np.ones(size + 2, bool)
    separator_around[1:-1] = ~in_word
    starts = np.flatnonzero(in_word & (text_edge[:-1] | separator_around[:-2]))
    ends = np.flatnonzero(in_word & (text_edge[1:] | separator_around[2:])) + 1
    run_offsets = np.concatenate([[0], np.cumsum(ends - starts)])
    runs = pa.Array.from_buffers(pa.large_string(), len(starts),
                                 [None, pa.py_buffer(run_offsets), pa.py_buffer(np.compress(in_word, data))])
    if marks:  # a run of marks alone folds to nothing
        letters = np.concatenate([[0], np.cumsum(kind == _WORD)])
        has_letters = letters[ends] > letters[starts]
        runs, starts = runs.filter(pa.array(has_letters)), starts[has_letters]
    return runs, np.diff(np.searchsorted(starts, offsets)).astype(np.int64)


def _character_kinds(points: list[int]) -> np.ndarray | None:
    """The kind of each character (:data:`_WORD`, :data:`_MARK` or :data:`_SEPARATOR`), or None when one folds to
    both letters and a break (Tamil ``ஔ``: a letter and a spacing mark), or when canonical reordering could
    move a character that folds to a letter (none does today: the check keeps a later Unicode from changing
    the words unnoticed)."""
    decomposed = [unicodedata.normalize("NFD", chr(point)) for point in points]
    folds = _fold(pa.array(decomposed, pa.string())).to_pylist()
    combining = sorted({c for characters in decomposed for c in characters if unicodedata.combining(c)})
    combining_folds = _fold(pa.array(combining, pa.string())).to_pylist()
    characters = sorted(set("".join(folds + combining_folds)))
    is_word = dict(zip(characters, pc.match_substring_regex(pa.array(characters, pa.string()), _WORD_CHARACTER)
                       .to_pylist(), strict=True))
    if any(is_word[c] for fold in combining_folds for c in fold):
        return None
    kinds = np.empty(len(points), np.uint8)
    for i, fold in enumerate(folds):
        letters = sum(is_word[c] for c in fold)
        if 0 < letters < len(fold):
            return None
        kinds[i] = _WORD if letters else _SEPARATOR if fold else _MARK
    return kinds


class MinHasher:
    def __init__(self, params: MinHashParams = MinHashParams()):
        self.params = params
        self._a, self._b = permutations(params.num_perm, params.seed)
        rng = np.random.default_rng(params.seed)
        self._gram = rng.integers(1, 2**63, size=params.ngram, dtype=np.uint64) | np.uint64(1)
        self._band = rng.integers(1, 2**63, size=params.rows, dtype=np.uint64) | np.uint64(1)

    def shingles(self, texts: Texts) -> tuple[np.ndarray, np.ndarray]:
        """32-bit hashes of every word n-gram, and the document of each (documents of fewer
        words than ``ngram`` give one shingle of all their words; documents without words none)."""
        vocabulary, ids, lengths = _folded_words(texts)
        if len(ids) == 0:
            return np.empty(0, np.uint32), np.empty(0, np.int64)
        hashes = np.array([_word_hash(w) for w in vocabulary.to_pylist()], np.uint64)[ids]
        n, total = self.params.ngram, len(hashes)
        padded = np.concatenate([hashes, np.zeros(n - 1, np.uint64)])
        combined = padded[:total] * self._gram[0]  # the n-gram at every position, whole or not
        for k in range(1, n):
            combined += padded[k:k + total] * self._gram[k]
        counts = np.where(lengths >= n, lengths - (n - 1), np.minimum(lengths, 1))
        owner = np.repeat(np.arange(len(texts)), counts)
        starts = np.cumsum(lengths) - lengths
        first = np.cumsum(counts) - counts  # index of each document's first shingle
        shingle = combined[np.repeat(starts - first, counts) + np.arange(len(owner))]
        short = np.flatnonzero((lengths > 0) & (lengths < n))
        if len(short):  # one shingle of all the words: no word of the next document in it
            words, at = lengths[short], starts[short]
            value = hashes[at] * self._gram[0]
            for k in range(1, n - 1):
                value += np.where(words > k, hashes[np.minimum(at + k, total - 1)], np.uint64(0)) * self._gram[k]
            shingle[first[short]] = value
        return (_fmix64(shingle) >> np.uint64(32)).astype(np.uint32), owner

    def signatures(self, texts: Texts) -> np.ndarray:
        """One MinHash signature per text: an (n_texts, num_perm) uint32 array."""
        shingle, owner = self.shingles(texts)
        result = np.full((len(texts), self.params.num_perm), EMPTY, np.uint32)
        mixed = _fmix32(shingle)
        block = np.empty((self.params.num_perm, _ROWS_PER_CHUNK), np.uint32)
        for start in range(0, len(mixed), _ROWS_PER_CHUNK):
            values = mixed[start:start + _ROWS_PER_CHUNK]
            out = block[:, :len(values)]
            np.multiply(self._a[:, None], values, out=out)
            np.add(out, self._b[:, None], out=out)
            docs = owner[start:start + _ROWS_PER_CHUNK]
            first = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
            np.minimum.at(result, docs[first], np.minimum.reduceat(out, first, axis=1).T)
        return result

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """(n, bands) uint64: one key per band; equal keys in a band make a candidate pair."""
        p = self.params
        bands = signatures.reshape(len(signatures), p.bands, p.rows).astype(np.uint64)
        return _fmix64((bands * self._band).sum(axis=2, dtype=np.uint64))


def estimated_jaccard(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Share of equal slots between rows of two signature arrays (the MinHash Jaccard estimate)."""
    return (a == b).mean(axis=-1)
