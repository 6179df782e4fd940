"""What a sign-in tells the apps that own their own user data (teams, memberships), so they can
follow Entra without portal.auth knowing them."""

from __future__ import annotations

from django.dispatch import Signal

# Sent by user_sync_from_claims inside its transaction, once the user and its Django groups are
# synced, with `user`, `roles` (the app role values) and `group_ids` (the Entra group object ids).
# A receiver that raises fails the sign-in and rolls the whole sync back.
user_signed_in_with_claims = Signal()
