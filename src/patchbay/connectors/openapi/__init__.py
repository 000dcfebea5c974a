"""``type = "openapi"``: a REST API from its OpenAPI (or Swagger 2.0) description, as tools (docs/openapi.md).

The connector class loads on first use, so importing the model (``patchbay.connectors.openapi.models``) stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from patchbay.connectors.openapi.connector import OpenApiConnector

__all__ = ["OpenApiConnector"]


def __getattr__(name: str) -> Any:
    if name == "OpenApiConnector":
        from patchbay.connectors.openapi.connector import OpenApiConnector

        return OpenApiConnector
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
