"""The routes of the store's human side: the appeals and mass-action APIs, the API
document (/openapi.json) and, when enabled, the console."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute

from .appeals_api import appeal_routes
from .mass_api import MassApi
from .openapi import openapi_routes

if TYPE_CHECKING:
    from .console.host import ConsoleHost


def human_routes(service: ConsoleHost) -> list[BaseRoute]:
    routes: list[BaseRoute] = [*appeal_routes(service), *MassApi(service).routes(),
                               *openapi_routes()]
    if service.config.console.enabled:
        from .console.routes import console_routes  # jinja2 and argon2 load only with it

        routes.append(console_routes(service))
    return routes
