"""The IndexSpec of a recorded index: what every driver call about an index starts from.

Below services, checks, the runner and the package services, which all need it.
"""

from __future__ import annotations

import copy

from provisioning.models import PrivateIndex
from provisioning.spec import IndexSpec, Placement, build_index_spec


def index_spec(index: PrivateIndex) -> IndexSpec:
    """The IndexSpec of an index that has a placement (reserved at the start of provisioning)."""
    return build_index_spec(
        index_id=index.pk,
        name=index.name,
        team=index.team.slug,
        size=index.size,
        # A copy: drivers record what the cloud decided in placement.resources (see _save_placement).
        placement=Placement.from_dict(copy.deepcopy(index.deployment)),
        upload_url=index.upload_url,
    )
