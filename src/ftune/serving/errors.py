"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``."""

from __future__ import annotations


class ApiError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def unknown_model(name: str, served: list[str]) -> ApiError:
    return ApiError(404, f"The model {name!r} does not exist; this server serves: {', '.join(served)}",
                    param="model", code="model_not_found")


def wrong_kind(name: str, kind: str, endpoint: str) -> ApiError:
    return ApiError(400, f"The model {name!r} is a {kind} model; {endpoint} does not apply to it", param="model",
                    code="unsupported_model")
