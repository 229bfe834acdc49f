//! Graph checks (placeholder).
