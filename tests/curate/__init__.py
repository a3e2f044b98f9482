"""Tests of factory.curate."""
