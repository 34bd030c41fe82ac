"""The one timestamp parser: ISO 8601 in, aware UTC out, ValueError otherwise."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest

from app.core.timestamps import format_timestamp, parse_timestamp

NINE_TWELVE = datetime(2026, 3, 14, 9, 12, 45, tzinfo=UTC)


@pytest.fixture(autouse=True)
def local_time_is_not_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A value without a zone must be read as UTC, not as the machine's local
    time; on a machine set to UTC the two would look the same."""
    monkeypatch.setenv("TZ", "XST+05")
    time.tzset()
    assert datetime(2026, 1, 1).astimezone().utcoffset() == timedelta(hours=-5)
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-03-14T09:12:45Z", NINE_TWELVE),
        ("2026-03-14T09:12:45+00:00", NINE_TWELVE),
        ("2026-03-14T11:12:45+02:00", NINE_TWELVE),
        ("2026-03-14T11:12:45+0200", NINE_TWELVE),
        ("2026-03-14T04:12:45-05:00", NINE_TWELVE),
        ("2026-03-14T09:12:45", NINE_TWELVE),
        ("2026-03-14 09:12:45Z", NINE_TWELVE),
        (" 2026-03-14T09:12:45Z\n", NINE_TWELVE),
        ("2026-03-14T09:12Z", datetime(2026, 3, 14, 9, 12, tzinfo=UTC)),
        ("2026-03-14T11:12+02:00", datetime(2026, 3, 14, 9, 12, tzinfo=UTC)),
        ("2026-03-14T09:12", datetime(2026, 3, 14, 9, 12, tzinfo=UTC)),
        ("2026-03-14", datetime(2026, 3, 14, tzinfo=UTC)),
        (
            "2026-03-14T09:12:45.123Z",
            datetime(2026, 3, 14, 9, 12, 45, 123000, tzinfo=UTC),
        ),
        (
            "2026-03-14T09:12:45.123456789Z",
            datetime(2026, 3, 14, 9, 12, 45, 123456, tzinfo=UTC),
        ),
        (
            "2026-03-14T11:12:45.1234567+02:00",
            datetime(2026, 3, 14, 9, 12, 45, 123456, tzinfo=UTC),
        ),
        ("2026-03-15T00:30:00+15:18", datetime(2026, 3, 14, 9, 12, tzinfo=UTC)),
        ("2026-03-14T23:59:59-23:59", datetime(2026, 3, 15, 23, 58, 59, tzinfo=UTC)),
    ],
)
def test_iso_8601_string_is_parsed_into_aware_utc(value, expected):
    parsed = parse_timestamp(value)

    assert parsed == expected
    assert parsed.tzinfo is UTC
    assert parsed.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime(2026, 3, 14, 9, 12, 45), NINE_TWELVE),
        (
            datetime(2026, 3, 14, 11, 12, 45, tzinfo=timezone(timedelta(hours=2))),
            NINE_TWELVE,
        ),
        (NINE_TWELVE, NINE_TWELVE),
    ],
    ids=["naive", "offset", "utc"],
)
def test_datetime_is_returned_as_aware_utc(value, expected):
    parsed = parse_timestamp(value)

    assert parsed == expected
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "yesterday",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2026-03-14T24:00:01Z",
        "2026-03-14T09:12:45+25:00",
        "2026-03-14T09:12:45 UTC",
        "14/03/2026 09:12",
        "2026-03-14T09:12:45Z" + " " * 60,
        "9" * 100,
    ],
)
def test_garbage_is_refused_with_value_error(value):
    with pytest.raises(ValueError, match=r"ISO 8601|date-time"):
        parse_timestamp(value)


@pytest.mark.parametrize(
    "value",
    [None, 1_773_479_565, 1_773_479_565.0, b"2026-03-14T09:12:45Z", ["2026-03-14"]],
    ids=["none", "int", "float", "bytes", "list"],
)
def test_non_string_is_refused_with_value_error(value):
    with pytest.raises(ValueError, match="expected an ISO 8601 date-time string"):
        parse_timestamp(value)


@pytest.mark.parametrize(
    "value",
    [
        "9999-12-31T23:59:59-05:00",
        "0001-01-01T00:00:00+01:00",
        datetime(9999, 12, 31, 23, 0, tzinfo=timezone(timedelta(hours=-5))),
    ],
    ids=["after-year-9999", "before-year-1", "datetime"],
)
def test_value_that_overflows_in_utc_is_refused_with_value_error(value):
    with pytest.raises(ValueError, match="out of range"):
        parse_timestamp(value)


def test_format_timestamp_gives_whole_seconds_in_utc():
    value = datetime(
        2026, 3, 14, 11, 12, 45, 999999, tzinfo=timezone(timedelta(hours=2))
    )

    assert format_timestamp(value) == "2026-03-14T09:12:45Z"
