"""The AWX emulator (issue 2): AWX's REST API v2, job templates and jobs whose playbooks redeploy the stack
through the Kubernetes emulator's HTTP API: ``sandbox.awx.emulator.AwxEmulator``.

The package re-exports nothing, so that its modules can only name the emulator through ``.emulator``, where
``lint-imports`` sees a cycle back to it (an import of the package itself would hide one).
"""
