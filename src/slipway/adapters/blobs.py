"""Blob storage behind a small interface (Azure Blob Storage in Azure, Azurite locally)."""

from __future__ import annotations

import contextlib
import threading

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient


class BlobStore:
    """Write-once and plain blobs in named containers; a container is created on first use."""

    def __init__(self, service: BlobServiceClient) -> None:
        self._service = service
        self._containers: dict[str, ContainerClient] = {}
        self._lock = threading.Lock()

    def _container(self, name: str) -> ContainerClient:
        with self._lock:
            client = self._containers.get(name)
            if client is None:
                client = self._service.get_container_client(name)
                with contextlib.suppress(ResourceExistsError):
                    client.create_container()
                self._containers[name] = client
            return client

    def put_if_absent(self, container: str, name: str, data: bytes) -> bool:
        """Store ``data`` unless the blob exists; False when it did (content-addressed writes)."""
        try:
            self._container(container).upload_blob(name, data, overwrite=False)
            return True
        except ResourceExistsError:
            return False

    def get(self, container: str, name: str) -> bytes | None:
        try:
            return self._container(container).download_blob(name).readall()
        except ResourceNotFoundError:
            return None

    def names(self, container: str, prefix: str) -> list[str]:
        """Names of the blobs that start with ``prefix``."""
        return [blob.name for blob in self._container(container).list_blobs(name_starts_with=prefix)]

    def delete(self, container: str, name: str) -> bool:
        """Delete a blob; False when it was not there."""
        try:
            self._container(container).delete_blob(name)
            return True
        except ResourceNotFoundError:
            return False
