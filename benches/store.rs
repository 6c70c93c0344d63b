//! Embedded store benchmark (placeholder, filled in below).

fn main() {}
