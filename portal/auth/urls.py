from __future__ import annotations

from django.urls import path

from portal.auth import views

urlpatterns = [
    path("login/", views.login_page, name="login"),
    path("sign-in/", views.sign_in, name="sign_in"),
    path("callback", views.callback, name="auth_callback"),
    path("logout/", views.sign_out, name="logout"),
    path("signed-out/", views.signed_out, name="signed_out"),
]
