"""`kinetics --help`, every `kinetics COMMAND --help` and `--version` import no pandas,
torch or matplotlib: building the parser is light, command bodies import lazily."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from kinetics.cli import SUBCOMMANDS, build_parser, main, version

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("pandas", "torch", "matplotlib", "tqdm", "pyarrow", "triton")

_CHILD = """
import sys
from kinetics.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("HEAVY:" + ",".join(m for m in {heavy!r} if m in sys.modules))
"""


def heavy_imports(*argv: str) -> tuple[list[str], str]:
    proc = subprocess.run([sys.executable, "-c", _CHILD.format(heavy=HEAVY), *argv],
                          capture_output=True, text=True, cwd=REPO, check=True)
    marker = proc.stdout.rsplit("HEAVY:", 1)[1].strip()
    return [m for m in marker.split(",") if m], proc.stdout


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["--version", "--verbose"],
                                  *([name, "--help"] for name in SUBCOMMANDS)],
                         ids=lambda argv: " ".join(argv))
def test_help_and_version_import_nothing_heavy(argv):
    heavy, out = heavy_imports(*argv)
    assert heavy == [], f"kinetics {' '.join(argv)} imported {heavy}"
    assert out.startswith("kinetics") or "usage: kinetics" in out


def test_the_probe_sees_a_heavy_import():  # so the test above can fail
    proc = subprocess.run([sys.executable, "-c", "import sys, kinetics.analysis.report; "
                           f"print([m for m in {HEAVY!r} if m in sys.modules])"],
                          capture_output=True, text=True, cwd=REPO, check=True)
    assert "pandas" in proc.stdout


def test_version_is_the_package_version(capsys):
    import kinetics

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"kinetics {version()}"
    assert version() == kinetics.__version__  # not installed here: the checkout's


@pytest.mark.parametrize("argv", [["--version", "--verbose"], ["--verbose", "--version"]])
def test_version_verbose_prints_the_provenance_record(capsys, argv):
    from kinetics.provenance import LIBRARIES, provenance

    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    fields = dict(line.split(": ", 1) for line in lines)
    assert len(fields) == len(lines)  # one 'key: value' a line, no key twice
    want = provenance(["kinetics", *argv])
    assert fields["kinetics"] == version() and fields["command"] == want.command
    assert fields["git_commit"] == (want.git_commit or "-")
    assert fields["python"] == want.python and fields["device"] == want.device
    assert {k: fields[k] for k in LIBRARIES} == {k: v or "-" for k, v in want.versions.items()}


def test_verbose_without_version_is_refused_and_a_commands_own_is_kept(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--verbose"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--verbose before a command goes with --version" in err[0]
    with pytest.raises(SystemExit):  # --version before the command: the plain version
        main(["--version", "quality", "--verbose"])
    assert capsys.readouterr().out.strip() == f"kinetics {version()}"


def test_report_help_names_the_defaults_it_does_not_import():
    from kinetics.analysis.frontier import GRID_POINTS
    from kinetics.analysis.strategies import DEFAULT_GEN_BUDGETS

    help_text = " ".join(build_parser()._subparsers._group_actions[0]
                         .choices["report"].format_help().split())
    assert ",".join(map(str, DEFAULT_GEN_BUDGETS)) in help_text
    assert f"(default: {GRID_POINTS})" in help_text


def test_every_flag_has_help_and_names_its_default_at_most_once():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    for name, sub in commands.items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            if action.dest == "help":
                continue
            assert action.help, f"kinetics {name} {action.option_strings} has no help"
            text = formatter._get_help_string(action).replace("%(default)s", "X")
            assert text.lower().count("default") <= 1, (name, action.option_strings, text)
            assert "(default: [])" not in text
