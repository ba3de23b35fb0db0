//! Lambda entry point for scheduled data-prep. Wired to the core by the serverless deployment.
fn main() {}
