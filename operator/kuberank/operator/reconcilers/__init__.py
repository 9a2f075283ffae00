"""Reconcilers: apply what the builders return, read what exists. No manifest literals here."""
