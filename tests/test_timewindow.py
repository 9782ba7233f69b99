"""`--since` / `--until` parsing and the ledger's timestamp text (loopkit.timewindow)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from loopkit.errors import UsageError
from loopkit.timewindow import parse_time, to_iso, utcnow_iso

UTC = timezone.utc
# POSIX TZ strings: no tzdata needed. Note the POSIX sign: "IST-5:30" is UTC+05:30.
KOLKATA = "IST-5:30"
NEW_YORK = "EST5EDT,M3.2.0,M11.1.0"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def local_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Set the process's local time zone for one test; restored afterwards."""

    def set_tz(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_tz
    monkeypatch.undo()
    time.tzset()


# -- keywords and relative times -----------------------------------------------------------

NOW = utc(2026, 11, 20, 2, 0, 0)  # 07:30 on Nov 20 in Kolkata


def test_now(local_tz) -> None:
    local_tz(KOLKATA)
    assert parse_time("now", now=NOW) == NOW
    assert parse_time(" NOW ", now=NOW) == NOW


@pytest.mark.parametrize(
    "value, ago",
    [
        ("30s", timedelta(seconds=30)),
        ("30m", timedelta(minutes=30)),
        ("2h", timedelta(hours=2)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("0h", timedelta(0)),
        ("90m", timedelta(minutes=90)),
        ("2H", timedelta(hours=2)),
        ("2 h", timedelta(hours=2)),
    ],
)
def test_relative(value: str, ago: timedelta) -> None:
    assert parse_time(value, now=NOW) == NOW - ago


def test_today_and_yesterday_are_local_midnights(local_tz) -> None:
    local_tz(KOLKATA)
    assert parse_time("today", now=NOW) == utc(2026, 11, 19, 18, 30)
    assert parse_time("yesterday", now=NOW) == utc(2026, 11, 18, 18, 30)
    assert parse_time("Today", now=NOW) == utc(2026, 11, 19, 18, 30)


def test_today_follows_the_local_date_not_the_utc_date(local_tz) -> None:
    local_tz(KOLKATA)
    late_utc = utc(2026, 11, 19, 20, 0)  # still Nov 19 in UTC, already 01:30 Nov 20 in Kolkata
    assert parse_time("today", now=late_utc) == utc(2026, 11, 19, 18, 30)
    local_tz("UTC0")
    assert parse_time("today", now=late_utc) == utc(2026, 11, 19)
    assert parse_time("yesterday", now=late_utc) == utc(2026, 11, 18)


def test_yesterday_across_a_dst_change(local_tz) -> None:
    local_tz(NEW_YORK)  # DST starts Sunday 2026-03-08: that day has 23 hours
    now = utc(2026, 3, 9, 12, 0)  # 08:00 EDT on Monday
    assert parse_time("today", now=now) == utc(2026, 3, 9, 4, 0)  # midnight EDT (-4)
    assert parse_time("yesterday", now=now) == utc(2026, 3, 8, 5, 0)  # midnight EST (-5)


def test_naive_now_is_local_time(local_tz) -> None:
    local_tz(KOLKATA)
    assert parse_time("now", now=datetime(2026, 11, 20, 7, 30)) == NOW
    assert parse_time("2h", now=datetime(2026, 11, 20, 7, 30)) == NOW - timedelta(hours=2)


def test_default_now_is_the_current_time() -> None:
    before = datetime.now(UTC)
    parsed = parse_time("1h")
    after = datetime.now(UTC)
    assert before - timedelta(hours=1) <= parsed <= after - timedelta(hours=1)
    assert parsed.tzinfo is UTC


# -- ISO dates and date-times --------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        ("2026-11-20", utc(2026, 11, 19, 18, 30)),  # local midnight
        ("2026-11-20T10:00", utc(2026, 11, 20, 4, 30)),  # naive: local time
        ("2026-11-20 10:00", utc(2026, 11, 20, 4, 30)),
        ("2026-11-20T10:00:30", utc(2026, 11, 20, 4, 30, 30)),
        ("2026-11-20T10:00:30.25", utc(2026, 11, 20, 4, 30, 30, 250000)),
        ("2026-11-20T10:00Z", utc(2026, 11, 20, 10, 0)),
        ("2026-11-20t10:00z", utc(2026, 11, 20, 10, 0)),
        ("2026-11-20T10:00:00Z", utc(2026, 11, 20, 10, 0)),
        ("2026-11-20T10:00+02:00", utc(2026, 11, 20, 8, 0)),
        ("2026-11-20T10:00-0330", utc(2026, 11, 20, 13, 30)),
        ("2026-11-20T10:00:00.123456+00:00", utc(2026, 11, 20, 10, 0, 0, 123456)),
    ],
)
def test_iso(local_tz, value: str, expected: datetime) -> None:
    local_tz(KOLKATA)
    parsed = parse_time(value, now=NOW)
    assert parsed == expected
    assert parsed.tzinfo is UTC


def test_iso_date_in_a_dst_zone(local_tz) -> None:
    local_tz(NEW_YORK)
    assert parse_time("2026-07-01") == utc(2026, 7, 1, 4)  # EDT
    assert parse_time("2026-12-01") == utc(2026, 12, 1, 5)  # EST
    assert parse_time("2026-12-01T09:15") == utc(2026, 12, 1, 14, 15)


# -- bad input -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "blah",
        "",
        "   ",
        "todayy",
        "-2h",
        "2",
        "h",
        "2x",
        "2.5h",
        "2h ago",
        "2026-13-01",
        "2026-02-30",
        "2026-11-20T25:00",
        "2026/11/20",
        "20261120",
        "2026-W47-1",
        "2026-11-20T10",
        "999999999w",
    ],
)
def test_bad_values_raise_usage_error(value: str) -> None:
    with pytest.raises(UsageError) as info:
        parse_time(value, now=NOW)
    assert f"bad time {value!r}" in str(info.value)
    assert info.value.exit_code == 2


def test_error_lists_the_accepted_forms() -> None:
    with pytest.raises(UsageError) as info:
        parse_time("blah", now=NOW)
    assert info.value.message == (
        "bad time 'blah': use now, today, yesterday, 30m, 2h, 7d, 2w, 2026-11-20 or 2026-11-20T14:30"
    )


# -- the ledger's timestamp text -----------------------------------------------------------

ISO_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")


def test_to_iso_format() -> None:
    assert to_iso(utc(2026, 11, 20, 14, 30)) == "2026-11-20T14:30:00.000000Z"
    plus_two = timezone(timedelta(hours=2))
    assert to_iso(datetime(2026, 11, 20, 14, 30, 0, 5, tzinfo=plus_two)) == "2026-11-20T12:30:00.000005Z"


def test_to_iso_reads_naive_as_local(local_tz) -> None:
    local_tz(KOLKATA)
    assert to_iso(datetime(2026, 11, 20, 10, 0)) == "2026-11-20T04:30:00.000000Z"


def test_utcnow_iso() -> None:
    before = to_iso(datetime.now(UTC))
    text = utcnow_iso()
    after = to_iso(datetime.now(UTC))
    assert ISO_TEXT.fullmatch(text)
    assert before <= text <= after


def test_utcnow_iso_formats_each_second_once_and_is_right_across_the_boundary(monkeypatch) -> None:
    from loopkit import timewindow

    for ns in (1_700_000_000_999_999_000, 1_700_000_000_000_000_000, 1_700_000_001_000_001_000, 1_700_000_001_500_000_000):
        monkeypatch.setattr(timewindow.time, "time_ns", lambda ns=ns: ns)
        assert utcnow_iso() == to_iso(datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ns // 1000))


aware_datetimes = st.datetimes(
    min_value=datetime(1970, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    )
)


@given(aware_datetimes, aware_datetimes)
def test_to_iso_sorts_like_time(a: datetime, b: datetime) -> None:
    assert (to_iso(a) < to_iso(b)) == (a < b)
    assert (to_iso(a) == to_iso(b)) == (a == b)


@given(aware_datetimes)
def test_to_iso_round_trips_through_parse_time(dt: datetime) -> None:
    text = to_iso(dt)
    assert ISO_TEXT.fullmatch(text)
    assert parse_time(text) == dt
