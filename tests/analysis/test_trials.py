"""Trial-table loading and validation; bad input through `kinetics report` exits 2."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from kinetics.analysis.synthetic import SyntheticSpec, generate_trials
from kinetics.analysis.trials import REQUIRED_COLUMNS, load_trials, resolve_models, validate_trials
from kinetics.cli import main
from kinetics.cost import AttentionConfig
from kinetics.errors import InputError


@pytest.fixture(scope="module")
def raw_trials() -> pd.DataFrame:
    spec = SyntheticSpec(accuracy={"qwen3-0.6b": 0.3, "qwen3-4b": 0.7}, num_queries=3,
                         default_trials=4, max_len=4000,
                         configs=(AttentionConfig.dense(), AttentionConfig.topk(256),
                                  AttentionConfig.blocktopk(32, topk_blocks=4)))
    return generate_trials(7, spec)


def write(frame: pd.DataFrame, path) -> str:
    if str(path).endswith(".csv"):
        frame.to_csv(path, index=False)
    elif str(path).endswith(".jsonl"):
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    return str(path)


def test_embedded_default_is_synthetic_and_valid():
    trials, synthetic = load_trials(None)
    assert synthetic is True
    assert set(REQUIRED_COLUMNS) <= set(trials.columns)
    assert {"dense", "topk", "blocktopk"} == set(trials["method"])
    assert trials.groupby(["model", "config", "query_id"]).size().max() == 32
    assert trials.loc[trials["model"] == "qwen3-32b"].groupby(["config", "query_id"]).size().max() == 8


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_three_formats_load_the_same_table(raw_trials, tmp_path, suffix):
    trials, synthetic = load_trials(write(raw_trials, tmp_path / f"t{suffix}"))
    assert synthetic is False
    want = validate_trials(raw_trials)
    pd.testing.assert_frame_equal(trials.reset_index(drop=True), want, check_dtype=False)
    assert set(trials["config"]) == {"dense", "topk256", "blocktopk128-b32-w0"}


def test_correct_without_answer_pos_completes_at_the_last_token(raw_trials):
    frame = raw_trials.copy()
    frame.loc[0, ["correct", "answer_pos"]] = [1, None]
    assert validate_trials(frame).loc[0, "answer_pos"] == frame.loc[0, "gen_len"]


def _report(tmp_path, capsys, *argv):
    out = tmp_path / "report"
    code = main(["report", "--quiet", "--no-plots", "--out", str(out), *argv])
    err = capsys.readouterr().err
    return code, err, out


def _mutate(frame, column, value, row=2):
    frame = frame.copy()
    frame[column] = frame[column].astype(object)
    frame.loc[row - 1, column] = value
    return frame


def _first_topk(frame):
    return int((frame["method"] == "topk").to_numpy().argmax()) + 1


BAD_CASES = {
    "missing column": (lambda f: f.drop(columns=["gen_len"]), None, "gen_len"),
    "wrong type": (lambda f: _mutate(f, "gen_len", "lots"), 2, "gen_len"),
    "negative length": (lambda f: _mutate(f, "prompt_len", -5, row=3), 3, "prompt_len"),
    "fractional length": (lambda f: _mutate(f, "gen_len", 10.5), 2, "gen_len"),
    "infinite length": (lambda f: _mutate(f, "gen_len", float("inf")), 2, "gen_len"),
    "correct not 0/1": (lambda f: _mutate(f, "correct", 2, row=4), 4, "correct"),
    "unknown method": (lambda f: _mutate(f, "method", "sliding"), 2, "method"),
    "answer after end": (lambda f: _mutate(f, "answer_pos", 10**6), 2, "answer_pos"),
    "dense with a budget": (lambda f: _mutate(f, "budget", 64, row=1), 1, "budget"),
    "missing query": (lambda f: _mutate(f, "query_id", None), 2, "query_id"),
    "duplicate trial": (lambda f: pd.concat([f, f.iloc[[5]]], ignore_index=True), len, "trial"),
    # past the 2**31-token cap: 4e9 wrapped to negative costs and Pareto points before
    "length over the cap": (lambda f: _mutate(f, "gen_len", 4_000_000_000), 2, "gen_len"),
    "length 10**30": (lambda f: _mutate(f, "prompt_len", 10**30, row=3), 3, "prompt_len"),
    "budget over the cap": (lambda f: _mutate(f, "budget", 2**31 + 1, row=_first_topk(f)),
                            _first_topk, "budget"),
    "trial index 10**30": (lambda f: _mutate(f, "trial", 10**30), 2, "trial"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_bad_tables_exit_2_naming_file_row_and_field(raw_trials, tmp_path, capsys, case, suffix):
    mutate, row, field = BAD_CASES[case]
    frame = mutate(raw_trials)
    if suffix == ".parquet":
        frame = frame.astype({c: str for c in frame.columns if frame[c].dtype == object})
        frame = frame.replace({"None": None, "nan": None})
    path = write(frame, tmp_path / f"bad{suffix}")
    code, err, out = _report(tmp_path, capsys, "--trials", path)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1
    assert path in err and f"field '{field}'" in err
    if row is not None:
        row = row(frame) if callable(row) else row
        assert f"row {row}," in err
    assert not out.exists()
    assert not list(tmp_path.glob(".report.tmp-*"))


def test_unknown_model_needs_a_config(raw_trials, tmp_path, capsys):
    frame = raw_trials.copy()
    frame.loc[frame["model"] == "qwen3-4b", "model"] = "my-model"
    path = write(frame, tmp_path / "t.csv")
    code, err, out = _report(tmp_path, capsys, "--trials", path)
    assert code == 2 and "my-model" in err and "field 'model'" in err and "--model-config" in err
    first = int((frame["model"] == "my-model").to_numpy().argmax()) + 1
    assert f"row {first}," in err and not out.exists()
    config = {"num_hidden_layers": 4, "hidden_size": 256, "num_attention_heads": 4,
              "num_key_value_heads": 2, "head_dim": 64, "intermediate_size": 512,
              "vocab_size": 1000}
    (tmp_path / "config.json").write_text(json.dumps(config))
    code, err, out = _report(tmp_path, capsys, "--trials", path, "--model-config",
                             f"my-model={tmp_path / 'config.json'}")
    assert code == 0, err
    assert (out / "summary.json").exists()


@pytest.mark.parametrize("content, message", [
    ("", "empty file"), ("model,method\n", "no data rows"),
    ("{not json", "line 1: not valid JSON (Expecting property name enclosed in double quotes"),
])
def test_empty_or_unparsable_files_exit_2(tmp_path, capsys, content, message):
    suffix = ".jsonl" if content.startswith("{") else ".csv"
    path = tmp_path / f"t{suffix}"
    path.write_text(content)
    code, err, out = _report(tmp_path, capsys, "--trials", str(path))
    assert code == 2 and str(path) in err and message in err
    assert not out.exists()


def test_a_broken_jsonl_line_or_invalid_utf8_is_named_by_its_line(raw_trials, tmp_path):
    lines = write(raw_trials.head(8), tmp_path / "t.jsonl")
    text = (tmp_path / "t.jsonl").read_bytes().split(b"\n")
    text[4] = text[4][:30]
    (tmp_path / "t.jsonl").write_bytes(b"\n".join(text))
    with pytest.raises(InputError, match=r"t.jsonl, line 5: not valid JSON \(.*; column"):
        load_trials(lines)
    csv = write(raw_trials.head(8), tmp_path / "t.csv")
    data = (tmp_path / "t.csv").read_bytes().split(b"\n")
    data[3] = data[3].replace(b"qwen3", b"qw\xe9n3", 1)
    (tmp_path / "t.csv").write_bytes(b"\n".join(data))
    with pytest.raises(InputError, match="t.csv, line 4: not UTF-8 text .invalid byte 0xe9"):
        load_trials(csv)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_a_utf8_byte_order_mark_is_accepted(raw_trials, tmp_path, suffix):
    path = write(raw_trials, tmp_path / f"t{suffix}")
    (tmp_path / f"b{suffix}").write_bytes(b"\xef\xbb\xbf" + (tmp_path / f"t{suffix}").read_bytes())
    with_bom = load_trials(tmp_path / f"b{suffix}")[0]
    pd.testing.assert_frame_equal(with_bom, load_trials(path)[0])


def test_nonexistent_path_and_bad_flags_exit_2(tmp_path, capsys):
    code, err, _ = _report(tmp_path, capsys, "--trials", str(tmp_path / "none.parquet"))
    assert code == 2 and "none.parquet" in err and "no such file" in err
    code, err, _ = _report(tmp_path, capsys, "--gen-budgets", "1k")
    assert code == 2 and "--gen-budgets" in err


def test_resolve_models_names_the_row():
    frame = pd.DataFrame({"model": ["qwen3-8b", "x"]})
    with pytest.raises(InputError, match="f.csv, row 2, field 'model'"):
        resolve_models(frame, None, "f.csv")


def test_a_zero_local_window_is_accepted_for_dense_and_topk(raw_trials):
    frame = raw_trials.copy()
    frame.loc[frame["method"] != "blocktopk", "local"] = 0
    assert set(validate_trials(frame)["config"]) == {"dense", "topk256", "blocktopk128-b32-w0"}
    frame.loc[frame["method"] == "dense", "local"] = 16
    with pytest.raises(InputError, match="field 'local'"):
        validate_trials(frame, "f.csv")


def test_preset_aliases_are_one_model(raw_trials):
    frame = raw_trials.copy()
    small = frame["model"] == "qwen3-0.6b"
    frame.loc[small & (frame["trial"] % 2 == 0), "model"] = "Qwen/Qwen3-0.6B"
    frame.loc[small & (frame["trial"] % 2 == 1), "model"] = " QWEN3-0.6b"
    assert set(validate_trials(frame)["model"]) == {"qwen3-0.6b", "qwen3-4b"}


def test_lengths_at_the_cap_are_accepted(raw_trials):
    frame = raw_trials.copy()
    frame.loc[1, ["prompt_len", "gen_len"]] = [2**31, 2**31]
    trials = validate_trials(frame)
    assert trials.loc[1, "gen_len"] == trials.loc[1, "prompt_len"] == 2**31
    frame.loc[1, "gen_len"] = 2**31 + 1
    with pytest.raises(InputError, match="f.csv, row 2, field 'gen_len': 2147483649 is over the 2"):
        validate_trials(frame, "f.csv")


def _one_query(samples: int, answers: bool) -> pd.DataFrame:
    frame = pd.DataFrame({"model": "qwen3-0.6b", "method": "dense", "budget": None,
                          "block_size": None, "local": None, "query_id": "q",
                          "trial": range(samples), "prompt_len": 10, "gen_len": 20,
                          "correct": [i % 2 for i in range(samples)], "answer_pos": None})
    frame["answer_pos"] = frame["answer_pos"].astype("Int64")
    if answers:
        frame["answer"] = [str(i % 3) for i in range(samples)]
    return frame


@pytest.mark.parametrize("answers", [True, False])
def test_more_samples_than_the_exact_vote_takes_is_an_error_only_with_answers(answers):
    from kinetics.analysis.trials import MAX_VOTE_SAMPLES

    validate_trials(_one_query(MAX_VOTE_SAMPLES, answers))  # the largest accepted group
    big = _one_query(MAX_VOTE_SAMPLES + 1, answers)
    if not answers:
        assert len(validate_trials(big)) == MAX_VOTE_SAMPLES + 1  # no vote, no limit
        return
    with pytest.raises(InputError) as err:
        validate_trials(big, path="t.csv")
    assert err.value.field == "answer" and err.value.row == 1
    assert "1001 samples" in str(err.value)


def test_trailing_comma_csv_reads_every_field(raw_trials, tmp_path):
    path = tmp_path / "t.csv"
    write(raw_trials, path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0]] + [line + "," for line in lines[1:]]) + "\n")
    trials, _ = load_trials(str(path))
    assert len(trials) == len(raw_trials)


def test_topk_row_without_budget_names_the_budget_field(raw_trials):
    frame = raw_trials.copy()
    row = int((frame["method"] == "topk").to_numpy().argmax())
    frame.loc[row, "budget"] = 0
    with pytest.raises(InputError) as err:
        validate_trials(frame)
    assert err.value.field == "budget"
