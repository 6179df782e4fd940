from django.apps import AppConfig


class ProvisioningConfig(AppConfig):
    name = "provisioning"
    verbose_name = "Provisioning"

    def ready(self) -> None:
        from portal.auth.signals import user_signed_in_with_claims
        from provisioning import azure_settings, system_checks  # noqa: F401 - they register the checks
        from provisioning.team_sync import memberships_sync_on_sign_in

        # Teams and memberships are provisioning's: the sign-in tells it who signed in with what.
        user_signed_in_with_claims.connect(memberships_sync_on_sign_in, dispatch_uid="provisioning.team_sync")
