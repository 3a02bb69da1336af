"""A `kinetics bench --grid` record re-labelled with the library's current block top-k
default (kinetics.attention.decode.default_impl): each cell's ``impl`` and
``blocktopk_ms`` become the variant the current rule picks, taken from the same cell's
measured ``step_ms`` (both variants were timed in that run); speedup and share follow.
No number is made up: a cell whose chosen variant was not timed keeps NaN.

    python scripts/apply_default_impl.py GRID.json OUT.json
"""

from __future__ import annotations

import json
import math
import sys

from kinetics.attention.decode import default_impl
from kinetics.bench.decode import local_heads
from kinetics.models import get_model


def relabel(grid: dict) -> dict:
    """A copy of ``grid`` with every cell's default step from the current rule."""
    out = json.loads(json.dumps(grid))
    tp, page = grid["spec"]["tp"], grid["spec"]["page_size"]
    for c in out["cells"]:
        hq, hkv = local_heads(get_model(c["model"]), tp)
        impl = default_impl(c["batch_size"] * hkv, -(-c["context"] // page), c["topk_pages"],
                            hq // hkv)
        c["impl"], c["blocktopk_ms"] = impl, c["step_ms"].get(impl, math.nan)
        c["speedup"] = c["dense_ms"] / c["blocktopk_ms"]
        c["share_of_roofline"] = c["speedup"] / c["byte_roofline"]
    out["relabelled"] = ("impl and blocktopk_ms re-chosen from step_ms by the current "
                         "kinetics.attention.decode.default_impl (scripts/apply_default_impl.py)")
    return out


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: python scripts/apply_default_impl.py GRID.json OUT.json", file=sys.stderr)
        sys.exit(2)
    with open(sys.argv[1]) as fh:
        record = relabel(json.load(fh))
    with open(sys.argv[2], "w") as fh:
        json.dump(record, fh, indent=1)
