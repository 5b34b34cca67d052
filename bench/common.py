"""What every benchmark writes beside its figures: when, by which command, with which overton, on what machine.

Each script in ``bench/`` runs on its own (``python bench/<name>.py``, whose folder is then on ``sys.path``)
and ends with :func:`save_results`.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def save_results(name: str, argv: list[str] | None, results: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json``: the run's description, then ``results``; print where it went."""
    from overton import __version__

    record = {
        "benchmark": name,
        "date": datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python", f"bench/{name}.py", *(argv if argv is not None else sys.argv[1:])]),
        "overton": __version__,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        **results,
    }
    path = REPO / "bench" / "results" / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2, ensure_ascii=False) + "\n")
    took = f" ({results['seconds']:.0f} s)" if "seconds" in results else ""
    print(f"\nresults: {path.relative_to(REPO)}{took}")
    return path
