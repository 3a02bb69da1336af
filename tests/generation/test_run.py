"""A generation run's pieces: graded trial rows, answer positions on a real (byte-level
BPE) tokenizer, unit orchestration and the resumable shard store."""

from __future__ import annotations

import json
import random
import string

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("transformers")

from kinetics.analysis.answers import extract_answer  # noqa: E402
from kinetics.analysis.trials import REQUIRED_COLUMNS, validate_trials  # noqa: E402
from kinetics.cost import AttentionConfig  # noqa: E402
from kinetics.errors import InputError  # noqa: E402
from kinetics.generation.backend import (  # noqa: E402
    Completion,
    GenerationStats,
    SamplingParams,
    sample_seed,
)
from kinetics.generation.problems import Problem  # noqa: E402
from kinetics.generation.run import (  # noqa: E402
    EXTRA_COLUMNS,
    GenerationJob,
    answer_position,
    prompt_ids,
    run_job,
    trial_frame,
)
from kinetics.generation.store import MANIFEST, ShardStore, parts_folder  # noqa: E402

DENSE = AttentionConfig.dense()
SPARSE = AttentionConfig.blocktopk(16, topk_blocks=2, local=16)
PARAMS = SamplingParams(temperature=0.6, top_p=0.95, max_new_tokens=64)
NUMBER = r"(-?\d[\d,]*(?:\.\d+)?)"


def job(samples: int = 3, pattern: str | None = NUMBER) -> GenerationJob:
    return GenerationJob("tiny", (DENSE, SPARSE), samples, PARAMS, seed=7, answer_pattern=pattern)


def completion(tokenizer, problem: str, trial: int, text: str, reason="length",
               eos: bool = False) -> Completion:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if eos:
        ids, reason = ids + [tokenizer.eos_token_id], "eos"
    return Completion((problem, trial), tuple(ids), reason)


# --- trial rows ---------------------------------------------------------------------------

TEXTS = ["Let us add. So \\boxed{12} is it.", "The answer is 13", "I cannot say.",
         "\\boxed{\\frac{24}{2}}", "12 or \\boxed{11}"]


@pytest.mark.parametrize("config", [DENSE, SPARSE], ids=lambda c: c.label)
def test_trial_rows_are_graded_ordered_and_pass_validation(tiny_tokenizer, config):
    problem = Problem("p-1", "What is 5 + 7?", "12")
    done = [completion(tiny_tokenizer, "p-1", t, text, eos=t == 0)
            for t, text in enumerate(TEXTS)][::-1]  # arrive in any order
    frame = trial_frame(job(len(TEXTS)), config, problem, 21, done, tiny_tokenizer)
    assert sorted(frame.columns) == sorted([*REQUIRED_COLUMNS, "answer", *EXTRA_COLUMNS])
    assert frame["trial"].tolist() == list(range(len(TEXTS)))
    assert frame["correct"].tolist() == [1, 0, 0, 1, 0]
    assert frame["answer"].tolist() == ["12", "13", pd.NA, "\\frac{24}{2}", "11"]
    assert frame["stop_reason"].tolist() == ["eos"] + ["length"] * 4
    assert frame["gen_len"].tolist() == [len(c.token_ids) for c in done[::-1]]
    assert (frame["prompt_len"] == 21).all() and (frame["query_id"] == "p-1").all()
    assert frame["text"][0].endswith(tiny_tokenizer.eos_token)
    assert frame["answer_pos"].isna().tolist() == [False, False, True, False, False]
    valid = validate_trials(frame)
    assert (valid["config"] == config.label).all()
    assert (valid["answer_pos"].dropna() <= valid["gen_len"][valid["answer_pos"].notna()]).all()
    if config.method == "blocktopk":
        assert frame["local"].tolist() == [16] * 5 and frame["budget"].iloc[0] == 48
    else:
        assert frame["local"].isna().all() and frame["budget"].isna().all()


def test_a_job_without_a_pattern_grades_boxed_answers_only(tiny_tokenizer):
    problem = Problem("p", "q", "13")
    done = [completion(tiny_tokenizer, "p", t, text) for t, text in enumerate(TEXTS)]
    frame = trial_frame(job(len(TEXTS), None), DENSE, problem, 3, done, tiny_tokenizer)
    assert frame["answer"].isna().tolist() == [False, True, True, False, False]
    assert frame["correct"].sum() == 0


def test_an_exact_problem_is_graded_by_string_equality(tiny_tokenizer):
    texts = ["\\boxed{6/12}", "\\boxed{1/2}"]
    for exact, expected in ((False, [1, 1]), (True, [0, 1])):
        done = [completion(tiny_tokenizer, "p", t, text) for t, text in enumerate(texts)]
        frame = trial_frame(job(2), DENSE, Problem("p", "q", "1/2", exact), 3, done,
                            tiny_tokenizer)
        assert frame["correct"].tolist() == expected


# --- answer_pos -------------------------------------------------------------------------

def assert_answer_position(tokenizer, ids, pattern):
    text = tokenizer.decode(ids, skip_special_tokens=False)
    found = extract_answer(text, pattern)
    assert found is not None
    pos = answer_position(tokenizer, ids, found.end)
    assert 1 <= pos <= len(ids)
    complete = text[:found.end]  # the text up to the answer's last character
    assert tokenizer.decode(ids[:pos], skip_special_tokens=False).startswith(complete)
    assert not tokenizer.decode(ids[:pos - 1], skip_special_tokens=False).startswith(complete)
    return pos


def test_answer_pos_is_the_closing_brace_token(tiny_tokenizer):
    text = "Let me think. Ana has 12. So \\boxed{12} and that is all"
    ids = tiny_tokenizer.encode(text, add_special_tokens=False)
    pos = assert_answer_position(tiny_tokenizer, ids, None)
    assert "}" in tiny_tokenizer.decode(ids[pos - 1:pos])
    # the same text cut right after the box: the answer ends at the last token
    cut = tiny_tokenizer.encode(text[:text.index("}") + 1], add_special_tokens=False)
    assert answer_position(tiny_tokenizer, cut, len(text[:text.index("}") + 1])) == len(cut)


PLAIN = string.ascii_letters + string.digits + " .,:;-+=()\n"
WIDE = PLAIN + "éπ€°√→"
prose = st.text(alphabet=PLAIN.replace("\\", ""), max_size=40)


@settings(max_examples=60)
@given(prose, st.text(alphabet=WIDE.replace("{", "").replace("}", ""), min_size=1,
                      max_size=10), st.text(alphabet=WIDE, max_size=30))
def test_answer_pos_property_for_boxed_answers(tiny_tokenizer, before, answer, after):
    """Decoding the first answer_pos tokens holds the whole box; one token fewer does not."""
    text = f"{before}\\boxed{{{answer}}}{after}"
    ids = tiny_tokenizer.encode(text, add_special_tokens=False)
    assert_answer_position(tiny_tokenizer, ids, None)


@settings(max_examples=60)
@given(prose, st.text(alphabet=WIDE, min_size=1, max_size=8).filter(str.strip),
       st.text(alphabet=PLAIN, max_size=20))
def test_answer_pos_property_for_pattern_answers(tiny_tokenizer, before, answer, after):
    """The same for an answer found by a pattern, whatever characters it ends with."""
    answer = answer.strip().replace(" ", "").replace("\n", "") or "x"
    text = f"{before} ANSWER: {answer} {after}"
    ids = tiny_tokenizer.encode(text, add_special_tokens=False)
    assert_answer_position(tiny_tokenizer, ids, r"ANSWER: (\S+)")


@pytest.mark.parametrize("text", ["The answer: 5€ ok", "so x = 3π", "the angle is 90°."])
def test_answer_pos_waits_for_a_multibyte_last_character(tiny_tokenizer, text):
    """A byte-level tokenizer spells € in three byte tokens; a prefix ending inside it
    decodes to a replacement character, which does not complete the answer."""
    ids = tiny_tokenizer.encode(text, add_special_tokens=False)
    assert_answer_position(tiny_tokenizer, ids, r"(?:answer:|=|is) (\S*\d\S)")


# --- orchestration ------------------------------------------------------------------------

class FakeBackend:
    """Answers ``\\boxed{seed % 3}`` for every request, completions in a shuffled
    order across problems; remembers what it was asked."""

    name = "fake"

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.eos_token_ids = frozenset({tokenizer.eos_token_id})
        self.stats = GenerationStats()
        self.calls: list[tuple[AttentionConfig, list]] = []

    def generate(self, requests, params, attention):
        self.calls.append((attention, list(requests)))
        order = list(requests)
        random.Random(len(order)).shuffle(order)
        for r in order:
            ids = self.tokenizer.encode(f"so \\boxed{{{r.seed % 3}}}", add_special_tokens=False)
            yield Completion(r.key, tuple(ids), "length")


PROBLEMS = [Problem(f"p{i}", f"What is {i} + 1?", str(i % 3)) for i in range(5)]


def run(backend, problems=PROBLEMS, done=lambda ci, pid: False, samples=3):
    units = []
    run_job(backend, job(samples), problems, lambda ci, p, f: units.append((ci, p.id, f)),
            done)
    return units


def test_run_job_hands_over_each_unit_once_with_paired_seeds(tiny_tokenizer):
    backend = FakeBackend(tiny_tokenizer)
    units = run(backend)
    assert sorted((ci, pid) for ci, pid, _ in units) == [(ci, p.id) for ci in (0, 1)
                                                        for p in PROBLEMS]
    assert [c for c, _ in backend.calls] == [DENSE, SPARSE]
    seeds = [{r.key: r.seed for r in reqs} for _, reqs in backend.calls]
    assert seeds[0] == seeds[1]  # dense and sparse answers are paired
    assert seeds[0] == {(p.id, t): sample_seed(7, p.id, t) for p in PROBLEMS for t in range(3)}
    for _, reqs in backend.calls:
        for r in reqs:
            assert r.prompt_ids == prompt_ids(tiny_tokenizer, PROBLEMS[int(r.key[0][1:])].question)
    for ci, pid, frame in units:
        assert frame["trial"].tolist() == [0, 1, 2] and (frame["query_id"] == pid).all()
        expected = [int(sample_seed(7, pid, t) % 3 == int(pid[1:]) % 3) for t in range(3)]
        assert frame["correct"].tolist() == expected
        assert frame["method"].iloc[0] == ("dense", "blocktopk")[ci]
    table = pd.concat([f for _, _, f in units], ignore_index=True)
    assert len(validate_trials(table)) == 30


def test_run_job_skips_the_units_reported_done(tiny_tokenizer):
    backend = FakeBackend(tiny_tokenizer)
    finished = {(0, "p1"), (0, "p3"), (1, "p0"), (1, "p1"), (1, "p2"), (1, "p3"), (1, "p4")}
    units = run(backend, done=lambda ci, pid: (ci, pid) in finished)
    assert sorted((ci, pid) for ci, pid, _ in units) == [(0, "p0"), (0, "p2"), (0, "p4")]
    asked = [{r.key[0] for r in reqs} for _, reqs in backend.calls]
    assert asked == [{"p0", "p2", "p4"}, set()]


# --- the shard store ----------------------------------------------------------------------

ARGS = {"model": "tiny", "configs": [DENSE.__dict__], "samples": 2, "seed": 0}


def snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def unit(pid: str, n: int = 2) -> pd.DataFrame:
    return pd.DataFrame({"query_id": [pid] * n, "trial": list(range(n)), "correct": [1, 0][:n]})


def test_parts_folder_is_hidden_beside_the_output(tmp_path):
    assert parts_folder(tmp_path / "t.parquet") == tmp_path / ".t.parquet.parts"


def test_shard_store_resumes_and_refuses_another_run(tmp_path):
    folder = tmp_path / ".t.parquet.parts"
    store = ShardStore(folder, ARGS)
    assert store.open() == 0 and json.loads((folder / MANIFEST).read_text()) == ARGS
    odd = ["p/1", "p 2", "п3", "x" * 300]  # ids that are not file names
    for i, pid in enumerate(odd):
        store.write(i % 2, pid, unit(pid))
    assert [store.has(i % 2, pid) for i, pid in enumerate(odd)] == [True] * 4
    assert not store.has(1, "p/1") and not store.has(0, "p/2")
    assert not [p for p in folder.iterdir() if p.name.endswith(".tmp")]
    again = ShardStore(folder, json.loads(json.dumps(ARGS)))
    assert again.open() == 4
    rows = again.read_all().sort_values(["query_id", "trial"])
    assert sorted(rows["query_id"].unique()) == sorted(odd) and len(rows) == 8
    assert set(rows["config_index"]) == {0, 1}
    before = snapshot(folder)
    for other in ({**ARGS, "seed": 1}, {**ARGS, "samples": 3}, {k: ARGS[k] for k in
                                                                 list(ARGS)[:-1]}):
        with pytest.raises(InputError, match="other arguments.*--restart") as err:
            ShardStore(folder, other).open()
        assert "\n" not in str(err.value) and str(folder) in str(err.value)
    assert snapshot(folder) == before  # nothing touched
    fresh = ShardStore(folder, {**ARGS, "seed": 1})
    assert fresh.open(restart=True) == 0
    assert fresh.shards() == [] and not fresh.has(0, "p/1")
    assert json.loads((folder / MANIFEST).read_text())["seed"] == 1
    fresh.remove()
    assert not folder.exists()


def test_shard_store_without_create_makes_nothing(tmp_path):
    store = ShardStore(tmp_path / ".parts", ARGS)
    assert store.open(create=False) == 0 and not (tmp_path / ".parts").exists()
    store.open()
    with pytest.raises(InputError, match="no finished samples"):
        store.read_all()


def test_a_damaged_manifest_is_refused_not_trusted(tmp_path):
    store = ShardStore(tmp_path / ".parts", ARGS)
    store.open()
    (tmp_path / ".parts" / MANIFEST).write_text("{not json")
    with pytest.raises(InputError, match="other arguments"):
        ShardStore(tmp_path / ".parts", ARGS).open()


def test_a_rerun_generates_only_the_units_without_a_shard(tiny_tokenizer, tmp_path):
    """A run that dies after three units, rerun: the store's shards are kept, only the
    missing units are generated, and the merged rows equal an uninterrupted run's."""
    folder = tmp_path / ".parts"

    class Died(Exception):
        pass

    def dying_sink(store, after):
        def sink(ci, problem, frame):
            if len(store.shards()) == after:
                raise Died
            store.write(ci, problem.id, frame)
        return sink

    store = ShardStore(folder, ARGS)
    store.open()
    with pytest.raises(Died):
        run_job(FakeBackend(tiny_tokenizer), job(), PROBLEMS, dying_sink(store, 3), store.has)
    kept = {p.name: p.stat().st_mtime_ns for p in store.shards()}
    assert len(kept) == 3
    resumed = ShardStore(folder, ARGS)
    assert resumed.open() == 3
    backend = FakeBackend(tiny_tokenizer)
    run_job(backend, job(), PROBLEMS, dying_sink(resumed, -1), resumed.has)
    assert sum(len(reqs) for _, reqs in backend.calls) == (10 - 3) * 3
    assert {p.name: p.stat().st_mtime_ns for p in resumed.shards() if p.name in kept} == kept
    whole = pd.concat([f.assign(config_index=ci) for ci, _, f in run(FakeBackend(
        tiny_tokenizer))], ignore_index=True)
    key = ["config_index", "query_id", "trial"]
    got = resumed.read_all().sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, whole.sort_values(key).reset_index(drop=True),
                                  check_dtype=False)
