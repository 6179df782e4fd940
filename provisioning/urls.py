from django.urls import path

from provisioning import views

urlpatterns = [
    path("new/", views.index_new, name="index_new"),
    path("name-check/", views.index_name_check, name="index_name_check"),
    path("<int:index_id>/", views.index_detail, name="index_detail"),
    path("<int:index_id>/retry/", views.index_retry, name="index_retry"),
    path("<int:index_id>/restart/", views.index_restart, name="index_restart"),
    path("<int:index_id>/delete/", views.index_delete, name="index_delete"),
    path("<int:index_id>/ca.pem", views.index_ca_certificate, name="index_ca_certificate"),
]
