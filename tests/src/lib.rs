//! Cross-crate integration and chaos tests for flext. The tests live in `tests/tests/`; this
//! library is empty on purpose.
