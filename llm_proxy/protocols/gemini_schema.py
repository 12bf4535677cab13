"""A tool's JSON Schema (`input_schema`) as the schema Gemini's function declarations take: the
subset of OpenAPI 3.0 its `Schema` object has (ai.google.dev/api/caching#Schema).

What is mapped, and how:

* `type` is kept (`string`, `number`, `integer`, `boolean`, `array`, `object`); a list of
  types with `"null"` becomes `nullable: true` and the other type; several other types become
  an `anyOf` of each.
* `$ref` to `#/$defs/NAME` or `#/definitions/NAME` is inlined (the keywords beside it, such
  as Pydantic's `description`, win); a recursive reference is refused: Gemini has no `$ref`.
* `oneOf` becomes `anyOf`; a `{"type": "null"}` branch becomes `nullable: true`, and a union
  left with one branch is that branch. `allOf` is merged when its members are objects or a
  single schema; any other `allOf` is refused.
* `enum` of strings is kept (typed `string`; a `null` member makes it nullable). Gemini
  allows `enum` on strings only, so an enum of numbers or booleans is dropped and its values
  are named in the description (the parameter keeps its type). `const` is an enum of one.
* `format`: Gemini accepts `date-time` and `enum` for strings, `float`/`double` for numbers,
  `int32`/`int64` for integers; another format is named in the description instead.
* `exclusiveMinimum`/`exclusiveMaximum` become `minimum`/`maximum` (one more or less for an
  integer; for a number the bound becomes inclusive).
* `properties`, `required` (only names that are properties: Gemini refuses others), `items`,
  `minItems`, `maxItems`, `minLength`, `maxLength`, `minProperties`, `maxProperties`,
  `minimum`, `maximum`, `pattern`, `title`, `description`, `default`, `example`, `nullable`,
  `propertyOrdering` are kept; `properties` and `required` only on objects, `items` only on
  arrays (an array without `items` gets string items: Gemini requires them).
* Dropped, as validation Gemini cannot express or annotations it does not take:
  `additionalProperties`, `unevaluatedProperties`, `$schema`, `$id`, `$comment`, `examples`,
  `strict`, `readOnly`, `writeOnly`, `deprecated`, `uniqueItems`, `multipleOf`,
  `contentEncoding`, `contentMediaType`, `propertyNames`, `patternProperties`.
* Anything else (`not`, `if`, `prefixItems`, `contains`, ...) is refused: a TranslationError
  naming the keyword's path, e.g. `tools[0].input_schema.properties.x.not`.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from llm_proxy.protocols.errors import TranslationError

_TYPES: Final = frozenset({"string", "number", "integer", "boolean", "array", "object"})
# Keywords copied as they are (after the type checks below).
_KEPT: Final = (
    "title",
    "description",
    "default",
    "example",
    "pattern",
    "minItems",
    "maxItems",
    "minLength",
    "maxLength",
    "minProperties",
    "maxProperties",
    "minimum",
    "maximum",
    "propertyOrdering",
)
_DROPPED: Final = frozenset(
    {
        "additionalProperties",
        "unevaluatedProperties",
        "$schema",
        "$id",
        "$comment",
        "examples",
        "strict",
        "readOnly",
        "writeOnly",
        "deprecated",
        "uniqueItems",
        "multipleOf",
        "contentEncoding",
        "contentMediaType",
        "propertyNames",
        "patternProperties",
        "$defs",
        "definitions",
    }
)
# Keywords handled by their own code below.
_HANDLED: Final = frozenset(
    {
        "type",
        "$ref",
        "anyOf",
        "oneOf",
        "allOf",
        "enum",
        "const",
        "format",
        "nullable",
        "properties",
        "required",
        "items",
        "exclusiveMinimum",
        "exclusiveMaximum",
    }
)
_FORMATS: Final = {
    "string": frozenset({"date-time", "enum"}),
    "number": frozenset({"float", "double"}),
    "integer": frozenset({"int32", "int64"}),
}


def to_gemini_schema(schema: Any, param: str) -> dict[str, Any]:
    """`schema` (a JSON Schema object) in Gemini's subset (see the module docstring); `param`
    names the schema in a TranslationError (e.g. `tools[0].input_schema`)."""
    if not isinstance(schema, dict):
        raise TranslationError(param, f"{param}: a JSON Schema object is required")
    definitions: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        found = schema.get(key)
        if isinstance(found, dict):
            definitions.update({f"#/{key}/{name}": value for name, value in found.items()})
    return _Converter(definitions).convert(schema, param, ())


class _Converter:
    __slots__ = ("_definitions",)

    def __init__(self, definitions: dict[str, Any]) -> None:
        self._definitions = definitions

    def convert(self, schema: Any, where: str, refs: tuple[str, ...]) -> dict[str, Any]:
        if schema is True or schema == {}:
            return {}
        if not isinstance(schema, dict):
            raise TranslationError(where, f"{where}: a schema must be an object")
        schema, refs = self._resolve(schema, where, refs)
        for key in schema:
            if key not in _HANDLED and key not in _DROPPED and key not in _KEPT:
                raise TranslationError(
                    f"{where}.{key}", f"{where}.{key}: Gemini cannot express the {key!r} keyword"
                )
        out: dict[str, Any] = {key: schema[key] for key in _KEPT if key in schema}
        if schema.get("nullable") is True:
            out["nullable"] = True
        notes: list[str] = []
        self._type(schema, out, where, refs)
        if "allOf" in schema:
            self._all_of(schema["allOf"], out, f"{where}.allOf", refs)
        for union in ("anyOf", "oneOf"):
            if union in schema:
                self._any_of(schema[union], out, f"{where}.{union}", refs)
        if "const" in schema:
            _enum([schema["const"]], out, notes)
        if "enum" in schema:
            if not isinstance(schema["enum"], list) or not schema["enum"]:
                raise TranslationError(f"{where}.enum", f"{where}.enum: a non-empty list")
            _enum(schema["enum"], out, notes)
        _bounds(schema, out)
        _format(schema.get("format"), out, notes)
        kind = out.get("type")
        if kind == "object" or (kind is None and "properties" in schema):
            self._object(schema, out, where, refs)
        elif kind == "array" or (kind is None and "items" in schema):
            self._array(schema, out, where, refs)
        if notes:
            text = out.get("description")
            out["description"] = " ".join([text, *notes] if isinstance(text, str) else notes)
        return out

    def _resolve(
        self, schema: dict[str, Any], where: str, refs: tuple[str, ...]
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The schema with its `$ref` inlined (its sibling keywords win), following chains."""
        while "$ref" in schema:
            ref = schema["$ref"]
            if ref in refs:
                raise TranslationError(
                    f"{where}.$ref",
                    f"{where}.$ref: the recursive reference {ref!r} cannot be sent to Gemini "
                    "(its schemas have no references)",
                )
            target = self._definitions.get(ref) if isinstance(ref, str) else None
            if not isinstance(target, dict):
                raise TranslationError(
                    f"{where}.$ref", f"{where}.$ref: {ref!r} is not a local definition"
                )
            siblings = {key: value for key, value in schema.items() if key != "$ref"}
            schema = {**target, **siblings}
            refs = (*refs, ref)
        return schema, refs

    def _type(
        self, schema: dict[str, Any], out: dict[str, Any], where: str, refs: tuple[str, ...]
    ) -> None:
        kind = schema.get("type")
        if kind is None:
            return
        kinds = kind if isinstance(kind, list) else [kind]
        if not kinds or not all(isinstance(item, str) for item in kinds):
            raise TranslationError(f"{where}.type", f"{where}.type: a type name or a list")
        others = [item for item in kinds if item != "null"]
        unknown = [item for item in others if item not in _TYPES]
        if unknown:
            raise TranslationError(f"{where}.type", f"{where}.type: unknown type {unknown[0]!r}")
        if len(others) < len(kinds):
            out["nullable"] = True
        if not others:
            raise TranslationError(
                f"{where}.type", f"{where}.type: Gemini has no schema for null alone"
            )
        if len(others) == 1:
            out["type"] = others[0]
        else:
            out["anyOf"] = [{"type": item} for item in others]

    def _any_of(self, members: Any, out: dict[str, Any], where: str, refs: tuple[str, ...]) -> None:
        if not isinstance(members, list) or not members:
            raise TranslationError(where, f"{where}: a non-empty list of schemas is required")
        branches = []
        for position, member in enumerate(members):
            place = f"{where}[{position}]"
            if isinstance(member, dict):
                member, _ = self._resolve(member, place, refs)
            if isinstance(member, dict) and member.get("type") == "null" and len(member) == 1:
                out["nullable"] = True
                continue
            branches.append(self.convert(member, place, refs))
        if len(branches) == 1:
            _merge(out, branches[0])
        elif branches:
            out["anyOf"] = out.get("anyOf", []) + branches

    def _all_of(self, members: Any, out: dict[str, Any], where: str, refs: tuple[str, ...]) -> None:
        if not isinstance(members, list) or not members:
            raise TranslationError(where, f"{where}: a non-empty list of schemas is required")
        converted = [
            self.convert(member, f"{where}[{position}]", refs)
            for position, member in enumerate(members)
        ]
        if len(converted) == 1:
            _merge(out, converted[0])
            return
        if not all(member.get("type") == "object" for member in converted):
            raise TranslationError(
                where, f"{where}: only an allOf of object schemas can be sent to Gemini"
            )
        properties: dict[str, Any] = {}
        required: list[str] = []
        for member in converted:
            properties.update(member.get("properties", {}))
            required += [name for name in member.get("required", []) if name not in required]
            _merge(out, {k: v for k, v in member.items() if k not in ("properties", "required")})
        out["type"] = "object"
        if properties:
            out["properties"] = {**out.get("properties", {}), **properties}
        if required:
            out["required"] = out.get("required", []) + required

    def _object(
        self, schema: dict[str, Any], out: dict[str, Any], where: str, refs: tuple[str, ...]
    ) -> None:
        properties = schema.get("properties")
        if properties is not None:
            if not isinstance(properties, dict):
                raise TranslationError(f"{where}.properties", f"{where}.properties: an object")
            converted = {
                name: self.convert(value, f"{where}.properties.{name}", refs)
                for name, value in properties.items()
            }
            if converted:
                out["properties"] = {**out.get("properties", {}), **converted}
        required = schema.get("required")
        if isinstance(required, list):
            known = out.get("properties", {})
            names = [name for name in required if isinstance(name, str) and name in known]
            names += [name for name in out.get("required", []) if name not in names]
            if names:
                out["required"] = names
            else:
                out.pop("required", None)
        if "type" not in out and "anyOf" not in out:
            out["type"] = "object"

    def _array(
        self, schema: dict[str, Any], out: dict[str, Any], where: str, refs: tuple[str, ...]
    ) -> None:
        items = schema.get("items")
        if isinstance(items, list):
            raise TranslationError(
                f"{where}.items", f"{where}.items: tuples (a list of item schemas) are refused"
            )
        converted = self.convert(items, f"{where}.items", refs) if items is not None else {}
        out["items"] = converted or {"type": "string"}
        out.setdefault("type", "array")


def _merge(out: dict[str, Any], branch: dict[str, Any]) -> None:
    """A single union branch into its schema: the schema's own keywords (a description beside
    `anyOf`) win, nullability adds up."""
    for key, value in branch.items():
        if key == "nullable":
            out["nullable"] = out.get("nullable", False) or value
        elif key == "properties":
            out["properties"] = {**value, **out.get("properties", {})}
        else:
            out.setdefault(key, value)


def _enum(values: list[Any], out: dict[str, Any], notes: list[str]) -> None:
    if None in values:
        out["nullable"] = True
        values = [value for value in values if value is not None]
    if not values:
        return
    if all(isinstance(value, str) for value in values) and out.get("type") in (None, "string"):
        out["type"] = "string"
        out["enum"] = values
        return
    allowed = ", ".join(orjson.dumps(value).decode() for value in values)
    notes.append(f"Allowed values: {allowed}.")


def _bounds(schema: dict[str, Any], out: dict[str, Any]) -> None:
    step = 1 if schema.get("type") == "integer" else 0
    for keyword, bound, sign in (
        ("exclusiveMinimum", "minimum", 1),
        ("exclusiveMaximum", "maximum", -1),
    ):
        value = schema.get(keyword)
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[bound] = value + sign * step


def _format(value: Any, out: dict[str, Any], notes: list[str]) -> None:
    if not isinstance(value, str):
        return
    if value in _FORMATS.get(out.get("type", ""), ()):
        out["format"] = value
    else:
        notes.append(f"Format: {value}.")
