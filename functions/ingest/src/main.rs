//! Lambda entry point for `POST /v1/publish`. Wired to the core by the serverless deployment.
fn main() {}
