"""Label Studio ML backend for clinlinker: a thin adapter from Label Studio's JSON to the linker."""
