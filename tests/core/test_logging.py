"""Log lines stay one readable line whatever a field holds."""

import json
from http import HTTPStatus
from typing import Any

import structlog

from app.core.logging import MAX_FIELD_CHARS, configure_logging
from app.core.settings import LogFormat


def logged_line(capfd, **fields) -> dict[str, Any]:
    configure_logging("INFO", LogFormat.JSON)
    structlog.get_logger("tests").info("tests.event", **fields)
    lines = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    line: dict[str, Any] = json.loads(lines[-1])
    return line


def test_control_characters_are_escaped(capfd):
    line = logged_line(capfd, path="/api/v1/orders/a\x00b\x1bc")

    assert line["path"] == "/api/v1/orders/a\\x00b\\x1bc"


def test_non_ascii_text_is_kept(capfd):
    assert logged_line(capfd, name="Zoë 東京")["name"] == "Zoë 東京"


def test_long_text_is_cut_with_a_note_of_how_much(capfd):
    page = "<html>" + "x" * 5000

    line = logged_line(capfd, error=page)

    assert line["error"].startswith(page[:MAX_FIELD_CHARS])
    assert line["error"].endswith(f"({len(page) - MAX_FIELD_CHARS} more characters)")


def test_enums_are_logged_as_their_values(capfd, monkeypatch):
    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    configure_logging("INFO", LogFormat.CONSOLE)
    structlog.get_logger("tests").info("tests.event", status_code=HTTPStatus.NOT_FOUND)

    err = capfd.readouterr().err
    assert "status_code=404" in err
    assert "HTTPStatus" not in err
    # Not a terminal: no colour escape codes.
    assert "\x1b[" not in err
