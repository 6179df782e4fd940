from django.contrib import admin
from django.urls import include, path

from portal import views, views_audit

# Each app's pages are included by module path, so the portal app imports none of them.
urlpatterns = [
    path("", include("provisioning.urls_home")),
    path("health/", views.health, name="health"),
    path("auth/", include("portal.auth.urls")),
    path("audit/", views_audit.audit_log, name="audit_log"),
    path("indexes/", include("provisioning.urls")),
    path("indexes/<int:index_id>/packages/", include("packages_ui.urls")),
    # The admin dashboard; the Django admin stays at django-admin/.
    path("admin/dashboard/", include("provisioning.urls_dashboard")),
    path("django-admin/", admin.site.urls),
    path("rq/", include("django_rq.urls")),
]
