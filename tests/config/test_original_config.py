"""A YAML config written for the original llm-proxy loads here as is: the example of its
README (`data/original/readme-config.yaml`, copied verbatim with its origin and licence noted
beside it), with its `${VAR}` references, its three kinds of `model_mapping` keys (exact, regex,
`*` wildcard), rate-limited and unlimited master keys, `server` and `verify_ssl`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from llm_proxy.config.yaml_file import load_config_file

ORIGINAL = Path(__file__).parent / "data" / "original" / "readme-config.yaml"
ENV = {"API_BASE_URL": "https://upstream.example/v1", "API_KEY_1": "sk-upstream-0123"}


def test_the_original_readme_example_loads_as_is() -> None:
    config = load_config_file(ORIGINAL, ENV)
    (provider,) = config.providers
    assert (provider.name, provider.api_base, provider.api_key, provider.weight) == (
        "Provider-1",
        "https://upstream.example/v1",
        "sk-upstream-0123",
        2,
    )
    rules = {rule.key: rule for rule in provider.model_mapping}
    assert rules["claude-4.5-sonnet"].pattern is None
    assert rules["claude-4.5-sonnet"].target == "actual-provider-model"
    opus, gemini = rules["claude-opus-4-5-.*"], rules["gemini-*"]
    assert opus.pattern is not None and opus.pattern.fullmatch("claude-opus-4-5-20251101")
    assert opus.target == "claude-opus-mapped"
    assert gemini.pattern is not None and gemini.pattern.fullmatch("gemini-1.5-pro")
    assert not gemini.pattern.fullmatch("xgemini-1")
    production, unlimited = config.master_keys
    assert (production.name, production.key) == ("Production Key", "sk-prod-key")
    assert production.rate_limit is not None
    assert (production.rate_limit.requests_per_second, production.rate_limit.burst_size) == (
        100,
        150,
    )
    assert (unlimited.name, unlimited.rate_limit, unlimited.allowed_models) == (
        "Unlimited Key",
        None,
        None,
    )
    assert (config.host, config.port, config.verify_ssl) == ("0.0.0.0", 18000, False)


def test_check_config_accepts_it_with_the_variables_in_a_dotenv(tmp_path: Path) -> None:
    """As an operator of the original would run it: the file as is, its variables in the
    working directory's `.env`."""
    (tmp_path / "config.yaml").write_text(ORIGINAL.read_text())
    (tmp_path / ".env").write_text("".join(f"{k}={v}\n" for k, v in ENV.items()))
    done = subprocess.run(
        [sys.executable, "-m", "llm_proxy", "check-config", "config.yaml"],
        cwd=tmp_path, env={"PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "config.yaml: OK" in done.stdout
    assert "master keys (2): Production Key (100 rps, burst 150), Unlimited Key" in done.stdout
