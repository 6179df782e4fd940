"""The admin dashboard's data: one page of indexes across teams, the banner, team totals, the
approval queue and the RQ panel.

Every figure on a page comes from a fixed set of SQL queries, whatever the number of indexes:
the page (indexes joined with team, requester and latest check, cost computed in SQL), its count,
one aggregate for the banner, one GROUP BY for team totals and one for pending approvals. Package
figures come from packages_ui's PackageFile rows (subqueries inside the page query); the share
listing cached on the latest check stands in without that app. Nothing is asked of a driver while
the page renders.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property

import django_rq
from django.apps import apps
from django.conf import settings
from django.core.paginator import Page, Paginator
from django.db import models
from django.db.models import Count, F, Max, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, QueryDict
from rq.job import Job
from rq.registry import FailedJobRegistry, ScheduledJobRegistry, StartedJobRegistry
from rq.worker import Worker

from portal.audit import audit_record
from provisioning.cost import cost_expression, size_costs
from provisioning.models import (
    GONE_STATES,
    PROBLEM_STATUSES,
    SERVING_STATES,
    CertificateStatus,
    IndexState,
    PrivateIndex,
    Team,
)

logger = logging.getLogger(__name__)

# Sort keys offered in the table header → ORDER BY (nulls last so unchecked indexes sink).
SORTS: dict[str, F | str] = {
    "team": "team__name",
    "name": "name",
    "state": "state",
    "certificate": "health__cert_not_after",
    "health": "health__latest__restart_count",
    "packages": "package_count",
    "storage": "storage_used",
    "upload": "last_upload",
    "requested_by": "requested_by__username",
    "created": "created_at",
    "cost": "monthly_cost",
}
COLUMNS = [
    ("team", "Team"), ("name", "Index"), ("state", "State"), ("certificate", "Certificate"), ("health", "Health"),
    ("packages", "Packages"), ("storage", "Storage / quota"), ("upload", "Last upload"),
    ("requested_by", "Requested by"), ("created", "Created"), ("cost", "Cost / month"),
]  # fmt: skip
DEFAULT_SORT = "-created"
CERT_FILTERS = {"problem": "Any problem", "unchecked": "Not checked yet", **dict(CertificateStatus.choices)}


@dataclass
class Filters:
    q: str = ""
    state: str = ""
    team: str = ""
    cert: str = ""
    sort: str = DEFAULT_SORT
    page: int = 1

    @classmethod
    def from_query(cls, data: QueryDict) -> Filters:
        sort = data.get("sort", DEFAULT_SORT)
        if sort.lstrip("-") not in SORTS:
            sort = DEFAULT_SORT
        try:
            page = max(1, int(data.get("page", 1)))
        except ValueError:
            page = 1
        state = data.get("state", "")
        cert = data.get("cert", "")
        return cls(
            q=data.get("q", "").strip()[:100],
            state=state if state in IndexState.values else "",
            team=data.get("team", "").strip()[:100],
            cert=cert if cert in CERT_FILTERS else "",
            sort=sort,
            page=page,
        )

    def query(self, **changes: object) -> str:
        """The query string for these filters with `changes` applied (for links)."""
        values = {"q": self.q, "state": self.state, "team": self.team, "cert": self.cert, "sort": self.sort}
        values.update({k: v for k, v in changes.items()})
        data = QueryDict(mutable=True)
        for key, value in values.items():
            if value not in ("", None) and not (key == "sort" and value == DEFAULT_SORT):
                data[key] = str(value)
        return data.urlencode()

    @property
    def columns(self) -> list[dict]:
        """The sortable column headers. Clicking the sorted column flips its direction; another
        column starts ascending."""
        return [
            {"key": key, "label": label, "sorted": key == self.sorted_by,
             "query": self.query(sort=f"-{key}" if self.sort == key else key)}
            for key, label in COLUMNS
        ]  # fmt: skip

    @property
    def sorted_by(self) -> str:
        return self.sort.lstrip("-")

    @property
    def descending(self) -> bool:
        return self.sort.startswith("-")

    @property
    def page_query(self) -> str:
        """The query string without the page, for pagination links (…&page=N)."""
        return self.query()


@dataclass
class Banner:
    expiring: int = 0
    failed: int = 0
    awaiting_approval: int = 0
    failed_indexes: int = 0
    total: int = 0

    @property
    def certificate_problems(self) -> int:
        return self.expiring + self.failed


@dataclass
class TeamTotal:
    name: str
    slug: str
    indexes: int
    monthly_cost: object
    storage_bytes: int


@dataclass
class Dashboard:
    """The page's data. Banner, team totals and approvals are read only when the template uses
    them, so the htmx table refresh (filter as you type) runs the table's query alone."""

    filters: Filters
    page: Page
    currency: str = field(default_factory=lambda: settings.PRICE_TABLE["currency"])

    @cached_property
    def banner(self) -> Banner:
        return banner()

    @cached_property
    def team_totals(self) -> list[TeamTotal]:
        return team_totals()

    @cached_property
    def awaiting(self) -> list[PrivateIndex]:
        return awaiting_approval()

    @cached_property
    def teams(self) -> list[Team]:
        """Every team for the filter, including those without a shown index."""
        return list(Team.objects.order_by("name").only("name", "slug"))

    @property
    def grand_total(self) -> object:
        return sum((t.monthly_cost for t in self.team_totals), start=0)


def _package_file_model() -> type[models.Model] | None:
    try:
        return apps.get_model("packages_ui", "PackageFile")
    except LookupError:
        return None


def _package_annotations() -> dict:
    """Package count, storage used and last upload per index: from packages_ui's PackageFile
    rows (correlated subqueries, part of the page query), or, without that app, from the share
    listing cached on the latest check."""
    package_file = _package_file_model()
    if package_file is None:
        return {
            "package_count": F("health__latest__package_count"),
            "storage_used": F("health__latest__storage_bytes"),
            "last_upload": F("health__latest__last_upload_at"),
        }
    files = package_file.objects.present().filter(index=OuterRef("pk")).order_by().values("index")
    unrecorded = apps.get_model("packages_ui", "UnrecordedFile").objects.filter(index=OuterRef("pk"))
    return {
        "package_count": Coalesce(Subquery(files.annotate(n=Count("pk")).values("n")), 0),
        "storage_used": Coalesce(Subquery(files.annotate(total=Sum("size")).values("total")), 0),
        "last_upload": Subquery(files.annotate(latest=Max("uploaded_at")).values("latest")),
        # Files whose bytes changed or went missing, and files the portal did not write.
        "integrity_problems": Coalesce(Subquery(files.exclude(problem="").annotate(n=Count("pk")).values("n")), 0)
        + Coalesce(Subquery(unrecorded.order_by().values("index").annotate(n=Count("pk")).values("n")), 0),
    }


def _base() -> QuerySet[PrivateIndex]:
    return PrivateIndex.objects.annotate(monthly_cost=cost_expression())


def filtered_indexes(filters: Filters) -> QuerySet[PrivateIndex]:
    qs = _base().annotate(**_package_annotations()).select_related("team", "requested_by", "health__latest")
    qs = qs.filter(state=filters.state) if filters.state else qs.existing()
    if filters.team:
        qs = qs.filter(team__slug=filters.team)
    if filters.cert == "problem":
        qs = qs.filter(_cert_problem())
    elif filters.cert == "unchecked":
        qs = qs.filter(health__isnull=True)
    elif filters.cert:
        qs = qs.filter(health__cert_status=filters.cert)
    if filters.q:
        q = filters.q
        qs = qs.filter(
            Q(name__icontains=q) | Q(team__name__icontains=q) | Q(url__icontains=q)
            | Q(requested_by__username__icontains=q) | Q(requested_by__email__icontains=q)
        )  # fmt: skip
    key = filters.sort.lstrip("-")
    column = F(SORTS[key]) if isinstance(SORTS[key], str) else SORTS[key]
    order = column.desc(nulls_last=True) if filters.sort.startswith("-") else column.asc(nulls_last=True)
    return qs.order_by(order, "-pk")


def _decorate(index: PrivateIndex) -> PrivateIndex:
    """Per-row figures computed in Python from what the page query already loaded."""
    health = getattr(index, "health", None)
    index.check = health.latest if health is not None else None
    quota_gb = settings.INDEX_SIZES.get(index.size, {}).get("quota_gb")
    index.quota_bytes = quota_gb * 1024**3 if quota_gb else None
    used = index.storage_used
    index.storage_percent = round(100 * used / index.quota_bytes, 1) if used is not None and index.quota_bytes else None
    return index


def index_figures(index_id: int) -> PrivateIndex:
    """One index with the dashboard's row figures (packages and storage from the portal's own
    records, as true as the table's, not the last check's share listing)."""
    return _decorate(
        _base().annotate(**_package_annotations()).select_related("team", "health__latest").get(pk=index_id)
    )


def _cert_problem(statuses: set[str] = PROBLEM_STATUSES) -> Q:
    """A certificate problem worth a warning: only on indexes that should be serving (one that is
    still provisioning or has failed is unreachable as a matter of course)."""
    # Serving indexes only: the banner counts certificate problems that matter now.
    return Q(state__in=SERVING_STATES, health__cert_status__in=list(statuses))


def banner() -> Banner:
    data = PrivateIndex.objects.existing().aggregate(
        expiring=Count("pk", filter=_cert_problem({CertificateStatus.EXPIRING})),
        failed=Count("pk", filter=_cert_problem(PROBLEM_STATUSES - {CertificateStatus.EXPIRING})),
        awaiting_approval=Count("pk", filter=Q(state=IndexState.AWAITING_APPROVAL)),
        failed_indexes=Count("pk", filter=Q(state=IndexState.FAILED)),
        total=Count("pk"),
    )
    return Banner(**data)


def team_totals() -> list[TeamTotal]:
    shown = PrivateIndex.objects.existing()
    rows = (
        shown.values("team", "team__name", "team__slug")
        .annotate(indexes=Count("pk"), cost=Sum(cost_expression()))
        .order_by("team__name")
    )
    package_file = _package_file_model()
    if package_file is None:
        storage = dict(shown.values_list("team").annotate(total=Sum("health__latest__storage_bytes")).order_by())
    else:
        # Its own GROUP BY: joining files into the query above would multiply counts and cost,
        # and a correlated subquery there runs once per index.
        used = package_file.objects.exclude(index__state__in=GONE_STATES).values_list("index__team")
        storage = dict(used.annotate(total=Sum("size")).order_by())
    return [
        TeamTotal(name=r["team__name"], slug=r["team__slug"], indexes=r["indexes"],
                  monthly_cost=r["cost"] or 0, storage_bytes=storage.get(r["team"]) or 0)
        for r in rows
    ]  # fmt: skip


def awaiting_approval(limit: int = 50) -> list[PrivateIndex]:
    """Requests to decide, oldest first, each with what it will cost once built."""
    qs = PrivateIndex.objects.filter(state=IndexState.AWAITING_APPROVAL).select_related("team", "requested_by")
    indexes = list(qs.order_by("created_at")[:limit])
    costs = size_costs()
    for index in indexes:
        index.projected_cost = costs.get(index.size)
    return indexes


def dashboard(filters: Filters) -> Dashboard:
    paginator = Paginator(filtered_indexes(filters), settings.DASHBOARD_PAGE_SIZE)
    page = paginator.get_page(filters.page)
    page.object_list = [_decorate(index) for index in page.object_list]
    return Dashboard(filters=filters, page=page)


# --- the queue panel (Redis only, no SQL)


@dataclass
class FailedJob:
    id: str
    func: str
    error: str
    ended_at: datetime | None


@dataclass
class QueueInfo:
    name: str
    index: int
    queued: int
    started: int
    scheduled: int
    failed: int
    failed_jobs: list[FailedJob]


@dataclass
class WorkerInfo:
    name: str
    state: str
    queues: list[str]
    last_heartbeat: datetime | None
    alive: bool


@dataclass
class QueuePanel:
    queues: list[QueueInfo] = field(default_factory=list)
    workers: list[WorkerInfo] = field(default_factory=list)
    error: str = ""

    @property
    def workers_alive(self) -> int:
        return sum(w.alive for w in self.workers)


def _last_line(text: str | None) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


def _failure(job: Job) -> str:
    result = job.latest_result()
    return _last_line(result.exc_string if result is not None else "")


def queue_panel(failed_limit: int = 10) -> QueuePanel:
    """Queues, workers and the latest failed jobs, read from RQ's registries. Redis being down is
    shown on the panel, not raised."""
    panel = QueuePanel()
    try:
        connection = None
        for position, name in enumerate(settings.RQ_QUEUES):
            queue = django_rq.get_queue(name)
            connection = queue.connection
            failed = FailedJobRegistry(queue=queue)
            ids = failed.get_job_ids(0, failed_limit - 1)
            jobs = [job for job in Job.fetch_many(ids, connection=connection) if job is not None]
            panel.queues.append(
                QueueInfo(
                    name=name,
                    index=position,
                    queued=queue.count,
                    started=StartedJobRegistry(queue=queue).count,
                    scheduled=ScheduledJobRegistry(queue=queue).count,
                    failed=failed.count,
                    failed_jobs=[
                        FailedJob(id=j.id, func=j.func_name or "", error=_failure(j), ended_at=j.ended_at) for j in jobs
                    ],
                )
            )
        if connection is not None:
            now = datetime.now(UTC)
            for worker in Worker.all(connection=connection):
                beat = worker.last_heartbeat
                if beat is not None and beat.tzinfo is None:
                    beat = beat.replace(tzinfo=UTC)
                alive = beat is not None and (now - beat).total_seconds() < worker.worker_ttl + 60
                panel.workers.append(
                    WorkerInfo(name=worker.name, state=str(worker.get_state()), queues=worker.queue_names(),
                               last_heartbeat=beat, alive=alive)
                )  # fmt: skip
    except Exception as exc:  # Redis down must not break the dashboard
        logger.warning("Queue panel unavailable: %s", exc)
        panel.error = f"Redis is not answering ({exc.__class__.__name__})."
    return panel


def failed_job_requeue(*, queue_name: str, job_id: str, actor, request: HttpRequest | None = None) -> bool:
    """Put a failed job back on its queue. Returns False when it is no longer among the failed."""
    if queue_name not in settings.RQ_QUEUES:
        return False
    registry = FailedJobRegistry(queue=django_rq.get_queue(queue_name))
    if job_id not in registry:
        return False
    try:
        registry.requeue(job_id)
    except Exception:  # gone between the check and the requeue (another admin)
        return False
    audit_record(action="rq.job_requeued", actor=actor, request=request, details={"queue": queue_name, "job": job_id})
    return True
