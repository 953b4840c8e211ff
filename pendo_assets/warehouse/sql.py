"""The one way identifiers enter SQL in this project. Values always travel as parameters."""

from typing import Any, Callable, Mapping


def quote_ident(name: str) -> str:
    if not name or "\x00" in name:
        raise ValueError(f"invalid SQL identifier {name!r}")
    return '"' + name.replace('"', '""') + '"'


def qualified(schema: str, table: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(table)}"


def where_clause(where: Mapping[str, Any], quote: Callable[[str], str] = quote_ident) -> tuple[str, list[Any]]:
    """` WHERE` each column equals its value (a tuple means IN, None IS NULL), with `?` parameters; "" for none."""
    terms, params = [], []
    for column, value in where.items():
        if value == ():
            terms.append("FALSE")
        elif isinstance(value, tuple):
            terms.append(f"{quote(column)} IN ({', '.join('?' for _ in value)})")
            params.extend(value)
        elif value is None:
            terms.append(f"{quote(column)} IS NULL")
        else:
            terms.append(f"{quote(column)} = ?")
            params.append(value)
    return (" WHERE " + " AND ".join(terms) if terms else ""), params
