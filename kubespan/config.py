"""The agent's YAML config: one file, identical on every machine of a cluster.

Every key is checked and unknown keys are errors, because a typo such as `mtU: 1380` that
silently falls back to a default only shows up later as a black-holed MTU. pydantic models do
the checking; `config_values` holds the field types, `config_errors` the wording of errors and
`config_defaults` every default.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator

from kubespan.config_defaults import (
    DEFAULT_ENDPOINT_TIMEOUT,
    DEFAULT_FORCE_ROUTING,
    DEFAULT_KEEPALIVE_SECONDS,
    DEFAULT_MACHINE_TYPE,
    DEFAULT_MTU,
    DEFAULT_PEER_DOWN,
    DEFAULT_PORT,
    DEFAULT_RECONCILE,
    DEFAULT_TTL,
    MAX_MTU,
    MIN_MTU,
)
from kubespan.config_errors import ConfigError, config_error, invalid
from kubespan.config_values import (
    ClusterId,
    ClusterSecret,
    DiscoveryEndpoint,
    Duration,
    EndpointFilter,
    Endpoints,
    ExtraEndpoint,
    Filter,
    Network,
    Port,
    Text,
    YamlList,
    format_duration,
)
from membership import keys
from membership.limits import TTL_MAX
from membership.secrets import decode_cluster_secret

__all__ = [
    "DEFAULT_MTU",
    "DEFAULT_PORT",
    "MAX_MTU",
    "MIN_MTU",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DiscoveryConfig",
    "DiscoveryEndpoint",
    "EndpointFilter",
    "MeshConfig",
    "NodeConfig",
    "TimingConfig",
    "gen_config",
    "load_config",
    "render_config",
]


class _Section(BaseModel):
    """A mapping of the config: unknown keys are refused and a null value (`mesh:` with
    nothing under it, `ttl:` left blank) means "the default", as if the key were absent."""

    # hide_input_in_errors: a ValidationError that escaped anyway must not print the secret.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_defaults(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class ClusterConfig(_Section):
    id: ClusterId
    # repr=False: configs end up in logs and tracebacks; the secret must not.
    secret: ClusterSecret = Field(repr=False)

    @property
    def secret_bytes(self) -> bytes:
        return decode_cluster_secret(self.secret)

    @model_validator(mode="after")
    def _locked_id_matches_secret(self) -> ClusterConfig:
        # A locked id names the key its secret derives; any other pairing could never write.
        if keys.cluster_key_of(self.id) is not None:
            derived = keys.cluster_signing_key(self.secret_bytes)
            if keys.locked_cluster_id(keys.public_bytes(derived)) != self.id:
                raise ValueError(
                    "cluster.id is a locked cluster id (kc1.) that cluster.secret does not "
                    "derive: copy both from the same `kubespan gen-secrets` output"
                )
        return self


class DiscoveryConfig(_Section):
    endpoints: Endpoints
    # A PEM bundle trusted instead of the system roots for https:// and grpcs:// endpoints.
    ca_file: Text | None = None


class MeshConfig(_Section):
    port: Port = DEFAULT_PORT
    mtu: Annotated[int, Strict(), Field(ge=MIN_MTU, le=MAX_MTU)] = DEFAULT_MTU
    advertised_networks: YamlList[Network] = ()
    excluded_networks: YamlList[Network] = ()
    endpoint_filters: YamlList[Filter] = ()
    extra_endpoints: YamlList[ExtraEndpoint] = ()
    force_routing: Annotated[bool, Strict()] = DEFAULT_FORCE_ROUTING
    keepalive_seconds: Annotated[int, Strict(), Field(ge=0, le=65535)] = DEFAULT_KEEPALIVE_SECONDS


class NodeConfig(_Section):
    """Overrides; None means "ask the machine"."""

    hostname: Text | None = None
    nodename: Text | None = None
    # Published as the record's machine type, as Talos does; only shown, never acted on.
    machine_type: Literal["worker", "controlplane", "init"] = DEFAULT_MACHINE_TYPE


def _half_ttl(validated: dict[str, Any]) -> timedelta:
    # Called only when `ttl` validated: pydantic skips it (and reports why) otherwise.
    ttl: timedelta = validated["ttl"]
    return ttl / 2


class TimingConfig(_Section):
    endpoint_timeout: Duration = DEFAULT_ENDPOINT_TIMEOUT
    peer_down: Duration = DEFAULT_PEER_DOWN
    reconcile: Duration = DEFAULT_RECONCILE
    ttl: Duration = DEFAULT_TTL
    # Half of the configured ttl, not of the default one; must follow `ttl` here.
    refresh: Duration = Field(default_factory=_half_ttl)

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.ttl > TTL_MAX:
            raise invalid(f"must be at most {format_duration(TTL_MAX)}", field="ttl")
        if self.refresh >= self.ttl:
            raise invalid("must be shorter than timing.ttl", field="refresh")
        if self.endpoint_timeout >= self.peer_down:
            raise invalid("must be shorter than timing.peer_down", field="endpoint_timeout")
        return self


class Config(_Section):
    cluster: ClusterConfig
    discovery: DiscoveryConfig
    mesh: MeshConfig = Field(default_factory=MeshConfig)
    node: NodeConfig = Field(default_factory=NodeConfig)
    timing: TimingConfig = Field(default_factory=TimingConfig)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        # Unhashable keys (`? [a]`) are left to construct_mapping, which reports them.
        if isinstance(key, str | int | float | bool):
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: duplicate key {key!r}")
            seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_config(text: str) -> Config:
    """Parse and validate a YAML config; raises ConfigError naming the bad field."""
    try:
        raw = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config: invalid YAML: {exc}") from None
    except RecursionError:
        # PyYAML composes nested collections recursively; `[[[[...` a few thousand deep.
        raise ConfigError("config: invalid YAML: nested too deeply") from None
    try:
        return Config.model_validate({} if raw is None else raw)
    except ValidationError as exc:
        raise config_error(exc, Config) from None


def render_config(config: Config) -> str:
    """YAML text that load_config turns back into an equal Config."""
    doc = config.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def gen_config(cluster_id: str, secret: str, endpoint: str) -> str:
    """A fresh config for `kubespan gen-secrets`; raises ConfigError on bad arguments."""
    draft = {
        "cluster": {"id": cluster_id, "secret": secret},
        "discovery": {"endpoints": [endpoint]},
    }
    config = load_config(yaml.safe_dump(draft))
    header = (
        "# kubespan agent config: copy it unchanged to every machine of the cluster.\n"
        "# cluster.secret encrypts discovery data and is the WireGuard preshared key: keep it\n"
        "# private (mode 0600).\n"
    )
    return header + render_config(config)
