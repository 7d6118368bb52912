"""The AWX emulator (issue 2): AWX's REST API v2, job templates and jobs whose playbooks redeploy the stack
through the Kubernetes emulator's HTTP API."""

from sandbox.awx.emulator import AwxEmulator

__all__ = ["AwxEmulator"]
