"""The four plots of a data card, drawn from :func:`overton.corpus.stats.version_stats` and nothing else.

Each is a PNG of fixed size and resolution drawn on its own ``Figure`` with the Agg canvas (no pyplot, no
global backend state, so it works in any process, with or without a display) and saved without the
``Software`` text chunk that would carry matplotlib's version: the same statistics give the same bytes, which
keeps a release's unchanged files unchanged. Each plot comes with an ``alt`` text that says in words what it
shows and its main numbers, for the card and the release page. Data that is missing (no dated documents, no
speakers, no rejects) still gives a plot, one that says so.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from overton.corpus.atomic import write_bytes

_DPI = 100
_WIDTH = 8.0
_PALETTE = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c",
            "#ccb974", "#64b5cd"]
_LABEL_CHARS = 40  # a longer speaker name is cut in the plot (the alt text and the card keep it whole)


@dataclass(frozen=True)
class Plot:
    file: str  # relative to the release folder, e.g. "plots/top_speakers.png"
    title: str
    alt: str


def _figure(height: float) -> tuple[Figure, Any]:
    figure = Figure(figsize=(_WIDTH, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _colour(index: int) -> str:
    """The colour of the ``index``-th source, the same in every plot."""
    return _PALETTE[index % len(_PALETTE)]


def _empty(axes, message: str) -> None:
    axes.text(0.5, 0.5, message, ha="center", va="center", fontsize=14, transform=axes.transAxes)
    axes.set_axis_off()


def _save(figure: Figure, path: Path) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    write_bytes(path, buffer.getvalue())


def _label(name: str) -> str:
    return name if len(name) <= _LABEL_CHARS else name[: _LABEL_CHARS - 1] + "…"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


# ---------------------------------------------------------------- the plots


def _per_year(stats: dict[str, Any], axes) -> str:
    sources = stats["sources"]
    undated = sum(s["undated"] for s in sources.values())
    spans = [s["years"] for s in sources.values() if s["years"]]
    if not spans:
        _empty(axes, "No dated documents")
        return f"Documents per year: no document has a date ({undated:,} undated)."
    years = list(range(min(first for first, _ in spans), max(last for _, last in spans) + 1))
    bottom = [0] * len(years)
    for index, (name, source) in enumerate(sources.items()):
        counts = [source["by_year"].get(str(year), 0) for year in years]
        axes.bar(years, counts, bottom=bottom, label=name, color=_colour(index), width=0.8)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    axes.set_xlabel("year published")
    axes.set_ylabel("documents")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.legend(loc="upper left", fontsize="small")
    totals = dict(zip(years, bottom, strict=True))
    peak = max(years, key=lambda year: (totals[year], -year))
    if len(years) == 1:
        spread = f"all {_count(totals[peak], 'dated document')} in {peak}"
    else:
        spread = (f"{years[0]} ({totals[years[0]]:,}) to {years[-1]} ({totals[years[-1]]:,}), "
                  f"most in {peak} ({totals[peak]:,})")
    return f"Documents per year: {spread}" + (f"; {undated:,} undated." if undated else ".")


def _length(stats: dict[str, Any], axes) -> str:
    histogram = stats["length_histogram"]
    if not stats["totals"]["documents"]:
        _empty(axes, "No documents")
        return "Document length: the version holds no documents."
    edges = histogram["edges"]
    for index, (name, counts) in enumerate(histogram["counts"].items()):
        axes.stairs(counts, edges, label=name, color=_colour(index), linewidth=2)
    axes.set_xscale("log")
    filled = [i for counts in histogram["counts"].values() for i, n in enumerate(counts) if n]
    axes.set_xlim(edges[min(filled)], edges[max(filled) + 1])  # the bins that hold documents
    axes.set_xlabel("words per document")
    axes.set_ylabel("documents")
    axes.yaxis.set_major_locator(MaxNLocator(integer=True))
    axes.legend(loc="upper left", fontsize="small")
    parts = []
    for name, source in stats["sources"].items():
        q = source["words_quantiles"]
        parts.append(f"{name} median {q['p50']:,} words (p10 {q['p10']:,}, p90 {q['p90']:,}, longest {q['max']:,})")
    return "Document length in words: " + "; ".join(parts) + "."


def _speakers(stats: dict[str, Any], axes) -> str:
    speakers = stats["speakers"]
    if not speakers["top"]:
        _empty(axes, "No speakers recorded")
        return "Top speakers: no document names a speaker."
    names = [name for name, _ in speakers["top"]]
    counts = [count for _, count in speakers["top"]]
    axes.barh(range(len(names)), counts, color=_colour(0))
    axes.set_yticks(range(len(names)), [_label(name) for name in names], fontsize="small")
    axes.invert_yaxis()
    axes.set_xlabel("documents")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    listed = ", ".join(f"{name} ({count:,})" for name, count in speakers["top"][:5])
    return (f"Top speakers by documents: {listed}; {_count(speakers['distinct'], 'distinct speaker')} named in "
            f"{_count(speakers['documents_with'], 'document')}.")


def _rejects(stats: dict[str, Any], axes) -> str:
    rejected = stats["rejected"]
    if not rejected["total"]:
        _empty(axes, "No rejected documents")
        return "Rejected documents: none."
    reasons = sorted(rejected["by_reason"], key=lambda reason: (-rejected["by_reason"][reason], reason))
    left = [0] * len(reasons)
    for index, (name, counts) in enumerate(rejected["by_source"].items()):
        widths = [counts.get(reason, 0) for reason in reasons]
        axes.barh(range(len(reasons)), widths, left=left, label=name, color=_colour(index))
        left = [a + b for a, b in zip(left, widths, strict=True)]
    axes.set_yticks(range(len(reasons)), reasons, fontsize="small")
    axes.invert_yaxis()
    axes.set_xlabel("documents")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.legend(loc="lower right", fontsize="small")
    listed = ", ".join(f"{reason} ({rejected['by_reason'][reason]:,})" for reason in reasons)
    return f"Rejected documents by reason, {rejected['total']:,} in all: {listed}."


_PLOTS = [  # (file, title, height in inches, drawing function)
    ("plots/documents_per_year.png", "Documents per year", 4.5, _per_year),
    ("plots/document_length.png", "Document length (words)", 4.5, _length),
    ("plots/top_speakers.png", "Top speakers (documents naming them)", 6.0, _speakers),
    ("plots/rejects_by_reason.png", "Rejected documents by reason", 4.5, _rejects),
]


def write_plots(stats: dict[str, Any], folder: Path) -> list[Plot]:
    """Draw the four plots of ``stats`` under ``folder/plots/`` (each written atomically); what was written."""
    plots = []
    for file, title, height, draw in _PLOTS:
        figure, axes = _figure(height)
        alt = draw(stats, axes)
        figure.suptitle(title)
        _save(figure, folder / file)
        plots.append(Plot(file, title, alt))
    return plots
