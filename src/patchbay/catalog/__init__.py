"""The tool list a client sees: connector definitions merged, namespaced and kept as ready wire objects."""

from patchbay.catalog.catalog import Catalog, Mounted, SecuritySchemes, ToolAccess

__all__ = ["Catalog", "Mounted", "SecuritySchemes", "ToolAccess"]
