"""The v4 associations API: default association type IDs, labels, associating and removing records."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from servers.common import Call, UpstreamError, follow_pages
from servers.hubspot.client import HubSpotClient
from servers.hubspot.crm import plural
from servers.hubspot.models import AssociationResult, RecordRef

# HubSpot-defined (unlabelled, default) association type IDs, from the v4 association type table.
DEFAULT_TYPES: dict[tuple[str, str], int] = {
    ("notes", "contacts"): 202,
    ("notes", "companies"): 190,
    ("notes", "deals"): 214,
    ("tasks", "contacts"): 204,
    ("tasks", "companies"): 192,
    ("tasks", "deals"): 216,
    ("companies", "contacts"): 280,
    ("companies", "deals"): 342,
}


def create_associations(from_type: str, refs: list[RecordRef]) -> list[dict[str, Any]]:
    """The `associations` of a create body for `refs`, with the default type for each pair."""
    out = []
    for ref in refs:
        to_type = plural(ref.type)
        type_id = DEFAULT_TYPES.get((from_type, to_type))
        if type_id is None:
            raise UpstreamError(
                f"HubSpot: a new {from_type[:-1]} cannot be associated with a {ref.type} here; "
                "use associate_records after creating it"
            )
        out.append(
            {
                "to": {"id": ref.id},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
            }
        )
    return out


def _pair(from_type: str, to_type: str) -> tuple[str, str]:
    return quote(plural(from_type), safe=""), quote(plural(to_type), safe="")


async def label_types(api: HubSpotClient, from_type: str, to_type: str, label: str) -> list[dict[str, Any]]:
    """The association types named `label` (case-insensitive) from GET /crm/v4/associations/{from}/{to}/labels."""
    f, t = _pair(from_type, to_type)
    call = Call("GET", f"/crm/v4/associations/{f}/{t}/labels", scope=f"crm.objects.{plural(from_type)}.read")
    data = await api.send(call)
    results = data.get("results") or []
    wanted = label.strip().casefold()
    found = [r for r in results if (r.get("label") or "").casefold() == wanted]
    if not found:
        known = sorted({r["label"] for r in results if r.get("label")})
        raise UpstreamError(
            f"HubSpot: no association label {label!r} from {f} to {t}; labels: {', '.join(known) or 'none'}"
        )
    return [{"associationCategory": r["category"], "associationTypeId": int(r["typeId"])} for r in found]


async def associate(
    api: HubSpotClient, from_type: str, from_id: str, to_type: str, to_id: str, label: str | None
) -> AssociationResult:
    """PUT the default association, or the labelled one, between two records (repeating it is a no-op)."""
    f, t = _pair(from_type, to_type)
    a, b = quote(from_id, safe=""), quote(to_id, safe="")
    what = f"{plural(from_type)} {from_id} or {plural(to_type)} {to_id}"
    scope = f"crm.objects.{plural(from_type)}.write"
    if label is None:
        path = f"/crm/v4/objects/{f}/{a}/associations/default/{t}/{b}"
        data = await api.send(Call("PUT", path, read=False, what=what, scope=scope))
        specs = [r.get("associationSpec") or {} for r in data.get("results") or []]
        ids = [int(spec["associationTypeId"]) for spec in specs if "associationTypeId" in spec]
        return AssociationResult(from_type=f, from_id=from_id, to_type=t, to_id=to_id, type_ids=ids)
    types = await label_types(api, from_type, to_type, label)
    path = f"/crm/v4/objects/{f}/{a}/associations/{t}/{b}"
    await api.send(Call("PUT", path, body=types, read=False, what=what, scope=scope))
    ids = [t_["associationTypeId"] for t_ in types]
    return AssociationResult(from_type=f, from_id=from_id, to_type=t, to_id=to_id, label=label, type_ids=ids)


async def dissociate(
    api: HubSpotClient, from_type: str, from_id: str, to_type: str, to_id: str, label: str | None
) -> AssociationResult:
    """Remove every association between two records, or only the labelled one."""
    f, t = _pair(from_type, to_type)
    a, b = quote(from_id, safe=""), quote(to_id, safe="")
    what = f"{plural(from_type)} {from_id} or {plural(to_type)} {to_id}"
    scope = f"crm.objects.{plural(from_type)}.write"
    if label is None:
        path = f"/crm/v4/objects/{f}/{a}/associations/{t}/{b}"
        await api.send(Call("DELETE", path, read=False, what=what, scope=scope))
        return AssociationResult(from_type=f, from_id=from_id, to_type=t, to_id=to_id)
    types = await label_types(api, from_type, to_type, label)
    body = {"inputs": [{"from": {"id": from_id}, "to": {"id": to_id}, "types": types}]}
    path = f"/crm/v4/associations/{f}/{t}/batch/labels/archive"
    await api.send(Call("POST", path, body=body, read=False, what=what, scope=scope))
    ids = [t_["associationTypeId"] for t_ in types]
    return AssociationResult(from_type=f, from_id=from_id, to_type=t, to_id=to_id, label=label, type_ids=ids)


async def associated_ids(
    api: HubSpotClient, object_type: str, object_id: str, to_type: str, max_pages: int = 10
) -> list[str]:
    """IDs of the `to_type` records associated with one record (GET v4 associations, 500 per page)."""
    f, t = _pair(object_type, to_type)
    path = f"/crm/v4/objects/{f}/{quote(object_id, safe='')}/associations/{t}"

    async def fetch(after: str | None) -> tuple[list[str], str | None]:
        call = Call(
            "GET",
            path,
            params={"limit": 500, "after": after},
            what=f"{plural(object_type)} {object_id}",
            scope=f"crm.objects.{plural(object_type)}.read",
        )
        data = await api.send(call)
        after_next = ((data.get("paging") or {}).get("next") or {}).get("after")
        return [str(r["toObjectId"]) for r in data.get("results", [])], after_next

    return (await follow_pages(fetch, None, max_pages)).items
