from django.contrib import admin
from django.urls import include, path

from portal import views, views_audit  # views_audit: issue 4

urlpatterns = [
    path("", views.home, name="home"),
    path("health/", views.health, name="health"),
    # --- Entra sign-in and audit log (issue 4)
    path("auth/", include("portal.auth.urls")),
    path("audit/", views_audit.audit_log, name="audit_log"),
    path("indexes/", include("provisioning.urls")),
    # --- Package page (issue 5)
    path("indexes/<int:index_id>/packages/", include("packages_ui.urls")),
    # --- Admin dashboard (issue 6); the Django admin stays at django-admin/
    path("admin/dashboard/", include("provisioning.urls_dashboard")),
    path("django-admin/", admin.site.urls),
    path("rq/", include("django_rq.urls")),
]
