"""The audit log page, for portal admins: filter by action, actor, object and date."""

from __future__ import annotations

import datetime

from django import forms
from django.core.paginator import Paginator
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from portal.audit_labels import OBJECT_TYPES, action_label
from portal.models import AuditEvent
from portal.permissions import portal_admin_required

PAGE_SIZE = 50


def _action_choices() -> list[tuple[str, str]]:
    actions = AuditEvent.objects.order_by("action").values_list("action", flat=True).distinct()
    return [("", "Any action"), *((a, action_label(a)) for a in actions)]


class AuditFilterForm(forms.Form):
    # A callable: the DISTINCT query runs only when the select is rendered or a chosen action
    # is validated, not for htmx table pages.
    action = forms.ChoiceField(required=False, choices=_action_choices)
    actor = forms.CharField(required=False, max_length=200)
    object = forms.CharField(required=False, max_length=200, label="Object")
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))

    def filter(self, events: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
        data = self.cleaned_data
        if data.get("action"):
            events = events.filter(action=data["action"])
        if data.get("actor"):
            term = data["actor"].strip()
            match = Q(actor_name__icontains=term)
            if "system".startswith(term.lower()):
                match |= Q(actor_name="")  # the log shows actions without a user as "system"
            events = events.filter(match)
        if data.get("object"):
            term = data["object"].strip()
            # What the table shows: the object's name, its kind ("index", "team") or its id.
            kinds = [code for code, (label, _url) in OBJECT_TYPES.items() if label == term.lower()]
            events = events.filter(
                Q(object_repr__icontains=term)
                | Q(object_id=term)
                | Q(object_type__iexact=term)
                | Q(object_type__in=kinds)
            )
        if data.get("since"):
            events = events.filter(at__date__gte=data["since"])
        if data.get("until"):
            events = events.filter(at__date__lt=data["until"] + datetime.timedelta(days=1))
        return events


@portal_admin_required  # the page's existence is not advertised to non-admins
@require_GET
def audit_log(request: HttpRequest) -> HttpResponse:
    form = AuditFilterForm(request.GET or None)
    events = AuditEvent.objects.select_related("actor")
    if form.is_valid():
        events = form.filter(events)
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    # What the pager links start with; they end with the page number.
    page_prefix = f"?{query.urlencode()}&page=" if query else "?page="
    template = "portal/audit.html#table" if request.htmx else "portal/audit.html"
    return render(request, template, {"form": form, "page": page, "page_prefix": page_prefix})
