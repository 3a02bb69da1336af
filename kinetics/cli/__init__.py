"""The ``kinetics`` command: one module per subcommand, I/O lives here.

Each subcommand module defines ``add_parser(subparsers)`` and ``run(args) -> int``.
Input errors (``kinetics.errors.InputError``) and bad flags print one line on
stderr and exit 2; no traceback reaches the user. Ctrl-C exits 130 and SIGTERM 143,
both after removing the run's temporary output; a closed stdout pipe
(``kinetics report | head -1``) ends the run quietly with 141, as a shell reports
a process killed by SIGPIPE; stdout on a full disk is one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Sequence

from kinetics.errors import InputError
from kinetics.provenance import DISTRIBUTION  # noqa: F401  (the name on PyPI, pyproject.toml)

# subcommand -> module kinetics.cli.<name>_cmd. Building a module's parser imports
# nothing heavy (tests/cli/test_import_light.py): each command's run() imports pandas,
# torch or matplotlib when it needs them, so `kinetics --help` stays fast.
SUBCOMMANDS: dict[str, str] = {
    "cost": "Exact compute FLOPs, memory bytes and eFLOPs of one query's decode.",
    "ingest": "Turn published raw traces into a canonical trial table.",
    "report": "Traces -> Pareto frontiers, optimal model size, plots (Kinetics vs FLOPs law).",
    "check": "Recompute the frontier summary and compare it with a stored baseline.",
    "bench": "Time decode attention / one decoder layer on a GPU (dense vs block top-k).",
    "quality": "Sparse attention on a real model: attention recall, next-token agreement, KL.",
    "generate": "Sample answers from a real model (dense and sparse attention) into a trial table.",
}


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like KeyboardInterrupt, so temporaries are removed."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


class _DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show '(default: X)' only where a default says something (not None, False or an
    empty list) and the help does not already speak of its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        default = action.default
        if (default is None or default is False or default is argparse.SUPPRESS
                or (isinstance(default, (list, tuple)) and not default)
                or "default" in (action.help or "")):
            return action.help or ""
        return super()._get_help_string(action)


class KineticsArgumentParser(argparse.ArgumentParser):
    """argparse with a one-line error message and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        self.words = list(sys.argv[1:] if args is None else args)  # for --version --verbose
        return super().parse_known_args(args, namespace)


def version() -> str:
    """The installed distribution's version, else the checkout's ``kinetics.__version__``."""
    from kinetics.provenance import kinetics_version

    return kinetics_version()


class _VersionAction(argparse.Action):
    """``--version``: print ``kinetics VERSION`` and exit 0; with ``--verbose`` before the
    command (``kinetics --version --verbose``), the provenance record instead, one
    ``key: value`` a line (:meth:`kinetics.provenance.Provenance.lines`)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        words = getattr(parser, "words", [])
        top = words[:next((i for i, w in enumerate(words) if w in SUBCOMMANDS), len(words))]
        if "--verbose" in top:
            from kinetics.provenance import provenance

            text = "\n".join(provenance(["kinetics", *words]).lines())
        else:
            text = f"kinetics {version()}"
        sys.stdout.write(text + "\n")  # stdout, as argparse's own version action
        parser.exit(0)


def build_parser() -> argparse.ArgumentParser:
    parser = KineticsArgumentParser(
        prog="kinetics",
        description="Test-time scaling cost analysis with sparse attention "
        "(Kinetics, arXiv 2506.05333). eFLOPs = compute FLOPs + I x memory bytes.",
        epilog="Run `kinetics COMMAND --help` for a command's flags.",
    )
    parser.add_argument("--version", action=_VersionAction,
                        help="print the version and exit (with --verbose: the provenance "
                        "record kinetics writes into its outputs, one 'key: value' a line)")
    parser.add_argument("--verbose", action="store_true", dest="verbose_version",
                        help="with --version: print the provenance record (a command's own "
                        "--verbose goes after the command)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                parser_class=KineticsArgumentParser)
    for name, help_text in SUBCOMMANDS.items():
        module = importlib.import_module(f"kinetics.cli.{name}_cmd")
        sub_parser = sub.add_parser(name, help=help_text, description=help_text,
                                    formatter_class=_DefaultsHelpFormatter)
        module.add_parser(sub_parser)
        sub_parser.set_defaults(_run=module.run)
    return parser


def _silence_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so the exit flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # stdout without a file descriptor
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded in the outputs
    if args.verbose_version:
        parser.error("--verbose before a command goes with --version (a command's own "
                     "--verbose goes after the command)")
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        code = int(args._run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows up here, not at interpreter exit
        return code
    except InputError as exc:
        print(f"kinetics {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kinetics {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"kinetics {args.command}: terminated", file=sys.stderr)
        return 143
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except OSError as exc:  # stdout on a full disk (`> file`): one line, not a traceback
        from kinetics.cli._output import write_failure

        reason = write_failure(exc)
        if reason is None:
            raise
        _silence_stdout()
        print(f"kinetics {args.command}: error: cannot write the output ({reason})",
              file=sys.stderr)
        return 2
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
