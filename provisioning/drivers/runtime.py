"""The index runtime contract: where an index lives, the steps that build and remove it, and
keeping its containers running (`IndexRuntime`), with the states it reports (`IndexStatus`).

Implementations: `local_runtime.LocalRuntime` (Caddy and the index server as processes) and
`azure_runtime.AzureRuntime` (a container group). Both build the same topology from the same
`IndexSpec` and write its configuration files through their backend's `ShareStore`.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from provisioning.spec import IndexSpec, Placement


@dataclass(frozen=True)
class DeployStep:
    """One idempotent step of building or tearing down an index. `run` may be called again
    after a crash or on retry and must then change nothing that is already right.

    A retry resumes from the failed step, skipping steps already done, except those marked
    `rerun`: steps whose result `halt` undoes (processes, containers) or that check a live
    condition (health), which must hold on every attempt."""

    name: str
    label: str
    run: Callable[[], None]
    rerun: bool = False


class RunState(enum.StrEnum):
    """An index's containers taken together (IndexStatus.state; stored as text on each check)."""

    RUNNING = "running"
    STARTING = "starting"
    STOPPED = "stopped"
    FAILED = "failed"
    MISSING = "missing"  # nothing exists for the index
    UNKNOWN = "unknown"  # the runtime could not be asked (set by the checks, never by a runtime)


class ContainerState(enum.StrEnum):
    """One container (ContainerStatus.state), as Azure names a container's current state."""

    RUNNING = "running"
    WAITING = "waiting"
    TERMINATED = "terminated"


@dataclass
class ContainerStatus:
    name: str
    state: ContainerState
    restart_count: int = 0
    last_event: str = ""


@dataclass
class IndexStatus:
    state: RunState
    containers: list[ContainerStatus] = field(default_factory=list)
    detail: str = ""

    @property
    def is_running(self) -> bool:
        return self.state == RunState.RUNNING

    def as_dict(self) -> dict:
        return asdict(self)


class IndexRuntime(abc.ABC):
    """Builds, runs and removes indexes. Every method is safe to call again after a failure."""

    name: str = "abstract"

    @abc.abstractmethod
    def reserve(self, *, index_id: int, name: str, previous: dict | None) -> Placement:
        """Choose where the index lives: host name, ports, resource names.

        Returns the `previous` placement unchanged when it is still valid, so a retry keeps the
        index where it was. Raises DriverError(permanent=True) when nothing can be reserved.
        """

    @abc.abstractmethod
    def deploy_steps(self, spec: IndexSpec) -> list[DeployStep]:
        """The ordered steps that create or update the index's resources (idempotent each)."""

    @abc.abstractmethod
    def teardown_steps(self, spec: IndexSpec) -> list[DeployStep]:
        """The ordered steps that remove everything the index owns and confirm it is gone."""

    @abc.abstractmethod
    def restart(self, spec: IndexSpec) -> None:
        """Restart the index's containers (Caddy keeps its certificates: they live on a share).
        Returns once the index answers its health check again. Raises DriverError."""

    @abc.abstractmethod
    def ensure_running(self, spec: IndexSpec) -> bool:
        """Bring a ready index back if its processes or containers are gone.
        Returns True when something had to be started. Raises DriverError."""

    @abc.abstractmethod
    def status(self, spec: IndexSpec) -> IndexStatus:
        """Read the index's container states, restart counts and last events. Never raises for
        a missing index: that is `IndexStatus(state=RunState.MISSING)`."""

    def settled_placement(self, spec: IndexSpec) -> Placement:
        """The placement as the cloud decided it while the steps ran (Azure chooses the FQDN);
        the portal stores it after every provisioning attempt. Default: unchanged."""
        return spec.placement

    def halt(self, spec: IndexSpec) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Stop whatever still runs for an index whose provisioning failed, keeping its data so a
        retry can resume. Default: nothing runs unattended."""

    def ca_certificate_pem(self, spec: IndexSpec) -> str | None:
        """The CA certificate clients must trust to reach the index, or None when the index
        uses a publicly trusted certificate (Let's Encrypt)."""
        return None
