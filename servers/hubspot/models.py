"""Trimmed HubSpot records returned by the tools (structured content)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Operator = Literal[
    "EQ",
    "NEQ",
    "LT",
    "LTE",
    "GT",
    "GTE",
    "BETWEEN",
    "IN",
    "NOT_IN",
    "HAS_PROPERTY",
    "NOT_HAS_PROPERTY",
    "CONTAINS_TOKEN",
    "NOT_CONTAINS_TOKEN",
]


class SearchFilter(BaseModel):
    """One property filter; all filters of a search must match."""

    property: str = Field(description="Internal property name, e.g. `email`, `dealstage`, `createdate`.")
    operator: Operator = Field("EQ", description="Comparison; CONTAINS_TOKEN supports `*` wildcards.")
    value: str | None = Field(None, description="Value to compare with (dates as epoch milliseconds).")
    values: list[str] | None = Field(None, description="Values for IN / NOT_IN.")
    high_value: str | None = Field(None, description="Upper bound for BETWEEN (`value` is the lower).")

    def to_hubspot(self) -> dict[str, Any]:
        out: dict[str, Any] = {"propertyName": self.property, "operator": self.operator}
        if self.value is not None:
            out["value"] = self.value
        if self.values is not None:
            out["values"] = self.values
        if self.high_value is not None:
            out["highValue"] = self.high_value
        return out


class FilterGroup(BaseModel):
    """Filters that must all match (AND); a search matches if any of its groups does (OR)."""

    filters: list[SearchFilter] = Field(min_length=1, max_length=6)

    def to_hubspot(self) -> dict[str, Any]:
        return {"filters": [f.to_hubspot() for f in self.filters]}


class Sort(BaseModel):
    property: str = Field(min_length=1, description="Internal property name to sort by.")
    direction: Literal["ASCENDING", "DESCENDING"] = "DESCENDING"

    def to_hubspot(self) -> dict[str, Any]:
        return {"propertyName": self.property, "direction": self.direction}


class RecordRef(BaseModel):
    """A record to associate with: `{"type": "contact", "id": "123"}`."""

    type: Literal["contact", "company", "deal"]
    id: str = Field(min_length=1, pattern=r"^\d+$", description="The record's HubSpot ID.")


class CrmObject(BaseModel):
    """A contact, company or deal with the requested properties."""

    id: str
    properties: dict[str, str] = Field(description="Non-empty property values by internal name.")
    created_at: str | None = None
    updated_at: str | None = None
    archived: bool | None = None

    @classmethod
    def from_hubspot(cls, raw: dict[str, Any]) -> CrmObject:
        props = {k: str(v) for k, v in (raw.get("properties") or {}).items() if v not in (None, "")}
        return cls(
            id=str(raw["id"]),
            properties=props,
            created_at=raw.get("createdAt"),
            updated_at=raw.get("updatedAt"),
            archived=raw.get("archived"),
        )


class CrmObjectPage(BaseModel):
    """One or more pages of records."""

    results: list[CrmObject]
    total: int | None = Field(None, description="Total matches HubSpot reports for the search.")
    next_cursor: str | None = Field(None, description="Pass as `cursor` for the next page; null when done.")


class AssociationType(BaseModel):
    category: str | None = None
    type_id: int | None = None
    label: str | None = None


class Association(BaseModel):
    """A record associated with the source record."""

    to_object_id: str
    types: list[AssociationType]


class AssociationPage(BaseModel):
    results: list[Association]
    next_cursor: str | None = None


class Owner(BaseModel):
    """A HubSpot user who can own records (`hubspot_owner_id`)."""

    id: str
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    user_id: int | None = None
    teams: list[str] = Field(default_factory=list, description="Team names.")
    archived: bool | None = None


class OwnerPage(BaseModel):
    results: list[Owner]
    next_cursor: str | None = None


class Stage(BaseModel):
    id: str
    label: str
    display_order: int | None = None
    probability: str | None = Field(None, description="Deal win probability 0.0-1.0 (deal pipelines).")
    is_closed: bool | None = None


class Pipeline(BaseModel):
    id: str
    label: str
    display_order: int | None = None
    archived: bool | None = None
    stages: list[Stage]


class PipelineList(BaseModel):
    results: list[Pipeline]


class BatchResult(BaseModel):
    results: list[CrmObject]
    missing: list[str] = Field(default_factory=list, description="Requested IDs HubSpot did not return.")


class AssociationResult(BaseModel):
    from_type: str
    from_id: str
    to_type: str
    to_id: str
    label: str | None = None
    type_ids: list[int] = Field(default_factory=list, description="Association type IDs created or removed.")


class PropertyOption(BaseModel):
    label: str | None = None
    value: str


class Property(BaseModel):
    name: str
    label: str | None = None
    type: str | None = Field(None, description="string, number, date, datetime, enumeration, bool.")
    field_type: str | None = None
    group: str | None = None
    description: str | None = None
    options: list[PropertyOption] = Field(default_factory=list)
    read_only: bool | None = None


class PropertyList(BaseModel):
    results: list[Property]


class Engagement(BaseModel):
    """A note, task, call, email or meeting on a record's timeline."""

    type: Literal["note", "task", "call", "email", "meeting"]
    id: str
    timestamp: str | None = Field(None, description="`hs_timestamp`: when it happened (a task's due date).")
    title: str | None = None
    body: str | None = None
    owner_id: str | None = None
    properties: dict[str, str] = Field(default_factory=dict)
    created_at: str | None = None
    updated_at: str | None = None


class EngagementList(BaseModel):
    results: list[Engagement] = Field(description="Newest first.")
