from django.urls import path

from packages_ui import views

# Mounted at indexes/<int:index_id>/packages/ by portal/urls.py.
urlpatterns = [
    path("", views.packages, name="packages"),
    path("upload/", views.package_upload, name="packages_upload"),
    # The PyPI legacy upload API (twine, uv publish, poetry publish), with publish tokens.
    path("legacy/", views.legacy_upload, name="packages_legacy_upload"),
    path("files/<int:file_id>/", views.package_state, name="packages_file_state"),
    path("files/<int:file_id>/delete/", views.package_delete, name="packages_file_delete"),
    path("yank/", views.package_yank, name="packages_yank"),
    path("refresh/", views.packages_refresh, name="packages_refresh"),
    path("unrecorded/<int:unrecorded_id>/remove/", views.unrecorded_remove, name="packages_unrecorded_remove"),
    path("resync/", views.packages_resync, name="packages_resync"),
    path("mirror/", views.mirror, name="packages_mirror"),
    path("mirror/<int:run_id>/", views.mirror_run, name="packages_mirror_run"),
    path("tokens/", views.tokens, name="packages_tokens"),
    path("tokens/<int:credential_id>/revoke/", views.token_revoke, name="packages_token_revoke"),
]
