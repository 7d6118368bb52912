"""AWX's list queries: field lookups (``name=``, ``status__in=``, ``created__gt=``, ``not__status=``), ``search``,
``order_by`` and page-number paging with ``next``/``previous`` as paths relative to the server.

Filters work on the serialized objects, so a filter name is a field of the JSON (``job_template``, ``status``),
or one of a few related names (``organization__name``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

DEFAULT_PAGE_SIZE = 25
MAX_PAGE_SIZE = 200

# AWX's filters.py: query parameters that are never field lookups
RESERVED = frozenset(
    {"page", "page_size", "format", "order", "order_by", "search", "type", "host_filter", "count_disabled",
     "no_truncate", "limit", "validate"}
)  # fmt: skip
LOOKUPS = frozenset(
    {"exact", "iexact", "contains", "icontains", "startswith", "istartswith", "endswith", "iendswith", "in",
     "gt", "gte", "lt", "lte", "isnull", "regex", "iregex"}
)  # fmt: skip
DATETIME_FIELDS = frozenset({"created", "modified", "started", "finished", "canceled_on", "last_job_run"})

RELATED: dict[str, tuple[str, ...]] = {
    "organization__name": ("summary_fields", "organization", "name"),
    "job_template__name": ("summary_fields", "job_template", "name"),
    "unified_job_template__name": ("summary_fields", "unified_job_template", "name"),
    "job__name": ("summary_fields", "job", "name"),
}


class QueryError(Exception):
    """A 400 (``{"detail": ...}``) or, with ``status=404``, an invalid page."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


def _choices(items: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted(key for key, value in items[0].items() if not isinstance(value, dict | list)) if items else []


def _field_error(name: str, items: Sequence[Mapping[str, Any]]) -> QueryError:
    # AWX turns Django's FieldError into a 400 with its message
    return QueryError(f"Cannot resolve keyword '{name}' into field. Choices are: {', '.join(_choices(items))}")


def _lookup(item: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = item
    for part in path:
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _parse_datetime(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace(" ", "T").replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


def _coerce(field: str, sample: Any, raw: str) -> Any:
    """The query's text as the field's type, as Django would convert it."""
    if field in DATETIME_FIELDS:
        try:
            return _parse_datetime(raw)
        except ValueError:
            raise QueryError(
                f"['“{raw}” value has an invalid format. It must be in YYYY-MM-DD HH:MM[:ss[.uuuuuu]][TZ] format.']"
            ) from None
    if isinstance(sample, bool):
        lowered = raw.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise QueryError(f"['“{raw}” value must be either True or False.']")
    if isinstance(sample, int) or field == "id":
        try:
            return int(raw)
        except ValueError:
            raise QueryError(f"Field '{field}' expected a number but got '{raw}'.") from None
    return raw


def _value(field: str, item_value: Any) -> Any:
    if field in DATETIME_FIELDS and isinstance(item_value, str):
        return _parse_datetime(item_value)
    return item_value


def _matches(value: Any, lookup: str, wanted: Any) -> bool:
    if lookup == "isnull":
        return (value is None) == bool(wanted)
    if value is None:
        return False
    if lookup == "exact":
        return bool(value == wanted)
    if lookup == "in":
        return value in wanted
    text, target = str(value), str(wanted)
    checks = {
        "iexact": lambda: text.lower() == target.lower(),
        "contains": lambda: target in text,
        "icontains": lambda: target.lower() in text.lower(),
        "startswith": lambda: text.startswith(target),
        "istartswith": lambda: text.lower().startswith(target.lower()),
        "endswith": lambda: text.endswith(target),
        "iendswith": lambda: text.lower().endswith(target.lower()),
    }
    if lookup in checks:
        return checks[lookup]()
    if lookup in ("regex", "iregex"):
        return re.search(target, text, re.IGNORECASE if lookup == "iregex" else 0) is not None
    try:
        if lookup == "gt":
            return bool(value > wanted)
        if lookup == "gte":
            return bool(value >= wanted)
        if lookup == "lt":
            return bool(value < wanted)
        return bool(value <= wanted)
    except TypeError:
        return False


def filter_items(
    items: list[dict[str, Any]], params: Sequence[tuple[str, str]], search_fields: Sequence[str] = ("name",)
) -> list[dict[str, Any]]:
    """Apply every field lookup and ``search`` in ``params`` (all must match)."""
    result = items
    for key, raw in params:
        if key == "search":
            needle = raw.lower()
            result = [i for i in result if any(needle in str(i.get(f, "")).lower() for f in search_fields)]
            continue
        if key in RESERVED:
            continue
        negate = key.startswith("not__")
        name = key[5:] if negate else key
        for prefix in ("or__", "chain__"):
            name = name.removeprefix(prefix)
        parts = name.split("__")
        lookup = parts.pop() if len(parts) > 1 and parts[-1] in LOOKUPS else "exact"
        field = "__".join(parts)
        if field in RELATED:
            path = RELATED[field]
        elif items and field in items[0] and not isinstance(items[0][field], dict | list):
            path = (field,)
        elif not items and field:
            continue  # nothing to filter; AWX would check the name against the model
        else:
            raise _field_error(field, items)
        sample = _lookup(items[0], path) if items else None
        if lookup == "isnull":
            wanted: Any = raw.lower() in ("true", "1")
        elif lookup == "in":
            wanted = [_coerce(field, sample, part) for part in raw.split(",")]
        else:
            wanted = _coerce(field, sample, raw)
        result = [i for i in result if _matches(_value(field, _lookup(i, path)), lookup, wanted) != negate]
    return result


def order_items(items: list[dict[str, Any]], order_by: str | None, default: str) -> list[dict[str, Any]]:
    """``order_by=-created,id``: stable sorts, last key first; nulls last ascending, first descending."""
    keys = [key.strip() for key in (order_by or default).split(",") if key.strip()]
    result = list(items)
    for key in reversed(keys):
        descending = key.startswith("-")
        field = key.lstrip("-")
        path = RELATED.get(field, (field,))
        if items and path == (field,) and field not in items[0]:
            raise _field_error(field, items)

        def sort_key(item: dict[str, Any], path: tuple[str, ...] = path, field: str = field) -> tuple[bool, Any]:
            value = _value(field, _lookup(item, path))
            return (value is None, value if value is not None else 0)

        try:
            result.sort(key=sort_key, reverse=descending)
        except TypeError:
            result.sort(key=lambda item, p=path: str(_lookup(item, p)), reverse=descending)  # type: ignore[misc]
    return result


def paginate(items: list[dict[str, Any]], path: str, params: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """AWX's page-number pagination; ``next``/``previous`` keep the query and change ``page``."""
    query = dict(params)
    page_size = _positive(query.get("page_size"), DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    try:
        page = int(query.get("page", "1"))
    except ValueError:
        raise QueryError("Invalid page.", status=404) from None
    pages = max(1, -(-len(items) // page_size))
    if page < 1 or page > pages:
        raise QueryError("Invalid page.", status=404)
    start = (page - 1) * page_size

    def link(number: int) -> str:
        changed = [(k, v) for k, v in params if k != "page"]
        if number > 1:
            changed.append(("page", str(number)))
        changed.sort()
        return f"{path}?{urlencode(changed)}" if changed else path

    return {
        "count": len(items),
        "next": link(page + 1) if page < pages else None,
        "previous": link(page - 1) if page > 1 else None,
        "results": items[start : start + page_size],
    }


def _positive(raw: str | None, default: int, cutoff: int) -> int:
    # DRF's _positive_int(strict=True, cutoff=max_page_size): bad or zero values give the default
    try:
        value = int(raw) if raw is not None else default
    except ValueError:
        return default
    if value <= 0:
        return default
    return min(value, cutoff)


def query_params(query_string: str) -> list[tuple[str, str]]:
    return parse_qsl(query_string, keep_blank_values=True)
