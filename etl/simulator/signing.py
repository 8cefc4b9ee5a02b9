"""Signed recording URLs on the storage origin, in the style of cloud-storage query signing."""

from __future__ import annotations

import hashlib
import hmac


class UrlSigner:
    def __init__(self, secret: bytes, storage_url: str) -> None:
        self._secret = secret
        self.storage_url = storage_url

    @staticmethod
    def path(call_id: str) -> str:
        return f"/recordings/{call_id}.wav"

    def signature(self, path: str, expires: str) -> str:
        return hmac.new(self._secret, f"{path}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def url(self, call_id: str, expires: int) -> str:
        path = self.path(call_id)
        return f"{self.storage_url}{path}?expires={expires}&signature={self.signature(path, str(expires))}"

    def verify(self, path: str, expires: str, signature: str) -> bool:
        return hmac.compare_digest(self.signature(path, expires), signature)
