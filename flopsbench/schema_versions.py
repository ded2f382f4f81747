"""Reports of other schema versions (docs/report-schema.md). One of an older version is brought up
to this one a step at a time (MIGRATIONS) before it is checked and read; one of a newer version is
refused, since what a later flopsbench added or changed cannot be read right by this one. Every
command that reads reports (``report``, ``compare``) reads them through ``Report.from_dict``, so
through here."""

from __future__ import annotations

import copy
from typing import Any, Callable

from flopsbench.report import SCHEMA_VERSION
from flopsbench.schema import ReportError

SCHEMA_NAME = "flopsbench.report"

# version N -> a function turning a report of version N into one of version N + 1 (it may change
# the dict it is given: it gets a copy). None yet: version 1 is the first.
MIGRATIONS: dict[int, Callable[[dict], dict]] = {}


class NewerSchemaError(ReportError):
    """A report of a schema version newer than this flopsbench reads."""

    def __init__(self, version: int):
        self.version = version
        super().__init__(f"made by a newer flopsbench (schema {version}; this one reads schema {SCHEMA_VERSION} "
                         "and older)")


def upgraded(data: Any) -> Any:
    """``data`` (parsed JSON) as a report of this schema version: migrated from an older one,
    NewerSchemaError for a newer one, ReportError if it names no version of a flopsbench report.
    Anything but an object is left for the schema to refuse."""
    if not isinstance(data, dict):
        return data
    name, version = data.get("schema"), data.get("schema_version")
    if name != SCHEMA_NAME:
        raise ReportError(f"schema: should be {SCHEMA_NAME!r}, got {repr(name)[:60]}")
    if isinstance(version, bool) or not isinstance(version, int):
        raise ReportError(f"schema_version: should be an integer, got {repr(version)[:60]}")
    if version > SCHEMA_VERSION:
        raise NewerSchemaError(version)
    if version < SCHEMA_VERSION:
        data = copy.deepcopy(data)
    while version < SCHEMA_VERSION:
        step = MIGRATIONS.get(version)
        if step is None:
            oldest = min([*MIGRATIONS, SCHEMA_VERSION])
            raise ReportError(f"schema_version: {version} is older than any this flopsbench reads (schema {oldest} "
                              f"to {SCHEMA_VERSION})")
        data = step(data)
        version += 1
        data["schema_version"] = version
    return data
