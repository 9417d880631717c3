"""Talos' `sidero.discovery.client` messages (generated code is committed; see affiliate.proto)."""

from __future__ import annotations
