"""Every management input is strictly typed: any value of a wrong JSON type, in any field of any request
body, nested ones included, is a 400 that names the field (never a 201 with the value coerced, never a
500); an unknown field is a 400 naming it. The fields and their JSON types come from the request models
themselves, so a field added later is covered too."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from anygate.management.schemas import AdminUserCreate, KeyCreate, KeyUpdate, ProbeRequest, UserCreate, UserUpdate
from anygate.settings import ProviderConfig
from tests.support.fake_upstream import FakeUpstream
from tests.support.gateway import fake_provider, gateway_settings
from tests.support.inprocess import InProcessGateway, inprocess_gateway

# A provider body's URL: on loopback, so that nothing here ever looks up or reaches another host.
LOOPBACK = "http://127.0.0.1:9/v1"
KINDS = ("null", "boolean", "integer", "number", "string", "array", "object")
JSON_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "boolean": st.booleans(),
    "integer": st.integers(-(2**40), 2**40),
    # A number with a fraction (5.0 is a whole number, as JSON Schema's ``integer`` has it).
    "number": st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer()),
    "string": st.text(max_size=8),
    "array": st.lists(st.integers(0, 9), max_size=2),
    "object": st.dictionaries(st.sampled_from("abc"), st.integers(0, 9), max_size=2),
}


def json_kinds(schema: dict[str, Any], defs: dict[str, Any]) -> set[str]:
    """The JSON types a schema accepts."""
    if "$ref" in schema:
        return json_kinds(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    if "anyOf" in schema:
        return set().union(*(json_kinds(option, defs) for option in schema["anyOf"]))
    kind = schema.get("type")
    kinds = {kind} if isinstance(kind, str) else set(kind or ()) or {"object"}
    return kinds | ({"integer"} if "number" in kinds else set())


def object_schema(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any] | None:
    """The object schema a field holds (itself, a reference, or the object member of ``anyOf``)."""
    if "$ref" in schema:
        return object_schema(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    for option in schema.get("anyOf", ()):
        found = object_schema(option, defs)
        if found is not None:
            return found
    return schema if "properties" in schema else None


@dataclass(frozen=True)
class Field:
    path: tuple[str, ...]
    accepted: frozenset[str]
    item_kinds: frozenset[str] | None  # the kinds a list's items accept, for a list field


def fields_of(model: type[BaseModel], skip: frozenset[str] = frozenset()) -> list[Field]:
    schema = model.model_json_schema()
    defs = schema.get("$defs", {})
    found: list[Field] = []

    def walk(properties: dict[str, Any], prefix: tuple[str, ...]) -> None:
        for name, field_schema in properties.items():
            if name in skip:
                continue
            items = next((o["items"] for o in [field_schema, *field_schema.get("anyOf", ())] if "items" in o), None)
            item_kinds = frozenset(json_kinds(items, defs)) if items is not None else None
            found.append(Field((*prefix, name), frozenset(json_kinds(field_schema, defs)), item_kinds))
            nested = object_schema(field_schema, defs)
            if nested is not None and len(prefix) < 2:
                walk(nested["properties"], (*prefix, name))

    walk(schema["properties"], ())
    return found


@dataclass(frozen=True)
class Body:
    """A route whose JSON body a model describes, with a valid body to spoil one field of."""

    method: str
    path: str
    valid: dict[str, Any]
    fields: list[Field]


# Valid nested objects with required fields, so that spoiling one field leaves no other one missing.
NESTED_BASES: dict[str, dict[str, Any]] = {
    "via": {"cloudflare": {"account_id": "a", "gateway_id": "g"}},
    "cloudflare_access": {"client_id": "a", "client_secret": "s"},
    "proxy": {"url": "http://proxy.test:3128"},
}


def with_value(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    spoiled = dict(body)
    head, *rest = path
    if rest:
        inner = spoiled.get(head, NESTED_BASES.get(head))
        spoiled[head] = with_value(inner if isinstance(inner, dict) else {}, tuple(rest), value)
    else:
        spoiled[head] = value
    return spoiled


def wrong_values(field: Field) -> st.SearchStrategy[tuple[Any, str]]:
    """(a value of a wrong type for the field, the name the answer must give): a wrong value for the field
    itself, or a list whose first item is of a wrong type."""
    name = ".".join(field.path)
    wrong = [kind for kind in KINDS if kind not in field.accepted]
    whole = st.sampled_from(wrong).flatmap(lambda kind: JSON_VALUES[kind]).map(lambda v: (v, name))
    if field.item_kinds is None:
        return whole
    wrong_items = [kind for kind in KINDS if kind not in field.item_kinds]
    item = st.sampled_from(wrong_items).flatmap(lambda kind: JSON_VALUES[kind])
    return whole | item.map(lambda v: ([v], f"{name}.0"))


@pytest.fixture
def upstream() -> FakeUpstream:
    return FakeUpstream().in_memory()


@pytest.fixture
def gateway(upstream: FakeUpstream) -> Iterator[InProcessGateway]:
    """In-process: every check is one request and its whole answer, which needs no socket."""
    with inprocess_gateway(gateway_settings(fake_provider(upstream)), upstream) as gw:
        yield gw


# ``PUT /auth/creds`` is read by hand (absent, null and a value each mean something): its fields by hand.
CREDENTIAL_FIELDS = [
    Field(("providers",), frozenset({"object", "null"}), None),
    Field(("providers", "fake"), frozenset({"object", "null"}), None),
    Field(("providers", "fake", "apiKey"), frozenset({"string", "null"}), None),
]


def bodies(gateway: InProcessGateway, upstream: FakeUpstream) -> list[Body]:
    """Every management body, with a valid one to spoil."""
    with gateway.client() as admin:
        key_id = admin.post("/v1/keys", json={"alias": "target"}).json()["id"]
        user_id = admin.post("/v1/users", json={"name": "target"}).json()["id"]
        stored = {"id": "stored", "type": "custom", "base_url": upstream.base_url, "allow_private_network": True}
        assert admin.post("/v1/providers", json=stored).status_code == 201
        provider = {"id": "strict-one", "type": "custom", "base_url": LOOPBACK, "allow_private_network": True}
    return [
        Body("POST", "/v1/keys", {"alias": "k"}, fields_of(KeyCreate)),
        Body("PATCH", f"/v1/keys/{key_id}", {}, fields_of(KeyUpdate)),
        Body("POST", "/v1/users", {"name": "u"}, fields_of(UserCreate)),
        Body("PATCH", f"/v1/users/{user_id}", {}, fields_of(UserUpdate)),
        Body("POST", "/admin/users", {}, fields_of(AdminUserCreate)),
        Body("POST", "/v1/providers", provider, fields_of(ProviderConfig)),
        Body("PUT", "/v1/providers/stored", {}, fields_of(ProviderConfig)),
        Body("PUT", "/auth/creds", {}, CREDENTIAL_FIELDS),
        Body("POST", "/v1/providers/stored/test", {}, fields_of(ProbeRequest)),
    ]


def test_a_wrong_type_in_any_field_is_a_400_naming_the_field(gateway: InProcessGateway, upstream: FakeUpstream) -> None:
    routes = bodies(gateway, upstream)
    cases = st.sampled_from(routes).flatmap(
        lambda body: st.sampled_from(body.fields).flatmap(
            lambda field: wrong_values(field).map(lambda wrong: (body, field.path, *wrong))
        )
    )

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(cases)
    def check(case: tuple[Body, tuple[str, ...], Any, str]) -> None:
        body, path, value, name = case
        with gateway.client() as admin:
            answer = admin.request(body.method, body.path, json=with_value(body.valid, path, value))
        assert answer.status_code == 400, (body.path, path, value, answer.text)
        assert answer.json()["error"]["param"] == name, (body.path, value, answer.text)

    check()


def test_an_unknown_field_anywhere_is_a_400_naming_it(gateway: InProcessGateway, upstream: FakeUpstream) -> None:
    routes = bodies(gateway, upstream)
    names = st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True)

    @settings(max_examples=100, deadline=None)
    @given(st.sampled_from(routes), names, st.booleans())
    def check(body: Body, name: str, nested: bool) -> None:
        objects = [f.path for f in body.fields if "object" in f.accepted and f.item_kinds is None]
        known = {f.path for f in body.fields}
        path = (*objects[0], name) if nested and objects else (name,)
        if path in known or path[-1] in ("headers",):
            return
        with gateway.client() as admin:
            answer = admin.request(body.method, body.path, json=with_value(body.valid, path, 1))
        assert answer.status_code == 400, (body.path, path, answer.text)
        assert answer.json()["error"]["param"] == ".".join(path), answer.text

    check()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"alias": "k", "limits": {"tpm": True}}, "limits.tpm"),
        ({"alias": "k", "budget": {"tokens": True}}, "budget.tokens"),
        ({"alias": "k", "budget": {"usd": "5"}}, "budget.usd"),
        ({"alias": "k", "limits": {"rpm": 1.5}}, "limits.rpm"),
        ({"alias": "k", "models": "groq/*"}, "models"),
        ({"alias": "k", "expires_at": 1893456000}, "expires_at"),
        ({"alias": "k", "colour": "red"}, "colour"),
    ],
)
def test_the_examples_from_the_contract(gateway: InProcessGateway, body: dict[str, Any], param: str) -> None:
    with gateway.client() as admin:
        answer = admin.post("/v1/keys", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param


def test_a_provider_given_through_the_api_is_strict(gateway: InProcessGateway) -> None:
    base = {"id": "strict-two", "type": "custom", "base_url": LOOPBACK, "allow_private_network": True}
    with gateway.client() as admin:
        for field, value in (("allow_private_network", "true"), ("timeout", "30"), ("max_retries", True)):
            answer = admin.post("/v1/providers", json={**base, field: value})
            assert answer.status_code == 400, answer.text
            assert answer.json()["error"]["param"] == field


@pytest.mark.parametrize(
    ("target", "body", "param"),
    [
        ("user", {"name": None}, "name"),  # was a 500: the store's name may not be null
        ("key", {"alias": None}, "alias"),
    ],
)
def test_a_field_that_may_be_left_out_may_not_be_null(
    gateway: InProcessGateway, target: str, body: dict[str, Any], param: str
) -> None:
    with gateway.client() as admin:
        made = admin.post(f"/v1/{target}s", json={"name": "n"} if target == "user" else {"alias": "a"})
        answer = admin.patch(f"/v1/{target}s/{made.json()['id']}", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"]["param"] == param
