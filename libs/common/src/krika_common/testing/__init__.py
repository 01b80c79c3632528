"""Test support shared by every service: see `krika_common.testing.plugin` for the fixtures."""
