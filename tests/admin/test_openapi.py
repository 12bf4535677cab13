"""The admin API's OpenAPI 3.1 document: served without a key, it documents every admin route,
and schemathesis (a maintained fuzzer, run as its CLI) fuzzes the running API in database mode
from it: no 5xx, every answer's status, content type and body as documented."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path

import aiohttp
import asyncpg

from llm_proxy.admin.routes import create_admin_app
from tests.helpers.db import add_provider
from tests.helpers.processes import serve_process

ADMIN_KEY = "adm-fuzz-0123456789abcdef"


def test_every_admin_route_is_documented() -> None:
    from llm_proxy.admin.openapi import document

    doc = document()
    assert doc["openapi"] == "3.1.0"
    documented = {(method.upper(), path) for path, ops in doc["paths"].items() for method in ops}
    served = {
        (route.method, route.resource.canonical)
        for route in create_admin_app().router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        and not route.resource.canonical.startswith("/master-keys")  # the alias of /credentials
    }
    assert served == documented, served ^ documented


def test_every_compatibility_alias_is_documented_as_one() -> None:
    """The original llm-proxy's field names (`admin.aliases.ALIASES`) are properties of the
    input schemas, and its paths operations, each marked deprecated with what it stands for."""
    from llm_proxy.admin.aliases import ALIASES
    from llm_proxy.admin.openapi import SCHEMAS, document

    for table, schemas in (
        ("providers", ("ProviderInput", "ProviderPatch")),
        ("credentials", ("CredentialInput", "CredentialPatch")),
    ):
        for schema in schemas:
            properties = SCHEMAS[schema]["properties"]
            for alias in ALIASES[table]:
                assert properties[alias]["deprecated"] is True, (schema, alias)
                assert "original llm-proxy" in properties[alias]["description"]
    assert SCHEMAS["Status"]["properties"]["is_enabled"]["deprecated"] is True
    assert SCHEMAS["Rotate"]["properties"]["credential_key"]["deprecated"] is True
    assert SCHEMAS["CheckOptions"]["properties"]["provider_ids"]["deprecated"] is True
    assert SCHEMAS["ConfigVersion"]["properties"]["version"]["type"] == "integer"
    paths = document()["paths"]
    for path in (
        "/logs",
        "/logs/stats",
        "/logs/{id}",
        "/error-logs",
        "/error-logs/{id}",
        "/health/providers/{id}",
    ):
        operation = paths[path]["get"]
        assert operation["deprecated"] is True
        assert "ours:" in operation["x-compatibility"]


def test_the_provider_schemas_list_every_type_and_setting() -> None:
    from llm_proxy.admin.openapi import SCHEMAS
    from llm_proxy.config.providers import AUTH_MODES, PROVIDER_TYPES
    from llm_proxy.config.sections import PROVIDER_KEYS

    provider_input = SCHEMAS["ProviderInput"]
    # api_base: not for anthropic; the name, or the original llm-proxy's provider_key or id
    assert provider_input["anyOf"] == [
        {"required": ["name"]},
        {"required": ["provider_key"]},
        {"required": ["id"]},
    ]
    assert provider_input["properties"]["provider_type"]["enum"] == list(PROVIDER_TYPES)
    assert SCHEMAS["Provider"]["properties"]["provider_type"]["enum"] == list(PROVIDER_TYPES)
    params = provider_input["properties"]["params"]
    assert params["properties"]["auth"]["enum"] == list(AUTH_MODES)
    from llm_proxy.config.clouds import CLOUD_FIELDS

    for setting in ("anthropic_version", "default_max_tokens", "max_output_tokens", *CLOUD_FIELDS):
        assert setting in PROVIDER_KEYS and setting in params["properties"]
        assert setting in params["description"]
    assert provider_input["properties"]["api_key"]["writeOnly"] is True  # never returned


async def test_the_running_api_matches_its_document(config_dsn: str, tmp_path: Path) -> None:
    conn = await asyncpg.connect(config_dsn)
    try:  # objects for the fuzzer to find (id 1 of each)
        await add_provider(conn, "alpha", "http://127.0.0.1:9/v1", {"m": None})
        await conn.execute("INSERT INTO teams (name) VALUES ('search')")
        await conn.execute(
            "INSERT INTO credentials (name, key, team) VALUES ('team', 'sk-team-0123456', 'search')"
        )
    finally:
        await conn.close()
    env = {"DB_URL": config_dsn, "ADMIN_KEY": ADMIN_KEY, "LOG_LEVEL": "warning"}
    async with serve_process("request_timeout_secs: 2\n", tmp_path, env) as served:
        async with (
            aiohttp.ClientSession() as http,
            http.get(served.url + "/admin/v1/openapi.json") as resp,
        ):
            assert resp.status == 200  # no key needed: it holds no secret
            assert (await resp.json())["info"]["title"] == "llm-proxy admin API"
        tool = shutil.which("schemathesis", path=os.path.dirname(sys.executable))
        assert tool is not None, "schemathesis is a test dependency (pip install -e '.[test]')"
        proc = await asyncio.create_subprocess_exec(
            tool,
            "--no-color",
            "run",
            served.url + "/admin/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {ADMIN_KEY}",
            "--checks",
            "not_a_server_error,response_schema_conformance,status_code_conformance,"
            "content_type_conformance",
            "--max-examples",
            "15",
            "--phases",
            "examples,coverage,fuzzing",
            "--seed",
            "20261126",
            "--request-timeout",
            "20",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), 300)
    report = out.decode(errors="replace")
    assert proc.returncode == 0, report[-6000:]
    assert " passed" in report and "failed" not in report.split("SUMMARY")[-1], report[-3000:]
