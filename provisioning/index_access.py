"""The index a page is about, as the signed-in user may see it: the one lookup every index page
(index, packages, tokens, mirror, dashboard) starts from."""

from __future__ import annotations

from django.http import HttpRequest
from django.shortcuts import get_object_or_404

from provisioning.models import PrivateIndex


def visible_index_or_404(request: HttpRequest, index_id: int) -> PrivateIndex:
    """The index if the user may see it; Http404 otherwise, so other teams' indexes do not leak
    (not even whether they exist)."""
    return get_object_or_404(PrivateIndex.objects.visible_to(request.user).select_related("team"), pk=index_id)
