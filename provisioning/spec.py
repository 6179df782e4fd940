"""IndexSpec: everything that defines one private index, built once and handed to a driver.

Both drivers build the same topology from it: Caddy (HTTPS) in front of one index server,
pypiserver extended by `provisioning/index_server.py`, which serves only reads: exactly the files
listed in the manifest the portal writes, to the tokens in the tokens file the portal writes.
Packages arrive through the portal's upload API and page, never through the index. The server's
source is written to the config share and run by the stock pypiserver image, so the container
group needs no image of our own. Paths in containers are the container paths; the local driver
maps each mount to a folder.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from django.conf import settings

SHARE_CERTS = "caddy-certs"
SHARE_CONFIG = "caddy-config"
SHARE_PACKAGES = "pypipackages"

# Inside the containers (the Caddy image's XDG defaults and pypiserver's package folder).
CERTS_MOUNT = "/data"
CONFIG_MOUNT = "/config"
PACKAGES_MOUNT = "/data/packages"

# The index server's files live on the config share, next to the Caddyfile, not among the packages.
CADDYFILE_PATH = "Caddyfile"
INDEX_SERVER_PATH = "index/server.py"
MANIFEST_PATH = "index/manifest.json"
TOKENS_PATH = "index/tokens.json"
# PEP 658 metadata files, on the package share beside what they describe.
METADATA_DIR = "metadata"


@functools.cache
def index_server_source() -> bytes:
    """The index server's code, as the portal writes it to every index's config share."""
    return Path(__file__).with_name("index_server.py").read_bytes()


# Ports inside the container group; only Caddy's are public.
AZURE_HTTP_PORT = 80
AZURE_HTTPS_PORT = 443
SERVER_PORT = 8080


@dataclass(frozen=True)
class Placement:
    """Where an index lives, chosen by the driver and kept on the index (`deployment`)."""

    hostname: str
    https_port: int
    http_port: int
    server_port: int
    tls: str  # "internal" (Caddy's own CA) or "acme" (Let's Encrypt)
    resources: dict = field(default_factory=dict)  # driver-owned names (resource group, account)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Placement:
        data = dict(data)
        # Placements kept from the two-server topology: the read server's port is the server's.
        if "read_port" in data:
            data.setdefault("server_port", data.pop("read_port"))
            data.pop("publish_port", None)
        return cls(**data)


@dataclass(frozen=True)
class ShareSpec:
    name: str
    quota_gb: int


@dataclass(frozen=True)
class VolumeMount:
    share: str
    mount_path: str
    read_only: bool = False


@dataclass(frozen=True)
class ContainerSpec:
    name: str
    image: str
    command: tuple[str, ...]
    cpu: float
    memory_gb: float
    ports: tuple[int, ...] = ()
    mounts: tuple[VolumeMount, ...] = ()
    environment: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ConfigFile:
    """A file the portal keeps on the config share. `replace`: rewritten whenever it differs
    (definitions); otherwise only written when missing (state the portal updates later: the
    manifest and the tokens, which a retry must not reset)."""

    path: str
    content: bytes
    replace: bool = True


@dataclass(frozen=True)
class IndexSpec:
    index_id: int
    name: str
    team: str
    size: str
    placement: Placement
    shares: tuple[ShareSpec, ...]
    containers: tuple[ContainerSpec, ...]
    public_ports: tuple[int, ...]
    caddyfile: str
    tags: tuple[tuple[str, str], ...]
    config_files: tuple[ConfigFile, ...] = ()

    @property
    def hostname(self) -> str:
        return self.placement.hostname

    @property
    def base_url(self) -> str:
        port = self.placement.https_port
        return f"https://{self.hostname}" + ("" if port == 443 else f":{port}")

    @property
    def url(self) -> str:
        return f"{self.base_url}/simple/"

    def container(self, name: str) -> ContainerSpec:
        return next(c for c in self.containers if c.name == name)

    def share(self, name: str) -> ShareSpec:
        return next(s for s in self.shares if s.name == name)


def render_caddyfile(
    placement: Placement, *, acme_directory: str = "", acme_email: str = "", acme_ca_root: str = ""
) -> str:
    """Caddy in front of the index server. Only HTTPS is served to clients; with ACME, port 80
    answers the HTTP challenge and redirects everything else. The ACME options name the CA
    (`acme_ca`: only that CA, no fallback to another), the contact and, for test CAs, the root
    that signs the CA's own HTTPS. Caddy keeps its account and certificates in
    $XDG_DATA_HOME/caddy, on the caddy-certs share, so a restart reuses them."""
    if placement.tls == "internal":
        options = f"""{{
\tadmin off
\tpersist_config off
\tskip_install_trust
\tauto_https disable_redirects
\tdefault_bind 127.0.0.1
\thttp_port {placement.http_port}
\thttps_port {placement.https_port}
}}
"""
        site = f"https://{placement.hostname}:{placement.https_port}"
        tls = "\ttls internal\n"
    else:
        acme = [f"\tacme_ca {acme_directory}"] if acme_directory else []
        acme += [f"\temail {acme_email}"] if acme_email else []
        acme += [f"\tacme_ca_root {acme_ca_root}"] if acme_ca_root else []
        options = "\n".join(["{", "\tadmin off", "\tpersist_config off", *acme, "}"]) + "\n"
        site = placement.hostname
        tls = ""
    # The index takes no uploads (they go to the portal), so request bodies stay small. Pages and
    # metadata files are compressed for clients that accept it, PEP 691 JSON included (Caddy's
    # default types miss application/vnd.pypi.simple.v1+json); wheels are left alone. The server
    # picks up new files without a restart; should it restart anyway, Caddy holds requests until
    # it answers again (lb_try_duration).
    return f"""{options}
{site} {{
{tls}\trequest_body {{
\t\tmax_size 64KB
\t}}
\tencode zstd gzip {{
\t\tmatch {{
\t\t\theader Content-Type text/*
\t\t\theader Content-Type application/json*
\t\t\theader Content-Type application/vnd.pypi.simple.*
\t\t}}
\t}}
\treverse_proxy 127.0.0.1:{placement.server_port} {{
\t\tlb_try_duration 15s
\t\tlb_try_interval 100ms
\t}}
}}
"""


def index_caddyfile(placement: Placement) -> str:
    """The Caddyfile of an index at `placement`, with the configured ACME CA (the Azure driver
    renders it again once Azure has given the FQDN)."""
    return render_caddyfile(
        placement,
        acme_directory=settings.ACME_DIRECTORY_URL,
        acme_email=settings.ACME_EMAIL,
        acme_ca_root=settings.ACME_CA_ROOT,
    )


def _index_server_command(placement: Placement, name: str) -> tuple[str, ...]:
    return (
        "python", f"{CONFIG_MOUNT}/{INDEX_SERVER_PATH}",
        "--host", "127.0.0.1",
        "--port", str(placement.server_port),
        "--manifest", f"{CONFIG_MOUNT}/{MANIFEST_PATH}",
        "--tokens", f"{CONFIG_MOUNT}/{TOKENS_PATH}",
        "--packages", PACKAGES_MOUNT,
        "--realm", name,
    )  # fmt: skip


def empty_manifest(name: str, upload_url: str) -> bytes:
    """What a new index serves: nothing (the portal writes the real manifest after each change)."""
    manifest = {"version": 1, "generation": "empty", "index": name, "upload_url": upload_url, "files": []}
    return json.dumps(manifest).encode()


def build_index_spec(
    *, index_id: int, name: str, team: str, size: str, placement: Placement, upload_url: str = ""
) -> IndexSpec:
    """The whole definition of one index: containers, shares, Caddyfile and tags."""
    sizing = settings.INDEX_SIZES[size]
    # Caddy is light (TLS and proxying); the index server gets the rest.
    caddy_cpu, caddy_memory = 0.25, 0.25
    server_cpu = max(0.25, sizing["cpu"] - caddy_cpu)
    server_memory = max(0.5, sizing["memory_gb"] - caddy_memory)
    caddy = ContainerSpec(
        name="caddy",
        image=settings.CADDY_IMAGE,
        command=("caddy", "run", "--config", f"{CONFIG_MOUNT}/{CADDYFILE_PATH}", "--adapter", "caddyfile"),
        cpu=caddy_cpu,
        memory_gb=caddy_memory,
        ports=(placement.http_port, placement.https_port),
        mounts=(VolumeMount(SHARE_CERTS, CERTS_MOUNT), VolumeMount(SHARE_CONFIG, CONFIG_MOUNT)),
        environment=(("XDG_DATA_HOME", CERTS_MOUNT), ("XDG_CONFIG_HOME", CONFIG_MOUNT)),
    )
    # Read-only mounts: the index server writes nothing; only the portal writes the shares.
    server = ContainerSpec(
        name="pypiserver",
        image=settings.PYPISERVER_IMAGE,
        command=_index_server_command(placement, name),
        cpu=server_cpu,
        memory_gb=server_memory,
        mounts=(
            VolumeMount(SHARE_PACKAGES, PACKAGES_MOUNT, read_only=True),
            VolumeMount(SHARE_CONFIG, CONFIG_MOUNT, read_only=True),
        ),
    )
    quota = sizing["quota_gb"]
    caddyfile = index_caddyfile(placement)
    return IndexSpec(
        index_id=index_id,
        name=name,
        team=team,
        size=size,
        placement=placement,
        shares=(ShareSpec(SHARE_CERTS, 1), ShareSpec(SHARE_CONFIG, 1), ShareSpec(SHARE_PACKAGES, quota)),
        containers=(caddy, server),
        public_ports=(placement.http_port, placement.https_port),
        caddyfile=caddyfile,
        tags=(("portal-index-id", str(index_id)), ("portal-index", name), ("portal-team", team)),
        config_files=(
            ConfigFile(CADDYFILE_PATH, caddyfile.encode()),
            ConfigFile(INDEX_SERVER_PATH, index_server_source()),
            ConfigFile(MANIFEST_PATH, empty_manifest(name, upload_url), replace=False),
            ConfigFile(TOKENS_PATH, b'{"version": 1, "tokens": {}}', replace=False),
        ),
    )
