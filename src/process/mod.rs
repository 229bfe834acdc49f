//! Child-process supervision and /proc discovery.
