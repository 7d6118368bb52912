"""The error answers of GitHub's REST API: ``{"message", "documentation_url", "status"}``."""

from __future__ import annotations

from typing import Any

DOCS = "https://docs.github.com/rest"


class ApiError(Exception):
    """An error answer; raised by the emulator's core so that HTTP handlers and in-process callers share checks."""

    def __init__(self, status: int, message: str, documentation_url: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.documentation_url = documentation_url

    def body(self, default_docs: str = DOCS) -> dict[str, Any]:
        # GitHub has added "status" (a string) to its error bodies since 2023.
        return {
            "message": self.message,
            "documentation_url": self.documentation_url or default_docs,
            "status": str(self.status),
        }


def not_found(documentation_url: str | None = None) -> ApiError:
    return ApiError(404, "Not Found", documentation_url)
