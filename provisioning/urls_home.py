from django.urls import path

from provisioning import views

# The home page lists the indexes the user can see; it is mounted at the site's root.
urlpatterns = [
    path("", views.home, name="home"),
]
