//! A subscriber's subscriptions by track sid, with a lookup for the egress
//! hot path that skips the hash table.
//!
//! An egress worker looks a subscription up once per forwarded packet and
//! subscriber. Through a `HashMap<String, _>` that cost two or three cache
//! misses before the subscription itself (the control bytes, the bucket,
//! the key's heap bytes for the comparison): about a tenth of the server's
//! CPU with 200 audio subscribers. [`SubscriptionTable::for_job`] instead
//! remembers, for the last few tracks, the index of their entry under the
//! publisher's own `Arc<str>` (the same allocation in every job of a
//! track), so a hit is a pointer comparison.

use std::collections::HashMap;
use std::sync::Arc;

/// Tracks remembered by [`SubscriptionTable::for_job`].
const MEMO_LEN: usize = 4;

/// Values by track sid, in a vector with a hash index.
#[derive(Debug)]
pub(super) struct SubscriptionTable<T> {
    entries: Vec<(String, T)>,
    index: HashMap<String, usize>,
    /// Index of an entry by the publisher's `Arc<str>` of its track sid;
    /// held here, so the pointer cannot be reused for another track while
    /// remembered. Forgotten whenever an index may change.
    memo: [Option<(Arc<str>, usize)>; MEMO_LEN],
    /// Next memo slot to fill.
    next_memo: usize,
}

impl<T> Default for SubscriptionTable<T> {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            index: HashMap::new(),
            memo: Default::default(),
            next_memo: 0,
        }
    }
}

impl<T> SubscriptionTable<T> {
    /// Adds or replaces the value for `track_sid`; returns the old one.
    pub(super) fn insert(&mut self, track_sid: String, value: T) -> Option<T> {
        if let Some(&i) = self.index.get(&track_sid) {
            return Some(std::mem::replace(&mut self.entries[i].1, value));
        }
        self.forget();
        self.index.insert(track_sid.clone(), self.entries.len());
        self.entries.push((track_sid, value));
        None
    }

    /// Removes and returns the value for `track_sid`.
    pub(super) fn remove(&mut self, track_sid: &str) -> Option<T> {
        let i = self.index.remove(track_sid)?;
        self.forget();
        let (_, value) = self.entries.swap_remove(i);
        if let Some((moved, _)) = self.entries.get(i) {
            if let Some(slot) = self.index.get_mut(moved.as_str()) {
                *slot = i;
            }
        }
        Some(value)
    }

    pub(super) fn get_mut(&mut self, track_sid: &str) -> Option<&mut T> {
        let i = *self.index.get(track_sid)?;
        self.entries.get_mut(i).map(|(_, v)| v)
    }

    /// The value for a forwarded packet's track, `track_sid` being the
    /// publisher's shared `Arc<str>`: a pointer comparison for a track
    /// looked up recently, else a hash lookup that is then remembered.
    pub(super) fn for_job(&mut self, track_sid: &Arc<str>) -> Option<&mut T> {
        let remembered = self
            .memo
            .iter()
            .flatten()
            .find(|(sid, _)| Arc::ptr_eq(sid, track_sid))
            .map(|&(_, i)| i);
        let i = match remembered {
            Some(i) => i,
            None => {
                let i = *self.index.get(&**track_sid)?;
                self.memo[self.next_memo] = Some((track_sid.clone(), i));
                self.next_memo = (self.next_memo + 1) % MEMO_LEN;
                i
            }
        };
        self.entries.get_mut(i).map(|(_, v)| v)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &T)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = (&String, &mut T)> {
        self.entries.iter_mut().map(|(k, v)| (&*k, v))
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &T> {
        self.entries.iter().map(|(_, v)| v)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn forget(&mut self) {
        self.memo = Default::default();
        self.next_memo = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(s: &str) -> Arc<str> {
        Arc::from(s)
    }

    #[test]
    fn insert_get_replace_and_remove_keep_every_entry_reachable() {
        let mut t = SubscriptionTable::default();
        for (i, s) in ["TR_a", "TR_b", "TR_c", "TR_d"].iter().enumerate() {
            assert!(t.insert(s.to_string(), i).is_none());
        }
        assert_eq!(t.insert("TR_b".into(), 10), Some(1));
        // Removing the first moves the last into its place.
        assert_eq!(t.remove("TR_a"), Some(0));
        assert_eq!(t.remove("TR_a"), None);
        assert_eq!(t.get_mut("TR_b").map(|v| *v), Some(10));
        assert_eq!(t.get_mut("TR_c").map(|v| *v), Some(2));
        assert_eq!(t.get_mut("TR_d").map(|v| *v), Some(3));
        *t.get_mut("TR_d").expect("TR_d") += 1;
        let mut all: Vec<(String, usize)> = t.iter().map(|(k, v)| (k.clone(), *v)).collect();
        all.sort();
        assert_eq!(
            all,
            vec![("TR_b".into(), 10), ("TR_c".into(), 2), ("TR_d".into(), 4)]
        );
        for (_, v) in t.iter_mut() {
            *v += 100;
        }
        assert_eq!(t.values().sum::<usize>(), 316);
        assert!(!t.is_empty());
    }

    #[test]
    fn for_job_finds_the_same_entry_as_get_mut_across_removals() {
        let mut t = SubscriptionTable::default();
        let (a, b, c) = (sid("TR_a"), sid("TR_b"), sid("TR_c"));
        t.insert("TR_a".into(), 'a');
        t.insert("TR_b".into(), 'b');
        t.insert("TR_c".into(), 'c');
        for _ in 0..2 {
            assert_eq!(t.for_job(&a).copied(), Some('a'));
            assert_eq!(t.for_job(&c).copied(), Some('c'));
        }
        // Removing TR_a moves TR_c into its index: the memo must not hand
        // out the old index.
        t.remove("TR_a");
        assert_eq!(t.for_job(&a), None);
        assert_eq!(t.for_job(&c).copied(), Some('c'));
        assert_eq!(t.for_job(&b).copied(), Some('b'));
        // Another Arc with the same text is found by hashing.
        assert_eq!(t.for_job(&sid("TR_b")).copied(), Some('b'));
        // More tracks than the memo holds still resolve.
        for i in 0..(MEMO_LEN * 3) {
            t.insert(format!("TR_{i}"), char::from(b'0' + i as u8));
        }
        let arcs: Vec<Arc<str>> = (0..(MEMO_LEN * 3))
            .map(|i| sid(&format!("TR_{i}")))
            .collect();
        for _ in 0..2 {
            for (i, s) in arcs.iter().enumerate() {
                assert_eq!(t.for_job(s).copied(), Some(char::from(b'0' + i as u8)));
            }
        }
        *t.for_job(&arcs[1]).expect("TR_1") = 'x';
        assert_eq!(t.get_mut("TR_1").map(|v| *v), Some('x'));
    }
}
