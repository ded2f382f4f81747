"""The report's documented schema (docs/report-schema.md, .json) and its versions: every report
committed under results/ validates, the published JSON Schema is the one the models make, a newer
schema version is refused by every command that reads reports, an older one is migrated."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flopsbench import schema, schema_versions
from flopsbench.report import SCHEMA_VERSION, Report
from tests.test_cli import invoke, stderr_lines

ROOT = Path(__file__).parent.parent
COMMITTED = sorted((ROOT / "results").glob("*.json"))


def test_results_holds_reports():
    assert len(COMMITTED) >= 10, COMMITTED  # the glob finds them (a test over none would pass)


OTHER_DOCUMENTS = ("flopsbench.claims", "flopsbench.merged", "flopsbench.compare",  # derived from reports
                   "flopsbench.ceilings")  # a machine's measured peaks (flopsbench ceilings)


@pytest.mark.parametrize("path", COMMITTED, ids=[path.name for path in COMMITTED])
def test_every_committed_report_validates(path):
    data = json.loads(path.read_text(encoding="utf-8"))
    if data.get("schema") in OTHER_DOCUMENTS:
        return  # not a report: made from reports by claims, report or compare
    assert (data["schema"], data["schema_version"]) == ("flopsbench.report", SCHEMA_VERSION)
    schema.validated_report(data)
    report = Report.from_dict(data)
    assert report.rows and Report.from_dict(json.loads(report.to_json())).to_dict() == report.to_dict()


def test_the_published_json_schema_is_the_models():
    """docs/report-schema.json is what `python -m flopsbench.schema` writes now."""
    published = json.loads((ROOT / "docs" / "report-schema.json").read_text(encoding="utf-8"))
    assert published == schema.json_schema(), "regenerate: python -m flopsbench.schema > docs/report-schema.json"
    assert published["properties"]["schema_version"]["const"] == SCHEMA_VERSION


def test_the_documented_version_is_the_current_one():
    doc = (ROOT / "docs" / "report-schema.md").read_text(encoding="utf-8")
    assert f"# The report's JSON schema (`flopsbench.report`, version {SCHEMA_VERSION})" in doc


# --- versions -------------------------------------------------------------------------------------------------

@pytest.fixture
def report_dict(hand_report) -> dict:
    return json.loads(hand_report.to_json())


def _saved(tmp_path, data: dict, name: str = "report.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("command", [["report", "NEWER"], ["report", "NEWER", "--columns", "time"],
                                     ["compare", "BASE", "NEWER"]])
def test_a_newer_schema_is_refused_in_one_line_asking_for_an_upgrade(tmp_path, report_dict, command):
    newer = _saved(tmp_path, {**report_dict, "schema_version": SCHEMA_VERSION + 1, "renamed_field": 1}, "newer.json")
    files = {"NEWER": newer, "BASE": _saved(tmp_path, report_dict, "base.json")}
    result = invoke([files.get(arg, arg) for arg in command])
    assert result.exit_code == 2 and result.stdout == "" and "Traceback" not in result.output
    (line,) = stderr_lines(result)
    assert (f"{newer} was made by a newer flopsbench (schema {SCHEMA_VERSION + 1}; this one reads schema "
            f"{SCHEMA_VERSION} and older); upgrade flopsbench to read it") in line, line


def test_an_older_schema_is_migrated_step_by_step(report_dict, monkeypatch):
    """A made-up version 0 that called the start 'created' and had no 'argv': its migration to
    version 1 is run before the report is checked."""
    old = {**report_dict, "schema_version": SCHEMA_VERSION - 1, "created": report_dict["created_utc"]}
    del old["created_utc"], old["argv"]
    with pytest.raises(ValueError, match=f"schema_version: {SCHEMA_VERSION - 1} is older than any"):
        Report.from_dict(old)

    def zero_to_one(data: dict) -> dict:
        data["created_utc"] = data.pop("created")
        data.setdefault("argv", [])
        return data

    monkeypatch.setitem(schema_versions.MIGRATIONS, SCHEMA_VERSION - 1, zero_to_one)
    report = Report.from_dict(old)
    assert report.created_utc == report_dict["created_utc"] and report.argv == []
    assert "created" in old and old["schema_version"] == SCHEMA_VERSION - 1  # the caller's dict is left alone


def test_the_report_command_reads_a_migrated_report(tmp_path, report_dict, monkeypatch):
    monkeypatch.setitem(schema_versions.MIGRATIONS, 0, lambda data: data)
    result = invoke(["report", _saved(tmp_path, {**report_dict, "schema_version": 0}), "--format", "csv"])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("version", ["1", 1.0, True, None])
def test_a_schema_version_that_is_no_integer_is_refused(report_dict, version):
    with pytest.raises(ValueError, match="schema_version: should be an integer"):
        Report.from_dict({**report_dict, "schema_version": version})
