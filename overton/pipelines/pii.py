"""PII redaction: e-mail addresses and telephone numbers become fixed placeholders.

Public speeches and debates are public record by nature (a minister reading out a hotline number is
part of the speech), so their profiles (``speech``, ``debate``) have ``pii = false`` and their documents
are left untouched; web text
(Quora answers, forum-like pages) is where private addresses and numbers leak.

Placeholders are ``<EMAIL>`` and ``<PHONE>``, always the same strings, because:

* they are deterministic, so a rebuild gives the same bytes (random fake values would not);
* they cannot be anybody's real address or number, which a realistic fake such as ``01 23 45 67 89``
  could be;
* they are visibly redactions: a reader, an audit (``grep '<PHONE>'``) or a tokenizer that wants a
  special token can find them, and a model trained on them learns to write a placeholder rather than
  to make up plausible personal data;
* redaction is idempotent: neither placeholder contains a digit or ``@``, and Normalize's HTML test
  does not take them for markup, so running the step twice changes nothing.

Precision matters as much as recall in political text, which is full of numbers that look like
phone numbers to a loose pattern: years ("2019 2020"), amounts ("1 200 000 euros", "+150 000
emplois"), article numbers ("article 49.3", "L. 2121-29"), dates ("12.03.2020"), decimals, SIRET and
budget lines. So a French number must be ``0`` + a digit 1-9 + four pairs with *one* separator used
throughout, standing alone (no digit, or digit and separator, on either side); an international one
must start with ``+``, hold 8 to 15 digits (E.164) and not be made only of three-digit groups (which
is how amounts are written).

Speed: vectorised RE2 tests over the batch pick the few documents that may hold PII (an ``@``, or
something shaped like a number above) and which patterns may match; only those documents go through
Python's ``re`` (whose look-arounds and back-references give the exact boundaries), and only with
those patterns.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from overton.corpus.schema import text_sha256
from overton.pipelines.step import Step, profile_names, set_column

EMAIL_PLACEHOLDER = "<EMAIL>"
PHONE_PLACEHOLDER = "<PHONE>"

_SEP = r"[ .\-\u00a0\u202f]"  # space, dot, hyphen, and the two no-break spaces of French typography
_RE2_SEP = r"[ .\-\x{a0}\x{202f}]"

# Every text a Python pattern below can match also matches its RE2 hint (which drops the boundaries and
# the same-separator rule), so a document that fails a hint is spared that pattern safely.
_EMAIL_HINT = "@"
_FRENCH_HINT = rf"0[1-9](?:{_RE2_SEP}?[0-9]{{2}}){{4}}|(?:\+|00)33"
_INTERNATIONAL_HINT = rf"\+[1-9][0-9]{{0,2}}{_RE2_SEP}?\(?[0-9]"

EMAIL = re.compile(
    r"(?<![\w.+-])"
    r"[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
    r"(?![\w-])"
)

_PAIRS = rf"(?P<sep>{_SEP}?)[0-9]{{2}}(?:(?P=sep)[0-9]{{2}}){{3}}"  # four pairs, one separator throughout
_FRENCH_PHONE = (
    # not glued to a longer number: no digit (or digit + separator) before, none after
    rf"(?<![\w+])(?<![0-9]{_SEP})"
    rf"(?:(?:\((?:\+|00)33\)|(?:\+|00)33){_SEP}?(?:\(0\){_SEP}?)?[1-9]|0[1-9])"
    rf"{_PAIRS}"
    rf"(?!{_SEP}?[0-9])(?!\w)"
)
_INTERNATIONAL_PHONE = (
    rf"(?<![\w+])\+(?P<country>[1-9][0-9]{{0,2}})"
    rf"(?P<rest>(?:{_SEP}?\([0-9]{{1,4}}\))?(?:{_SEP}?[0-9]{{1,4}}){{2,6}})"
    rf"(?!{_SEP}?[0-9])(?!\w)"
)
FRENCH_PHONE = re.compile(_FRENCH_PHONE)
INTERNATIONAL_PHONE = re.compile(_INTERNATIONAL_PHONE)
_GROUPS = re.compile(r"[0-9]+")


def _is_international_phone(match: re.Match[str]) -> bool:
    """8 to 15 digits (E.164), and not an amount written in thousands ("+150 000 000")."""
    groups = _GROUPS.findall(match.group("rest"))
    digits = len(match.group("country")) + sum(map(len, groups))
    return 8 <= digits <= 15 and not all(len(group) == 3 for group in groups)


def redact(text: str, emails: bool = True, french: bool = True, international: bool = True) -> tuple[str, int, int]:
    """``text`` with e-mail addresses and phone numbers replaced; (text, e-mails, phones).

    The flags skip patterns known not to match (their RE2 hints failed), e-mails first so that a
    number inside an address is not taken for a phone.
    """
    n_emails = n_phones = 0
    if emails:
        text, n_emails = EMAIL.subn(EMAIL_PLACEHOLDER, text)
    if french:
        text, n_phones = FRENCH_PHONE.subn(PHONE_PLACEHOLDER, text)
    if international:

        def replace(match: re.Match[str]) -> str:
            nonlocal n_phones
            if _is_international_phone(match):
                n_phones += 1
                return PHONE_PLACEHOLDER
            return match.group(0)

        text = INTERNATIONAL_PHONE.sub(replace, text)
    return text, n_emails, n_phones


class PiiRedactor(Step):
    """Replace e-mail addresses and phone numbers in every document whose profile is not skipped.

    ``pii_emails`` / ``pii_phones`` count what was replaced; they are null for documents of
    ``skip_profiles``, which were not examined (zero would claim they hold none).
    """

    name = "pii"
    columns = (pa.field("pii_emails", pa.int32()), pa.field("pii_phones", pa.int32()))

    def __init__(self, skip_profiles: Iterable[str] = ()):
        super().__init__()
        self.skip_profiles = frozenset(skip_profiles)

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        n = batch.num_rows
        texts = batch.column("text")
        skipped = np.isin(profile_names(batch), sorted(self.skip_profiles))
        hints = [pc.match_substring_regex(texts, hint).to_numpy(zero_copy_only=False)
                 for hint in (_EMAIL_HINT, _FRENCH_HINT, _INTERNATIONAL_HINT)]
        emails = np.zeros(n, np.int32)
        phones = np.zeros(n, np.int32)
        changed = np.zeros(n, bool)
        new_texts: list[str] = []
        for i in np.flatnonzero((hints[0] | hints[1] | hints[2]) & ~skipped).tolist():
            text, emails[i], phones[i] = redact(texts[i].as_py(), *(bool(hint[i]) for hint in hints))
            if emails[i] or phones[i]:
                changed[i] = True
                new_texts.append(text)
        self.stats["documents"] += n
        self.stats["documents_skipped"] += int(skipped.sum())
        self.stats["documents_redacted"] += int(changed.sum())
        self.stats["emails_redacted"] += int(emails.sum())
        self.stats["phones_redacted"] += int(phones.sum())
        if new_texts:
            mask = pa.array(changed)
            hashes = pa.array([text_sha256(text) for text in new_texts], pa.string())
            new_texts_array = pa.array(new_texts, pa.string())
            batch = set_column(batch, "text", pc.replace_with_mask(texts, mask, new_texts_array))
            old_hashes = batch.column("content_sha256")
            batch = set_column(batch, "content_sha256", pc.replace_with_mask(old_hashes, mask, hashes))
        batch = set_column(batch, "pii_emails", pa.array(emails, mask=skipped))
        return set_column(batch, "pii_phones", pa.array(phones, mask=skipped))
