"""The errors of every client: one small hierarchy, each message naming the remote object and its URL.

Messages never carry a secret: clients build them from URLs, names, statuses and the services' own words.
"""

from __future__ import annotations


class ClientError(Exception):
    """Base of every error raised by ``clients``."""


class ApiError(ClientError):
    """A service answered with an unexpected status, or not at all.

    Attributes:
        status: the HTTP status, or None when no answer came (connection error, timeout).
        url: the request URL (without credentials).
        detail: the service's own words (e.g. AWX's ``detail``, GitHub's ``message``), if any.
    """

    def __init__(
        self, message: str, *, status: int | None = None, url: str | None = None, detail: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.url = url
        self.detail = detail


class TlsVerificationFailed(ApiError):
    """The server's TLS certificate could not be verified (an unknown CA, another host's name, expired): never
    retried, since a retry meets the same certificate. Give the client the server's CA (a block's ``ca_bundle``,
    a kubeconfig's ``certificate-authority-data``)."""


class RateLimited(ApiError):
    """Over a rate limit, and the wait it asks for is longer than the client's cap."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        status: int | None = None,
        url: str | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, status=status, url=url, detail=detail)
        self.retry_after = retry_after


class NotFound(ApiError):
    """The remote object does not exist (a template name, a workflow, a run, a StatefulSet)."""


class WatchExpired(ApiError):
    """A Kubernetes watch's resourceVersion is too old (410 Gone): list again and watch from the new one."""


class AmbiguousName(ClientError):
    """A name matched more than one remote object (e.g. AWX templates in two organisations)."""


class LaunchRejected(ClientError):
    """AWX refused or silently altered a launch (400 field errors, or non-empty ``ignored_fields``).

    Attributes:
        url: the launch URL.
        fields: AWX's field errors or ``ignored_fields``, as AWX gave them.
        job_id: the job AWX created anyway (``ignored_fields``), or None.
    """

    def __init__(
        self, message: str, *, url: str | None = None, fields: object = None, job_id: int | None = None
    ) -> None:
        super().__init__(message)
        self.url = url
        self.fields = fields
        self.job_id = job_id


class DeadlineExceeded(ClientError):
    """A wait passed its deadline; the message says what was awaited and its last known state.

    Attributes:
        url: the awaited object's URL, if any.
        last_status: its last known status, if any.
    """

    def __init__(self, message: str, *, url: str | None = None, last_status: str | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.last_status = last_status


class BuildFailed(ClientError):
    """A GitHub Actions run ended with a conclusion other than success (names the run, job and step).

    Attributes:
        url: the run's html_url.
        conclusion: the run's conclusion.
        job: the name of the first failing job, if known.
        step: the name of its failing step, if known.
    """

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        conclusion: str | None = None,
        job: str | None = None,
        step: str | None = None,
    ) -> None:
        super().__init__(message)
        self.url = url
        self.conclusion = conclusion
        self.job = job
        self.step = step


class JobFailed(ClientError):
    """An AWX job ended failed, error or canceled (status, explanation, job URL, the output's tail).

    Attributes:
        status: the job's final status (``failed``, ``error``, ``canceled``).
        explanation: AWX's ``job_explanation``.
        url: the job's URL.
        output_tail: the last lines of the job's output.
    """

    def __init__(
        self,
        message: str,
        *,
        status: str | None = None,
        explanation: str = "",
        url: str | None = None,
        output_tail: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.explanation = explanation
        self.url = url
        self.output_tail = output_tail


class ImageNotFound(ClientError):
    """A tag or digest is not in the registry."""


class RolloutStuck(ClientError):
    """A pod of the roll-out is stuck (CrashLoopBackOff, ImagePullBackOff, Unschedulable, ...).

    The message ends with the diagnosis, on lines of its own: the pod's last log lines and recent events.

    Attributes:
        pod: the stuck pod's name.
        reason: why it is stuck (``CrashLoopBackOff``, ...).
        diagnosis: its last log lines and recent events (bounded, credentials masked), or why they could not be
            read; empty when not read.
    """

    def __init__(self, message: str, *, pod: str | None = None, reason: str | None = None, diagnosis: str = "") -> None:
        super().__init__(f"{message}\n{diagnosis}" if diagnosis else message)
        self.pod = pod
        self.reason = reason
        self.diagnosis = diagnosis


class ImageMismatch(ClientError):
    """A pod runs an image digest other than the expected one."""
