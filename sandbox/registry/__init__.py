"""The registry emulator: ``sandbox.registry.emulator.RegistryEmulator``.

The package re-exports nothing, so that its modules can only name the emulator through ``.emulator``, where
``lint-imports`` sees a cycle back to it (an import of the package itself would hide one).
"""
