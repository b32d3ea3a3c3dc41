//! Shared helpers of the end-to-end tests (process spawning, ports, paths).
