"""Fleets of indexes with checks, made in bulk for dashboard tests and bench/dashboard.py."""

from __future__ import annotations

import datetime as dt
import itertools

from django.contrib.auth.models import User
from django.utils import timezone

from packages_ui.models import PackageFile
from provisioning.models import CertificateCheck, CertificateStatus, IndexHealth, IndexState, PrivateIndex, Team

FILE_SIZE = 3_000_000
STATES = [IndexState.READY] * 6 + [IndexState.FAILED, IndexState.PROVISIONING, IndexState.AWAITING_APPROVAL,
                                   IndexState.RESTARTING]  # fmt: skip
STATUSES = [CertificateStatus.VALID] * 7 + [CertificateStatus.EXPIRING, CertificateStatus.EXPIRED,
                                            CertificateStatus.UNREACHABLE]  # fmt: skip


def make_fleet(count: int, *, teams: int = 5, prefix: str = "idx") -> list[PrivateIndex]:
    """`count` indexes spread over `teams` teams, most with a latest check, in a few bulk inserts."""
    now = timezone.now()
    team_rows = [Team.objects.get_or_create(slug=f"{prefix}-team-{t}", defaults={"name": f"{prefix} team {t}"})[0]
                 for t in range(teams)]  # fmt: skip
    requester, _ = User.objects.get_or_create(username=f"{prefix}-requester")
    sizes = itertools.cycle(["small", "small", "medium", "large"])
    indexes = PrivateIndex.objects.bulk_create(
        PrivateIndex(
            name=f"{prefix}-{i:05d}",
            team=team_rows[i % teams],
            requested_by=requester,
            size=next(sizes),
            state=STATES[i % len(STATES)],
            url=f"https://{prefix}-{i:05d}.example.test/simple/",
            deployment={"hostname": f"{prefix}-{i:05d}.example.test", "https_port": 443, "http_port": 80,
                        "server_port": 8080, "tls": "acme", "resources": {}},
            created_at=now - dt.timedelta(minutes=i),
        )
        for i in range(count)
    )  # fmt: skip
    checked = [index for i, index in enumerate(indexes) if index.state != IndexState.AWAITING_APPROVAL]
    checks = CertificateCheck.objects.bulk_create(
        CertificateCheck(
            index=index,
            checked_at=now,
            host=index.deployment["hostname"],
            port=443,
            status=STATUSES[i % len(STATUSES)],
            reason="bulk",
            issuer="CN=R11,O=Let's Encrypt,C=US",
            sans=[index.deployment["hostname"]],
            not_before=now - dt.timedelta(days=30),
            not_after=now + dt.timedelta(days=(5 if STATUSES[i % len(STATUSES)] == "expiring" else 60)),
            key_type="ECDSA-secp256r1",
            trusted=True,
            hostname_match=True,
            certificates_persisted=True,
            container_state="running",
            restart_count=i % 3,
            package_count=i % 40,
            storage_bytes=(i % 40) * 3_000_000,
            last_upload_at=now - dt.timedelta(hours=i % 48),
        )
        for i, index in enumerate(checked)
    )
    IndexHealth.objects.bulk_create(
        IndexHealth(index_id=check.index_id, latest=check, cert_status=check.status, cert_not_after=check.not_after)
        for check in checks
    )
    PackageFile.objects.bulk_create(
        PackageFile(index=index, project=f"pkg{n}", version="1.0", filename=f"pkg{n}-1.0-py3-none-any.whl",
                    identity=f"wheel:pkg{n}:1.0::py3-none-any",
                    kind="wheel", size=FILE_SIZE, sha256="0" * 64, uploaded_at=now - dt.timedelta(hours=i % 48))
        for i, index in enumerate(checked)
        for n in range(files_per_index(i))
    )  # fmt: skip
    return indexes


def files_per_index(position: int) -> int:
    """Package files made for the `position`-th checked index of a fleet (0 to 4)."""
    return position % 5
