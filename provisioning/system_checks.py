"""A warning when the local driver's ports overlap the kernel's ephemeral range."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core import checks

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def ephemeral_range() -> tuple[int, int] | None:
    try:
        low, high = map(int, EPHEMERAL_RANGE_FILE.read_text().split())
    except (OSError, ValueError):
        return None
    return low, high


@checks.register(deploy=True)  # `manage.py check --deploy`: test runs use ranges inside it on purpose
def local_port_range_check(app_configs, **kwargs) -> list[checks.CheckMessage]:
    if not settings.PROVISIONING_DRIVER.endswith(".LocalDriver") or (ephemeral := ephemeral_range()) is None:
        return []
    low, _, high = settings.LOCAL_DRIVER_PORT_RANGE.partition("-")
    if int(high) < ephemeral[0] or int(low) > ephemeral[1]:
        return []
    return [
        checks.Warning(
            f"LOCAL_DRIVER_PORT_RANGE {settings.LOCAL_DRIVER_PORT_RANGE} overlaps the kernel's ephemeral ports "
            f"{ephemeral[0]}-{ephemeral[1]}: outgoing connections can take an index's port.",
            hint="Use a range below it, like the default 20000-20999.",
            id="provisioning.W001",
        )
    ]
