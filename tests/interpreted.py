"""Triton kernels on the CPU under ``TRITON_INTERPRET=1``, in a subprocess (the
interpreter is chosen when the kernels are decorated, at import): the environment and
a one-shot runner shared by the interpreter tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def interpreter_env() -> dict[str, str]:
    """This environment with Triton's interpreter on and the checkout first on the path."""
    return dict(os.environ, TRITON_INTERPRET="1",
                PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def run_interpreted(script: str, *args: str, timeout: int = 600) -> Any:
    """Run ``script`` (``python -c``, with ``args``) under the interpreter; the JSON of its
    last stdout line (AssertionError with its stderr tail if it failed)."""
    proc = subprocess.run([sys.executable, "-c", script, *args], env=interpreter_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
