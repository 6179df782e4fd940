from django.apps import AppConfig


class PackagesUiConfig(AppConfig):
    name = "packages_ui"
    verbose_name = "Packages"
