"""structlog, configured once: JSON for machines, a readable console on a terminal.

Records of the standard library's `logging` (asyncio's "exception was never retrieved", grpc's
core, Alembic) go through the same processors and renderer, so on a pipe every line of stderr is
one JSON object: log shippers never meet a bare traceback.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO, cast

import structlog


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    """Whatever sys.stderr is now: a stream captured at configure time may be closed later
    (an embedding program, or a test runner, swaps it)."""
    return structlog.PrintLogger(sys.stderr)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A logging handler that writes to whatever sys.stderr is now, for the same reason."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


# A database error's text can quote the values it failed on: PostgreSQL's DETAIL names the
# duplicate key, asyncpg quotes a bad argument. Those values are comments, key material and token
# hashes, so such exceptions are logged by type and statement only.
_DATABASE_MODULES = ("sqlalchemy.", "asyncpg.", "sqlite3", "aiosqlite.")


def _chain(exc: BaseException | None) -> list[BaseException]:
    """The exceptions structlog's traceback extraction walks, in its order."""
    seen: list[BaseException] = []
    while exc is not None and all(exc is not s for s in seen):
        seen.append(exc)
        if exc.__cause__ is not None:
            exc = exc.__cause__
        elif exc.__context__ is not None and not exc.__suppress_context__:
            exc = exc.__context__
        else:
            exc = None
    return seen


def _hidden_value(exc: BaseException) -> str | None:
    if not type(exc).__module__.startswith(_DATABASE_MODULES):
        return None
    statement = getattr(exc, "statement", None)  # sqlalchemy.exc.StatementError
    where = f" [SQL: {statement}]" if isinstance(statement, str) else ""
    return f"(message hidden: a database error can quote values){where}"


class _SafeExceptionTransformer:
    """Tracebacks without frame locals (a handler's locals hold the bearer token and the request)
    and without the text of database errors."""

    def __init__(self) -> None:
        self._transform = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)

    def __call__(self, exc_info: structlog.typing.ExcInfo) -> list[dict[str, object]]:
        stacks = self._transform(exc_info)
        chain = _chain(exc_info[1])
        if len(chain) != len(stacks):  # an exception group: hide every value of the chain
            return [{**stack, "exc_value": "(message hidden)"} for stack in stacks]
        for stack, exc in zip(stacks, chain, strict=True):
            hidden = _hidden_value(exc)
            if hidden is not None:
                stack["exc_value"] = hidden
        return stacks


def _console_exception(sio: TextIO, exc_info: structlog.typing.ExcInfo) -> None:
    """The console's traceback, from the same safe extraction as the JSON lines."""
    for stack in reversed(_SafeExceptionTransformer()(exc_info)):
        sio.write("\nTraceback (most recent call last):\n")
        for frame in cast("list[dict[str, object]]", stack["frames"]):
            sio.write(f'  File "{frame["filename"]}", line {frame["lineno"]}, in {frame["name"]}\n')
        sio.write(f"{stack['exc_type']}: {stack['exc_value']}\n")


def configure_logging(fmt: str = "auto", level: str = "info") -> None:
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(
            colors=sys.stderr.isatty(), exception_formatter=_console_exception
        )
    )
    exceptions: structlog.typing.Processor = (
        structlog.processors.ExceptionRenderer(_SafeExceptionTransformer())
        if fmt == "json"
        else structlog.dev.set_exc_info
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    threshold = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*shared, exceptions, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(threshold),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )

    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                exceptions,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(threshold)
