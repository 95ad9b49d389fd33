"""Grafana's PostgreSQL macros and template variables, expanded the way Grafana does.

Only the macros the dashboards use are known; any other ``$__`` macro left in
a query fails the expansion, so a dashboard cannot start depending on one
that the tests do not run.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

_TIME_FILTER = re.compile(r"\$__timeFilter\(([^()]+)\)")


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def expand(
    sql: str, *, time_from: datetime, time_to: datetime, interval: timedelta, variables: dict[str, str]
) -> str:
    """``sql`` with macros and ``$name`` variables replaced (Grafana 11, grafana-postgresql-datasource)."""
    start, end = f"'{_iso(time_from)}'", f"'{_iso(time_to)}'"
    text = _TIME_FILTER.sub(lambda m: f"{m.group(1).strip()} BETWEEN {start} AND {end}", sql)
    text = text.replace("$__timeFrom()", start).replace("$__timeTo()", end)
    text = text.replace("$__interval_ms", str(int(interval.total_seconds() * 1000)))
    left = re.findall(r"\$__\w+", text)
    if left:
        raise ValueError(f"macro the test expander does not know: {left}")
    # Longest names first, so $device never eats the start of $device_id.
    for name in sorted(variables, key=len, reverse=True):
        text = text.replace(f"${name}", variables[name]).replace(f"${{{name}}}", variables[name])
    unknown = re.findall(r"\$\{?[A-Za-z_]\w*", text)
    if unknown:
        raise ValueError(f"template variable without a value: {unknown}")
    return text


def sql_targets(dashboard: dict[str, object]) -> list[tuple[str, str, dict[str, object]]]:
    """(panel title, refId, target) of every SQL target of a dashboard."""
    panels = dashboard["panels"]
    assert isinstance(panels, list)
    return [
        (panel["title"], target["refId"], target)
        for panel in panels
        for target in panel["targets"]
        if "rawSql" in target
    ]


def prom_exprs(dashboard: dict[str, object]) -> list[tuple[str, str]]:
    """(panel title, expr) of every PromQL target of a dashboard."""
    panels = dashboard["panels"]
    assert isinstance(panels, list)
    return [
        (panel["title"], target["expr"])
        for panel in panels
        for target in panel["targets"]
        if "expr" in target
    ]
