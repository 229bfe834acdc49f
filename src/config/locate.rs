//! Byte offsets to lines and columns (placeholder).
