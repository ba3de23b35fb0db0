//! Lambda entry point for the scheduled consumer of peer feeds. Wired to the core by the
//! serverless deployment.
fn main() {}
