//! A session's turn queue: turns run one at a time, in the order their messages took effect. A message
//! takes a [`TurnTicket`] while its frame is handled (frames of one connection are handled in the order
//! sent), and its turn waits for the ticket's turn; so back-to-back messages are answered in send order
//! while the connection goes on reading frames, and a `cancel` that follows a message reaches that
//! message's turn even before it started.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// The queue of one session.
#[derive(Default)]
pub struct TurnQueue {
    state: Mutex<State>,
    ready: Notify,
}

#[derive(Default)]
struct State {
    /// Number of the next ticket.
    next: u64,
    /// Number of the ticket whose turn it is.
    serving: u64,
    /// Tickets below this number were cancelled.
    cancelled_below: u64,
    /// Tickets dropped before their turn came (skipped when it does).
    abandoned: BTreeSet<u64>,
}

/// A place in the queue; dropping it (the turn ended, or will never run) lets the next one go.
pub struct TurnTicket {
    queue: Arc<TurnQueue>,
    number: u64,
}

impl TurnQueue {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the next place.
    pub fn ticket(self: &Arc<Self>) -> TurnTicket {
        let mut state = self.state();
        let number = state.next;
        state.next += 1;
        TurnTicket {
            queue: Arc::clone(self),
            number,
        }
    }

    /// Cancels every ticket taken so far that has not run yet (the running one is cancelled through its
    /// token); true when there was one.
    pub fn cancel_taken(&self) -> bool {
        let mut state = self.state();
        let waiting = state.next > state.serving;
        state.cancelled_below = state.next;
        waiting
    }

    /// True when no ticket is held: no turn runs or waits.
    pub fn is_empty(&self) -> bool {
        let state = self.state();
        state.next == state.serving
    }
}

impl TurnTicket {
    /// Waits until it is this ticket's turn.
    pub async fn wait(&self) {
        loop {
            let ready = self.queue.ready.notified();
            if self.queue.state().serving == self.number {
                return;
            }
            ready.await;
        }
    }

    /// True when a `cancel` came after this ticket was taken.
    pub fn cancelled(&self) -> bool {
        self.queue.state().cancelled_below > self.number
    }
}

impl Drop for TurnTicket {
    fn drop(&mut self) {
        let mut state = self.queue.state();
        if state.serving == self.number {
            let mut next = self.number + 1;
            while state.abandoned.remove(&next) {
                next += 1;
            }
            state.serving = next;
        } else {
            state.abandoned.insert(self.number);
        }
        drop(state);
        self.queue.ready.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn tickets_run_in_the_order_they_were_taken() {
        let queue = Arc::new(TurnQueue::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let tickets: Vec<_> = (0..4).map(|_| queue.ticket()).collect();
        let mut tasks = Vec::new();
        // Started in reverse: each still waits for the one before it.
        for (n, ticket) in tickets.into_iter().enumerate().rev() {
            let order = Arc::clone(&order);
            tasks.push(tokio::spawn(async move {
                ticket.wait().await;
                order.lock().unwrap().push(n);
                tokio::task::yield_now().await;
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
        assert!(queue.is_empty());
    }

    #[tokio::test]
    async fn a_dropped_ticket_is_skipped() {
        let queue = Arc::new(TurnQueue::default());
        let first = queue.ticket();
        let second = queue.ticket();
        let third = queue.ticket();
        drop(second);
        drop(first);
        third.wait().await;
        assert!(!queue.is_empty());
        drop(third);
        assert!(queue.is_empty());
    }

    #[test]
    fn cancel_reaches_taken_tickets_only() {
        let queue = Arc::new(TurnQueue::default());
        let taken = queue.ticket();
        assert!(queue.cancel_taken());
        let later = queue.ticket();
        assert!(taken.cancelled());
        assert!(!later.cancelled());
    }
}
