//! `enfeed inspect`: reads any GAEN export zip, verifies it if given a public key, and prints
//! its header and keys.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use enfeed::domain::export::{ExportFile, ExportLimits, read_export};
use enfeed::domain::signature::VerificationKey;

#[derive(clap::Args)]
pub struct InspectArgs {
    /// The export zip (export.bin + export.sig).
    file: PathBuf,

    /// PEM public key (SubjectPublicKeyInfo) to verify the signature with; may be repeated.
    #[arg(long = "public-key")]
    public_keys: Vec<PathBuf>,
}

pub fn run(args: InspectArgs) -> anyhow::Result<()> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let export = read_export(&bytes, &ExportLimits::default())
        .with_context(|| format!("{} is not a valid export file", args.file.display()))?;
    let keys = args
        .public_keys
        .iter()
        .map(|path| {
            let pem = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            VerificationKey::from_pem(&pem, "", "")
                .with_context(|| format!("{} is not a P-256 public key", path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut out = describe(&export);
    if !keys.is_empty() {
        export
            .verify(&keys)
            .context("signature verification failed")?;
        out.push_str("signature: valid\n");
    }
    // A closed pipe (`enfeed inspect ... | head`) is not an error.
    match std::io::stdout().lock().write_all(out.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

/// The header and keys of an export, one key a line.
pub fn describe(export: &ExportFile) -> String {
    let h = &export.header;
    let mut out = String::new();
    let _ = writeln!(out, "region: {}", h.region);
    let _ = writeln!(out, "batch: {}/{}", h.batch_num, h.batch_size);
    let _ = writeln!(
        out,
        "start: {}  end: {}",
        h.start_timestamp, h.end_timestamp
    );
    for info in &export.signature_infos {
        let _ = writeln!(
            out,
            "signature info: id {:?} version {:?} algorithm {}",
            info.key_id, info.key_version, info.algorithm
        );
    }
    let _ = writeln!(out, "keys: {}", export.keys.len());
    for (label, keys) in [("key", &export.keys), ("revised key", &export.revised_keys)] {
        for k in keys {
            let hex: String = k.key_data.iter().map(|b| format!("{b:02x}")).collect();
            let onset = k
                .days_since_onset
                .map_or_else(|| "-".to_string(), |d| d.to_string());
            let _ = writeln!(
                out,
                "{label} {hex} start {} period {} risk {} report {:?} onset {onset}",
                k.rolling_start, k.rolling_period, k.transmission_risk, k.report_type
            );
        }
    }
    out
}
