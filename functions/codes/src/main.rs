//! Lambda entry point that issues one-time codes. Wired to the core by the serverless deployment.
fn main() {}
