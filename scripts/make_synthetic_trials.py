"""Write the embedded SYNTHETIC trial table, kinetics/data/synthetic_trials.parquet.

    python scripts/make_synthetic_trials.py [--seed 20250605] [--out PATH]

The generative model and its calibration are documented in kinetics/analysis/synthetic.py
and docs/analysis.md. The file's Parquet metadata marks it synthetic, so every
report made from it says so.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kinetics.analysis.synthetic import DEFAULT_SEED, generate_trials
from kinetics.analysis.trials import SYNTHETIC_META_KEY, embedded_path, validate_trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out", type=Path, default=embedded_path())
    args = parser.parse_args()
    trials = generate_trials(args.seed)
    validate_trials(trials, "generated")
    table = pa.Table.from_pandas(trials, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[SYNTHETIC_META_KEY] = b"1"
    meta[b"kinetics.seed"] = str(args.seed).encode()
    table = table.replace_schema_metadata(meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, args.out, compression="zstd")
    print(f"wrote {args.out} ({len(trials)} rows, {args.out.stat().st_size / 1e3:.0f} kB, "
          f"seed {args.seed}, SYNTHETIC)")


if __name__ == "__main__":
    main()
