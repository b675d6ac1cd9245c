"""Helpers shared by the test suite: real processes (Redis, gateway, backends) on free ports."""
