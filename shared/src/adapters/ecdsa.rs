//! [`EcdsaSigner`], the adapter of the [`Signer`] port over ECDSA P-256 private keys held in
//! memory (PKCS#8 PEM, from the local key files or a secret store), signing with ring.

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};

use crate::domain::signature::{
    KeyError, MAX_SIGNING_KEYS, PRIVATE_KEY_PEM_LABEL, SignatureInfo, SigningError,
    VerificationKey, encode_pem, pem_contents,
};
use crate::ports::Signer;

/// Signs with ECDSA P-256 private keys, every key for every file, newest first.
#[derive(Debug)]
pub struct EcdsaSigner {
    /// Newest first.
    keys: Vec<SigningKey>,
    rng: SystemRandom,
}

/// One private key and the identity export files name it by.
#[derive(Debug)]
pub struct SigningKey {
    info: SignatureInfo,
    pair: EcdsaKeyPair,
}

impl EcdsaSigner {
    /// A signer of `keys`, newest first: 1 to [`MAX_SIGNING_KEYS`] of them.
    pub fn new(keys: Vec<SigningKey>) -> Result<Self, KeyError> {
        if !(1..=MAX_SIGNING_KEYS).contains(&keys.len()) {
            return Err(KeyError::KeyCount { count: keys.len() });
        }
        Ok(Self {
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// Keys from PEM texts already in memory (e.g. a secret fetched from a secret manager), as
    /// `(version, pem)` pairs, newest first.
    pub fn from_pems(key_id: &str, keys: &[(String, String)]) -> Result<Self, KeyError> {
        let keys = keys
            .iter()
            .map(|(version, pem_text)| {
                let info = SignatureInfo::ecdsa_p256(key_id, version);
                let label = info.to_string();
                SigningKey::from_pem(info, pem_text, &label)
            })
            .collect::<Result<_, _>>()?;
        Self::new(keys)
    }
}

#[async_trait::async_trait]
impl Signer for EcdsaSigner {
    fn signature_infos(&self) -> Vec<SignatureInfo> {
        self.keys.iter().map(|key| key.info.clone()).collect()
    }

    async fn sign(&self, message: &[u8]) -> Result<Vec<Vec<u8>>, SigningError> {
        self.keys
            .iter()
            .map(|key| {
                key.pair
                    .sign(&self.rng, message)
                    .map(|signature| signature.as_ref().to_vec())
                    .map_err(|_| SigningError::KeyFailed(key.info.clone()))
            })
            .collect()
    }
    fn verification_keys(&self) -> Vec<VerificationKey> {
        self.keys
            .iter()
            .map(|key| {
                VerificationKey::from_point(
                    key.pair.public_key().as_ref(),
                    &key.info.key_id,
                    &key.info.key_version,
                )
                .expect("ring's P-256 public keys are uncompressed points")
            })
            .collect()
    }
}

impl SigningKey {
    /// The key in `pem_text` (PKCS#8 `PRIVATE KEY`), named by `info`; `label` names its source
    /// in errors.
    pub fn from_pem(info: SignatureInfo, pem_text: &str, label: &str) -> Result<Self, KeyError> {
        let pkcs8 = pem_contents(pem_text, PRIVATE_KEY_PEM_LABEL, label)?;
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_ASN1_SIGNING,
            &pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|reason| KeyError::NotP256PrivateKey {
            key: label.to_owned(),
            reason,
        })?;
        Ok(Self { info, pair })
    }
}

/// A new random ECDSA P-256 private key, as PKCS#8 PEM.
pub fn generate_private_key_pem() -> Result<String, KeyError> {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &SystemRandom::new())
        .map_err(|_| KeyError::Generate)?;
    Ok(encode_pem(PRIVATE_KEY_PEM_LABEL, pkcs8.as_ref()))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::fs;
    use std::path::Path;

    use super::*;
    use crate::adapters::local::signing_keys;
    use crate::domain::export::ExportError::*;
    use crate::domain::export::tests::{test_header, test_keys};
    use crate::domain::export::{ExportLimits, MAX_KEYS_PER_FILE, read_export};
    use crate::ports::write_export;
    use std::process::Command;

    /// Runs `openssl <command>` in `dir`; Err holds its error output. Panics if openssl is
    /// missing: the tests that use it must not pass without it.
    pub(crate) fn run_openssl(dir: &Path, command: &str) -> Result<(), String> {
        let output = Command::new("openssl")
            .args(command.split_whitespace())
            .current_dir(dir)
            .output()
            .expect("openssl must be installed for these tests");
        if output.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Err(format!("openssl {command}: {stderr}"))
        }
    }

    fn read(dir: &Path, file: &str) -> String {
        fs::read_to_string(dir.join(file)).unwrap()
    }

    fn signer_from_file(dir: &Path, file: &str) -> Result<EcdsaSigner, KeyError> {
        EcdsaSigner::from_pems("222", &[("v1".to_owned(), read(dir, file))])
    }

    #[tokio::test]
    async fn signatures_verify_with_the_matching_public_key_only() {
        let dir = tempfile::tempdir().unwrap();
        signing_keys::open_or_create(dir.path(), "222").unwrap();
        signing_keys::rotate(dir.path()).unwrap();
        let signer = signing_keys::open_or_create(dir.path(), "222").unwrap();
        let [v2, v1] = <[VerificationKey; 2]>::try_from(signer.verification_keys()).unwrap();

        let signatures = signer.sign(b"export").await.unwrap();
        let [sig_v2, sig_v1] = <[Vec<u8>; 2]>::try_from(signatures).unwrap();
        assert!(v2.verify(b"export", &sig_v2));
        assert!(v1.verify(b"export", &sig_v1));
        assert!(!v1.verify(b"export", &sig_v2));
        assert!(!v2.verify(b"exporT", &sig_v2));
    }

    #[test]
    fn loads_keys_generated_by_openssl() {
        let dir = tempfile::tempdir().unwrap();
        let openssl = |command| run_openssl(dir.path(), command).unwrap();
        openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out genpkey.pem");
        openssl("pkey -in genpkey.pem -pubout -out genpkey.pub.pem");
        // The older route: a SEC1 key (with its curve parameters inside) converted to PKCS#8.
        openssl("ecparam -name prime256v1 -genkey -noout -out sec1.pem");
        openssl("pkcs8 -topk8 -nocrypt -in sec1.pem -out pkcs8.pem");

        let keys = [("v2", "genpkey.pem"), ("v1", "pkcs8.pem")]
            .map(|(version, file)| (version.to_owned(), read(dir.path(), file)));
        let signer = EcdsaSigner::from_pems("222", &keys).unwrap();
        let public_pem = read(dir.path(), "genpkey.pub.pem");
        let public = VerificationKey::from_pem(&public_pem, "222", "v2").unwrap();
        assert_eq!(signer.verification_keys()[0], public);

        let error = signer_from_file(dir.path(), "sec1.pem").unwrap_err();
        assert!(matches!(error, KeyError::WrongPemLabel { .. }), "{error}");

        // ring needs the public key inside the PKCS#8 document; OpenSSL can leave it out.
        openssl("ec -in sec1.pem -no_public -out no-public.pem");
        openssl("pkcs8 -topk8 -nocrypt -in no-public.pem -out no-public.p8.pem");
        let error = signer_from_file(dir.path(), "no-public.p8.pem").unwrap_err();
        assert!(
            matches!(error, KeyError::NotP256PrivateKey { .. }),
            "{error}"
        );
    }

    #[test]
    fn a_signer_needs_at_least_one_key() {
        let error = EcdsaSigner::from_pems("222", &[]).unwrap_err();
        assert!(matches!(error, KeyError::KeyCount { count: 0 }), "{error}");
    }

    #[test]
    fn verification_key_pem_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let signer = signing_keys::open_or_create(dir.path(), "222").unwrap();
        let key = signer.verification_keys().remove(0);
        let pem_text = key.to_pem();
        assert!(
            pem_text.starts_with("-----BEGIN PUBLIC KEY-----\n"),
            "{pem_text}"
        );
        assert_eq!(
            VerificationKey::from_pem(&pem_text, "222", "v1").unwrap(),
            key
        );

        fs::write(dir.path().join("ours.pub.pem"), &pem_text).unwrap();
        run_openssl(dir.path(), "pkey -pubin -in ours.pub.pem -noout").unwrap();
    }

    #[test]
    fn from_pem_rejects_keys_that_are_not_p256() {
        let dir = tempfile::tempdir().unwrap();
        let openssl = |command: &str| run_openssl(dir.path(), command).unwrap();
        openssl("genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem");
        openssl("genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out p384.pem");
        for name in ["rsa", "p384"] {
            openssl(&format!("pkey -in {name}.pem -pubout -out {name}.pub.pem"));
            let public_pem = read(dir.path(), &format!("{name}.pub.pem"));
            let error = VerificationKey::from_pem(&public_pem, "222", "v1").unwrap_err();
            assert!(
                matches!(error, KeyError::NotP256PublicKey { .. }),
                "{name}: {error}"
            );
            assert!(
                error.to_string().contains("not an ECDSA P-256 public key"),
                "{error}"
            );

            let error = signer_from_file(dir.path(), &format!("{name}.pem")).unwrap_err();
            assert!(
                matches!(error, KeyError::NotP256PrivateKey { .. }),
                "{name}: {error}"
            );
        }

        let private_as_public =
            VerificationKey::from_pem(&read(dir.path(), "rsa.pem"), "222", "v1");
        assert!(matches!(
            private_as_public,
            Err(KeyError::WrongPemLabel { .. })
        ));
        let not_pem = VerificationKey::from_pem("junk", "222", "v1");
        assert!(matches!(not_pem, Err(KeyError::Pem { .. })));
    }

    fn signer_with_two_versions(dir: &Path) -> EcdsaSigner {
        signing_keys::open_or_create(dir, "228").unwrap();
        signing_keys::rotate(dir).unwrap();
        signing_keys::open_or_create(dir, "228").unwrap()
    }

    #[tokio::test]
    async fn round_trips_with_rotated_keys() {
        let dir = tempfile::tempdir().unwrap();
        let signer = signer_with_two_versions(dir.path());
        let keys = test_keys(100);
        let zip = write_export(&test_header(), &keys, &[], &signer)
            .await
            .unwrap();

        let file = read_export(&zip, &ExportLimits::default()).unwrap();
        assert_eq!(file.header, test_header());
        assert_eq!(file.keys, keys);
        let [v2, v1] = <[VerificationKey; 2]>::try_from(signer.verification_keys()).unwrap();
        assert_eq!(file.signature_infos, [v2.info.clone(), v1.info.clone()]);
        let signed_by: Vec<_> = file.signatures.iter().map(|s| &s.info).collect();
        assert_eq!(signed_by, [&v2.info, &v1.info]);
        assert!(
            file.signatures
                .iter()
                .all(|s| (s.batch_num, s.batch_size) == (1, 1))
        );

        assert_eq!(file.verify(std::slice::from_ref(&v1)).unwrap(), &v1.info);
        assert_eq!(file.verify(std::slice::from_ref(&v2)).unwrap(), &v2.info);
        // A peer that knows a key under another identity still verifies the file.
        let renamed = VerificationKey::from_pem(&v1.to_pem(), "other", "7").unwrap();
        assert_eq!(file.verify(&[renamed]).unwrap().key_id, "other");
        let unrelated = signing_keys::open_or_create(&dir.path().join("other"), "228").unwrap();
        let error = file.verify(&unrelated.verification_keys()).unwrap_err();
        assert!(
            matches!(
                error,
                Unverified {
                    signatures: 2,
                    keys: 1
                }
            ),
            "{error}"
        );
    }

    #[tokio::test]
    async fn openssl_verifies_our_signature() {
        let dir = tempfile::tempdir().unwrap();
        let signer = signing_keys::open_or_create(&dir.path().join("keys"), "228").unwrap();
        let zip = write_export(&test_header(), &test_keys(20), &[], &signer)
            .await
            .unwrap();
        let file = read_export(&zip, &ExportLimits::default()).unwrap();

        let write = |name, contents: &[u8]| fs::write(dir.path().join(name), contents).unwrap();
        write("export.bin", file.export_bin());
        write("export.sig.der", &file.signatures[0].der);
        write("pub.pem", signer.verification_keys()[0].to_pem().as_bytes());
        let verify = "dgst -sha256 -verify pub.pem -signature export.sig.der export.bin";
        run_openssl(dir.path(), verify).unwrap();

        write("export.bin", b"tampered");
        assert!(
            run_openssl(dir.path(), verify).is_err(),
            "openssl accepted a tampered file"
        );
    }

    #[tokio::test]
    async fn a_full_file_fits_the_default_limits() {
        let dir = tempfile::tempdir().unwrap();
        let signer = signing_keys::open_or_create(dir.path(), "228").unwrap();
        let keys = test_keys(MAX_KEYS_PER_FILE);
        let zip = write_export(&test_header(), &keys, &[], &signer)
            .await
            .unwrap();
        let file = read_export(&zip, &ExportLimits::default()).unwrap();
        assert_eq!(file.keys.len(), MAX_KEYS_PER_FILE);
        file.verify(&signer.verification_keys()).unwrap();

        let one_too_many = test_keys(MAX_KEYS_PER_FILE + 1);
        let error = write_export(&test_header(), &one_too_many, &[], &signer)
            .await
            .unwrap_err();
        assert!(matches!(error, TooManyKeys { count: 500_001 }), "{error}");
    }
}
