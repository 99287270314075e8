"""The bench's own parts (bench/), so that ``python -m bench`` cannot rot unseen: the
figures' schema, the table, the percentile, the generated FAQ, and a tiny search run.
Nothing here asserts a timing."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from bench import cli, search
from bench.figures import (
    FIELDS,
    Figure,
    at_least,
    at_most,
    format_table,
    markdown_table,
    number,
    percentile,
    write_json,
)
from bench.ingest import BenchBotAPI, Feed, chat_texts

MET = Figure("detection: x", 80.0, "msgs/s", baseline=100.0, target="≥ 0.7×", met=True)
UNMET = Figure("ingest: y", 20.0, "updates/s", baseline=2000.0, target="≥ 0.8×", met=False)
BARE = Figure("startup: z", 2.5, "s")


def test_percentile_interpolates_between_ranks_like_numpy() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 10.0]
    for p in (0, 5, 50, 90, 95, 99, 100):
        assert math.isclose(percentile(values, p), float(np.percentile(values, p)))
    assert percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)


def test_a_figure_has_the_json_schema_and_its_ratio() -> None:
    record = MET.as_json()
    assert tuple(record) == FIELDS
    assert record["ratio"] == 0.8
    assert record["met"] is True
    assert BARE.as_json()["baseline"] is None and BARE.as_json()["ratio"] is None
    assert BARE.as_json()["target"] is None and BARE.as_json()["met"] is None
    assert Figure("nan", float("nan"), "ms").as_json()["value"] is None  # valid JSON


def test_targets_compare_ratios() -> None:
    assert at_least(0.8, 0.8) is True and at_least(0.79, 0.8) is False
    assert at_most(2.0, 2.0) is True and at_most(2.1, 2.0) is False
    assert at_least(None, 0.8) is None


def test_json_file_lists_every_figure(tmp_path: Path) -> None:
    path = tmp_path / "out" / "figures.json"
    write_json([MET, UNMET, BARE], path)
    loaded = json.loads(path.read_text("utf-8"))
    assert [r["name"] for r in loaded] == [MET.name, UNMET.name, BARE.name]
    assert all(tuple(r) == FIELDS for r in loaded)


def test_the_table_shows_baseline_ratio_and_verdict() -> None:
    table = format_table([MET, UNMET, BARE]).splitlines()
    assert table[0].startswith("figure")
    assert set(table[1]) <= {"-", " "}
    assert len(table) == 5
    assert "0.80×" in table[2] and table[2].rstrip().endswith("met")
    assert "0.01×" in table[3] and "NOT MET" in table[3]
    assert "—" in table[4]
    starts = {line.index("2") for line in table[2:] if "2" in line}
    assert starts  # values sit in their own column
    md = markdown_table([MET, Figure("a|b", 1.0, "ms")]).splitlines()
    assert len(md) == 4 and md[1].startswith("|---")
    assert "a\\|b" in md[3]


def test_numbers_read_as_people_read_them() -> None:
    assert number(4164.2) == "4,164"
    assert number(14.94) == "14.9"
    assert number(2.604) == "2.60"
    assert number(0.5224) == "0.522"
    assert number(None) == "—"


def test_the_report_names_the_command_and_what_was_not_met() -> None:
    text = cli.report([MET, UNMET], command="python -m bench", seconds=90, started="now")
    assert "python -m bench" in text
    assert "Targets not met: ingest: y." in text
    assert "| figure |" in text


def test_unknown_benches_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--only", "nothing"]) == 2
    assert "unknown bench: nothing" in capsys.readouterr().err


def test_quick_plan_is_smaller_than_the_full_one() -> None:
    assert cli.QUICK.ingest.updates < cli.FULL.ingest.updates
    assert max(cli.QUICK.console_sizes) < max(cli.FULL.console_sizes)
    assert cli.FULL.search_sizes == (100, 1_000, 10_000)
    assert cli.FULL.console_sizes == (1_000, 100_000)
    assert cli.FULL.memory_messages == 10_000


async def test_the_feed_makes_telegram_updates_from_the_dataset() -> None:
    api = BenchBotAPI()
    feed = Feed(api, texts=chat_texts()[:5])
    updates = feed.batch(7)
    ids = [u["update_id"] for u in updates]
    assert ids == sorted(ids) and len(set(ids)) == 7
    assert {u["message"]["chat"]["type"] for u in updates} == {"supergroup"}
    assert updates[5]["message"]["text"] == updates[0]["message"]["text"]  # cycles


def test_generated_faq_entries_are_distinct_with_unit_vectors() -> None:
    seed = search.load_dir(search.CONTENT_DIR)[:4]
    rng = np.random.default_rng(0)
    vectors = {}
    for e in seed:
        matrix = rng.normal(size=(len(search.variant_texts(e)), 8)).astype(np.float32)
        vectors[e.id] = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    entries, grown = search.grow(seed, vectors, 10, rng=random.Random(0))
    assert len(entries) == 10 and len({e.id for e in entries}) == 10
    assert entries[:4] == seed
    for entry in entries:
        matrix = grown[entry.id]
        assert matrix.shape == (len(search.variant_texts(entry)), 8)
        assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)
    assert entries[4].questions != seed[0].questions  # words of others mixed in


def test_fts5_floor_finds_entries_by_their_words() -> None:
    seed = search.load_dir(search.CONTENT_DIR)
    find = search.fts5(seed)
    assert find("") == []
    hits = find("ghb alcohol")
    assert 1 <= len(hits) <= 3 and set(hits) <= {e.id for e in seed}


def test_a_tiny_search_run_makes_every_figure() -> None:
    figures = search.run(sizes=(31, 62), n_queries=3)
    names = [f.name for f in figures]
    assert names == [
        "search: p50 latency, 31 entries",
        "search: p50 latency, 62 entries",
        "search: p50 at 62 entries vs 31",
    ]
    assert all(f.value > 0 and f.baseline is not None for f in figures)
    assert isinstance(figures[-1].met, bool)
