//! A simulated phone with the real Exposure Notification cryptography: the key derivations
//! (RPIK, AEMK), the Rolling Proximity Identifiers a phone broadcasts, the Associated Encrypted
//! Metadata, and a [`Phone`] that keeps one random Temporary Exposure Key per day, records the
//! identifiers it hears, uploads its keys after a positive test and matches downloaded
//! Diagnosis Keys against what it heard.
//!
//! The derivations follow the Apple/Google "Exposure Notification Cryptography Specification"
//! v1.2 and reproduce its published test vectors.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use aes::Aes128;
use aes::cipher::{BlockCipherEncrypt, KeyInit, KeyIvInit, StreamCipher};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

use enfeed::domain::key::{DiagnosisKey, INTERVALS_PER_DAY, KEY_LEN, ReportType};

/// AES-128-CTR with a 128-bit big-endian counter, the mode of the metadata encryption.
type Aes128Ctr = ctr::Ctr128BE<Aes128>;

/// A Temporary Exposure Key: the daily secret from which a phone derives what it broadcasts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TemporaryExposureKey {
    pub key: [u8; KEY_LEN],
    /// First interval in which the key is used (the start of its day).
    pub rolling_start: u32,
    /// Number of intervals the key is used for.
    pub rolling_period: u32,
}

impl TemporaryExposureKey {
    /// The key as it is uploaded after a positive test. Transmission risk, report type and
    /// days since onset are left unset: the health authority and the server decide them.
    pub fn to_diagnosis_key(&self) -> DiagnosisKey {
        DiagnosisKey {
            key_data: self.key,
            rolling_start: self.rolling_start,
            rolling_period: self.rolling_period,
            transmission_risk: 0,
            report_type: ReportType::Unknown,
            days_since_onset: None,
        }
    }
}

/// The Rolling Proximity Identifier Key: HKDF-SHA256(TEK, no salt, "EN-RPIK", 16 bytes).
pub fn rpi_key(tek: &[u8; KEY_LEN]) -> [u8; 16] {
    hkdf_16(tek, b"EN-RPIK")
}

/// The Associated Encrypted Metadata Key: HKDF-SHA256(TEK, no salt, "EN-AEMK", 16 bytes).
pub fn aem_key(tek: &[u8; KEY_LEN]) -> [u8; 16] {
    hkdf_16(tek, b"EN-AEMK")
}

/// The identifier a phone broadcasts during `interval`:
/// AES-128(RPIK, "EN-RPI" ‖ 6 zero bytes ‖ interval as u32 little-endian).
pub fn rolling_proximity_identifier(rpik: &[u8; 16], interval: u32) -> [u8; 16] {
    let mut block = rpi_block(interval);
    Aes128::new(&(*rpik).into()).encrypt_block(&mut block);
    block.into()
}

/// The Associated Encrypted Metadata broadcast with `rpi`: the 4 metadata bytes (version and
/// transmit power) encrypted with AES-128-CTR under the AEMK, with the RPI as IV. Decrypting is
/// the same operation.
pub fn associated_metadata(aemk: &[u8; 16], rpi: &[u8; 16], metadata: [u8; 4]) -> [u8; 4] {
    let mut aem = metadata;
    Aes128Ctr::new(&(*aemk).into(), &(*rpi).into()).apply_keystream(&mut aem);
    aem
}

/// HKDF-SHA256 with an empty salt, 16 bytes of output.
fn hkdf_16(ikm: &[u8], info: &[u8]) -> [u8; 16] {
    struct Len16;
    impl hkdf::KeyType for Len16 {
        fn len(&self) -> usize {
            16
        }
    }
    let mut out = [0u8; 16];
    hkdf::Salt::new(hkdf::HKDF_SHA256, &[])
        .extract(ikm)
        .expand(&[info], Len16)
        .and_then(|okm| okm.fill(&mut out))
        .expect("16 bytes is a valid HKDF-SHA256 output length");
    out
}

/// A downloaded Diagnosis Key that this phone heard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exposure {
    pub key: DiagnosisKey,
    /// The intervals in which the phone heard the key's identifiers, ascending.
    pub intervals: Vec<u32>,
}

/// A simulated phone.
#[derive(Debug)]
pub struct Phone {
    name: String,
    /// One TEK per day, by the day's first interval.
    teks: BTreeMap<u32, [u8; KEY_LEN]>,
    /// The identifiers heard, with the interval in which they were heard.
    heard: BTreeSet<(u32, [u8; 16])>,
    rng: SystemRandom,
}

impl Phone {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            teks: BTreeMap::new(),
            heard: BTreeSet::new(),
            rng: SystemRandom::new(),
        }
    }

    /// The name given to [`Phone::new`], for reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The TEK of the day that contains `interval` (normally the day's first interval), drawn
    /// at random the first time that day is asked for.
    pub fn tek_for_day(&mut self, interval: u32) -> TemporaryExposureKey {
        let day_start = interval - interval % INTERVALS_PER_DAY;
        let rng = &self.rng;
        let key = *self.teks.entry(day_start).or_insert_with(|| {
            let mut key = [0u8; KEY_LEN];
            rng.fill(&mut key).expect("the system random source works");
            key
        });
        TemporaryExposureKey {
            key,
            rolling_start: day_start,
            rolling_period: INTERVALS_PER_DAY,
        }
    }

    /// The RPI this phone broadcasts during `interval`.
    pub fn broadcast(&mut self, interval: u32) -> [u8; 16] {
        let tek = self.tek_for_day(interval);
        rolling_proximity_identifier(&rpi_key(&tek.key), interval)
    }

    /// Records an RPI heard during `interval`.
    pub fn hear(&mut self, rpi: [u8; 16], interval: u32) {
        self.heard.insert((interval, rpi));
    }

    /// Two phones close to each other during `interval`: each hears the other.
    pub fn meet(a: &mut Phone, b: &mut Phone, interval: u32) {
        let (from_a, from_b) = (a.broadcast(interval), b.broadcast(interval));
        a.hear(from_b, interval);
        b.hear(from_a, interval);
    }

    /// What the phone uploads after a positive test: its keys of the days that overlap
    /// `intervals`, oldest first. Only days on which the phone broadcast (or asked for its
    /// key) have a key.
    pub fn diagnosis_keys(&self, intervals: Range<u32>) -> Vec<DiagnosisKey> {
        let first_day = intervals.start - intervals.start % INTERVALS_PER_DAY;
        self.teks
            .range(first_day..intervals.end.max(first_day))
            .map(|(&rolling_start, &key)| {
                TemporaryExposureKey {
                    key,
                    rolling_start,
                    rolling_period: INTERVALS_PER_DAY,
                }
                .to_diagnosis_key()
            })
            .collect()
    }

    /// The downloaded keys whose identifiers this phone heard, each with the intervals in which
    /// it heard them. An identifier matches only in the very interval it belongs to (no clock
    /// skew tolerance), and only within the key's validity, which is capped at one day.
    ///
    /// Only intervals in which the phone heard something can match, so a key costs one HKDF,
    /// when anything was heard in its window, plus one AES block per such interval.
    pub fn matches(&self, keys: &[DiagnosisKey]) -> Vec<Exposure> {
        // Sorted by interval, then RPI: each key's window is a slice of it.
        let heard: Vec<(u32, [u8; 16])> = self.heard.iter().copied().collect();
        let mut rpis = Vec::with_capacity(INTERVALS_PER_DAY as usize);
        keys.iter()
            .filter_map(|key| {
                let end = key
                    .rolling_start
                    .saturating_add(key.rolling_period.min(INTERVALS_PER_DAY));
                let window = &heard[heard.partition_point(|(i, _)| *i < key.rolling_start)
                    ..heard.partition_point(|(i, _)| *i < end)];
                if window.is_empty() {
                    return None;
                }
                let by_interval = || window.chunk_by(|a, b| a.0 == b.0);
                // One batch of AES blocks, one per interval, is several times faster than
                // encrypting them one by one.
                rpis.clear();
                rpis.extend(by_interval().map(|group| rpi_block(group[0].0)));
                Aes128::new(&rpi_key(&key.key_data).into()).encrypt_blocks(&mut rpis);
                let intervals: Vec<u32> = by_interval()
                    .zip(&rpis)
                    .filter(|(group, rpi)| {
                        group
                            .binary_search_by(|(_, heard)| heard.cmp(&rpi.0))
                            .is_ok()
                    })
                    .map(|(group, _)| group[0].0)
                    .collect();
                (!intervals.is_empty()).then(|| Exposure {
                    key: key.clone(),
                    intervals,
                })
            })
            .collect()
    }
}

/// The AES input block whose encryption under an RPIK is the RPI of `interval`:
/// "EN-RPI" ‖ 6 zero bytes ‖ interval as u32 little-endian.
fn rpi_block(interval: u32) -> aes::Block {
    let mut block = [0u8; 16];
    block[..6].copy_from_slice(b"EN-RPI");
    block[12..].copy_from_slice(&interval.to_le_bytes());
    block.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published test vectors, read at test time.
    fn test_vectors() -> serde_json::Value {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/fixtures/en-crypto-test-vectors.json"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        serde_json::from_str(&text).expect("test vectors are JSON")
    }

    fn hex<const N: usize>(value: &serde_json::Value) -> [u8; N] {
        let text = value.as_str().expect("a hex string");
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digits"))
            .collect();
        bytes.try_into().expect("the expected length")
    }

    fn number(value: &serde_json::Value) -> u32 {
        value
            .as_u64()
            .and_then(|n| n.try_into().ok())
            .expect("a u32")
    }

    #[test]
    fn reproduces_every_published_test_vector() {
        let v = test_vectors();
        let tek: [u8; 16] = hex(&v["tek"]);
        let (rpik, aemk) = (rpi_key(&tek), aem_key(&tek));
        assert_eq!(rpik, hex::<16>(&v["rpik"]));
        assert_eq!(aemk, hex::<16>(&v["aemk"]));
        let metadata: [u8; 4] = hex(&v["ble_metadata"]);
        let start = number(&v["rolling_start_interval_number"]);
        assert_eq!(
            start,
            enfeed::domain::key::interval_of(v["key_generation_unix_seconds"].as_u64().unwrap())
        );
        let intervals = v["intervals"].as_array().expect("an array of intervals");
        assert_eq!(intervals.len(), number(&v["rolling_period"]) as usize);
        for (offset, expected) in intervals.iter().enumerate() {
            let interval = number(&expected["enin"]);
            assert_eq!(interval, start + offset as u32);
            let rpi = rolling_proximity_identifier(&rpik, interval);
            assert_eq!(rpi, hex::<16>(&expected["rpi"]), "RPI at offset {offset}");
            let aem = associated_metadata(&aemk, &rpi, metadata);
            assert_eq!(aem, hex::<4>(&expected["aem"]), "AEM at offset {offset}");
            assert_eq!(associated_metadata(&aemk, &rpi, aem), metadata);
        }
    }

    const DAY: u32 = 2_650_176; // a multiple of 144

    #[test]
    fn phones_that_met_match_each_others_keys_at_the_meeting() {
        let (mut alice, mut bob, mut carol) =
            (Phone::new("alice"), Phone::new("bob"), Phone::new("carol"));
        for interval in DAY..DAY + 2 * INTERVALS_PER_DAY {
            alice.broadcast(interval);
            bob.broadcast(interval);
            carol.broadcast(interval);
        }
        let met = DAY + INTERVALS_PER_DAY + 7;
        Phone::meet(&mut alice, &mut bob, met);
        Phone::meet(&mut alice, &mut bob, met + 1);
        // Hearing an RPI in the wrong interval is not a match.
        let early = bob.broadcast(DAY + 3);
        carol.hear(early, DAY + 4);

        let bob_keys = bob.diagnosis_keys(DAY..DAY + 2 * INTERVALS_PER_DAY);
        assert_eq!(bob_keys.len(), 2);
        let exposures = alice.matches(&bob_keys);
        assert_eq!(exposures.len(), 1);
        assert_eq!(exposures[0].key.rolling_start, DAY + INTERVALS_PER_DAY);
        assert_eq!(exposures[0].intervals, vec![met, met + 1]);

        let alice_keys = alice.diagnosis_keys(met..met + 1);
        assert_eq!(alice_keys.len(), 1);
        assert_eq!(bob.matches(&alice_keys)[0].intervals, vec![met, met + 1]);

        assert!(carol.matches(&bob_keys).is_empty());
        assert!(carol.matches(&alice_keys).is_empty());
    }

    #[test]
    fn a_match_is_found_in_a_crowd() {
        let (mut alice, mut bob) = (Phone::new("alice"), Phone::new("bob"));
        let crowd: Vec<Phone> = (0..50).map(|i| Phone::new(format!("p{i}"))).collect();
        for mut stranger in crowd {
            for interval in DAY..DAY + 3 {
                Phone::meet(&mut alice, &mut stranger, interval);
            }
        }
        Phone::meet(&mut alice, &mut bob, DAY + 1);
        let exposures = alice.matches(&bob.diagnosis_keys(DAY..DAY + 1));
        assert_eq!(exposures.len(), 1);
        assert_eq!(exposures[0].intervals, vec![DAY + 1]);
    }

    #[test]
    fn a_day_has_one_key_and_keys_stay_put() {
        let mut phone = Phone::new("p");
        let tek = phone.tek_for_day(DAY + 100);
        assert_eq!(tek.rolling_start, DAY);
        assert_eq!(tek.rolling_period, INTERVALS_PER_DAY);
        assert_eq!(phone.tek_for_day(DAY), tek);
        assert_ne!(phone.tek_for_day(DAY + INTERVALS_PER_DAY).key, tek.key);
        assert!(phone.diagnosis_keys(DAY - 10..DAY).is_empty());
    }

    #[test]
    fn hostile_key_windows_do_not_panic() {
        let mut phone = Phone::new("p");
        phone.hear([7; 16], u32::MAX - 1);
        let key = DiagnosisKey {
            rolling_start: u32::MAX - 10,
            rolling_period: u32::MAX,
            ..TemporaryExposureKey {
                key: [1; 16],
                rolling_start: 0,
                rolling_period: 0,
            }
            .to_diagnosis_key()
        };
        assert!(phone.matches(&[key]).is_empty());
    }
}
