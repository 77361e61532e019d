"""Coach profiles, offerings, availability, the directory and the slot engine."""
