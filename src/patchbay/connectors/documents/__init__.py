"""The documents connector (``type = "documents"``): ChatGPT-compatible ``search`` and ``fetch`` over folders of
Markdown, text, HTML, PDF and DOCX files and over SQL tables."""

from patchbay.connectors.documents.access import Principal, principal_tokens
from patchbay.connectors.documents.connector import DocumentsConnector
from patchbay.connectors.documents.options import DocumentsOptions, SourceOptions

__all__ = ["DocumentsConnector", "DocumentsOptions", "Principal", "SourceOptions", "principal_tokens"]
