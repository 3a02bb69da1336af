"""``kinetics generate`` end to end on a tiny random Llama folder: its table feeds
``report`` and ``check``; a SIGKILLed run resumes to the uninterrupted table; two
torchrun ranks give one rank's table; bad input is one line, exit 2, nothing written."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("transformers")

from kinetics.analysis.answers import answers_match, extract_answer  # noqa: E402
from kinetics.cli import main  # noqa: E402
from kinetics.cli.generate_cmd import GENERATION_META_KEY, LAST_NUMBER  # noqa: E402
from kinetics.generation.problems import arithmetic_problems  # noqa: E402
from kinetics.generation.store import MANIFEST, parts_folder  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SIZES = ["--problems", "builtin:arithmetic", "--limit", "3", "--samples", "2",
         "--max-new-tokens", "12", "--config", "blocktopk:16:1:1", "--batch-size", "4",
         "--quiet"]
TEMPERATURES = {"sampled": "0.8", "greedy": "0"}
# the run, each finished unit's shard followed by a pause (from the second one on, one
# longer than any test): the kill lands mid-run, after one or two shards
SLOW_SHARDS = ("import sys, time\n"
               "import kinetics.generation.store as store\n"
               "write = store.ShardStore.write\n"
               "def slow(self, *args, **kwargs):\n"
               "    write(self, *args, **kwargs)\n"
               "    time.sleep(0.3 if len(self.shards()) < 2 else 600)\n"
               "store.ShardStore.write = slow\n"
               "from kinetics.cli import main\n"
               "sys.exit(main(sys.argv[1:]))\n")


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}


def kinetics(*args, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "kinetics", *map(str, args)], cwd=cwd,
                          env=env(), capture_output=True, text=True, timeout=300)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def generate_args(model: Path, out: str, temperature: str) -> list[str]:
    return ["generate", "--model", str(model), *SIZES, "--threads", "1", "--temperature",
            temperature, "--out", out, "--texts", out.replace(".parquet", ".jsonl")]


def table(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path)


def generation_meta(path: Path) -> dict:
    return json.loads(pq.read_schema(path).metadata[GENERATION_META_KEY])


@pytest.fixture(scope="module")
def reference(tiny_llama_dir, tmp_path_factory):
    """One uninterrupted single-process run per temperature (made when first asked)."""
    made = {}

    def get(name: str) -> Path:
        if name not in made:
            folder = tmp_path_factory.mktemp(f"reference-{name}")
            kinetics(*generate_args(tiny_llama_dir, "t.parquet", TEMPERATURES[name]),
                     cwd=folder)
            made[name] = folder / "t.parquet"
        return made[name]

    return get


def test_a_generated_table_is_complete_and_its_texts_match(reference):
    path = reference("sampled")
    frame = table(path)
    problems = arithmetic_problems()[:3]
    assert len(frame) == 2 * 3 * 2 and not parts_folder(path).exists()
    assert frame["method"].tolist() == ["dense"] * 6 + ["blocktopk"] * 6
    assert frame["query_id"].tolist() == [p.id for p in problems for _ in (0, 1)] * 2
    assert frame["trial"].tolist() == [0, 1] * 6
    assert (frame["gen_len"] <= 12).all()
    assert set(frame["stop_reason"]) <= {"eos", "length", "stop"}
    assert (frame.loc[frame["stop_reason"] == "length", "gen_len"] == 12).all()
    assert (frame.loc[frame["gen_len"] < 12, "stop_reason"] == "eos").all()
    meta = generation_meta(path)
    assert meta["samples"] == 2 and meta["sampling"]["temperature"] == 0.8
    assert meta["problems"] == 3
    from kinetics.provenance import PROVENANCE_META_KEY
    from tests.schemas import validate

    made = validate(json.loads(pq.read_schema(path).metadata[PROVENANCE_META_KEY]),
                    "provenance")
    assert made["command"].startswith("kinetics generate --model ")
    assert made["device"] == "cpu"  # --device cpu, whatever else the machine has
    texts = [json.loads(line) for line in path.with_suffix(".jsonl").read_text().splitlines()]
    assert [(t["query_id"], t["trial"], t["method"]) for t in texts] == list(
        zip(frame["query_id"], frame["trial"], frame["method"], strict=True))
    gold = {p.id: p.answer for p in problems}
    for t, row in zip(texts, frame.itertuples(), strict=True):  # graded as the rows say
        found = extract_answer(t["text"], LAST_NUMBER)
        assert (None if found is None else found.text) == (None if pd.isna(row.answer)
                                                            else row.answer)
        assert row.correct == int(found is not None and answers_match(found.text,
                                                                       gold[row.query_id]))


def test_report_and_check_read_a_generated_table(reference, tmp_path):
    trials = reference("sampled")
    kinetics("report", "--trials", trials, "--out", "rep", "--quiet", "--no-plots",
             "--grid-points", "5", cwd=tmp_path)
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert {e["method"] for e in summary["entries"]} == {"dense", "blocktopk"}
    kinetics("check", "--trials", trials, "--update", "--baseline", "base.json", cwd=tmp_path)
    ok = kinetics("check", "--trials", trials, "--baseline", "base.json", cwd=tmp_path)
    assert "OK" in ok.stdout
    moved = table(trials)  # the gate sees the table: every sparse answer right now
    moved.loc[moved["method"] == "blocktopk", "correct"] = 1
    meta = pq.read_schema(trials).metadata  # keeps the model's config: report prices it
    pq.write_table(pa.Table.from_pandas(moved, preserve_index=False).replace_schema_metadata(
        meta), tmp_path / "moved.parquet")
    gate = kinetics("check", "--trials", "moved.parquet", "--baseline", "base.json",
                    cwd=tmp_path, check=False)
    assert gate.returncode == 1 and "moved beyond" in gate.stdout


def test_the_paged_backend_writes_the_hf_table_on_greedy_decoding(reference, tiny_llama_dir,
                                                                  tmp_path):
    """Same arguments, --backend paged: the same trial table (tokens, grades) and texts;
    the run's metadata names the backend."""
    kinetics(*generate_args(tiny_llama_dir, "p.parquet", "0"), "--backend", "paged",
             cwd=tmp_path)
    hf_path, paged_path = reference("greedy"), tmp_path / "p.parquet"
    pd.testing.assert_frame_equal(table(paged_path), table(hf_path))
    assert paged_path.with_suffix(".jsonl").read_text() == \
        hf_path.with_suffix(".jsonl").read_text()
    assert generation_meta(paged_path)["backend"] == "paged"
    assert generation_meta(hf_path)["backend"] == "hf"


@pytest.mark.parametrize("name", list(TEMPERATURES))
def test_resume_after_sigkill_equals_an_uninterrupted_run(reference, tiny_llama_dir, tmp_path,
                                                          name):
    args = generate_args(tiny_llama_dir, "t.parquet", TEMPERATURES[name])
    parts = tmp_path / ".t.parquet.parts"
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SHARDS, *args], cwd=tmp_path,
                            env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while not list(parts.glob("c*.parquet")):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no shard within 240 s"
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    shards = list(parts.glob("c*.parquet"))
    kept, kept_tokens = len(shards), sum(int(pd.read_parquet(p)["gen_len"].sum())
                                         for p in shards)
    assert 1 <= kept <= 2 and not (tmp_path / "t.parquet").exists()
    resumed = kinetics(*args, cwd=tmp_path)
    assert f"({kept} problem-configs resumed)" in resumed.stderr
    # only the missing units were generated again
    tokens = int(re.search(r"; (\d+) tokens in", resumed.stderr).group(1))
    assert tokens == table(reference(name))["gen_len"].sum() - kept_tokens
    pd.testing.assert_frame_equal(table(tmp_path / "t.parquet"), table(reference(name)))
    assert (tmp_path / "t.jsonl").read_text() == reference(name).with_suffix(".jsonl").read_text()
    assert generation_meta(tmp_path / "t.parquet") == generation_meta(reference(name))
    assert not parts.exists()


def torchrun(procs: int, args: list[str], cwd: Path) -> None:
    """``torchrun --nproc_per_node procs -m kinetics ARGS`` in ``cwd``: the test skips when
    torchrun cannot start here (no sockets), fails on any other error."""
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node", str(procs), "-m", "kinetics", *args], cwd=cwd,
                          env=env(), capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and re.search(r"(?i)gloo|rendezvous|socket|address|connect",
                                          done.stderr) and "kinetics generate" not in \
            done.stderr:
        pytest.skip(f"torchrun cannot start here: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_torchrun_ranks_give_the_one_process_table(reference, tiny_llama_dir, tmp_path):
    torchrun(2, generate_args(tiny_llama_dir, "t.parquet", TEMPERATURES["sampled"]), tmp_path)
    pd.testing.assert_frame_equal(table(tmp_path / "t.parquet"), table(reference("sampled")))
    assert (tmp_path / "t.jsonl").read_text() == \
        reference("sampled").with_suffix(".jsonl").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.jsonl", "t.parquet"]


@pytest.mark.parametrize("procs, tp", [(2, 2), (4, 2)], ids=["tp2", "dp2-tp2"])
def test_tensor_parallel_paged_ranks_give_the_one_process_table(reference, tiny_llama_dir,
                                                               tmp_path, procs, tp):
    """torchrun --tp: each model sharded over tp ranks (gloo), data parallel over the
    groups; greedy, the same table and texts as one process."""
    torchrun(procs, [*generate_args(tiny_llama_dir, "t.parquet", TEMPERATURES["greedy"]),
                     "--backend", "paged", "--tp", str(tp)], tmp_path)
    pd.testing.assert_frame_equal(table(tmp_path / "t.parquet"), table(reference("greedy")))
    assert (tmp_path / "t.jsonl").read_text() == \
        reference("greedy").with_suffix(".jsonl").read_text()
    assert generation_meta(tmp_path / "t.parquet")["backend"] == "paged"


# --- bad input ------------------------------------------------------------------------------

from tests.cli.test_bad_input import snapshot  # noqa: E402


@pytest.fixture()
def work(tmp_path, monkeypatch):
    """A scratch current folder holding a problems file and an unfinished run's shards."""
    monkeypatch.chdir(tmp_path)
    pd.DataFrame({"question": ["What is 1 + 1?"], "answer": ["2"]}).to_parquet("probs.parquet")
    Path("probs.jsonl").write_text('{"question": "What is 1 + 1?", "answer": "2"}\n')
    parts = tmp_path / ".busy.parquet.parts"
    parts.mkdir()
    (parts / MANIFEST).write_text(json.dumps({"model": "another run"}))
    (parts / "c000-0123456789abcdef0123.parquet").write_bytes(b"a finished unit")
    return tmp_path


def refused(capsys, argv, *needles) -> str:
    code = main(["generate", *argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("kinetics generate: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, err
    return err


BAD = [
    (["--problems", "probs.parquet", "--out", "probs.parquet"], ["probs.parquet", "input"]),
    (["--config", "blocktopk:16"], ["blocktopk:16"]),
    (["--config", "blocktopk:12:2"], ["power of two"]),
    (["--config", "blocktopk:16:0:1"], ["k >= 1"]),
    (["--config", "blocktopk:16:2:-1"], ["local >= 0"]),
    (["--config", "topk:x"], ["numbers expected"]),
    (["--config", "topk:0"], ["budget"]),
    (["--config", "sparse"], ["sparse"]),
    (["--method", "blocktopk", "--block-size", "16", "--topk-blocks", "2", "--local", "-1"],
     ["local >= 0"]),
    (["--method", "blocktopk", "--block-size", "16"], ["--topk-blocks"]),
    (["--budget", "64"], ["--method"]),
    (["--samples", "0"], ["--samples"]),
    (["--max-new-tokens", "0"], ["--max-new-tokens"]),
    (["--temperature", "-1"], ["temperature"]),
    (["--top-p", "0"], ["top-p"]),
    (["--answer-pattern", r"(\d+)-(\d+)"], ["capturing group"]),
    (["--answer-pattern", "(unclosed"], ["regular expression"]),
    (["--out", "t.csv"], [".parquet"]),
    (["--texts", "t.txt"], [".jsonl"]),
    (["--kv-pages", "64"], ["--kv-pages applies to --backend paged"]),
    (["--static-batching"], ["--static-batching applies to --backend paged"]),
    (["--tp", "2"], ["--tp applies to --backend paged"]),
    (["--backend", "paged", "--tp", "2"], ["--tp 2 needs a multiple of 2 processes"]),
    (["--backend", "paged", "--tp", "0"], ["--tp must be >= 1"]),
    (["--backend", "paged", "--kv-pages", "0"], ["--kv-pages must be >= 1"]),
    (["--backend", "paged", "--prefill-chunk", "0"], ["--prefill-chunk must be >= 1"]),
    (["--problems", "nowhere.jsonl"], ["nowhere.jsonl", "no such file"]),
    (["--problems", "probs.jsonl", "--question-field", "q"], ["probs.jsonl", "q"]),
    (["--problems", "probs.jsonl", "--out", "probs.jsonl.parquet", "--texts",
      "probs.jsonl"], ["probs.jsonl"]),
]


@pytest.mark.parametrize("argv, needles", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(work, capsys, argv, needles):
    before = snapshot(work)
    argv = argv if "--out" in argv else [*argv, "--out", "t.parquet"]
    refused(capsys, ["--model", "/no/such/model", *argv], *needles)
    assert snapshot(work) == before


def test_a_pool_too_small_for_one_sample_is_refused_before_any_work(work, capsys,
                                                                    tiny_llama_dir):
    before = snapshot(work)
    refused(capsys, ["--model", str(tiny_llama_dir), "--backend", "paged", "--kv-pages", "1",
                     "--problems", "probs.jsonl", "--out", "t.parquet", "--quiet"],
            "may need", "pool holds 1", "--kv-pages")
    assert snapshot(work) == before


def test_an_existing_out_is_kept_without_force(work, capsys):
    Path("t.parquet").write_bytes(b"the user's table")
    before = snapshot(work)
    refused(capsys, ["--out", "t.parquet"], "--force")
    assert snapshot(work) == before


def test_other_arguments_into_an_unfinished_run_are_refused(work, capsys, tiny_llama_dir):
    before = snapshot(work)
    refused(capsys, ["--model", str(tiny_llama_dir), *SIZES, "--out", "busy.parquet"],
            ".busy.parquet.parts", "--restart")
    assert snapshot(work) == before


@pytest.mark.parametrize("text, expected", [
    ("The answer is 12, so done.", "12"), ("He has 1,200 coins.", "1,200"),
    ("so 12.", "12"), ("total: -3.5, then", "-3.5"), ("x 7,", "7")])
def test_the_default_answer_pattern_takes_the_last_number(text, expected):
    found = extract_answer(text, LAST_NUMBER)
    assert found is not None and found.text == expected
    assert text[:found.end].endswith(expected)
