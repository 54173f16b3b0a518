//! Placeholder until the breaker bench lands.
fn main() {}
