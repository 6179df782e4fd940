"""Django admin: teams and their Entra group mapping. Memberships are read-only here because
every sign-in rewrites them from the user's groups and app roles."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from provisioning import services
from provisioning.models import Membership, Team, validate_entra_group_id


class MembershipInline(admin.TabularInline):
    model = Membership
    fields = ("user", "role")
    readonly_fields = ("user", "role")
    extra = 0
    can_delete = False
    verbose_name_plural = "Memberships (synced from Entra at each sign-in; read-only)"

    def has_add_permission(self, request: HttpRequest, obj: Team | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Team | None = None) -> bool:
        return False


class TeamForm(forms.ModelForm):
    class Meta:
        model = Team
        fields = ("name", "slug", "entra_group_id")
        labels = {"entra_group_id": "Entra group object id"}
        help_texts = {
            "entra_group_id": "The object id (a GUID) of the Entra group whose members belong to this team. "
            "Changes apply at each member's next sign-in."
        }

    def clean_entra_group_id(self) -> str:
        value = self.cleaned_data["entra_group_id"].strip().lower()
        validate_entra_group_id(value)
        return value


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    form = TeamForm
    list_display = ("name", "slug", "group", "member_count")
    search_fields = ("name", "slug", "entra_group_id")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [MembershipInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Team]:
        return super().get_queryset(request).annotate(member_count=Count("memberships"))

    @admin.display(description="Entra group object id", ordering="entra_group_id")
    def group(self, team: Team) -> str:
        return team.entra_group_id or "—"

    @admin.display(description="Members", ordering="member_count")
    def member_count(self, team: Team) -> int:
        return team.member_count

    def save_model(self, request: HttpRequest, obj: Team, form: forms.ModelForm, change: bool) -> None:
        group_id = obj.entra_group_id
        if change and "entra_group_id" in form.changed_data:
            # Through the service, so the mapping change is audited like the command's.
            obj.entra_group_id = form.initial.get("entra_group_id", "")
            super().save_model(request, obj, form, change)
            services.team_set_entra_group(team=obj, group_id=group_id, actor=request.user, request=request)
        else:
            super().save_model(request, obj, form, change)
