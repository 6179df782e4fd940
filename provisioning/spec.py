"""IndexSpec: everything that defines one private index, built once and handed to a driver.

Both drivers build the same topology from it: Caddy in front of two pypiserver processes that
share the package folder. The read server answers GET/HEAD and accepts read and publish tokens;
every other method (twine's upload POST, removals) is routed by Caddy to the publish server,
which accepts publish tokens only. pypiserver has one auth policy per server, so two servers is
how read and publish rights are kept apart. Paths in containers are the container paths; the
local driver maps each mount to a folder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from django.conf import settings

SHARE_CERTS = "caddy-certs"
SHARE_CONFIG = "caddy-config"
SHARE_PACKAGES = "pypipackages"

# Inside the containers (the Caddy image's XDG defaults and pypiserver's package folder).
CERTS_MOUNT = "/data"
CONFIG_MOUNT = "/config"
PACKAGES_MOUNT = "/data/packages"

# Credential files live on the config share, next to the Caddyfile, not among the packages.
CADDYFILE_PATH = "Caddyfile"
READ_HTPASSWD_PATH = "pypiserver/htpasswd-read"
PUBLISH_HTPASSWD_PATH = "pypiserver/htpasswd-publish"

# Ports inside the container group; only Caddy's are public.
AZURE_HTTP_PORT = 80
AZURE_HTTPS_PORT = 443
READ_SERVER_PORT = 8080
PUBLISH_SERVER_PORT = 8081


@dataclass(frozen=True)
class Placement:
    """Where an index lives, chosen by the driver and kept on the index (`deployment`)."""

    hostname: str
    https_port: int
    http_port: int
    read_port: int
    publish_port: int
    tls: str  # "internal" (Caddy's own CA) or "acme" (Let's Encrypt)
    resources: dict = field(default_factory=dict)  # driver-owned names (resource group, account)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Placement:
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
    """Caddy in front of the two pypiserver processes. Only HTTPS is served to clients;
    with ACME, port 80 answers the HTTP challenge and redirects everything else. The ACME
    options name the CA (`acme_ca`: only that CA, no fallback to another), the contact and, for
    test CAs, the root that signs the CA's own HTTPS. Caddy keeps its account and certificates
    in $XDG_DATA_HOME/caddy, on the caddy-certs share, so a restart reuses them."""
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
    return f"""{options}
{site} {{
{tls}\trequest_body {{
\t\tmax_size 2GB
\t}}
\t@write not method GET HEAD
\thandle @write {{
\t\treverse_proxy 127.0.0.1:{placement.publish_port}
\t}}
\thandle {{
\t\treverse_proxy 127.0.0.1:{placement.read_port}
\t}}
}}
"""


def _pypiserver_command(port: int, htpasswd: str) -> tuple[str, ...]:
    return (
        "pypi-server", "run",
        "--interface", "127.0.0.1",
        "--port", str(port),
        "--passwords", f"{CONFIG_MOUNT}/{htpasswd}",
        "--authenticate", "download,list,update",
        "--disable-fallback",
        "--server", "auto",
        PACKAGES_MOUNT,
    )  # fmt: skip


def build_index_spec(*, index_id: int, name: str, team: str, size: str, placement: Placement) -> IndexSpec:
    """The whole definition of one index: containers, shares, Caddyfile and tags."""
    sizing = settings.INDEX_SIZES[size]
    # Caddy is light; pypiserver does the hashing and listing, so it gets the bulk.
    caddy_cpu, caddy_memory = 0.25, 0.25
    server_cpu = max(0.25, (sizing["cpu"] - caddy_cpu) / 2)
    server_memory = max(0.5, (sizing["memory_gb"] - caddy_memory) / 2)
    config_ro = VolumeMount(SHARE_CONFIG, CONFIG_MOUNT, read_only=True)
    packages = VolumeMount(SHARE_PACKAGES, PACKAGES_MOUNT)
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
    read_server = ContainerSpec(
        name="pypiserver",
        image=settings.PYPISERVER_IMAGE,
        command=_pypiserver_command(placement.read_port, READ_HTPASSWD_PATH),
        cpu=server_cpu,
        memory_gb=server_memory,
        mounts=(packages, config_ro),
    )
    publish_server = ContainerSpec(
        name="pypiserver-publish",
        image=settings.PYPISERVER_IMAGE,
        command=_pypiserver_command(placement.publish_port, PUBLISH_HTPASSWD_PATH),
        cpu=server_cpu,
        memory_gb=server_memory,
        mounts=(packages, config_ro),
    )
    quota = sizing["quota_gb"]
    return IndexSpec(
        index_id=index_id,
        name=name,
        team=team,
        size=size,
        placement=placement,
        shares=(ShareSpec(SHARE_CERTS, 1), ShareSpec(SHARE_CONFIG, 1), ShareSpec(SHARE_PACKAGES, quota)),
        containers=(caddy, read_server, publish_server),
        public_ports=(placement.http_port, placement.https_port),
        caddyfile=render_caddyfile(
            placement,
            acme_directory=settings.ACME_DIRECTORY_URL,
            acme_email=settings.ACME_EMAIL,
            acme_ca_root=settings.ACME_CA_ROOT,
        ),
        tags=(("portal-index-id", str(index_id)), ("portal-index", name), ("portal-team", team)),
    )
