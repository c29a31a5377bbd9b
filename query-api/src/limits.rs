//! Bounds on what one user, and everyone together, may hold at once: live tails and running log
//! searches. A request past a bound is answered 429 at once rather than queued, so a client that
//! opens streams in a loop or fires searches in parallel cannot take the node.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Slots per user and in total.
#[derive(Debug)]
pub struct UserSlots {
    per_user: usize,
    total: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    by_user: HashMap<i64, usize>,
    total: usize,
}

/// One slot; dropping it gives it back.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<UserSlots>,
    user_id: i64,
}

/// Which bound refused a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotRefused {
    /// The user holds `per_user` already.
    User(usize),
    /// Everyone together holds `total` already.
    Total(usize),
}

impl UserSlots {
    /// At most `per_user` slots per user and `total` in all.
    pub fn new(per_user: usize, total: usize) -> Arc<UserSlots> {
        Arc::new(UserSlots {
            per_user: per_user.max(1),
            total: total.max(1),
            held: Mutex::new(Held::default()),
        })
    }

    /// Takes a slot for `user_id`.
    pub fn acquire(self: &Arc<Self>, user_id: i64) -> Result<Slot, SlotRefused> {
        let mut held = self.held.lock().expect("slot lock poisoned");
        if held.total >= self.total {
            return Err(SlotRefused::Total(self.total));
        }
        let mine = held.by_user.entry(user_id).or_insert(0);
        if *mine >= self.per_user {
            return Err(SlotRefused::User(self.per_user));
        }
        *mine += 1;
        held.total += 1;
        Ok(Slot {
            slots: self.clone(),
            user_id,
        })
    }

    /// Slots held now (by one user, in total).
    pub fn held(&self, user_id: i64) -> (usize, usize) {
        let held = self.held.lock().expect("slot lock poisoned");
        (held.by_user.get(&user_id).copied().unwrap_or(0), held.total)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut held = self.slots.held.lock().expect("slot lock poisoned");
        held.total = held.total.saturating_sub(1);
        if let Some(mine) = held.by_user.get_mut(&self.user_id) {
            *mine -= 1;
            if *mine == 0 {
                held.by_user.remove(&self.user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_per_user_and_in_total_and_come_back() {
        let slots = UserSlots::new(2, 3);
        let a1 = slots.acquire(1).unwrap();
        let _a2 = slots.acquire(1).unwrap();
        assert_eq!(slots.acquire(1).unwrap_err(), SlotRefused::User(2));
        let _b1 = slots.acquire(2).unwrap();
        assert_eq!(slots.acquire(3).unwrap_err(), SlotRefused::Total(3));
        drop(a1);
        assert_eq!(slots.held(1), (1, 2));
        let _c1 = slots.acquire(3).unwrap();
        assert_eq!(slots.held(3), (1, 3));
    }
}
