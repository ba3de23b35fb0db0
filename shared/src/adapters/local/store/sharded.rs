//! [`ShardedMap`]: the writer thread's hash maps of random keys, which grow a small part at a
//! time.

use std::collections::HashMap;
use std::hash::Hash;

/// Shards of a [`ShardedMap`]: a key's first byte picks its shard.
const SHARDS: usize = 256;

/// A hash map of random byte strings (key data, code hashes), split in [`SHARDS`] maps by
/// the key's first byte, so that growing rehashes one small shard at a time. As one map, the
/// staged keys stopped the writer thread, and every upload waiting for it, for 22 ms when the
/// map doubled at 229,376 keys in the middle of a burst (docs/performance.md). Keys chosen to
/// fall into one shard make that shard what the one map was, never worse.
pub(super) struct ShardedMap<K, V> {
    shards: Box<[HashMap<K, V>]>,
    len: usize,
}

impl<K, V> Default for ShardedMap<K, V> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| HashMap::new()).collect(),
            len: 0,
        }
    }
}

impl<K: AsRef<[u8]> + Hash + Eq, V> ShardedMap<K, V> {
    fn shard(key: &K) -> usize {
        key.as_ref().first().map_or(0, |byte| usize::from(*byte)) % SHARDS
    }

    pub(super) fn get(&self, key: &K) -> Option<&V> {
        self.shards[Self::shard(key)].get(key)
    }

    pub(super) fn contains_key(&self, key: &K) -> bool {
        self.shards[Self::shard(key)].contains_key(key)
    }

    pub(super) fn insert(&mut self, key: K, value: V) -> Option<V> {
        let old = self.shards[Self::shard(&key)].insert(key, value);
        self.len += usize::from(old.is_none());
        old
    }

    pub(super) fn remove(&mut self, key: &K) -> Option<V> {
        let old = self.shards[Self::shard(key)].remove(key);
        self.len -= usize::from(old.is_some());
        old
    }

    /// Removes the key if its value is the one `current` says is still its own.
    pub(super) fn remove_if(&mut self, key: &K, current: impl FnOnce(&V) -> bool) {
        if self.get(key).is_some_and(current) {
            self.remove(key);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len
    }

    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Gives the memory of the shards back once the map is empty: a burst's keys leave it
    /// large.
    pub(super) fn release_if_empty(&mut self) {
        if self.is_empty() {
            for shard in &mut self.shards {
                *shard = HashMap::new();
            }
        }
    }

    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|shard| shard.iter())
    }
}

impl<K: AsRef<[u8]> + Hash + Eq, V> Extend<(K, V)> for ShardedMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, entries: I) {
        for (key, value) in entries {
            self.insert(key, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_every_first_byte_are_found_counted_and_removed() {
        let mut map = ShardedMap::default();
        for byte in 0..=255u8 {
            assert_eq!(map.insert([byte, 1], u32::from(byte)), None);
            assert_eq!(map.insert([byte, 2], 0), None);
        }
        assert_eq!(map.insert([7, 1], 70), Some(7), "a key inserted again");
        assert_eq!(map.len(), 512);
        assert_eq!(map.get(&[7, 1]), Some(&70));
        assert!(map.contains_key(&[255, 2]) && !map.contains_key(&[255, 3]));
        map.remove_if(&[7, 1], |value| *value == 7);
        assert_eq!(map.len(), 512, "not removed: its value is another's");
        for byte in 0..=255u8 {
            map.remove_if(&[byte, 1], |_| true);
            assert!(map.remove(&[byte, 2]).is_some());
        }
        assert!(map.is_empty() && map.iter().next().is_none());
        map.release_if_empty();
        assert!(map.shards.iter().all(|shard| shard.capacity() == 0));
    }
}
