"""The package's arithmetic problems and the problem loaders (local files, datasets)."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinetics.analysis.ingest import query_id
from kinetics.errors import InputError
from kinetics.generation.problems import (
    BOXED_INSTRUCTION,
    Problem,
    arithmetic_problems,
    load_problems,
    problems_from_records,
)

# --- an independent reading of the arithmetic questions --------------------------------

_PARTS = {"half": 2, "a third": 3, "a quarter": 4, "a fifth": 5, "a tenth": 10}
_START = re.compile(r"(\w+) has (\d+) (\w+)\.")
_STEPS = [
    (re.compile(r"(?:He|She) buys (\d+) more\."), lambda v, n: v + int(n)),
    (re.compile(r"(?:He|She) gives away (\d+)\."), lambda v, n: v - int(n)),
    (re.compile(r"Then (?:he|she) has (\d+) times as many\."), lambda v, n: v * int(n)),
    (re.compile(r"(?:He|She) keeps (half|a third|a quarter|a fifth|a tenth) of them\."),
     lambda v, part: v / _PARTS[part]),
]


def solve(question: str) -> tuple[int, int]:
    """(answer, steps) read from the question's text alone; fails on any sentence it
    does not know, a non-integer or a value under 2 on the way."""
    assert question.endswith(" " + BOXED_INSTRUCTION)
    sentences = re.split(r"(?<=[.?])\s+", question[:-len(BOXED_INSTRUCTION) - 1])
    start = _START.fullmatch(sentences[0])
    assert start, sentences[0]
    name, value, items = start.group(1), int(start.group(2)), start.group(3)
    assert sentences[-1] == f"How many {items} does {name} have now?"
    for sentence in sentences[1:-1]:
        matches = [(rx.fullmatch(sentence), op) for rx, op in _STEPS]
        (match, op), = [(m, op) for m, op in matches if m]
        value = op(value, match.group(1))
        assert value == int(value) and value >= 2, sentence
        value = int(value)
    return value, len(sentences) - 2


@settings(max_examples=40)
@given(st.integers(1, 60), st.integers(0, 2**32))
def test_arithmetic_problems_are_deterministic_solvable_and_easy_to_hard(count, seed):
    problems = arithmetic_problems(count, seed)
    assert problems == arithmetic_problems(count, seed) and len(problems) == count
    assert len({p.id for p in problems}) == count
    steps = []
    for i, problem in enumerate(problems):
        answer, n_steps = solve(problem.question)
        assert problem.answer == str(answer) and not problem.exact
        assert problem.id == f"arith-{i:03d}-s{n_steps}"
        assert len(problem.question.split()) < 60
        steps.append(n_steps)
    assert steps == sorted(steps) and steps[0] == 1 and max(steps) <= 5
    if count >= 5:
        assert steps[-1] == 5 and set(steps) == {1, 2, 3, 4, 5}


def test_the_default_set_varies_with_the_seed_and_its_numbers_grow():
    default = arithmetic_problems()
    assert len(default) == 24 and default != arithmetic_problems(seed=1)
    first_numbers = [int(re.search(r"has (\d+)", p.question).group(1)) for p in default]
    assert max(first_numbers[:5]) <= 12 < max(first_numbers[-5:])


def test_arithmetic_count_must_be_positive():
    with pytest.raises(InputError, match="at least 1"):
        arithmetic_problems(0)


# --- loaders ------------------------------------------------------------------------------

ROWS = [
    {"question": "What is 1 + 1?", "answer": 2, "id": "a", "exact": True},
    {"question": "Half of one?", "answer": 0.5, "id": "b", "exact": False},
    {"question": "Three as a float?", "answer": 3.0, "id": "c", "exact": False},
    {"question": "AIME style?", "answer": "033", "id": "d", "exact": False},
]
EXPECTED_ANSWERS = ["2", "0.5", "3", "033"]


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    """datasets' cache in the test's folder, not the user's."""
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-cache")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_builtin_aliases_and_limit():
    assert load_problems("builtin:arithmetic") == arithmetic_problems()
    assert load_problems("arithmetic", limit=3) == arithmetic_problems()[:3]


def test_jsonl_with_number_answers_and_hash_ids(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", ROWS)
    problems = load_problems(str(path))
    assert [p.answer for p in problems] == EXPECTED_ANSWERS
    assert [p.id for p in problems] == [query_id(r["question"]) for r in ROWS]
    assert not any(p.exact for p in problems)
    with_ids = load_problems(str(path), id_field="id", exact_field="exact", limit=2)
    assert with_ids == [Problem("a", "What is 1 + 1?", "2", True),
                        Problem("b", "Half of one?", "0.5", False)]


def test_json_array_and_json_lines_in_a_json_file(tmp_path):
    array = tmp_path / "a.json"
    array.write_text(json.dumps(ROWS))
    lines = write_jsonl(tmp_path / "l.json", ROWS)
    expected = load_problems(str(write_jsonl(tmp_path / "p.jsonl", ROWS)), id_field="id")
    assert load_problems(str(array), id_field="id") == expected
    assert load_problems(str(lines), id_field="id") == expected


def test_parquet_and_csv(tmp_path):
    kwargs = {"id_field": "id", "exact_field": "exact"}
    pd.DataFrame(ROWS).to_csv(tmp_path / "p.csv", index=False)
    from_csv = load_problems(str(tmp_path / "p.csv"), **kwargs)
    assert [p.answer for p in from_csv] == ["2", "0.5", "3.0", "033"]  # CSV text as written
    assert [p.exact for p in from_csv] == [True, False, False, False]
    assert [p.id for p in from_csv] == ["a", "b", "c", "d"]
    floats = pd.DataFrame(ROWS[:3])  # a float64 answer column: 2.0, 0.5, 3.0
    floats.to_parquet(tmp_path / "f.parquet")
    from_parquet = load_problems(str(tmp_path / "f.parquet"), **kwargs)
    assert [p.answer for p in from_parquet] == ["2", "0.5", "3"]
    assert from_parquet[0] == Problem("a", "What is 1 + 1?", "2", True)
    ints = pd.DataFrame({"question": ["q1", "q2"], "answer": [7, 10**15], "id": [1, 2]})
    ints.to_parquet(tmp_path / "i.parquet")
    assert [(p.id, p.answer) for p in load_problems(str(tmp_path / "i.parquet"),
                                                    id_field="id")] == \
        [("1", "7"), ("2", str(10**15))]


def test_a_dataset_folder_of_data_files_goes_through_datasets(tmp_path):
    rows = [{**r, "answer": str(r["answer"])} for r in ROWS]  # one arrow type per column
    folder = tmp_path / "ds"
    folder.mkdir()
    write_jsonl(folder / "test.jsonl", rows)
    write_jsonl(folder / "train.jsonl", rows[:1])
    expected = load_problems(str(write_jsonl(tmp_path / "p.jsonl", rows)), id_field="id")
    assert load_problems(str(folder), id_field="id") == expected
    assert load_problems(str(folder), split="train", id_field="id") == expected[:1]
    parquet = tmp_path / "pq"
    parquet.mkdir()
    pd.DataFrame(rows).to_parquet(parquet / "test.parquet")
    assert load_problems(str(parquet), id_field="id", limit=2) == expected[:2]


def test_a_saved_dataset_folder(tmp_path):
    import datasets

    rows = [{"question": r["question"], "answer": str(r["answer"])} for r in ROWS]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "one"))
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows[:2]),
                          "train": datasets.Dataset.from_list(rows[2:])}
                         ).save_to_disk(str(tmp_path / "dict"))
    expected = load_problems(str(write_jsonl(tmp_path / "p.jsonl", rows)))
    assert load_problems(str(tmp_path / "one")) == expected
    assert load_problems(str(tmp_path / "dict")) == expected[:2]
    assert load_problems(str(tmp_path / "dict"), split="train") == expected[2:]


def test_records_are_pure_and_keep_their_positions():
    problems = problems_from_records([(3, {"q": "x?", "a": 5})], source="mem",
                                     question_field="q", answer_field="a")
    assert problems == [Problem(query_id("x?"), "x?", "5")]
    with pytest.raises(InputError, match=r"^mem, line 7, field 'a': missing answer$"):
        problems_from_records([(7, {"q": "x?", "a": None})], source="mem",
                              question_field="q", answer_field="a", by_line=True)


# --- bad input --------------------------------------------------------------------------

def _jsonl(rows):
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


BAD = [
    # (file name, content, kwargs, expected message parts)
    ("empty.jsonl", "", {}, ["empty file"]),
    ("blank.jsonl", "\n\n", {}, ["no problems"]),
    ("header.csv", "question,answer\n", {}, ["no problems"]),
    ("broken.jsonl", _jsonl([{"question": "q", "answer": 1}, '{"question": "q2", ']), {},
     ["line 2", "not JSON"]),
    ("list.jsonl", _jsonl([{"question": "q", "answer": 1}, "[1, 2]"]), {},
     ["line 2", "expected a JSON object"]),
    ("nofield.jsonl", _jsonl([{"problem": "q", "answer": 1}]), {},
     ["field 'question'", "no such field", "problem"]),
    ("noanswer.jsonl", _jsonl([{"question": "q", "answer": 1}, {"question": "q2"}]), {},
     ["line 2", "field 'answer'", "missing answer"]),
    ("blankanswer.jsonl", _jsonl([{"question": "q", "answer": "  "}]), {},
     ["line 1", "field 'answer'", "missing answer"]),
    ("listanswer.jsonl", _jsonl([{"question": "q", "answer": [1, 2]}]), {},
     ["line 1", "field 'answer'", "expected text or a number"]),
    ("emptyq.jsonl", _jsonl([{"question": "", "answer": 1}]), {},
     ["line 1", "field 'question'", "missing question"]),
    ("numq.jsonl", _jsonl([{"question": "q", "answer": 1}, {"question": 5, "answer": 1}]), {},
     ["line 2", "field 'question'", "expected the question text"]),
    ("dupid.jsonl", _jsonl([{"question": "q", "answer": 1, "id": 1},
                            {"question": "r", "answer": 2, "id": "1"}]), {"id_field": "id"},
     ["line 2", "field 'id'", "duplicate id '1'", "first at line 1"]),
    ("dupq.jsonl", _jsonl([{"question": "q", "answer": 1}, {"question": "q", "answer": 1}]), {},
     ["line 2", "field 'question'", "duplicate question"]),
    ("noid.jsonl", _jsonl([{"question": "q", "answer": 1, "id": "x"}, {"question": "r",
                                                                       "answer": 1}]),
     {"id_field": "id"}, ["line 2", "field 'id'", "missing id"]),
    ("exact.jsonl", _jsonl([{"question": "q", "answer": 1, "ex": "maybe"}]),
     {"exact_field": "ex"}, ["line 1", "field 'ex'", "expected true/false"]),
    ("dup.csv", "question,answer,id\nq,1,a\nr,2,a\n", {"id_field": "id"},
     ["row 2", "field 'id'", "first at row 1"]),
    ("blank.csv", "question,answer\nq,1\nr,\n", {}, ["row 2", "field 'answer'", "missing"]),
    ("array.json", json.dumps({"question": "q"}), {}, ["expected a JSON array"]),
    ("bad.json", '[{"question": "q", ', {}, ["not JSON"]),
    ("rowtype.json", json.dumps([{"question": "q", "answer": 1}, 3]), {},
     ["row 2", "expected a JSON object"]),
    ("bad.parquet", "not parquet", {}, ["cannot parse as parquet"]),
    ("p.txt", "question\n", {}, ["unknown file type '.txt'"]),
    ("ok.jsonl", _jsonl([{"question": "q", "answer": 1}]), {"limit": 0},
     ["field 'limit'", "at least 1"]),
]


@pytest.mark.parametrize(("name", "content", "kwargs", "parts"), BAD,
                         ids=[b[0] + "-" + b[3][-1] for b in BAD])
def test_bad_problem_files_are_one_line_errors(tmp_path, name, content, kwargs, parts):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(InputError) as info:
        load_problems(str(path), **kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert "limit" in kwargs or message.startswith(str(path))
    for part in parts:
        assert part in message, message


def test_missing_file_and_missing_split(tmp_path):
    with pytest.raises(InputError, match="no such file or folder"):
        load_problems(str(tmp_path / "absent.jsonl"))
    with pytest.raises(InputError, match="no such file or folder"):
        load_problems("./absent")
    folder = tmp_path / "ds"
    folder.mkdir()
    write_jsonl(folder / "test.jsonl", [{"question": "q", "answer": "1"}])
    with pytest.raises(InputError, match="cannot load as a dataset.*train") as info:
        load_problems(str(folder), split="train")
    assert "\n" not in str(info.value)


def test_a_hub_id_without_network_fails_at_once_with_one_line(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="HF_HUB_OFFLINE") as info:
        load_problems("Org/problems")
    assert str(info.value).startswith("Org/problems: ")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused
    with pytest.raises(InputError, match="cannot be reached") as info:
        load_problems("Org/problems", split="test")
    assert "\n" not in str(info.value)
