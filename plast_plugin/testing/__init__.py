"""Helpers shared by the test suites: tiny local models built from a seed."""
