"""Admin dashboard pages."""
