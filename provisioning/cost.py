"""Monthly cost estimate of an index from the price table in settings (PRICE_TABLE).

An index costs its container group's vCPU and memory for every second of the month, plus the
provisioned size of its three file shares. Only states in which the resources exist are billed.
The figures are per size, so the dashboard can sort and total them in SQL (`cost_expression`).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.db.models import Case, DecimalField, Q, Value, When

from provisioning.azure_settings import share_quota_gib
from provisioning.models import BILLED_STATES
from provisioning.spec import Placement, build_index_spec

SECONDS_PER_MONTH = 730 * 3600  # Azure's billing month
_CENTS = Decimal("0.01")
_PLACEHOLDER = Placement(hostname="cost.invalid", https_port=443, http_port=80, server_port=8080, tls="acme")


def size_resources(size: str) -> tuple[float, float, int]:
    """(vCPU, memory GiB, share GiB) of an index of this size, summed over its containers and
    shares exactly as the spec builds them."""
    spec = build_index_spec(index_id=0, name="cost", team="cost", size=size, placement=_PLACEHOLDER)
    cpu = sum(c.cpu for c in spec.containers)
    memory = sum(c.memory_gb for c in spec.containers)
    shares = sum(share_quota_gib(s.quota_gb) for s in spec.shares)  # premium SKUs bill their minimum
    return cpu, memory, shares


def size_monthly_cost(size: str) -> Decimal:
    prices = settings.PRICE_TABLE
    cpu, memory, shares = size_resources(size)
    compute = (cpu * prices["aci_vcpu_second"] + memory * prices["aci_gb_second"]) * SECONDS_PER_MONTH
    storage = shares * prices["file_share_gib_month"]
    return Decimal(str(compute + storage)).quantize(_CENTS, rounding=ROUND_HALF_UP)


def size_costs() -> dict[str, Decimal]:
    """The monthly cost of every offered size, computed once for a page."""
    return {size: size_monthly_cost(size) for size in settings.INDEX_SIZES}


def index_monthly_cost(*, size: str, state: str) -> Decimal:
    if state not in BILLED_STATES or size not in settings.INDEX_SIZES:
        return Decimal("0.00")
    return size_monthly_cost(size)


def cost_expression() -> Case:
    """A SQL expression for an index's monthly cost (for annotate, order_by and Sum)."""
    whens = [When(Q(size=size, state__in=list(BILLED_STATES)), then=Value(cost)) for size, cost in size_costs().items()]
    return Case(*whens, default=Value(Decimal("0.00")), output_field=DecimalField(max_digits=12, decimal_places=2))
