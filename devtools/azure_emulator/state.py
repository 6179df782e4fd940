"""What the emulator holds: resource groups, storage accounts with their shares and files,
container groups, long-running operations and issued tokens. All in memory, behind one lock."""

from __future__ import annotations

import base64
import copy
import hashlib
import os
import threading
import time
from dataclasses import dataclass, field


def new_key() -> str:
    return base64.b64encode(os.urandom(64)).decode()


def public_definition(definition: dict) -> dict:
    """A container group's properties as Azure shows them: volume keys and secure environment
    values are write-only and never come back."""
    out = copy.deepcopy(definition)
    for volume in out.get("volumes") or []:
        (volume.get("azureFile") or {}).pop("storageAccountKey", None)
    for credential in out.get("imageRegistryCredentials") or []:
        credential.pop("password", None)
    for container in out.get("containers") or []:
        for variable in (container.get("properties") or {}).get("environmentVariables") or []:
            variable.pop("secureValue", None)
    return out


@dataclass
class StoredFile:
    data: bytearray
    last_modified: float = field(default_factory=time.time)
    etag: str = ""
    content_type: str = "application/octet-stream"

    def touch(self) -> None:
        self.last_modified = time.time()
        self.etag = f'"0x{time.time_ns():X}"'


@dataclass
class FileShare:
    name: str
    quota_gb: int = 5120
    protocols: str = "SMB"
    created: float = field(default_factory=time.time)
    etag: str = field(default_factory=lambda: f'"0x{time.time_ns():X}"')
    directories: set[str] = field(default_factory=set)  # "a", "a/b" (no leading slash)
    files: dict[str, StoredFile] = field(default_factory=dict)

    def used_bytes(self) -> int:
        return sum(len(f.data) for f in self.files.values())


@dataclass
class StorageAccount:
    subscription: str
    resource_group: str
    name: str
    location: str
    sku: str
    kind: str
    tags: dict[str, str]
    properties: dict  # the writable properties as last sent
    keys: list[str] = field(default_factory=lambda: [new_key(), new_key()])
    shares: dict[str, FileShare] = field(default_factory=dict)
    created: str = ""
    pending_polls: int = 0  # GETs of the create operation still answered 202

    @property
    def provisioning_state(self) -> str:
        return "Creating" if self.pending_polls > 0 else "Succeeded"


@dataclass
class ContainerGroup:
    subscription: str
    resource_group: str
    name: str
    location: str
    tags: dict[str, str]
    definition: dict  # the "properties" object as sent (with the volume keys)
    pending_polls: int = 0
    failure: str = ""  # set when the deployment failed
    stopped: bool = False
    restart_counts: dict[str, int] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    started: str = ""
    generation: int = 1  # bumped by a changed definition, so tests can see updates
    identity: dict = field(default_factory=dict)  # the "identity" object as sent
    fqdn: str = ""  # chosen by ARM from the label and its reuse scope
    restart_pending: bool = False  # restarted, but not visible yet
    restart_polls: int = 0  # GETs still answered with the state from before the restart
    stalled: str = ""  # why the deployment hangs (an Azure Files mount that fails)
    crash_loops: dict[str, str] = field(default_factory=dict)  # container -> what it prints before exiting
    logs: dict[str, list[str]] = field(default_factory=dict)  # container -> output lines


@dataclass
class Operation:
    kind: str  # storage-create | cg | rg-delete
    target: tuple
    status: str = "InProgress"
    error: dict | None = None
    polls_left: int = 0


@dataclass
class Token:
    client_id: str
    expires: float


class EmulatorState:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.resource_groups: dict[tuple[str, str], dict] = {}
            self.storage_accounts: dict[str, StorageAccount] = {}  # names are global
            self.container_groups: dict[tuple[str, str, str], ContainerGroup] = {}
            self.operations: dict[str, Operation] = {}
            self.tokens: dict[str, Token] = {}
            # Storage account names owned by someone else in the world.
            self.taken_storage_names: set[str] = set()
            # Actions the service principal may not perform, e.g.
            # "Microsoft.ContainerInstance/containerGroups/write".
            self.denied_actions: set[str] = set()
            # Container cores allowed per region (None: unlimited).
            self.core_quota: float | None = None
            # Container group name (or "*") -> message: that deployment fails.
            self.group_failures: dict[str, str] = {}
            # How many polls a long-running operation answers "in progress".
            self.storage_polls = 1
            self.group_polls = 1
            self.clients: dict[str, str] = {}  # client id -> secret
            self.tenant_id = ""
            # Registries that throttle anonymous pulls, e.g. {"docker.io"}: a group pulling from
            # them without imageRegistryCredentials gets 409 RegistryErrorResponse.
            self.throttled_registries: set[str] = set()
            # Resource provider namespaces the subscription is not registered for.
            self.unregistered_providers: set[str] = set()
            # DNS name labels (region-wide, Unsecure scope) held by someone else in the world.
            self.taken_dns_labels: set[str] = set()
            # Container name -> what it prints before it exits: that container crash-loops.
            self.crash_loops: dict[str, str] = {}
            # GETs after a restart that still show the state from before it.
            self.restart_polls = 1

    # --- Helpers used by both services.
    def account(self, name: str) -> StorageAccount | None:
        return self.storage_accounts.get(name.lower())

    def snapshot(self) -> dict:
        """A comparable picture of everything held (no secrets, no tokens)."""
        with self.lock:
            return {
                "resource_groups": {f"{s}/{rg}": copy.deepcopy(v) for (s, rg), v in self.resource_groups.items()},
                "storage_accounts": {
                    name: {
                        "resource_group": a.resource_group,
                        "location": a.location,
                        "sku": a.sku,
                        "kind": a.kind,
                        "tags": dict(a.tags),
                        "properties": copy.deepcopy(a.properties),
                        "shares": {
                            s.name: {
                                "quota_gb": s.quota_gb,
                                "directories": sorted(s.directories),
                                "files": {
                                    p: {
                                        "sha256": hashlib.sha256(f.data).hexdigest(),
                                        "etag": f.etag,
                                    }
                                    for p, f in sorted(s.files.items())
                                },
                            }
                            for s in a.shares.values()
                        },
                    }
                    for name, a in sorted(self.storage_accounts.items())
                },
                "container_groups": {
                    "/".join(key): {
                        "tags": dict(g.tags),
                        "definition": public_definition(g.definition),
                        "generation": g.generation,
                        "restart_counts": dict(g.restart_counts),
                        "failure": g.failure,
                        "fqdn": g.fqdn,
                    }
                    for key, g in sorted(self.container_groups.items())
                },
            }
