"""Test-time-scaling strategies over a validated trial table: Best-of-N and long-CoT.

Both return one row per *option* and query: an option is a (model, config, N) for
Best-of-N or a (model, config, generation budget) for long-CoT. Costs are kept as
compute FLOPs and memory bytes so that any law (intensity I) prices them later:
eFLOPs = compute_flops + I * memory_bytes.

Best-of-N, for a query with n recorded samples of lengths T_1..T_n (c correct), for
N = 1 up to the fewest samples any query of its (model, config) has (the
uneven-samples rule, docs/analysis.md: an option exists for every query or none):

* coverage (pass@N) = 1 - C(n-c, N) / C(n, N), the unbiased estimator;
* cost(N) = N * mean_i private(S, T_i) + E[shared(S, max of N lengths)], the
  expectation over the C(n, N) subsets, exact by order statistics: with the lengths
  sorted, P(max = T_(j)) = C(j-1, N-1) / C(n, N);
* majority vote (where ``answer`` is known): the chance that the most frequent
  answer among N samples is correct, exactly: the expectation over all N-subsets,
  ties shared equally, samples without an answer abstaining (see :func:`_majority`).

Long-CoT, for a generation budget G tokens: a sample counts as correct only if
``correct`` and ``answer_pos <= G``; its cost is that of one sample of
min(T, G) tokens (private plus shared, a group of one). Both are averaged over the
query's samples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from kinetics.analysis.trials import MAX_VOTE_SAMPLES, attention_of
from kinetics.cost import sample_cost, shared_cost
from kinetics.models import ModelSpec

GROUP = ["model", "config", "query_id"]
DEFAULT_GEN_BUDGETS: tuple[int, ...] = (2048, 3072, 4096, 6144, 8192, 12288, 16384, 24576, 32768)


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


def _binomial_table(n_max: int) -> np.ndarray:
    """C(n, k) for 0 <= n, k <= n_max as float64 (exact integers below 2**53)."""
    table = np.zeros((n_max + 1, n_max + 1))
    table[:, 0] = 1.0
    for n in range(1, n_max + 1):
        table[n, 1:] = table[n - 1, 1:] + table[n - 1, :-1]
    return table


def _times_factor(state: np.ndarray, low: np.ndarray, tie: np.ndarray, x: int) -> np.ndarray:
    """Multiply generating functions by one class's factor sum_{y<x} low_y z^y + tie u z^x.

    ``state`` (P, S, T): coefficient of z^s u^t (subsets of size s, t classes tied with
    the target); ``low`` (P, S) with zeros from x on; ``tie`` (P,) = C(c_k, x).
    """
    s = state.shape[1]
    idx = np.arange(s)[:, None] - np.arange(s)[None, :]
    toeplitz = np.where(idx >= 0, low[:, np.clip(idx, 0, None)], 0.0)  # (P, S, S)
    out = toeplitz @ state
    if x < s:
        out[:, x:, 1:] += tie[:, None, None] * state[:, : s - x, :-1]
    return out


def majority_win_probability(counts: np.ndarray, abstain: np.ndarray,
                             target: np.ndarray) -> np.ndarray:
    """Exact P(class ``target`` wins the vote of a random N-subset), N = 1..n_max.

    ``counts`` (P, M): votes recorded per answer class (zero-padded); ``abstain``
    (P,): samples with no answer; ``target`` (P,): the class column. A subset's
    winner is the class with the most votes, ties shared equally (uniform random
    tie-break); abstainers vote for nobody, and an all-abstain subset has no winner.
    Returns (P, n_max) float64; 0 where N > the row's n = counts.sum() + abstain.

    For each count x the target gets, the other classes' generating function
    prod_k (sum_{y<x} C(c_k,y) z^y + u C(c_k,x) z^x) * (1+z)^a counts the subsets by
    size (z) and number of classes tied at x (u); a subset with t ties gives the
    target 1/(t+1). Counts stay exact integers in float64 up to ~55 samples a query and
    finite up to MAX_VOTE_SAMPLES (1,000); more raises ValueError (trial tables reject
    such queries on load).
    """
    counts = np.asarray(counts, dtype=np.int64)
    abstain = np.asarray(abstain, dtype=np.int64)
    rows, m = counts.shape
    n = counts.sum(axis=1) + abstain
    n_max = int(n.max(initial=0))
    if n_max > MAX_VOTE_SAMPLES:
        raise ValueError(f"{n_max} samples in one query: the exact majority vote takes at most "
                         f"{MAX_VOTE_SAMPLES}")
    out = np.zeros((rows, max(n_max, 1)))
    if rows == 0 or n_max == 0:
        return out[:, :n_max]
    binom = _binomial_table(n_max)
    own = counts[np.arange(rows), target]
    others = counts.copy()
    others[np.arange(rows), target] = 0
    others = -np.sort(-others, axis=1)  # largest first: the constrained classes lead
    share = 1.0 / np.arange(1, m + 1)  # target's share with t others tied
    for x in range(1, int(own.max(initial=0)) + 1):
        s = n_max - x + 1  # the others fill N - x <= n_max - x places
        ys = np.arange(s)
        # classes with fewer than x votes can never tie or beat: a plain (1+z)^c
        loose = np.where(others < x, others, 0).sum(axis=1) + abstain
        state = np.zeros((rows, s, m))
        state[:, :, 0] = binom[loose][:, :s]
        for k in range(int((others >= x).sum(axis=1).max(initial=0))):
            c = np.where(others[:, k] >= x, others[:, k], 0)
            low = np.where(ys[None, :] < x, binom[c][:, :s], 0.0)
            state = _times_factor(state, low, binom[c, x], x)
        ways = state @ share  # (P, s): subsets of the others, ties shared
        out[:, x - 1:] += binom[own, x][:, None] * ways  # N = x..n_max
    total = binom[n][:, 1:]  # C(n, N), N = 1..n_max
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, out / np.where(total > 0, total, 1.0), 0.0)


def _vote_classes(trials: pd.DataFrame, group: np.ndarray, n_groups: int):
    """Per query: (counts (G, M) per answer class, abstainers (G,), pairs of
    (group, class column, fraction of the class's samples that are correct)) for
    the classes with any correct sample."""
    code, _ = pd.factorize(trials["answer"], use_na_sentinel=True)
    voted = np.flatnonzero(code >= 0)
    _, cls = np.unique(group[voted] * (int(code.max()) + 1) + code[voted], return_inverse=True)
    cls = cls.ravel()
    n_cls = int(cls.max(initial=-1)) + 1
    cls_group = np.zeros(n_cls, dtype=np.int64)
    cls_group[cls] = group[voted]
    size = np.bincount(cls, minlength=n_cls)
    right = np.bincount(cls, weights=trials["correct"].to_numpy()[voted], minlength=n_cls)
    order = np.argsort(cls_group, kind="stable")
    column = np.empty(n_cls, dtype=np.int64)
    column[order] = np.arange(n_cls) - _first_of_run(cls_group[order])
    m = int(column.max(initial=0)) + 1
    counts = np.zeros((n_groups, m), dtype=np.int64)
    counts[cls_group, column] = size
    abstain = np.bincount(group, minlength=n_groups) - counts.sum(axis=1)
    hit = right > 0
    return counts, abstain, (cls_group[hit], column[hit], right[hit] / size[hit])


def _group_codes(trials: pd.DataFrame) -> np.ndarray:
    """0-based (model, config, query) code per row, in order of first appearance."""
    return trials.groupby(GROUP, sort=False).ngroup().to_numpy(dtype=np.int64)


def _first_of_run(key: np.ndarray) -> np.ndarray:
    """Index of the first element of each element's run of equal, contiguous keys."""
    start = np.r_[True, key[1:] != key[:-1]]
    return np.maximum.accumulate(np.where(start, np.arange(len(key)), 0))


def _majority(trials: pd.DataFrame, group: np.ndarray, n_groups: int, n_max: int) -> np.ndarray:
    """(groups, n_max) exact majority-vote accuracy; NaN where N > n.

    Accuracy = sum over answer classes of (fraction correct) x P(the class wins).
    Queries with the same vote signature (abstainers, the class's count, the
    other counts) share one computation. Whether answers are known at all is the
    caller's (whole table's) decision: here a missing answer abstains.
    """
    out = np.full((n_groups, n_max), np.nan)
    counts, abstain, (g, col, weight) = _vote_classes(trials, group, n_groups)
    out[np.arange(n_max)[None, :] < np.bincount(group, minlength=n_groups)[:, None]] = 0.0
    if len(g):
        own = counts[g, col]
        rest = counts[g].copy()
        rest[np.arange(len(g)), col] = 0
        rest = -np.sort(-rest, axis=1)
        signature = np.column_stack([abstain[g], own, rest])
        unique, inverse = np.unique(signature, axis=0, return_inverse=True)
        win = _in_chunks(unique[:, 2:], unique[:, 0], unique[:, 1])
        wins = np.zeros((len(g), n_max))
        wins[:, : win.shape[1]] = win[inverse.ravel()]
        np.add.at(out, g, weight[:, None] * wins)
    return out


def _in_chunks(rest: np.ndarray, abstain: np.ndarray, own: np.ndarray) -> np.ndarray:
    """:func:`majority_win_probability` of class ``own`` against ``rest``, in row chunks
    that keep the (rows, n+1, n+1) work arrays near 32 MB."""
    counts = np.column_stack([own, rest])
    n_max = int((counts.sum(axis=1) + abstain).max(initial=0))
    step = max(1, 4_000_000 // (n_max + 1) ** 2)
    out = np.zeros((len(own), n_max))
    for lo in range(0, len(own), step):
        part = slice(lo, lo + step)
        win = majority_win_probability(counts[part], abstain[part],
                                       np.zeros(len(own[part]), dtype=np.int64))
        out[part, : win.shape[1]] = win
    return out


# Blocks of whole queries keep every per-row work array near BLOCK_CELLS float64
# values (32 MB), so memory grows only with the input and output tables.
BLOCK_CELLS = 4_000_000


def query_blocks(trials: pd.DataFrame, cells_per_row: int) -> list[np.ndarray]:
    """Row indices of consecutive blocks of whole queries ((model, config, query_id)
    groups, in order of first appearance), each about ``BLOCK_CELLS / cells_per_row``
    rows (a single query may exceed it); rows keep their order within a block."""
    group = _group_codes(trials)
    rows_per_block = max(1, BLOCK_CELLS // max(1, cells_per_row))
    ends = np.cumsum(np.bincount(group))  # rows up to and including each group
    block = ((ends - 1) // rows_per_block)[group]  # non-decreasing in the group code
    order = np.argsort(block, kind="stable")
    return np.split(order, np.flatnonzero(np.diff(block[order])) + 1)


def max_samples(trials: pd.DataFrame) -> pd.DataFrame:
    """Per (model, config): the fewest and the most samples any of its queries has.

    Columns model, config, fewest, most. Best-of-N offers N = 1..fewest (see
    :func:`best_of_n`); ``fewest < most`` is an uneven table.
    """
    sizes = trials.groupby(GROUP, sort=False).size()
    return (sizes.groupby(level=["model", "config"], sort=False).agg(["min", "max"])
            .rename(columns={"min": "fewest", "max": "most"}).reset_index())


def best_of_n(trials: pd.DataFrame, models: Mapping[str, ModelSpec], *,
              majority: bool = True) -> pd.DataFrame:
    """Best-of-N options: one row per (model, config, query, N).

    N runs from 1 to the fewest samples any query of that (model, config) has, so
    that an option exists for every query or for none (the uneven-samples rule:
    every output averages an option over the same queries); each query's estimate
    still uses all of its n samples. Columns: model, method, config, query_id, n,
    coverage, majority (NaN without answers), compute_flops (FLOPs), memory_bytes
    (bytes) -- the expected cost of decoding N of the query's samples together.
    Computed over blocks of whole queries (:func:`query_blocks`): the result does not
    depend on the blocking.
    """
    trials = trials.sort_values(GROUP + ["gen_len"], kind="stable").reset_index(drop=True)
    # majority vote needs answers somewhere in the table (NaN otherwise, not 0)
    majority = majority and "answer" in trials.columns and bool(trials["answer"].notna().any())
    n_max = int(np.bincount(_group_codes(trials)).max(initial=1))
    limits = max_samples(trials)
    pairs = zip(limits["model"], limits["config"], strict=True)
    cap = dict(zip(pairs, limits["fewest"], strict=True))
    parts = [_best_of_n_sorted(trials.iloc[rows].reset_index(drop=True), models, majority, cap)
             for rows in query_blocks(trials, n_max)]
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def _best_of_n_sorted(trials: pd.DataFrame, models: Mapping[str, ModelSpec],
                      majority: bool, cap: Mapping[tuple[str, str], int]) -> pd.DataFrame:
    """:func:`best_of_n` of trials sorted by (model, config, query_id, gen_len); ``cap``:
    the largest N of each (model, config)."""
    group = _group_codes(trials)
    n_groups = int(group.max(initial=-1)) + 1
    counts = np.bincount(group, minlength=n_groups)
    n_max = int(counts.max())
    rank = trials.groupby(group, sort=False).cumcount().to_numpy() + 1  # 1-based, by length
    gen = trials["gen_len"].to_numpy()
    pc, pm, sc, sm = _row_costs(trials, models, gen)

    mean_pc = np.bincount(group, pc, n_groups) / counts
    mean_pm = np.bincount(group, pm, n_groups) / counts
    num = np.arange(1, n_max + 1)
    # P(row is the max of an N-subset) depends on (n, rank, N) only: one small table
    sizes, size_of_row = np.unique(counts[group], return_inverse=True)
    table = max_order_weights(sizes[:, None, None], np.arange(1, n_max + 1)[None, :, None],
                              num[None, None, :])  # (sizes, rank, N)
    exp_sc = np.empty((n_groups, n_max))
    exp_sm = np.empty((n_groups, n_max))
    for j in range(n_max):  # one column at a time: no (rows, n_max) temporaries
        w = table[size_of_row.ravel(), rank - 1, j]
        exp_sc[:, j] = np.bincount(group, w * sc, n_groups)
        exp_sm[:, j] = np.bincount(group, w * sm, n_groups)
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    correct = np.bincount(group, trials["correct"].to_numpy(), n_groups).astype(np.int64)
    if majority:
        vote = _majority(trials, group, n_groups, n_max)
    else:
        vote = np.full((n_groups, n_max), np.nan)

    first_row = np.empty(n_groups, dtype=np.int64)
    first_row[group[starts]] = starts  # groups are contiguous after the sort
    heads = trials.iloc[first_row]
    largest = np.array([cap[key] for key in zip(heads["model"], heads["config"], strict=True)],
                       dtype=np.int64)
    keep = num[None, :] <= largest[:, None]  # (groups, n_max); largest <= counts
    gi, ni = np.nonzero(keep)
    nn = num[ni]
    first = trials.iloc[first_row[gi]]
    return pd.DataFrame({
        "model": first["model"].to_numpy(),
        "method": first["method"].to_numpy(),
        "config": first["config"].to_numpy(),
        "query_id": first["query_id"].to_numpy(),
        "n": nn,
        "coverage": pass_at_n(counts[gi], correct[gi], nn),
        "majority": vote[gi, ni],
        "compute_flops": nn * mean_pc[gi] + exp_sc[gi, ni],
        "memory_bytes": nn * mean_pm[gi] + exp_sm[gi, ni],
    })


def long_cot(trials: pd.DataFrame, models: Mapping[str, ModelSpec],
             gen_budgets: Sequence[int] = DEFAULT_GEN_BUDGETS) -> pd.DataFrame:
    """Long-CoT options: one row per (model, config, query, generation budget G tokens).

    Columns: model, method, config, query_id, gen_budget, accuracy, compute_flops,
    memory_bytes -- means over the query's samples of one-sample decodes of
    min(T, G) tokens. Computed over blocks of whole queries (:func:`query_blocks`).
    """
    budgets = np.asarray(sorted(set(int(b) for b in gen_budgets)), dtype=np.int64)
    trials = trials.reset_index(drop=True)
    parts = [_long_cot_block(trials.iloc[rows].reset_index(drop=True), models, budgets)
             for rows in query_blocks(trials, len(budgets))]
    return parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)


def _long_cot_block(trials: pd.DataFrame, models: Mapping[str, ModelSpec],
                    budgets: np.ndarray) -> pd.DataFrame:
    """:func:`long_cot` of whole queries at sorted, distinct ``budgets`` (tokens)."""
    gen = trials["gen_len"].to_numpy()[:, None]
    clipped = np.minimum(gen, budgets[None, :])
    pc, pm, sc, sm = _row_costs(trials, models, clipped)
    pos = trials["answer_pos"].to_numpy(dtype=np.float64, na_value=np.inf)[:, None]
    ok = (trials["correct"].to_numpy()[:, None] == 1) & (pos <= budgets[None, :])
    per_row = pd.DataFrame({"acc": ok.ravel().astype(np.float64),
                            "compute_flops": (pc + sc).ravel(),
                            "memory_bytes": (pm + sm).ravel()})
    group = _group_codes(trials)
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
