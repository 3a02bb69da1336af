"""Test-time-scaling strategies over a validated trial table: Best-of-N and long-CoT.

Both return one row per *option* and query: an option is a (model, config, N) for
Best-of-N or a (model, config, generation budget) for long-CoT. Costs are kept as
compute FLOPs and memory bytes so that any law (intensity I) prices them later:
eFLOPs = compute_flops + I * memory_bytes.

Best-of-N, for a query with n recorded samples of lengths T_1..T_n (c correct):

* coverage (pass@N) = 1 - C(n-c, N) / C(n, N), the unbiased estimator;
* cost(N) = N * mean_i private(S, T_i) + E[shared(S, max of N lengths)], the
  expectation over the C(n, N) subsets, exact by order statistics: with the lengths
  sorted, P(max = T_(j)) = C(j-1, N-1) / C(n, N);
* majority vote (where ``answer`` is known): the chance that the most frequent
  answer among N samples is correct, estimated over seeded random orderings of the
  query's samples (ties go to the answer that reached the count first).

Long-CoT, for a generation budget G tokens: a sample counts as correct only if
``correct`` and ``answer_pos <= G``; its cost is that of one sample of
min(T, G) tokens (private plus shared, a group of one). Both are averaged over the
query's samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from kinetics.cost import sample_cost, shared_cost
from kinetics.models import ModelSpec
from kinetics.traces import attention_of

GROUP = ["model", "config", "query_id"]
DEFAULT_GEN_BUDGETS: tuple[int, ...] = (2048, 3072, 4096, 6144, 8192, 12288, 16384, 24576, 32768)
MAJORITY_DRAWS = 64
MAJORITY_SEED = 0


def log_factorials(n_max: int) -> np.ndarray:
    """log(k!) for k = 0..n_max (float64)."""
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n_max + 1, dtype=np.float64)))])


def log_comb(n: np.ndarray, k: np.ndarray, table: np.ndarray) -> np.ndarray:
    """log C(n, k), -inf where k < 0 or k > n (``table`` from :func:`log_factorials`)."""
    n, k = np.broadcast_arrays(np.asarray(n, dtype=np.int64), np.asarray(k, dtype=np.int64))
    valid = (k >= 0) & (k <= n) & (n >= 0)
    nn, kk = np.where(valid, n, 0), np.where(valid, k, 0)
    out = table[nn] - table[kk] - table[nn - kk]
    return np.where(valid, out, -np.inf)


def pass_at_n(n: np.ndarray, c: np.ndarray, num: np.ndarray) -> np.ndarray:
    """Unbiased pass@N: 1 - C(n-c, N)/C(n, N) for n samples with c correct (arrays).

    Computed as a product of N ratios in log space; requires 1 <= N <= n.
    """
    n, c, num = (np.asarray(v, dtype=np.int64) for v in (n, c, num))
    table = log_factorials(int(np.max(n, initial=1)))
    ratio = np.exp(log_comb(n - c, num, table) - log_comb(n, num, table))
    return 1.0 - ratio


def max_order_weights(n: np.ndarray, rank: np.ndarray, num: np.ndarray) -> np.ndarray:
    """P(the max of a random N-subset of n sorted items is the item of 1-based ``rank``).

    C(rank-1, N-1) / C(n, N); zero where rank < N. Broadcasts.
    """
    n, rank, num = (np.asarray(v, dtype=np.int64) for v in (n, rank, num))
    table = log_factorials(int(np.max(n, initial=1)))
    valid = (num >= 1) & (num <= rank) & (rank <= n)
    num = np.where(valid, num, 1)
    log_w = log_comb(rank - 1, num - 1, table) - log_comb(n, num, table)
    return np.where(valid, np.exp(np.where(valid, log_w, 0.0)), 0.0)


def _row_costs(trials: pd.DataFrame, models: Mapping[str, ModelSpec],
               gen_len: np.ndarray) -> tuple[np.ndarray, ...]:
    """(private compute, private memory, shared compute, shared memory) per row and column.

    ``gen_len`` is (rows,) or (rows, k); one vectorized call per (model, config).
    """
    shape = gen_len.shape
    out = [np.zeros(shape) for _ in range(4)]
    prompt = trials["prompt_len"].to_numpy()
    if gen_len.ndim == 2:
        prompt = prompt[:, None]
    for (model, _config), index in trials.groupby(["model", "config"], sort=False).indices.items():
        attention = attention_of(trials.iloc[index[0]])
        spec = models[model]
        s, t = prompt[index], gen_len[index]
        private = sample_cost(spec, attention, s, t)
        shared = shared_cost(spec, attention, s, t)
        out[0][index] = private.compute_flops
        out[1][index] = private.memory_bytes
        out[2][index] = shared.compute_flops
        out[3][index] = shared.memory_bytes
    return tuple(out)


def _run_starts(key: np.ndarray) -> np.ndarray:
    """Index of the first element of each element's run of equal, contiguous keys."""
    start = np.r_[True, key[1:] != key[:-1]]
    return np.maximum.accumulate(np.where(start, np.arange(len(key)), 0))


def _majority(trials: pd.DataFrame, group: np.ndarray, n_groups: int, n_max: int,
              draws: int, seed: int) -> np.ndarray:
    """(groups, n_max) majority-vote accuracy over ``draws`` seeded orderings; NaN if unknown.

    For each ordering, the vote leader after the first N samples is the answer with
    the most votes (the one that reached that count first on ties); the result is
    the fraction of orderings whose leader is correct.
    """
    if draws <= 0 or "answer" not in trials.columns or trials["answer"].isna().all():
        return np.full((n_groups, n_max), np.nan)
    rows = len(trials)
    answer = trials["answer"].to_numpy(dtype=object, na_value=None)
    codes = pd.factorize(answer, use_na_sentinel=True)[0].astype(np.int64)
    n_codes = int(codes.max()) + 1
    missing = codes < 0  # a missing answer never pools with another: a code of its own
    codes[missing] = n_codes + np.flatnonzero(missing)
    n_codes += rows
    rng = np.random.default_rng(seed)
    rep_group = np.tile(group, draws)
    rep_draw = np.repeat(np.arange(draws), rows)
    order = np.argsort((rep_draw * n_groups + rep_group) + rng.random(rows * draws))
    g = rep_group[order]
    k = rep_draw[order] * n_groups + g  # one (ordering, query) cell, contiguous
    code = np.tile(codes, draws)[order]
    right = np.tile(trials["correct"].to_numpy(), draws)[order]
    position = np.arange(len(k))
    # votes so far for each sample's answer within its cell
    answer_key = k * n_codes + code
    by_answer = np.argsort(answer_key, kind="stable")
    sorted_key = answer_key[by_answer]
    votes = np.empty(len(k), dtype=np.int64)
    votes[by_answer] = position - _run_starts(sorted_key) + 1
    big = n_max + 1
    lead = np.maximum.accumulate(k * big + votes) - k * big  # running max within the cell
    start = _run_starts(k)
    prev_lead = np.where(position == start, 0, np.r_[0, lead[:-1]])
    new_leader = votes > prev_lead
    leader_right = right[np.maximum.accumulate(np.where(new_leader, position, 0))]
    total = np.bincount(g * n_max + position - start, weights=leader_right,
                        minlength=n_groups * n_max).reshape(n_groups, n_max)
    counts = np.bincount(group, minlength=n_groups)
    out = total / draws
    out[np.arange(n_max)[None, :] >= counts[:, None]] = np.nan
    return out


def best_of_n(trials: pd.DataFrame, models: Mapping[str, ModelSpec], *,
              majority_draws: int = MAJORITY_DRAWS, seed: int = MAJORITY_SEED) -> pd.DataFrame:
    """Best-of-N options: one row per (model, config, query, N), N = 1..n samples.

    Columns: model, method, config, query_id, n, coverage, majority (NaN without
    answers), compute_flops (FLOPs), memory_bytes (bytes) -- the expected cost of
    decoding N of the query's samples together.
    """
    trials = trials.sort_values(GROUP + ["gen_len"], kind="stable").reset_index(drop=True)
    group, keys = pd.factorize(pd.MultiIndex.from_frame(trials[GROUP]))
    n_groups = len(keys)
    counts = np.bincount(group, minlength=n_groups)
    n_max = int(counts.max())
    rank = trials.groupby(group, sort=False).cumcount().to_numpy() + 1  # 1-based, by length
    gen = trials["gen_len"].to_numpy()
    pc, pm, sc, sm = _row_costs(trials, models, gen)

    mean_pc = np.bincount(group, pc, n_groups) / counts
    mean_pm = np.bincount(group, pm, n_groups) / counts
    num = np.arange(1, n_max + 1)
    weights = max_order_weights(counts[group][:, None], rank[:, None], num[None, :])
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    exp_sc = np.add.reduceat(weights * sc[:, None], starts, axis=0)
    exp_sm = np.add.reduceat(weights * sm[:, None], starts, axis=0)
    g_order = group[starts]  # groups are contiguous after the sort
    correct = np.bincount(group, trials["correct"].to_numpy(), n_groups).astype(np.int64)
    majority = _majority(trials, group, n_groups, n_max, majority_draws, seed)

    keep = num[None, :] <= counts[:, None]  # (groups, n_max)
    gi, ni = np.nonzero(keep)
    inv = np.empty(n_groups, dtype=np.int64)
    inv[g_order] = np.arange(n_groups)
    nn = num[ni]
    first = trials.iloc[starts[inv[gi]]]
    return pd.DataFrame({
        "model": first["model"].to_numpy(),
        "method": first["method"].to_numpy(),
        "config": first["config"].to_numpy(),
        "query_id": first["query_id"].to_numpy(),
        "n": nn,
        "coverage": pass_at_n(counts[gi], correct[gi], nn),
        "majority": majority[gi, ni],
        "compute_flops": nn * mean_pc[gi] + exp_sc[inv[gi], ni],
        "memory_bytes": nn * mean_pm[gi] + exp_sm[inv[gi], ni],
    })


def long_cot(trials: pd.DataFrame, models: Mapping[str, ModelSpec],
             gen_budgets: Sequence[int] = DEFAULT_GEN_BUDGETS) -> pd.DataFrame:
    """Long-CoT options: one row per (model, config, query, generation budget G tokens).

    Columns: model, method, config, query_id, gen_budget, accuracy, compute_flops,
    memory_bytes -- means over the query's samples of one-sample decodes of
    min(T, G) tokens.
    """
    budgets = np.asarray(sorted(set(int(b) for b in gen_budgets)), dtype=np.int64)
    trials = trials.reset_index(drop=True)
    gen = trials["gen_len"].to_numpy()[:, None]
    clipped = np.minimum(gen, budgets[None, :])
    pc, pm, sc, sm = _row_costs(trials, models, clipped)
    pos = trials["answer_pos"].to_numpy(dtype=np.float64, na_value=np.inf)[:, None]
    ok = (trials["correct"].to_numpy()[:, None] == 1) & (pos <= budgets[None, :])
    per_row = pd.DataFrame({"acc": ok.ravel().astype(np.float64),
                            "compute_flops": (pc + sc).ravel(),
                            "memory_bytes": (pm + sm).ravel()})
    group, keys = pd.factorize(pd.MultiIndex.from_frame(trials[GROUP]))
    first_row = pd.Series(np.arange(len(trials))).groupby(group).first().to_numpy()
    k = len(budgets)
    cell = np.repeat(group, k) * k + np.tile(np.arange(k), len(trials))
    means = per_row.groupby(cell).mean()
    idx = means.index.to_numpy()
    labels = trials.iloc[first_row[idx // k]]
    return pd.DataFrame({
        "model": labels["model"].to_numpy(),
        "method": labels["method"].to_numpy(),
        "config": labels["config"].to_numpy(),
        "query_id": labels["query_id"].to_numpy(),
        "gen_budget": budgets[idx % k],
        "accuracy": means["acc"].to_numpy(),
        "compute_flops": means["compute_flops"].to_numpy(),
        "memory_bytes": means["memory_bytes"].to_numpy(),
    })
