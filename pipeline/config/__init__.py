"""Typed configuration and the defaults shipped with the package (profiles, target config)."""

from pipeline.config.profile import Profile, load_profile, profile_path, shipped_profiles

__all__ = ["Profile", "load_profile", "profile_path", "shipped_profiles"]
