"""`kinetics ingest` on small raw JSONL files with a tiny local tokenizer."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from kinetics.analysis.ingest import (
    config_from_filename,
    config_from_metadata,
    grade,
    last_boxed,
    model_from_name,
    normalize_answer,
)
from kinetics.analysis.trials import load_trials
from kinetics.cli import main
from kinetics.cost import AttentionConfig

pytest.importorskip("transformers")
pytest.importorskip("datasets")

QUERY_A = "Find the sum of all integer bases b > 9 for which 17 divides 97 ."
QUERY_B = "How many ordered pairs ( x , y ) satisfy x + y = 10 ?"
PREDICTIONS = [
    # (query, text, score)
    (QUERY_A, "we try b = 21 and b = 49 so the sum is \\boxed{70} done", 100.0),
    (QUERY_A, "maybe the answer is \\boxed{ 68 } then \\boxed{071} final", 0.0),
    (QUERY_A, "this goes on and never ends", 0.0),
    (QUERY_B, "count pairs \\boxed{11}", 100.0),
]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = set()
    for query, text, _ in PREDICTIONS:
        for piece, _ in pre_tokenizers.Whitespace().pre_tokenize_str(query + " " + text):
            words.add(piece)
    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(sorted(words))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path_factory.mktemp("tok")
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(path)
    return path


def write_raw(path, meta, predictions):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        handle.write(json.dumps(meta) + "\n")
        for query, text, score in predictions:
            handle.write(json.dumps({"query": query, "choices": ["70" if query == QUERY_A else "11"],
                                     "prediction": [text], "score": score}) + "\n")


@pytest.fixture()
def raw_dir(tmp_path):
    root = tmp_path / "raw" / "aime24"
    dense = {"attn_local": None, "attn_topk": None, "attn_block_size": None,
             "attn_block_topk": None}
    write_raw(root / "dense" / "aime24_qwen3-8b_t32_dense.jsonl", dense, PREDICTIONS)
    block = {"attn_local": 0, "attn_topk": None, "attn_block_size": 16, "attn_block_topk": 64}
    write_raw(root / "blocktopk" / "aime24_qwen3-0.6b_local0_block16_blocktopk64.jsonl", block,
              PREDICTIONS[:2] + PREDICTIONS[3:])  # both queries: the analysis needs that
    return tmp_path / "raw"


def test_ingest_writes_a_valid_trial_table(raw_dir, tokenizer_dir, tmp_path, capsys):
    out = tmp_path / "trials.parquet"
    code = main(["ingest", str(raw_dir), "--tokenizer", str(tokenizer_dir), "--out", str(out),
                 "--quiet"])
    assert code == 0, capsys.readouterr().err
    trials, synthetic = load_trials(out)
    assert not synthetic and len(trials) == 7
    dense = trials[trials["model"] == "qwen3-8b"].reset_index(drop=True)
    assert set(dense["method"]) == {"dense"}
    block = trials[trials["model"] == "qwen3-0.6b"]
    assert set(block["config"]) == {"blocktopk1024-b16-w0"}
    # word-level tokens: "we try b = 21 and b = 49 so the sum is \ boxed { 70 } done"
    first = dense.iloc[0]
    assert first["gen_len"] == 19 and first["answer_pos"] == 18 and first["correct"] == 1
    assert first["answer"] == "70"
    assert first["prompt_len"] == len(QUERY_A.split())
    assert dense.iloc[1]["answer"] == "71" and dense.iloc[1]["correct"] == 0
    assert pd.isna(dense.iloc[2]["answer_pos"]) and pd.isna(dense.iloc[2]["answer"])
    assert list(dense["trial"]) == [0, 1, 2, 0]
    assert dense["query_id"].nunique() == 2
    # what made it, in the Parquet metadata
    import pyarrow.parquet as pq

    from kinetics.provenance import PROVENANCE_META_KEY
    from tests.schemas import validate

    record = validate(json.loads(pq.read_schema(out).metadata[PROVENANCE_META_KEY]),
                      "provenance")
    assert record["command"] == (f"kinetics ingest {raw_dir} --tokenizer {tokenizer_dir} "
                                 f"--out {out} --quiet")
    # the table feeds the report
    assert main(["report", "--trials", str(out), "--out", str(tmp_path / "rep"), "--quiet",
                 "--no-plots"]) == 0


def test_ingest_writes_a_table_that_misses_queries_and_says_report_refuses_it(
        tmp_path, tokenizer_dir, capsys):
    root = tmp_path / "raw"
    dense = {"attn_local": None, "attn_topk": None, "attn_block_size": None,
             "attn_block_topk": None}
    write_raw(root / "aime24_qwen3-8b_dense.jsonl", dense, PREDICTIONS)
    write_raw(root / "aime24_qwen3-4b_dense.jsonl", dense, PREDICTIONS[:1])
    out = tmp_path / "t.csv"
    assert main(["ingest", str(root), "--tokenizer", str(tokenizer_dir), "--out", str(out),
                 "--quiet"]) == 0
    assert len(pd.read_csv(out)) == 5  # every raw row, as read
    assert "note: kinetics report refuses this table: qwen3-4b (dense) has no sample of query" \
        in capsys.readouterr().out


def test_ingest_errors_exit_2(raw_dir, tokenizer_dir, tmp_path, capsys):
    out = tmp_path / "t.parquet"
    assert main(["ingest", str(tmp_path / "nope"), "--tokenizer", str(tokenizer_dir),
                 "--out", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["ingest", str(raw_dir), "--tokenizer", str(tmp_path / "notok"), "--out",
                 str(out)]) == 2
    assert "tokenizer" in capsys.readouterr().err
    bad = tmp_path / "bad" / "x_qwen3-4b_dense.jsonl"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"attn_topk": None}) + "\n" + json.dumps({"query": "q"}) + "\n")
    assert main(["ingest", str(bad), "--tokenizer", str(tokenizer_dir), "--out", str(out)]) == 2
    assert "prediction" in capsys.readouterr().err
    assert not out.exists()


def test_parsers():
    text = "a \\boxed{\\frac{1}{2}} b \\boxed{7}"
    assert last_boxed(text) == ("7", len(text))
    assert last_boxed("x \\boxed{\\frac{1}{2}} y") == ("\\frac{1}{2}", 21)
    assert last_boxed("\\boxed{unclosed") is None and last_boxed("none") is None
    assert normalize_answer(" 033 ") == "33" and normalize_answer("$1,000$") == "1000"
    assert normalize_answer("\\text{5}.") == "5"
    assert grade("070", ["70"]) and not grade("71", ["70"]) and not grade(None, ["70"])
    assert model_from_name("aime24/Qwen3-30B-A3B_dense.jsonl") == "qwen3-30b-a3b"
    assert model_from_name("Qwen/Qwen3-0.6B") == "qwen3-0.6b"
    assert config_from_filename("x_local0_topk1024.jsonl") == AttentionConfig.topk(1024)
    assert config_from_filename("x_local0_block16_blocktopk64.jsonl") == \
        AttentionConfig.blocktopk(16, topk_blocks=64)
    assert config_from_metadata({"attn_topk": None, "attn_local": None}) == AttentionConfig.dense()
    assert config_from_metadata({"attn_topk": 256, "attn_local": 0}) == AttentionConfig.topk(256)
    assert config_from_metadata({"temperature": 0.6}) is None


def test_prompt_length_uses_the_chat_template(tokenizer_dir):
    from transformers import AutoTokenizer

    from kinetics.analysis.ingest import _prompt_lengths

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert _prompt_lengths(tokenizer, [QUERY_B]) == {QUERY_B: len(QUERY_B.split())}
    tokenizer.chat_template = ("{% for m in messages %}user : {{ m['content'] }}{% endfor %}"
                               "{% if add_generation_prompt %} assistant :{% endif %}")
    assert _prompt_lengths(tokenizer, [QUERY_B]) == {QUERY_B: len(QUERY_B.split()) + 4}


def test_chat_template_without_jinja2_exits_2(raw_dir, tokenizer_dir, tmp_path, monkeypatch, capsys):
    """The `ingest` extra carries jinja2; where it is missing anyway, one line, exit 2."""
    import sys

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.chat_template = "{% for m in messages %}user : {{ m['content'] }}{% endfor %}"
    templated = tmp_path / "templated"
    tokenizer.save_pretrained(templated)
    monkeypatch.setitem(sys.modules, "jinja2", None)  # `import jinja2` now raises ImportError
    out = tmp_path / "t.parquet"
    assert main(["ingest", str(raw_dir), "--tokenizer", str(templated), "--out", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "jinja2" in err[0] and "kinetics-tts[ingest]" in err[0]
    assert not out.exists()


def _raw_lines(*rows) -> str:
    meta = {"attn_local": None, "attn_topk": None, "attn_block_size": None,
            "attn_block_topk": None}
    return "\n".join([json.dumps(meta), *(r if isinstance(r, str) else json.dumps(r)
                                          for r in rows)]) + "\n"


GOOD_ROW = {"query": QUERY_A, "choices": ["70"], "prediction": ["\\boxed{70}"], "score": 100.0}
BAD_RAW = [
    # (data rows after the metadata line, what stderr must say)
    ([GOOD_ROW, {"query": QUERY_A, "choices": ["70"], "score": 0.0}],
     "line 3, field 'prediction': missing"),
    ([GOOD_ROW, {"choices": ["70"], "prediction": ["x"], "score": 0.0}],
     "line 3, field 'query': missing"),
    ([GOOD_ROW, {"query": QUERY_A, "prediction": ["x"], "score": None}],
     "line 3, field 'score': no score and no gold choices"),
    ([GOOD_ROW, {**GOOD_ROW, "score": "high"}], "line 3, field 'score': expected a number"),
    ([GOOD_ROW, GOOD_ROW, '{"query": "q", "prediction": '],
     "line 4: not valid JSON (Expecting value; column 30)"),
    # a prediction list defines the samples: none or two is an error, never 0 or 1 trial
    ([GOOD_ROW, {**GOOD_ROW, "prediction": []}], "line 3, field 'prediction': an empty list"),
    ([GOOD_ROW, {**GOOD_ROW, "prediction": ["\\boxed{70}", "\\boxed{5}"]}],
     "line 3, field 'prediction': 2 generated texts in one row"),
    ([GOOD_ROW, '{"query": "q", "prediction": ["x"], "score": NaN}'],
     "line 3: not valid JSON (NaN is no JSON number)"),
    ([GOOD_ROW, "[" * 100_000 + "]" * 100_000], "line 3: not valid JSON here (nested too deeply"),
]


@pytest.mark.parametrize("rows, message", BAD_RAW, ids=[m[:40] for _, m in BAD_RAW])
def test_a_bad_raw_row_names_file_line_and_field(tmp_path, tokenizer_dir, capsys, rows, message):
    raw = tmp_path / "aime24_qwen3-8b_dense.jsonl"
    raw.write_text(_raw_lines(*rows))
    out = tmp_path / "t.parquet"
    assert main(["ingest", str(raw), "--tokenizer", str(tokenizer_dir), "--out", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{raw}, {message}" in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == [raw.name]  # nothing written


BAD_META = [
    # (metadata line, what stderr must say): the field, never "field 'x': field 'x'"
    ({"attn_local": 0, "attn_topk": -5}, "field 'attn_topk': expected an integer >= 1"),
    ({"attn_local": 0, "attn_block_size": 0, "attn_block_topk": 4},
     "field 'attn_block_size': expected an integer >= 1"),
    ({"attn_local": -1, "attn_topk": 8}, "field 'attn_local': expected an integer >= 0"),
    ({"attn_local": 0, "attn_topk": "1024"},
     "aime24_qwen3-8b.jsonl, field 'attn_topk': expected an integer or null, got '1024'"),
    ({"attn_local": 0, "attn_topk": 2**40}, "field 'attn_topk': budget 1099511627776 is over"),
]


@pytest.mark.parametrize("meta, message", BAD_META, ids=[m[:40] for _, m in BAD_META])
def test_bad_metadata_names_the_field_once(tmp_path, tokenizer_dir, capsys, meta, message):
    raw = tmp_path / "aime24_qwen3-8b.jsonl"
    raw.write_text(json.dumps(meta) + "\n" + json.dumps(GOOD_ROW) + "\n")
    assert main(["ingest", str(raw), "--tokenizer", str(tokenizer_dir), "--out",
                 str(tmp_path / "t.csv"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert err.count("field") == 1, err


def test_invalid_utf8_names_the_line_and_a_bom_is_accepted(tmp_path, tokenizer_dir, capsys):
    raw = tmp_path / "aime24_qwen3-8b_dense.jsonl"
    good = _raw_lines(GOOD_ROW, GOOD_ROW).encode()
    raw.write_bytes(good + b'{"query": "caf\xe9"}\n')
    out = tmp_path / "t.csv"
    argv = ["ingest", str(raw), "--tokenizer", str(tokenizer_dir), "--out", str(out), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{raw}, line 4: not UTF-8 text (invalid byte 0xe9 at byte 15)" in err, err
    raw.write_bytes(b"\xef\xbb\xbf" + good)  # a BOM, as editors on Windows write
    assert main(argv) == 0, capsys.readouterr().err
    assert len(pd.read_csv(out)) == 2


def test_ingest_refuses_to_write_over_its_input_even_with_force(tmp_path, tokenizer_dir, capsys):
    raw = tmp_path / "aime24_qwen3-8b_dense.jsonl"
    raw.write_text(_raw_lines(GOOD_ROW))
    before = raw.read_bytes()
    for out in (raw, tmp_path / "link.jsonl"):
        if out != raw:
            out.symlink_to(raw)
        assert main(["ingest", str(raw), "--tokenizer", str(tokenizer_dir), "--out", str(out),
                     "--force", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "is an input of this run" in err and len(err.strip().splitlines()) == 1, err
    assert raw.read_bytes() == before


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_full_disk_is_one_line_and_the_earlier_table_stays(tmp_path, tokenizer_dir, capsys,
                                                             monkeypatch, suffix):
    import errno

    raw = tmp_path / "aime24_qwen3-8b_dense.jsonl"
    raw.write_text(_raw_lines(GOOD_ROW))
    out = tmp_path / f"t{suffix}"
    out.write_text("the earlier table")

    def full(self, path, *args, **kwargs):
        open(path, "w").write("half")  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    if suffix == ".parquet":
        import pyarrow.parquet as pq

        monkeypatch.setattr(pq, "write_table", full)  # the table with its metadata
    else:
        monkeypatch.setattr(pd.DataFrame, "to_csv", full)
    assert main(["ingest", str(raw), "--tokenizer", str(tokenizer_dir), "--out", str(out),
                 "--force", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{out}: cannot write it (no space left on device); nothing was replaced" in err, err
    assert len(err.strip().splitlines()) == 1
    assert out.read_text() == "the earlier table"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([raw.name, out.name])


def test_grading_is_decided_per_row(tmp_path, tokenizer_dir):
    # a null score grades that row by its gold choices; the next row keeps its score
    raw = tmp_path / "aime24_qwen3-8b_dense.jsonl"
    raw.write_text(_raw_lines({**GOOD_ROW, "score": None},
                              {**GOOD_ROW, "prediction": ["\\boxed{5}"], "score": 100.0},
                              {**GOOD_ROW, "prediction": ["\\boxed{5}"], "score": None}))
    out = tmp_path / "t.csv"
    assert main(["ingest", str(raw), "--tokenizer", str(tokenizer_dir), "--out", str(out),
                 "--quiet"]) == 0
    assert list(pd.read_csv(out)["correct"]) == [1, 1, 0]


@pytest.fixture()
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("argv, message", [
    (["--tokenizer", "./no/such/tok"], "./no/such/tok: no such tokenizer folder"),
    (["--tokenizer", "Org/not-cached-anywhere"], "HF_HUB_OFFLINE is set"),
    (["--model", "Qwen3-7B"], "unknown model 'Qwen3-7B'"),
])
def test_ingest_flag_errors_are_one_line(raw_dir, tokenizer_dir, tmp_path, capsys, offline,
                                         argv, message):
    args = ["ingest", str(raw_dir), "--tokenizer", str(tokenizer_dir), "--out",
            str(tmp_path / "t.parquet"), "--quiet", *argv]
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "t.parquet").exists()


def test_an_unreachable_hub_fails_at_once(monkeypatch):
    from kinetics.analysis.ingest import require_hub
    from kinetics.errors import InputError

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused
    with pytest.raises(InputError, match="cannot be reached"):
        require_hub("Org/name", "tokenizer folder")


def test_ingest_never_replaces_an_existing_file_or_folder(raw_dir, tokenizer_dir, tmp_path,
                                                         capsys):
    mine = tmp_path / "mine.parquet"
    mine.write_text("user data")
    base = ["ingest", str(raw_dir), "--tokenizer", str(tokenizer_dir), "--quiet", "--out"]
    assert main([*base, str(mine)]) == 2
    assert "--force" in capsys.readouterr().err and mine.read_text() == "user data"
    folder = tmp_path / "f.csv"
    folder.mkdir()
    assert main([*base, str(folder)]) == 2
    assert "is a folder" in capsys.readouterr().err
    assert main([*base, str(mine), "--force"]) == 0
    assert len(load_trials(mine)[0]) == 7


def test_model_aliases_become_one_preset_name(raw_dir, tokenizer_dir, tmp_path):
    out = tmp_path / "t.csv"
    assert main(["ingest", str(raw_dir), "--tokenizer", str(tokenizer_dir), "--out", str(out),
                 "--quiet", "--model", "Qwen/Qwen3-8B"]) == 0
    assert set(pd.read_csv(out)["model"]) == {"qwen3-8b"}
