"""The GitHub workflows (.github/workflows/) validate offline: against the workflow JSON
schema that check-jsonschema ships, and through zizmor's offline audits with no
high-severity finding. Both tools come with the `test` extra; where one is missing the
test says so and skips."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WORKFLOW_DIR = Path(__file__).resolve().parents[1] / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.yml"))

UNSAFE = """\
name: unsafe
on: pull_request_target
jobs:
  greet:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - run: echo "${{ github.event.pull_request.title }}"
"""


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{name} is not installed (it comes with pip install 'kinetics-tts[test]')")
    return found


def _schema_check(*paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([_tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                           *map(str, paths)], capture_output=True, text=True, timeout=120)


def _high_findings(*paths: Path) -> list[dict]:
    result = subprocess.run([_tool("zizmor"), "--offline", "--format", "json", "--min-severity",
                             "high", *map(str, paths)], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout)


def test_ci_and_gpu_workflows_exist():
    assert {path.name for path in WORKFLOWS} >= {"ci.yml", "gpu.yml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_matches_the_github_schema(workflow):
    result = _schema_check(workflow)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-latest\n    steps: nope\n")
    assert _schema_check(broken).returncode == 1


def test_zizmor_finds_nothing_high():
    findings = _high_findings(*WORKFLOWS)
    assert findings == [], [(f["ident"], f["desc"]) for f in findings]


def test_zizmor_flags_an_injectable_workflow(tmp_path):
    unsafe = tmp_path / "unsafe.yml"
    unsafe.write_text(UNSAFE)
    assert {finding["ident"] for finding in _high_findings(unsafe)} >= {"template-injection"}
