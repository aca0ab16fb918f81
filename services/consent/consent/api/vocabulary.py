"""The closed vocabularies a request may use, generated from the catalog and ISO 3166 so
that the OpenAPI document states exactly what validation accepts (no looser): a purpose
key is one of the catalog's, a jurisdiction one of ISO 3166-1 alpha-2 or ISO 3166-2."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import WithJsonSchema

from consent.catalog import purpose_keys
from consent.domain.jurisdictions import known_codes

if TYPE_CHECKING:
    PurposeKey = str
else:
    # A Literal is checked in pydantic-core (a set lookup, no Python call per item: the
    # batch decision path validates up to 1,000 of them) and documented as an enum.
    PurposeKey = Literal[purpose_keys()]


def jurisdiction_pattern() -> str:
    """Every known code as one regular expression, a country followed by its own
    subdivisions (``US(?:-(?:AK|AL|...))?``). A pattern, not an enum of 5,000 values: a
    generator samples it instead of walking every value."""
    by_country: dict[str, list[str]] = {}
    for code in known_codes():
        country, _, sub = code.partition("-")
        by_country.setdefault(country, [])
        if sub:
            by_country[country].append(sub)
    parts = [c + (f"(?:-(?:{'|'.join(s)}))?" if s else "") for c, s in by_country.items()]
    return f"^(?:{'|'.join(parts)})$"


# Codes are accepted in any case and normalised (``us-ca`` -> ``US-CA``) by the model's
# validator; the document states the canonical spelling, a subset of what is accepted.
JURISDICTION_SCHEMA = {
    "type": "string",
    "pattern": jurisdiction_pattern(),
    "description": "ISO 3166-1 alpha-2, or an ISO 3166-2 subdivision (alpha-2 + '-' + code)",
}
Jurisdiction = Annotated[str, WithJsonSchema(JURISDICTION_SCHEMA)]
