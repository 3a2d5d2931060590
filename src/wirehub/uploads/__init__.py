"""Chunked uploads over WebSocket: sans-I/O sessions, spool stores, the hub component."""

from wirehub.uploads.manager import Uploads
from wirehub.uploads.session import UploadSession, parse_start
from wirehub.uploads.stores import SpoolStore

__all__ = ["SpoolStore", "UploadSession", "Uploads", "parse_start"]
