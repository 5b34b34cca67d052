"""The ``overton`` command. Mistakes the user can fix print one line and exit 2; a job that refused to go on
(a damaged file it was about to trust) or ran out of disk space prints one line and exits 1."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import errno
import os
import shutil
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

from overton import __version__
from overton.corpus.config import DEFAULT_PROFILE
from overton.corpus.errors import Refused, UserError
from overton.corpus.workspace import RunRecord, Workspace

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2
_SHOWN_REFUSALS = 20


def _non_negative(value: str) -> float:
    number = float(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return number


def _jobs(value: str) -> int:
    jobs = int(value)
    if jobs < 0:
        raise argparse.ArgumentTypeError("must be 0 (all cores) or more")
    return jobs


def _workspace(args) -> Workspace:
    return Workspace.open(Path(args.workspace))


def _target(args) -> Path | str:
    """The PATH argument (a local path or an fsspec URL), or the workspace's dataset (its latest version)."""
    if args.path:
        return args.path if "://" in args.path else Path(args.path)
    workspace = _workspace(args)
    return workspace.dataset_dir(workspace.config().dataset.name)


def cmd_init(args) -> int:
    workspace = Workspace.init(Path(args.dir))
    print(f"created workspace {workspace.root} (settings in {workspace.settings_path.name})")
    return EXIT_OK


def _titles(path: str) -> list[str]:
    """The lines of a ``--titles`` file, blank ones skipped."""
    try:
        with open(path, encoding="utf-8") as handle:
            return [line.strip() for line in handle if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--titles {path}: {exc.strerror if isinstance(exc, OSError) else exc}") from None


def cmd_ingest(args) -> int:
    from overton.spiders.ingest import ingest, parse_field_map

    workspace = _workspace(args)
    shown = 0

    def show(refusal) -> None:
        nonlocal shown
        shown += 1
        if shown <= _SHOWN_REFUSALS:
            print(f"refused: {refusal}", file=sys.stderr)

    with RunRecord(workspace, "ingest") as record:
        report = ingest(
            workspace,
            [Path(p) for p in args.files],
            args.source,
            fmt=args.format,
            encoding=args.encoding,
            field_map=parse_field_map(args.field or []),
            default_license=args.license,
            on_refusal=show,
            profile=args.profile,
            split=args.split,
            titles=_titles(args.titles) if args.titles else None,
            categories=[name for name in args.categories.split(",") if name.strip()] if args.categories else None,
        )
        record.data.update(source=args.source, profile=report.profile, run_id=report.run_id, files=report.files,
                           imported=report.imported, refused=report.refused_count, duplicates=report.duplicates,
                           empty=report.empty, refusals=report.refused)
        record.exit_code = EXIT_PARTIAL if report.refused_count else EXIT_OK
    if shown > _SHOWN_REFUSALS:
        print(f"... and {shown - _SHOWN_REFUSALS} more refusals, all listed in {record.path}", file=sys.stderr)
    where = f"raw/{args.source}/{report.run_id} (profile {report.profile})" if report.run_id else \
        "nowhere (nothing importable)"
    print(f"imported {report.imported} documents from {report.files} files into {where}; "
          f"refused {report.refused_count}"
          + (f" ({report.duplicates} duplicate ids)" if report.duplicates else "")
          + (f"; skipped {report.empty} empty lines" if report.empty else ""))
    return record.exit_code


def cmd_crawl(args) -> int:
    from overton.spiders.crawl import run_crawl

    workspace = _workspace(args)
    with RunRecord(workspace, f"crawl-{args.spider}") as record:
        outcome = run_crawl(workspace, args.spider, resumable=args.resumable,
                            log="quiet" if args.quiet else "verbose" if args.verbose else "progress")
        record.data.update(spider=args.spider, problems=outcome.problems, stats=outcome.stats)
        record.exit_code = EXIT_OK if outcome.ok else EXIT_PARTIAL
    for problem in outcome.problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    sys.stderr.flush()  # the verdict is the last line, after the log and the failures
    stats = outcome.stats
    print(f"crawl {args.spider}: {stats.get('finish_reason')}, {stats.get('downloader/request_count', 0)} requests, "
          f"{stats.get('item_scraped_count', 0)} documents in {stats.get('overton/batches_committed', 0)} raw batches",
          flush=True)
    return record.exit_code


class Stopped(Exception):
    """SIGTERM or SIGINT reached a resumable command; raised in the main thread, wherever it was."""

    def __init__(self, number: int):
        self.signal = signal.Signals(number)
        self.exit_code = 128 + self.signal  # what a shell reports for a process ended by that signal
        super().__init__(f"stopped by {self.signal.name}")


@contextlib.contextmanager
def _stop_signals_raise() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into :class:`Stopped`: unwinding it kills the worker pool, keeps the
    finished tasks' markers and writes the run record. Further stop signals are ignored meanwhile."""

    def on_signal(number, _frame) -> None:
        for stop_signal in previous:
            signal.signal(stop_signal, signal.SIG_IGN)
        raise Stopped(number)

    previous = {number: signal.signal(number, on_signal) for number in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def cmd_build(args) -> int:
    from overton.corpus.report import counts_table
    from overton.pipelines.build import build

    workspace = _workspace(args)
    with RunRecord(workspace, "build") as record, _stop_signals_raise():
        try:
            if args.refilter:
                from overton.pipelines.refilter import refilter

                result = refilter(workspace, jobs=args.jobs, progress=not args.quiet, executor=args.executor,
                                  address=args.address)
            else:
                result = build(workspace, jobs=args.jobs, progress=not args.quiet, executor=args.executor,
                               address=args.address)
        except Stopped as stop:
            record.exit_code = stop.exit_code
            raise
        record.data.update(message=result.message, counts=result.new_counts, warnings=result.warnings,
                           version=str(result.version.path) if result.version else None, tasks=result.tasks)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(result.message)
    if result.new_counts:
        print("added in this version:")
        print("\n".join(counts_table(result.new_counts)))
        print(f"version: {result.version.path}")
    return EXIT_OK


def _damaged(version, problems: list[str], checked: str) -> int:
    """Print one line per file of ``version`` that differs from its manifest, then the verdict; exit 1."""
    for problem in problems:
        print(f"{version.url}/{problem}", file=sys.stderr)
    print(f"FAILED: {len(problems)} of {len(version.manifest['files'])} files differ from the manifest ({checked})")
    return EXIT_PARTIAL


def cmd_inspect(args) -> int:
    from pyarrow import ArrowException

    from overton.corpus.dataset import Version, version_of
    from overton.corpus.report import describe_shard, describe_version

    target = _target(args)
    if isinstance(target, Path) and target.is_file() and target.suffix == ".parquet":
        owner = version_of(target)
        if owner:
            owner[0].ensure(owner[1])
        try:
            lines = describe_shard(target, args.docs, owner[0] if owner else None)
        except (OSError, ArrowException) as exc:
            raise UserError(f"{target}: not a readable Parquet file: {exc}") from None
    else:
        version = Version.open(target)
        problems = [f"{entry['path']}: {problem}" for entry in version.manifest["files"]
                    if (problem := version.check(entry, checksum=False))]
        if problems:
            return _damaged(version, problems, "sizes checked; `overton verify` compares the checksums too")
        lines = describe_version(version, args.docs)
    print("\n".join(lines))
    return EXIT_OK


def cmd_verify(args) -> int:
    from overton.corpus.dataset import Version

    version = Version.open(_target(args))
    problems = version.verify()
    if problems:
        return _damaged(version, problems, "sizes and sha256 checked")
    print(f"ok: {len(version.manifest['files'])} files match {version.url}/manifest.json")
    return EXIT_OK


def cmd_train(args) -> int:
    import contextlib
    import os

    workspace = _workspace(args)
    settings = workspace.config().train
    overrides = {key: value for key, value in (("gpus", args.gpus), ("gpu", args.gpu), ("mfu", args.mfu),
                                               ("price_per_gpu_hour", args.price)) if value is not None}
    if overrides:
        settings = settings.model_copy(update={"budget": settings.budget.model_copy(update=overrides)})
    if args.follow:
        settings = settings.model_copy(update={"follow": True})
    if args.dry_run:
        from overton.train.dryrun import dry_run

        print("\n".join(dry_run(workspace, settings, args.model_size)))
        return EXIT_OK
    if args.model_size:
        raise UserError("--model-size sizes a --dry-run only: overton train trains [train] model or from_config")
    from overton.train.trainer import Diverged, train

    main_rank = os.environ.get("RANK", "0") == "0"  # under torchrun, rank 0 keeps the lock and the run record
    lock = workspace.lock("train") if main_rank else contextlib.nullcontext()
    with lock, (RunRecord(workspace, "train") if main_rank else contextlib.nullcontext()) as record:
        try:
            outcome = train(workspace, settings, progress=not args.quiet)
        except Diverged as exc:
            print(f"overton: {exc}", file=sys.stderr)
            if record:
                record.data["error"] = str(exc)
                record.exit_code = EXIT_PARTIAL
            return EXIT_PARTIAL
        if record:
            record.data.update(step=outcome.step, steps=outcome.last_step, stopped_by=outcome.stopped_by,
                               resumed_from=outcome.resumed_from, loss=outcome.loss,
                               export=str(outcome.export) if outcome.export else None)
    return EXIT_OK


def _model_workspace(args, pretrained) -> Workspace | None:
    """The workspace that trained a checkpoint, else --workspace, else the current folder if it is one."""
    if pretrained.workspace is not None:
        return pretrained.workspace
    if args.workspace:
        return Workspace.open(Path(args.workspace))
    return Workspace.open(Path(".")) if Path("overton.toml").is_file() else None


def cmd_generate(args) -> int:
    from overton.train.generate import Sampling, chat_prompt, chat_template, generate
    from overton.train.pretrained import load, pick_device

    pretrained = load(args.model, pick_device(args.device))
    prompt = chat_prompt(chat_template(_model_workspace(args, pretrained)), args.prompt) if args.chat \
        else args.prompt
    sampling = Sampling(max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                        top_p=args.top_p, seed=args.seed)
    generate(pretrained, prompt, sampling, echo=not args.chat)
    return EXIT_OK


def cmd_evaluate(args) -> int:
    from overton.train.evaluate import dataset_texts, evaluate, file_text, report
    from overton.train.pretrained import load, pick_device

    held_out = None
    if args.held_out:
        from overton.train.sources import selection

        if not args.dataset:
            raise UserError("--held-out chooses documents of a --dataset")
        held_out = selection(Workspace.open(Path(args.workspace or ".")).config().train)
        if not (held_out.eval_fraction or held_out.eval_since):
            raise UserError("--held-out: the [train] settings hold nothing out (set eval_fraction or eval_since)")
    if args.text and (args.sources or args.limit is not None):
        raise UserError("--sources and --limit choose documents of a --dataset, not of a --text file")
    device = pick_device(args.device)
    scores, context = [], args.context
    for name, prefix in ((args.model, ""), (args.compare, "base: ")):
        if name is None:
            continue
        pretrained = load(name, device)  # one model in memory at a time
        context = context or pretrained.positions
        texts = file_text(args.text) if args.text else dataset_texts(
            args.dataset, [s for s in (args.sources or "").split(",") if s], args.limit, held_out)
        stride = args.stride or max(1, context // 2)
        scores.append((prefix + pretrained.label,
                       evaluate(pretrained, texts, context, stride, args.batch, progress=not args.quiet)))
        del pretrained
    print("\n".join(report(scores, context, stride)))
    return EXIT_OK


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return number


def _top_p(value: str) -> float:
    number = float(value)
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError("must be above 0 and at most 1")
    return number


def _redact(text: str) -> str:
    """The build's personal-data redaction, for the page's excerpts of documents rejected before that step."""
    from overton.pipelines.pii import redact

    return redact(text)[0]


def cmd_card(args) -> int:
    from overton.corpus.publish import resolve_version, write_card

    workspace = _workspace(args)
    target = resolve_version(workspace, args.version)
    written = write_card(workspace, target, redact=_redact)
    folder = written[0].parent
    print(f"data card: {folder / 'README.md'}")
    print(f"plots:     {', '.join(str(p.relative_to(folder)) for p in written if p.suffix == '.png')}")
    print(f"page:      {folder / 'index.html'}")
    return EXIT_OK


def cmd_publish(args) -> int:
    from overton.corpus.publish import publish, resolve_version

    workspace = _workspace(args)
    target = resolve_version(workspace, args.version)
    with RunRecord(workspace, "publish") as record:
        outcome = publish(workspace, target, args.to, visibility=args.visibility, reason=args.include_restricted_text,
                          redact=_redact, progress=not args.quiet)
        transfer = outcome.transfer
        record.data.update(destination=args.to, version=outcome.manifest["version"],
                           visibility=outcome.manifest["release"]["visibility"],
                           withheld=outcome.manifest["release"]["withheld"], sent=transfer.files_sent,
                           bytes_sent=transfer.bytes_sent, reused=transfer.files_reused,
                           verified=transfer.files_verified, repaired=transfer.files_repaired)
    print(f"published {outcome.manifest['version']} to {transfer.url}: {transfer.files_sent} files sent "
          f"({transfer.bytes_sent:,} bytes), {transfer.files_reused} reused from earlier releases, "
          f"{transfer.files_verified} already there and verified, {transfer.files_repaired} repaired")
    return EXIT_OK


def cmd_demo(args) -> int:
    from overton.demo import run_demo

    return run_demo(Path(args.workspace) if args.workspace else None, args.jobs)


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(prog="overton", description=__doc__)
    main.add_argument("--version", action="version", version=f"overton {__version__}")
    commands = main.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, func, help_text, workspace=True):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        if workspace:
            sub.add_argument("--workspace", "-w", default=".", help="workspace folder (default: current folder)")
        sub.set_defaults(func=func)
        return sub

    sub = command("init", cmd_init, "create a workspace with a commented overton.toml", workspace=False)
    sub.add_argument("dir")

    sub = command("ingest", cmd_ingest,
                  "import your own files (jsonl, json, gptj, csv, parquet, text, lines, tei, Wikipedia article "
                  "HTML and dumps, saved Quora question pages) into raw/")
    sub.add_argument("files", nargs="+", metavar="FILE")
    sub.add_argument("--source", required=True, help="source name: raw/<source>/ and the id prefix <source>:")
    sub.add_argument("--format", choices=["jsonl", "json", "gptj", "csv", "parquet", "text", "lines", "tei",
                                          "wikipedia-html", "wikipedia-dump", "quora-html"],
                     help="input format (default: from each file's extension)")
    sub.add_argument("--split", choices=["line", "block"], default="line",
                     help="with --format lines: one document per line (default) or per block of lines between "
                     "blank lines")
    sub.add_argument("--encoding", default="utf-8", help="encoding of plain text files, text or lines (default utf-8)")
    sub.add_argument("--titles", metavar="FILE",
                     help="with --format wikipedia-dump: import only the articles whose title is a line of FILE")
    sub.add_argument("--categories", metavar="A,B",
                     help="with --format wikipedia-dump: import only the articles in one of these categories (their "
                     "own categories: a dump has no category tree, so subcategories count only if listed)")
    sub.add_argument("--field", action="append", metavar="FIELD=COLUMN",
                     help="read schema FIELD from input COLUMN, e.g. --field keywords=topics (repeatable)")
    sub.add_argument("--license", help="SPDX id or LicenseRef-... for records that carry no licence")
    sub.add_argument("--profile",
                     help="source profile whose rules judge these documents: speech, debate, encyclopedia, qa, web "
                     f"or one of [profiles] (default: the format's own, speech for gptj, else {DEFAULT_PROFILE}; "
                     "[sources.NAME] profile overrides it)")

    sub = command("crawl", cmd_crawl, "run a collector (vie-publique, web, wikipedia, quora): fetch what is new "
                  "into raw/; exit 1 if the crawl failed")
    sub.add_argument("spider", metavar="SPIDER")
    sub.add_argument("--resumable", action="store_true",
                     help="keep the request queue in state/crawl/SPIDER/ so a stopped crawl resumes (long backfills)")
    noise = sub.add_mutually_exclusive_group()
    noise.add_argument("--quiet", "-q", action="store_true", help="log warnings and errors only")
    noise.add_argument("--verbose", "-v", action="store_true",
                       help="log everything Scrapy says at INFO: its startup, settings, components and stats")

    sub = command("build", cmd_build, "build the next dataset version from raw documents not yet built")
    sub.add_argument("--jobs", "-j", type=_jobs, help="worker processes (default: [build] jobs, 0 = all cores)")
    sub.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    sub.add_argument("--refilter", action="store_true",
                     help="re-decide the latest version with the current thresholds, from its stored signals")
    sub.add_argument("--executor", choices=["local", "ray"],
                     help="run the tasks in local processes or on a Ray cluster (default: [build] executor)")
    sub.add_argument("--address", help="the Ray cluster to run on, e.g. 10.0.0.5:6379 or auto (default: [build] "
                     "address, else a cluster of this machine started for the build)")

    sub = command("inspect", cmd_inspect, "summarise a dataset version or a shard")
    sub.add_argument("path", nargs="?", help="a version folder, a dataset folder (latest version) or a .parquet "
                     "shard (default: the workspace's dataset)")
    sub.add_argument("--docs", type=int, default=3, help="documents to show (default 3)")

    sub = command("verify", cmd_verify, "recompute every checksum of a version; exit 1 if a file differs")
    sub.add_argument("path", nargs="?", help="a version folder or a dataset folder (latest version; default: the "
                     "workspace's dataset)")

    sub = command("card", cmd_card, "write the data card (README.md), its plots and the release page (index.html) "
                  "into a version folder")
    sub.add_argument("version", nargs="?", metavar="VERSION",
                     help="a version name (v0002), a version folder, or none for the latest version")

    sub = command("publish", cmd_publish, "publish a version with its card: to a folder, an fsspec URL (s3://, "
                  "gs://, ...) or a Hugging Face dataset repository (hf://datasets/OWNER/NAME); only what changed is "
                  "sent, everything is verified at the destination")
    sub.add_argument("version", nargs="?", metavar="VERSION",
                     help="a version name (v0002), a version folder, or none for the latest version")
    sub.add_argument("--to", required=True, metavar="DEST", help="where: a folder, an fsspec URL or "
                     "hf://datasets/OWNER/NAME (token from HF_TOKEN)")
    seen = sub.add_mutually_exclusive_group()
    seen.add_argument("--public", dest="visibility", action="store_const", const="public",
                      help="anyone may read the destination: texts not licensed for redistribution are left out "
                      "(the default for folders and URLs; required or --private for the Hub)")
    seen.add_argument("--private", dest="visibility", action="store_const", const="private",
                      help="only you may read the destination: every text is published and the card says so")
    sub.add_argument("--include-restricted-text", metavar="REASON",
                     help="publish texts not licensed for redistribution to a public destination anyway, for this "
                     "reason, which the card states (e.g. the publisher's written permission)")
    sub.add_argument("--quiet", "-q", action="store_true", help="no progress bars")

    sub = command("train", cmd_train, "train GPT-J on the dataset with the [train] settings; after any stop, "
                  "the same command resumes from the last checkpoint")
    sub.add_argument("--dry-run", action="store_true",
                     help="print the budget (tokens, steps, memory per GPU, hours, cost, disk) and exit")
    sub.add_argument("--gpus", type=int, help="dry run: number of GPUs (default: [train.budget] gpus)")
    sub.add_argument("--gpu", help="dry run: A100-40GB, A100-80GB, H100-80GB or H200-141GB")
    sub.add_argument("--mfu", type=float, help="dry run: model FLOPs utilisation to assume, e.g. 0.4")
    sub.add_argument("--price", type=_non_negative, help="dry run: price per GPU-hour")
    sub.add_argument("--model-size", metavar="SIZE", help="dry run without a model config: a known GPT-J shape, "
                     "125M, 350M, 1.3B, 2.7B or 6B, or a parameter count such as 6e9 (the nearest shape)")
    sub.add_argument("--follow", action="store_true", help="after [train] epochs over the dataset, wait for newer "
                     "versions and train on what they add (as [train] follow = true)")
    sub.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    model_help = ("an exported model folder (<output>/model), a training output folder (its newest committed "
                  "checkpoint) or a checkpoint folder (<output>/checkpoints/step-NNNNNN)")
    sub = command("generate", cmd_generate, "write text with a trained model, printed as it comes", workspace=False)
    sub.add_argument("model", metavar="MODEL", help=model_help)
    sub.add_argument("--prompt", required=True, help="the start of the text (with --chat: the question)")
    sub.add_argument("--chat", action="store_true", help="wrap the prompt in [train] chat_template and print the "
                     "answer only")
    sub.add_argument("--max-new-tokens", type=_positive, default=200, help="tokens to write at most (default 200)")
    sub.add_argument("--temperature", type=_non_negative, default=0.8, help="sampling temperature; 0 = greedy "
                     "(default 0.8)")
    sub.add_argument("--top-k", type=int, default=50, help="sample among the k likeliest tokens; 0 = all (default 50)")
    sub.add_argument("--top-p", type=_top_p, default=0.95, help="sample among the likeliest tokens of this total "
                     "probability; 1 = all (default 0.95)")
    sub.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes the same text (default 0)")
    sub.add_argument("--device", help="cpu, cuda or cuda:N (default: the first GPU, else the CPU)")
    sub.add_argument("--workspace", "-w", help="the workspace whose [train] chat_template --chat uses (default: "
                     "the one that trained the checkpoint, else the current folder)")

    sub = command("evaluate", cmd_evaluate, "perplexity and bits per byte of a model on held-out text",
                  workspace=False)
    sub.add_argument("model", metavar="MODEL", help=model_help)
    text = sub.add_mutually_exclusive_group(required=True)
    text.add_argument("--text", metavar="FILE", help="a UTF-8 text file, read as one text")
    text.add_argument("--dataset", metavar="VERSION", help="a dataset version folder (or a dataset folder: its "
                      "latest version, or an fsspec URL): each document is a text")
    sub.add_argument("--sources", metavar="A,B", help="with --dataset: only these sources' documents")
    sub.add_argument("--limit", type=_positive, help="with --dataset: the first N documents only")
    sub.add_argument("--held-out", action="store_true", help="with --dataset: only the documents the workspace's "
                     "[train] eval_fraction or eval_since hold out of training")
    sub.add_argument("--compare", metavar="BASE", help="a second model (the one fine-tuning started from) scored "
                     "on the same text; prints both and the difference")
    sub.add_argument("--context", type=_positive, help="tokens per window (default: the model's positions)")
    sub.add_argument("--stride", type=_positive, help="tokens a window moves by (default: half the context)")
    sub.add_argument("--batch", type=_positive, default=8, help="windows per forward pass (default 8)")
    sub.add_argument("--device", help="cpu, cuda or cuda:N (default: the first GPU, else the CPU)")
    sub.add_argument("--workspace", "-w", help="the workspace whose [train] settings --held-out follows (default: "
                     "the current folder)")
    sub.add_argument("--quiet", "-q", action="store_true", help="no progress bar")

    sub = command("demo", cmd_demo, "ingest and build the bundled sample corpus in a new workspace",
                  workspace=False)
    sub.add_argument("--workspace", "-w", help="folder for the demo workspace (default: a new temporary folder)")
    sub.add_argument("--jobs", "-j", type=_jobs, help="worker processes for the build")
    return main


def _place(filename: str | None, args: argparse.Namespace) -> str:
    """Where a write ran out of room: the file when the error names it (pyarrow's do not), else the workspace;
    with what its file system has free."""
    path = Path(filename or getattr(args, "workspace", None) or ".").absolute()
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    free = shutil.disk_usage(existing).free
    return f"{'writing' if filename else 'in'} {path} ({free / 1e6:.1f} MB free)"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"overton: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Refused as exc:
        print(f"overton: error: {exc}", file=sys.stderr)
        return EXIT_PARTIAL
    except Stopped as stop:
        print(f"overton: {args.command} {stop}; the same command resumes it", file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print("overton: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # every write is atomic and every finished task marked: nothing half-written is kept or trusted
        what = "no space left on the device" if exc.errno == errno.ENOSPC else "disk quota exceeded"
        print(f"overton: error: {args.command} stopped: {what} {_place(exc.filename, args)}; free some space and run "
              "the same command", file=sys.stderr)
        return EXIT_PARTIAL


def run() -> None:
    """The ``overton`` command: :func:`main`, then, after a command that imported torch, an exit that skips the
    interpreter's teardown.

    Tearing down torch's and transformers' modules takes 0.6 to 1.4 s after every such command (a training
    run and each of its ``torchrun`` ranks, ``generate``, ``evaluate``) and does nothing a finished command
    needs: the exit handlers (logging, multiprocessing's children, temporary folders) run first and the
    standard streams are flushed. An error leaves the usual way, with its traceback.
    """
    code = main()
    if "torch" in sys.modules:
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    run()
