from __future__ import annotations

from django.urls import path

from provisioning import views_dashboard as views

urlpatterns = [
    path("", views.dashboard_home, name="dashboard"),
    path("queues/", views.dashboard_queues, name="dashboard_queues"),
    path("queues/<str:queue_name>/failed/<str:job_id>/requeue/", views.dashboard_requeue, name="dashboard_requeue"),
    path("indexes/<int:index_id>/", views.dashboard_index, name="dashboard_index"),
    path("indexes/<int:index_id>/check/", views.dashboard_check, name="dashboard_check"),
    path("indexes/<int:index_id>/retry/", views.dashboard_retry, name="dashboard_retry"),
    path("indexes/<int:index_id>/restart/", views.dashboard_restart, name="dashboard_restart"),
    path("indexes/<int:index_id>/approve/", views.dashboard_approve, name="dashboard_approve"),
    path("indexes/<int:index_id>/deny/", views.dashboard_deny, name="dashboard_deny"),
    path("indexes/<int:index_id>/teardown/", views.dashboard_teardown, name="dashboard_teardown"),
]
