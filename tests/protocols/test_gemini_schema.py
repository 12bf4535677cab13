"""Tool schemas in Gemini's OpenAPI subset (`llm_proxy.protocols.gemini_schema`): Pydantic's
output for nested models, each mapping rule, each refusal, and generated schemas (every
output is in the subset, every failure names a path under the schema)."""

from __future__ import annotations

import copy
from enum import Enum, IntEnum
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from llm_proxy.protocols.errors import TranslationError
from llm_proxy.protocols.gemini_schema import to_gemini_schema

# The keywords of Gemini's Schema object (ai.google.dev/api/caching#Schema).
GEMINI_KEYS = {
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
}
TYPES = {"string", "number", "integer", "boolean", "array", "object"}


def check_gemini(schema: dict[str, Any], where: str = "") -> None:
    """An AssertionError naming the place where `schema` leaves Gemini's subset (or breaks
    one of the rules its API enforces: enum on strings only, properties on objects only,
    required among the properties, items on every array)."""
    assert isinstance(schema, dict), where
    extra = set(schema) - GEMINI_KEYS
    assert not extra, f"{where}: keys {extra}"
    kind = schema.get("type")
    assert kind is None or (isinstance(kind, str) and kind in TYPES), f"{where}: type {kind!r}"
    if "enum" in schema:
        assert kind == "string", f"{where}: an enum on {kind}"
        assert all(isinstance(value, str) for value in schema["enum"]), where
    if "properties" in schema or "required" in schema:
        assert kind == "object", f"{where}: properties on {kind}"
        assert set(schema.get("required", [])) <= set(schema.get("properties", {})), where
    if kind == "array":
        assert "items" in schema, f"{where}: an array without items"
    if "items" in schema:
        assert kind == "array", f"{where}: items on {kind}"
        check_gemini(schema["items"], f"{where}.items")
    for name, value in schema.get("properties", {}).items():
        check_gemini(value, f"{where}.properties.{name}")
    for position, value in enumerate(schema.get("anyOf", [])):
        check_gemini(value, f"{where}.anyOf[{position}]")


class Color(Enum):
    RED = "red"
    BLUE = "blue"


class Priority(IntEnum):
    LOW = 1
    HIGH = 2


class Address(BaseModel):
    street: str
    city: str = Field(description="The city")
    zip: str | None = None


class Item(BaseModel):
    sku: str = Field(pattern=r"^[A-Z]{3}\d+$")
    quantity: int = Field(gt=0, le=99)


class Order(BaseModel):
    items: list[Item] = Field(min_length=1)
    address: Address | None = None
    billing: Address = Field(description="Where the bill goes")
    color: Color
    priority: Priority = Priority.LOW
    kind: Literal["order"] = "order"
    meta: dict[str, int] = {}
    when: str | int


ADDRESS = {
    "title": "Address",
    "type": "object",
    "properties": {
        "street": {"title": "Street", "type": "string"},
        "city": {"title": "City", "description": "The city", "type": "string"},
        "zip": {"title": "Zip", "default": None, "nullable": True, "type": "string"},
    },
    "required": ["street", "city"],
}


def test_pydantic_nested_models() -> None:
    result = to_gemini_schema(Order.model_json_schema(), "tools[0].input_schema")
    check_gemini(result)
    properties = result["properties"]
    assert properties["items"] == {
        "title": "Items",
        "minItems": 1,
        "type": "array",
        "items": {
            "title": "Item",
            "type": "object",
            "properties": {
                "sku": {"title": "Sku", "pattern": r"^[A-Z]{3}\d+$", "type": "string"},
                "quantity": {"title": "Quantity", "maximum": 99, "minimum": 1, "type": "integer"},
            },
            "required": ["sku", "quantity"],
        },
    }
    # Optional[Address]: the $ref inlined, the null branch a nullable.
    assert properties["address"] == {**ADDRESS, "default": None, "nullable": True}
    # The description beside the $ref wins over nothing; the definition's title stays.
    assert properties["billing"] == {**ADDRESS, "description": "Where the bill goes"}
    assert properties["color"] == {"title": "Color", "type": "string", "enum": ["red", "blue"]}
    assert properties["priority"] == {
        "title": "Priority",
        "default": 1,
        "type": "integer",
        "description": "Allowed values: 1, 2.",
    }
    assert properties["kind"] == {
        "title": "Kind",
        "default": "order",
        "type": "string",
        "enum": ["order"],
    }
    assert properties["meta"] == {"title": "Meta", "default": {}, "type": "object"}
    assert properties["when"] == {
        "title": "When",
        "anyOf": [{"type": "string"}, {"type": "integer"}],
    }
    assert result["required"] == ["items", "billing", "color", "when"]
    assert "$defs" not in result


@pytest.mark.parametrize(
    "schema",
    [
        Order.model_json_schema(),  # $defs and $ref
        {"type": "integer", "enum": [1, 2]},
        {"type": "string", "properties": {"a": {"type": "string"}}},
        {"type": "object", "properties": {"a": {}}, "required": ["b"]},
        {"type": "array"},
        {"type": ["string", "null"]},
    ],
)
def test_the_checker_rejects_what_gemini_refuses(schema: dict[str, Any]) -> None:
    with pytest.raises(AssertionError):
        check_gemini(schema)


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": ["string", "null"]}, {"type": "string", "nullable": True}),
        (
            {"type": ["string", "integer", "null"]},
            {"nullable": True, "anyOf": [{"type": "string"}, {"type": "integer"}]},
        ),
        (
            {"oneOf": [{"type": "string"}, {"type": "number"}]},
            {"anyOf": [{"type": "string"}, {"type": "number"}]},
        ),
        ({"enum": ["a", None]}, {"nullable": True, "type": "string", "enum": ["a"]}),
        ({"const": 3, "type": "integer"}, {"type": "integer", "description": "Allowed values: 3."}),
        (
            {"type": "string", "format": "uri", "description": "A link."},
            {"type": "string", "description": "A link. Format: uri."},
        ),
        ({"type": "string", "format": "date-time"}, {"type": "string", "format": "date-time"}),
        ({"type": "number", "exclusiveMaximum": 1.5}, {"type": "number", "maximum": 1.5}),
        ({"type": "integer", "exclusiveMaximum": 10}, {"type": "integer", "maximum": 9}),
        ({"type": "array"}, {"type": "array", "items": {"type": "string"}}),
        (
            {"type": "string", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"type": "string"},
        ),
        (
            {
                "type": "object",
                "properties": {"a": {"type": "string"}},
                "required": ["a", "ghost"],
                "additionalProperties": False,
                "$schema": "https://json-schema.org/draft/2020-12/schema",
            },
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        ),
        (
            {
                "allOf": [
                    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                    {"type": "object", "properties": {"b": {"type": "integer"}}},
                ]
            },
            {
                "type": "object",
                "properties": {"a": {"type": "string"}, "b": {"type": "integer"}},
                "required": ["a"],
            },
        ),
        (
            {"allOf": [{"$ref": "#/definitions/N"}], "definitions": {"N": {"type": "number"}}},
            {"type": "number"},
        ),
        ({}, {}),
    ],
)
def test_mapping_rules(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    result = to_gemini_schema(schema, "s")
    assert result == expected
    check_gemini(result)


@pytest.mark.parametrize(
    ("schema", "param"),
    [
        (
            {
                "type": "object",
                "properties": {"node": {"$ref": "#/$defs/Node"}},
                "$defs": {
                    "Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}
                },
            },
            "t.input_schema.properties.node.properties.next.$ref",
        ),
        ({"properties": {"x": {"not": {"type": "string"}}}}, "t.input_schema.properties.x.not"),
        ({"type": "array", "items": [{"type": "string"}]}, "t.input_schema.items"),
        ({"type": "array", "prefixItems": []}, "t.input_schema.prefixItems"),
        (
            {"allOf": [{"type": "string"}, {"type": "object"}]},
            "t.input_schema.allOf",
        ),
        ({"$ref": "https://example.com/schema.json"}, "t.input_schema.$ref"),
        ({"type": "null"}, "t.input_schema.type"),
        ({"type": "date"}, "t.input_schema.type"),
        ([], "t.input_schema"),
    ],
)
def test_refusals_name_the_keyword(schema: Any, param: str) -> None:
    with pytest.raises(TranslationError) as raised:
        to_gemini_schema(schema, "t.input_schema")
    assert raised.value.param == param
    assert raised.value.message.startswith(param)


# --- generated schemas -----------------------------------------------------------------------

_SCALARS = st.sampled_from(["string", "number", "integer", "boolean"])
_NAMES = st.text("abcdefgh_", min_size=1, max_size=6)
_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text("xyz", max_size=3))


def _leaf() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(lambda kind: {"type": kind}, _SCALARS),
        st.builds(lambda kind: {"type": [kind, "null"]}, _SCALARS),
        st.builds(lambda values: {"enum": values}, st.lists(_VALUES, min_size=1, max_size=4)),
        st.builds(lambda value: {"const": value}, _VALUES),
        st.builds(
            lambda fmt: {"type": "string", "format": fmt},
            st.sampled_from(["uri", "email", "date-time", "uuid"]),
        ),
        st.builds(
            lambda low, high: {"type": "integer", "exclusiveMinimum": low, "maximum": high},
            st.integers(-3, 3),
            st.integers(4, 9),
        ),
        st.just({"$ref": "#/$defs/Shared"}),
        st.just({}),
    )


def _extend(children: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.builds(
            lambda props, required, extra: {
                "type": "object",
                "properties": props,
                "required": required,
                "additionalProperties": extra,
            },
            st.dictionaries(_NAMES, children, max_size=4),
            st.lists(_NAMES, max_size=3),
            st.booleans(),
        ),
        st.builds(lambda items: {"type": "array", "items": items}, children),
        st.builds(lambda members: {"anyOf": members}, st.lists(children, min_size=1, max_size=3)),
        st.builds(
            lambda members: {"oneOf": [*members, {"type": "null"}]},
            st.lists(children, min_size=1, max_size=3),
        ),
        st.builds(
            lambda child, text: {**child, "description": text}, children, st.text(max_size=5)
        ),
    )


SCHEMAS = st.recursive(_leaf(), _extend, max_leaves=12).map(
    lambda schema: {
        "type": "object",
        "properties": {"root": schema},
        "$defs": {"Shared": {"type": "object", "properties": {"v": {"type": "string"}}}},
    }
)


@settings(max_examples=300, deadline=None)
@given(SCHEMAS)
def test_generated_schemas_land_in_the_subset(schema: dict[str, Any]) -> None:
    # Every construct generated is one the converter maps: none is refused.
    check_gemini(to_gemini_schema(schema, "tools[0].input_schema"))


@settings(max_examples=200, deadline=None)
@given(SCHEMAS, st.sampled_from(["not", "if", "contains", "dependentSchemas"]))
def test_an_unknown_keyword_is_refused_by_its_path(schema: Any, keyword: str) -> None:
    schema = copy.deepcopy(schema)  # st.just's objects are shared between examples
    schema["properties"]["root"][keyword] = {}
    with pytest.raises(TranslationError) as raised:
        to_gemini_schema(schema, "s")
    assert raised.value.param == f"s.properties.root.{keyword}"
