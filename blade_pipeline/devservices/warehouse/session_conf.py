"""Session configuration parameters as a Databricks SQL warehouse keeps them.

A warehouse accepts only its documented parameters (``ANSI_MODE``, ``TIMEZONE``,
``STATEMENT_TIMEOUT``, ``USE_CACHED_RESULT``, ...; names case-insensitive, a few legacy
``spark.sql.*`` names as aliases), from the connector's ``session_configuration`` when the
session opens and from ``SET``/``RESET``/``SET TIME ZONE`` statements. ``SET`` answers rows of
``key``/``value``; an unknown name is ``CONFIG_NOT_AVAILABLE`` (42K0I), an invalid value
``INVALID_CONF_VALUE`` (22022). The session's ``TIMEZONE`` and ``ANSI_MODE`` then drive how the
mock runs statements: the DuckDB cursor's ``TimeZone`` and the translation's cast rules.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pyarrow as pa

from blade_pipeline.databricks_sql import DatabricksSqlError

_BOOLEANS = ("true", "false")
_OFFSET = re.compile(r"^([+-])(\d{1,2})(?::(\d{2}))?(?::(\d{2}))?$")
_SIZE = re.compile(r"^\d+\s*[kmgtp]?b?$", re.I)


def _invalid(name: str, value: str, detail: str, subclass: str = "") -> DatabricksSqlError:
    return DatabricksSqlError(f"INVALID_CONF_VALUE{subclass}", f"The value '{value}' in the "
                              f'config "{name}" is invalid. {detail}', "22022")


def _boolean(name: str, value: str) -> str:
    if value.lower() not in _BOOLEANS:
        raise _invalid(name, value, "It must be true or false.")
    return value.lower()


def _policy(name: str, value: str) -> str:
    if value.upper() not in ("EXCEPTION", "CORRECTED", "LEGACY"):
        raise _invalid(name, value, "It must be EXCEPTION, CORRECTED or LEGACY.")
    return value.upper()


def _seconds(name: str, value: str) -> str:
    if not value.isdigit() or int(value) > 172_800:
        raise _invalid(name, value, "It must be a number of seconds from 0 to 172800.")
    return str(int(value))


def _size(name: str, value: str) -> str:
    if not _SIZE.match(value):
        raise _invalid(name, value, "It must be a size in bytes, such as 128m.")
    return value


def offset_seconds(value: str) -> int | None:
    """Seconds east of UTC for a zone offset ``(+|-)HH[:mm[:ss]]`` within ±18 h, else None."""
    match = _OFFSET.match(value)
    if not match:
        return None
    hours, minutes, seconds = int(match[2]), int(match[3] or 0), int(match[4] or 0)
    total = hours * 3600 + minutes * 60 + seconds
    if minutes > 59 or seconds > 59 or total > 18 * 3600:
        return None
    return -total if match[1] == "-" else total


def _timezone(name: str, value: str) -> str:
    """A region ID (``area/city``), a zone offset, or ``UTC``/``Z``, as Databricks takes them."""
    if value.upper() in ("UTC", "Z") or offset_seconds(value) is not None:
        return "UTC" if value.upper() == "Z" else value
    if "/" in value:
        try:
            zoneinfo.ZoneInfo(value)
            return value
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    raise _invalid(name, value, "Cannot resolve the given timezone.", ".TIME_ZONE")


@dataclass(frozen=True)
class Parameter:
    default: str
    check: Callable[[str, str], str]
    meaning: str


#: Databricks SQL's session-settable configuration parameters (sql-ref-parameters), with their
#: system defaults; QUERY_TAGS and ENABLE_PHOTON as the connector's allow-list has them.
PARAMETERS: dict[str, Parameter] = {
    "ANSI_MODE": Parameter("true", _boolean, "Strict ANSI SQL behavior for functions and "
                           "casting rules."),
    "ENABLE_PHOTON": Parameter("true", _boolean, "Use the Photon engine."),
    "LEGACY_TIME_PARSER_POLICY": Parameter("EXCEPTION", _policy, "How dates and timestamps "
                                           "are parsed and formatted."),
    "MAX_FILE_PARTITION_BYTES": Parameter("128m", _size, "Maximum bytes packed into a single "
                                          "partition when reading files."),
    "QUERY_TAGS": Parameter("", lambda _name, value: value, "Tags attached to queries."),
    "STATEMENT_TIMEOUT": Parameter("172800", _seconds, "SQL statement timeout in seconds."),
    "TIMEZONE": Parameter("UTC", _timezone, "The session's local time zone."),
    "USE_CACHED_RESULT": Parameter("true", _boolean, "Cache and reuse results."),
}
#: Legacy Spark names a warehouse takes for the same parameters (lower case).
ALIASES = {
    "spark.sql.ansi.enabled": "ANSI_MODE",
    "spark.sql.session.timezone": "TIMEZONE",
    "spark.sql.legacy.timeparserpolicy": "LEGACY_TIME_PARSER_POLICY",
    "spark.sql.files.maxpartitionbytes": "MAX_FILE_PARTITION_BYTES",
}


def canonical(key: str) -> str | None:
    """The parameter ``key`` names (``ansi_mode`` -> ``ANSI_MODE``), or None."""
    if key.upper() in PARAMETERS:
        return key.upper()
    return ALIASES.get(key.lower())


def not_available(key: str) -> DatabricksSqlError:
    return DatabricksSqlError("CONFIG_NOT_AVAILABLE", f"Configuration {key} is not available.",
                              "42K0I")


@dataclass
class Settings:
    """A session's parameters: those changed from the system default, by canonical name, with
    the key as last written (SET answers it as written)."""

    values: dict[str, str] = field(default_factory=dict)
    written: dict[str, str] = field(default_factory=dict)
    opened_timezone: str | None = None

    def set(self, key: str, value: str) -> str:
        """Set ``key`` (as written) to ``value``; the value kept. Errors as Databricks'."""
        name = canonical(key)
        if name is None:
            raise not_available(key)
        checked = PARAMETERS[name].check(key, value.strip())
        if name == "TIMEZONE" and (offset_seconds(checked) or 0) % 3600:
            raise DatabricksSqlError(
                "UNSUPPORTED_FEATURE", f"the mock warehouse runs whole-hour zone offsets only, "
                f"not {checked} (use a region ID such as 'Asia/Kolkata').", "0A000")
        self.values[name], self.written[name] = checked, key
        return checked

    def apply(self, confs: Mapping[str, object] | None) -> None:
        """The configuration a session is opened with. Keys that are not Databricks SQL
        parameters are ignored (the connector itself sends some ``spark.*`` ones); invalid
        values of known parameters fail."""
        for key, value in (confs or {}).items():
            if canonical(key) is not None:
                self.set(key, str(value))
        self.opened_timezone = self.values.get("TIMEZONE")

    def get(self, name: str) -> str:
        return self.values.get(name, PARAMETERS[name].default)

    def reset(self, key: str | None = None) -> None:
        if key is None:
            self.values.clear()
            self.written.clear()
            return
        name = canonical(key)
        if name is None:
            raise not_available(key)
        self.values.pop(name, None)
        self.written.pop(name, None)

    @property
    def ansi(self) -> bool:
        return self.get("ANSI_MODE") == "true"

    @property
    def statement_timeout(self) -> int:
        """Seconds a statement may run before the warehouse cancels it (0: no limit)."""
        return int(self.get("STATEMENT_TIMEOUT"))

    @property
    def timezone(self) -> str:
        return self.get("TIMEZONE")

    def duckdb_timezone(self) -> str:
        """The DuckDB ``TimeZone`` standing for the session's: region IDs as they are, whole-hour
        offsets as ``Etc/GMT∓H`` (DuckDB takes no offsets), the default as ``Etc/UTC``."""
        tz = self.values.get("TIMEZONE")
        if tz is None:
            return "Etc/UTC"
        seconds = offset_seconds(tz)
        if seconds is None:
            return tz
        hours = seconds // 3600  # whole hours: set() refuses other offsets
        return "Etc/UTC" if hours == 0 else f"Etc/GMT{-hours:+d}"

    def duckdb_setup(self) -> str:
        """The DuckDB statements that make a cursor run as this session does."""
        return (f"SET TimeZone = '{self.duckdb_timezone()}'; "
                f"SET error_on_division_by_zero = {'true' if self.ansi else 'false'}")


# ---- statements ------------------------------------------------------------------------------
_SET = re.compile(r"^SET(?:\s+(?P<rest>.*))?$", re.I | re.S)
_RESET = re.compile(r"^RESET(?:\s+(?P<key>[\w.\-]+))?$", re.I)
_KEY_VALUE = re.compile(r"^(?P<key>[A-Za-z_][\w.\-]*)\s*(?:=\s*(?P<value>.*))?$", re.S)
_TIME_ZONE = re.compile(r"^TIME\s+ZONE\s+(?P<zone>.+)$", re.I | re.S)
_INTERVAL_HMS = re.compile(r"^INTERVAL\s+'([+-]?)(\d{1,2}):(\d{2})(?::(\d{2}))?'\s+HOUR\s+TO\s+"
                           r"(?:MINUTE|SECOND)$", re.I)
_INTERVAL_UNITS = re.compile(r"^INTERVAL\s+([+-]?\d+)\s+HOURS?(?:\s+(\d+)\s+MINUTES?)?$", re.I)


def _table(rows: list[tuple[str, str]], meaning: list[str] | None = None) -> pa.Table:
    columns = {"key": pa.array([k for k, _ in rows], pa.string()),
               "value": pa.array([v for _, v in rows], pa.string())}
    if meaning is not None:
        columns["meaning"] = pa.array(meaning, pa.string())
    return pa.table(columns)


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"`":
        return text[1:-1]
    return text


def _interval_zone(text: str) -> str | None:
    """``INTERVAL '08:30:00' HOUR TO SECOND`` / ``INTERVAL 1 HOUR 30 MINUTES`` as an offset."""
    if match := _INTERVAL_HMS.match(text):
        sign, hours, minutes, seconds = match[1] or "+", match[2], match[3], match[4]
        return f"{sign}{int(hours):02d}:{minutes}" + (f":{seconds}" if seconds else "")
    if match := _INTERVAL_UNITS.match(text):
        hours, minutes = int(match[1]), int(match[2] or 0)
        sign = "-" if hours < 0 else "+"
        return f"{sign}{abs(hours):02d}:{minutes:02d}"
    return None


def _set_time_zone(settings: Settings, zone: str) -> pa.Table:
    zone = zone.strip()
    if zone.upper() == "LOCAL":
        value = settings.opened_timezone or PARAMETERS["TIMEZONE"].default
    elif zone.upper().startswith("INTERVAL"):
        value = _interval_zone(zone)
        if value is None:
            raise DatabricksSqlError("PARSE_SYNTAX_ERROR", f"Syntax error at or near '{zone}': "
                                     "the interval must be an hour-to-second offset.", "42601")
    elif zone[:1] in "'\"":
        value = _unquote(zone)
    else:
        raise DatabricksSqlError("PARSE_SYNTAX_ERROR", f"Syntax error at or near '{zone}': SET "
                                 "TIME ZONE takes LOCAL, a string literal or an interval.",
                                 "42601")
    kept = settings.set("spark.sql.session.timeZone", value)
    settings.written["TIMEZONE"] = "timezone"
    return _table([("spark.sql.session.timeZone", kept)])


def answer(settings: Settings, sql: str) -> pa.Table | None:
    """Run ``sql`` on ``settings`` if it is ``SET``/``RESET``/``SET TIME ZONE``: the rows a
    warehouse answers (``key``, ``value``), an empty table for RESET; None if it is another
    statement (``SET VAR`` included). DatabricksSqlError as Databricks'."""
    text = sql.strip().rstrip(";").strip()
    if match := _RESET.match(text):
        settings.reset(match["key"])
        return _table([])
    match = _SET.match(text)
    if match is None:
        return None
    rest = (match["rest"] or "").strip()
    if not rest:
        return _table([(settings.written[name], value)
                       for name, value in sorted(settings.values.items())])
    if rest == "-v":
        names = sorted(PARAMETERS)
        return _table([(name.lower(), settings.get(name)) for name in names],
                      [PARAMETERS[name].meaning for name in names])
    if zone := _TIME_ZONE.match(rest):
        return _set_time_zone(settings, zone["zone"])
    match = _KEY_VALUE.match(rest)
    if match is None or match["key"].upper() in ("VAR", "VARIABLE"):
        return None
    key = match["key"]
    if match["value"] is None:
        name = canonical(key)
        if name is None:
            raise not_available(key)
        return _table([(key, settings.get(name))])
    return _table([(key, settings.set(key, _unquote(match["value"])))])
