"""A generation run: problems x attention configurations x samples -> trial rows.

Every configuration samples the same problems with the same per-sample seeds, so dense
and sparse answers are paired. The unit of work (and of resumption) is one
(configuration, problem): its samples are graded and turned into trial rows
(``docs/trials.md``) together and handed to a sink as soon as the last one finishes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kinetics.cost import AttentionConfig
from kinetics.generation.backend import Backend, Completion, Request, SamplingParams, sample_seed
from kinetics.generation.problems import Problem

if TYPE_CHECKING:
    import pandas as pd

#: extra columns of a generated table, after the trials.md ones
EXTRA_COLUMNS = ("stop_reason", "text")


@dataclass(frozen=True)
class GenerationJob:
    """What to generate.

    Attributes:
        model: the table's ``model`` name.
        configs: attention configurations, sampled in this order.
        samples: samples per (configuration, problem), N.
        params: sampling and stopping.
        seed: run seed; sample ``i`` of problem ``p`` draws from
            :func:`~kinetics.generation.backend.sample_seed` ``(seed, p, i)``.
        answer_pattern: regex with one group, tried when a text has no ``\\boxed{}``.
    """

    model: str
    configs: tuple[AttentionConfig, ...]
    samples: int
    params: SamplingParams
    seed: int = 0
    answer_pattern: str | None = None


def prompt_ids(tokenizer: Any, question: str) -> tuple[int, ...]:
    """The prompt's token ids: the chat template's user turn and generation prompt when
    the tokenizer has a template (as ``kinetics ingest`` counts ``prompt_len``), else the
    plain question with the tokenizer's special tokens."""
    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template([{"role": "user", "content": question}],
                                            add_generation_prompt=True, tokenize=True)
        if hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return tuple(int(i) for i in ids)
    return tuple(int(i) for i in tokenizer(question, add_special_tokens=True)["input_ids"])


def unit_requests(job: GenerationJob, problem: Problem, prompt: tuple[int, ...]
                  ) -> list[Request]:
    """The ``job.samples`` requests of one problem, keyed ``(problem id, trial)``."""
    return [Request((problem.id, trial), prompt, sample_seed(job.seed, problem.id, trial))
            for trial in range(job.samples)]


def answer_position(tokenizer: Any, token_ids: Sequence[int], end_char: int) -> int:
    """Generated tokens up to and including the one that completes character
    ``end_char - 1`` of the decoded text: the smallest ``i`` whose decoded prefix starts
    with the text's first ``end_char`` characters (binary search over prefixes; a prefix
    that ends inside a multi-byte character decodes to a replacement character, so it
    does not count as complete)."""
    head = tokenizer.decode(list(token_ids), skip_special_tokens=False)[:end_char]
    lo, hi = 1, len(token_ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if tokenizer.decode(list(token_ids[:mid]), skip_special_tokens=False).startswith(head):
            hi = mid
        else:
            lo = mid + 1
    return lo


def trial_frame(job: GenerationJob, config: AttentionConfig, problem: Problem,
                prompt_len: int, completions: Sequence[Completion], tokenizer: Any
                ) -> pd.DataFrame:
    """Graded trial rows of one (configuration, problem), ordered by trial."""
    import pandas as pd

    from kinetics.analysis.answers import answers_match, extract_answer

    rows = []
    for c in sorted(completions, key=lambda c: c.key[1]):
        text = tokenizer.decode(list(c.token_ids), skip_special_tokens=False)
        found = extract_answer(text, job.answer_pattern)
        correct = found is not None and answers_match(found.text, problem.answer,
                                                      exact=problem.exact)
        rows.append({
            "trial": c.key[1], "gen_len": len(c.token_ids), "correct": int(correct),
            "answer_pos": None if found is None else answer_position(tokenizer, c.token_ids,
                                                                     found.end),
            "answer": None if found is None else found.text,
            "stop_reason": c.stop_reason, "text": text,
        })
    frame = pd.DataFrame(rows)
    n = len(frame)
    head = pd.DataFrame({
        "model": [job.model] * n, "method": config.method,
        "budget": pd.array([config.budget] * n, dtype="Int64"),
        "block_size": pd.array([config.block_size] * n, dtype="Int64"),
        "local": pd.array([config.local if config.method == "blocktopk" else None] * n,
                          dtype="Int64"),
        "query_id": problem.id, "prompt_len": prompt_len,
    })
    out = pd.concat([head, frame], axis=1)
    out["answer_pos"] = out["answer_pos"].astype("Int64")
    out["answer"] = out["answer"].astype("string")
    return out


UnitSink = Callable[[int, Problem, "pd.DataFrame"], None]


def run_job(backend: Backend, job: GenerationJob, problems: Sequence[Problem],
            sink: UnitSink, done: Callable[[int, str], bool] = lambda ci, pid: False) -> None:
    """Generate every (configuration, problem) that ``done(config index, problem id)``
    does not report finished, handing each unit's trial rows to ``sink`` when its last
    sample ends."""
    tokenizer = backend.tokenizer
    prompts = {p.id: prompt_ids(tokenizer, p.question) for p in problems}
    by_id = {p.id: p for p in problems}
    for ci, config in enumerate(job.configs):
        pending = [p for p in problems if not done(ci, p.id)]
        requests = [r for p in pending for r in unit_requests(job, p, prompts[p.id])]
        finished: dict[str, list[Completion]] = {}
        for completion in backend.generate(requests, job.params, config):
            pid = completion.key[0]
            finished.setdefault(pid, []).append(completion)
            if len(finished[pid]) == job.samples:
                sink(ci, by_id[pid], trial_frame(job, config, by_id[pid], len(prompts[pid]),
                                                 finished.pop(pid), tokenizer))
