//! Per-session write slots: one async lock per session, so that the writes to one session are applied one
//! at a time and in the order they were asked for, and beside it the state a backend caches for the session
//! while it holds that lock (what it needs to decide a write without reading the session first).
//!
//! A MongoDB-compatible server may apply an update as read-modify-write of the whole document (FerretDB 1.24
//! does), so two concurrent updates of one session could lose one; and conditions that sit in an update's
//! filter beside `_id` make some servers scan the collection. Holding the session's slot while its state is
//! checked and its update sent makes both unnecessary: every update is addressed by `_id` alone, and the
//! check is made in memory against state that only writes through this slot change.
//!
//! Slots not in use are dropped once more than `capacity` are held (their state is read again on next use).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// The slots of all sessions a backend wrote or read recently.
pub(crate) struct SessionSlots<S> {
    slots: Mutex<HashMap<String, Arc<Slot<S>>>>,
    capacity: usize,
}

/// One session's lock and cached state.
pub(crate) struct Slot<S> {
    order: Arc<tokio::sync::Mutex<()>>,
    state: Mutex<Option<S>>,
}

/// A held slot: writes to its session from elsewhere wait until it is dropped.
pub(crate) struct HeldSlot<S> {
    slot: Arc<Slot<S>>,
    _order: tokio::sync::OwnedMutexGuard<()>,
}

impl<S> SessionSlots<S> {
    /// Slots for up to `capacity` idle sessions (sessions in use are never dropped).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    fn map(&self) -> MutexGuard<'_, HashMap<String, Arc<Slot<S>>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for the slot of `session_id`: callers get it one at a time, in the order they asked.
    pub(crate) async fn hold(&self, session_id: &str) -> HeldSlot<S> {
        let slot = {
            let mut map = self.map();
            if map.len() >= self.capacity && !map.contains_key(session_id) {
                // Drop the slots nobody holds or waits for; their state is read again when needed.
                map.retain(|_, slot| Arc::strong_count(slot) > 1);
            }
            Arc::clone(map.entry(session_id.to_string()).or_insert_with(|| {
                Arc::new(Slot {
                    order: Arc::new(tokio::sync::Mutex::new(())),
                    state: Mutex::new(None),
                })
            }))
        };
        let order = Arc::clone(&slot.order).lock_owned().await;
        HeldSlot {
            slot,
            _order: order,
        }
    }

    /// Forgets the cached state of the sessions for which `drop` is true (after deletions).
    pub(crate) fn forget_where(&self, drop: impl Fn(&S) -> bool) {
        for slot in self.map().values() {
            let mut state = slot.lock_state();
            if state.as_ref().is_some_and(&drop) {
                *state = None;
            }
        }
    }

    /// Number of slots held (in use or cached).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map().len()
    }
}

impl<S> Slot<S> {
    fn lock_state(&self) -> MutexGuard<'_, Option<S>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<S> HeldSlot<S> {
    /// The cached state (`None` until loaded, and after [`forget`](Self::forget)). The guard must not be held
    /// across `.await`.
    pub(crate) fn state(&self) -> MutexGuard<'_, Option<S>> {
        self.slot.lock_state()
    }

    /// Replaces the cached state.
    pub(crate) fn set(&self, state: S) {
        *self.state() = Some(state);
    }

    /// Drops the cached state: the next use reads the session again (after a write whose outcome is not
    /// known, such as a timeout).
    pub(crate) fn forget(&self) {
        *self.state() = None;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn holders_of_one_session_take_turns_in_order() {
        let slots = Arc::new(SessionSlots::<Vec<u32>>::new(8));
        let first = slots.hold("s").await;
        first.set(Vec::new());
        let mut waiting = Vec::new();
        for n in 0..5u32 {
            let task_slots = Arc::clone(&slots);
            waiting.push(tokio::spawn(async move {
                let held = task_slots.hold("s").await;
                held.state().as_mut().unwrap().push(n);
            }));
            // Each task is queued behind the holder before the next one asks.
            while !waiting_registered(&slots, n) {
                tokio::task::yield_now().await;
            }
        }
        drop(first);
        for task in waiting {
            task.await.unwrap();
        }
        let held = slots.hold("s").await;
        assert_eq!(held.state().clone().unwrap(), vec![0, 1, 2, 3, 4]);
    }

    /// True once `n + 1` tasks plus the map hold the slot.
    fn waiting_registered(slots: &SessionSlots<Vec<u32>>, n: u32) -> bool {
        slots
            .map()
            .get("s")
            .is_some_and(|slot| Arc::strong_count(slot) >= n as usize + 3)
    }

    #[tokio::test]
    async fn idle_slots_are_dropped_past_capacity_and_held_ones_kept() {
        let slots = SessionSlots::<u32>::new(2);
        let kept = slots.hold("a").await;
        kept.set(1);
        slots.hold("b").await.set(2);
        slots.hold("c").await.set(3);
        assert_eq!(slots.len(), 2, "b was dropped, a is held");
        assert_eq!(*kept.state(), Some(1));
    }

    #[tokio::test]
    async fn forget_where_clears_matching_state() {
        let slots = SessionSlots::<u32>::new(8);
        slots.hold("a").await.set(1);
        slots.hold("b").await.set(2);
        slots.forget_where(|s| *s == 1);
        assert_eq!(*slots.hold("a").await.state(), None);
        assert_eq!(*slots.hold("b").await.state(), Some(2));
    }
}
