"""Tests of factory.data."""
