"""The project package as an installed app, for the management commands that concern the
whole deployment rather than one app: ``seed_demo`` (the embedded default's demo tenant,
provider, login and key) and ``reset_metrics`` (empties the Prometheus folder). It has no
models; being the top layer, it may import every app."""

from django.apps import AppConfig


class ProjectConfig(AppConfig):
    name = "config"
    verbose_name = "Tollgate project"
