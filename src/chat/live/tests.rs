//! Unit tests of the live session state: release order, partial answers, rings, marks and eviction.

use super::*;
use std::sync::Mutex as StdMutex;

/// `frames` frames and no limit by bytes.
fn frames(frames: usize) -> ReplayLimit {
    ReplayLimit {
        frames,
        bytes: usize::MAX,
    }
}

#[derive(Default)]
struct Recorder(StdMutex<Vec<String>>);

impl EventBus for Recorder {
    fn publish(&self, message: BusMessage) {
        self.0.lock().unwrap().push(message.frame.to_string());
    }

    fn send_to(&self, _conn: ConnId, _item: crate::hub::Outbound) {}
}

#[test]
fn frames_are_released_in_seq_order() {
    let live = LiveSessions::new(frames(16), None);
    let (s, _) = live.get_or_load("s", "u", 10, None);
    let bus = Recorder::default();
    let first = s.reserve_seq();
    assert_eq!(first, 11);
    let second = s.emit(&bus, None, |seq| Arc::from(format!("f{seq}")));
    assert_eq!(second, 12);
    assert!(bus.0.lock().unwrap().is_empty(), "12 must wait for 11");
    s.complete(&bus, first, Some((Arc::from("f11"), None)));
    assert_eq!(*bus.0.lock().unwrap(), vec!["f11", "f12"]);
}

#[test]
fn the_partial_answer_covers_exactly_the_released_chunks() {
    let live = LiveSessions::new(frames(16), None);
    let (s, _) = live.get_or_load("s", "u", 0, None);
    let bus = Recorder::default();
    for delta in ["Hel", "lo"] {
        s.emit_chunk(&bus, delta, "m", Some("c-1"), |seq| {
            Arc::from(format!("f{seq}"))
        });
        s.with_frozen(|snap| {
            let partial = snap.partial().unwrap();
            assert_eq!(partial.last_seq, snap.last_released());
        });
    }
    s.with_frozen(|snap| assert_eq!(snap.partial().unwrap().text, "Hello"));
    let end = s.reserve_seq();
    s.finish_answer(&bus, end, Some((Arc::from("final"), None)));
    s.with_frozen(|snap| {
        assert!(snap.partial().is_none());
        assert_eq!(snap.last_released(), end);
    });
    assert_eq!(*bus.0.lock().unwrap(), vec!["f1", "f2", "final"]);
}

#[test]
fn an_abandoned_seq_does_not_block_later_frames() {
    let live = LiveSessions::new(frames(16), None);
    let (s, _) = live.get_or_load("s", "u", 0, None);
    let bus = Recorder::default();
    let hole = s.reserve_seq();
    s.emit(&bus, None, |seq| Arc::from(format!("f{seq}")));
    s.complete(&bus, hole, None);
    assert_eq!(*bus.0.lock().unwrap(), vec!["f2"]);
    s.with_frozen(|snap| {
        let (frames, oldest) = snap.frames_after(0);
        assert_eq!(frames.len(), 1);
        assert_eq!(oldest, Some(2));
        assert_eq!(snap.last_released(), 2);
    });
}

#[test]
fn the_ring_keeps_only_recent_frames() {
    let live = LiveSessions::new(frames(2), None);
    let (s, _) = live.get_or_load("s", "u", 0, None);
    let bus = Recorder::default();
    for _ in 0..5 {
        s.emit(&bus, None, |seq| Arc::from(format!("f{seq}")));
    }
    s.with_frozen(|snap| {
        let (frames, oldest) = snap.frames_after(0);
        assert_eq!(frames.iter().map(|f| f.0).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(oldest, Some(4));
    });
}

#[test]
fn the_ring_keeps_at_most_its_bytes_and_always_the_newest_frame() {
    let live = LiveSessions::new(
        ReplayLimit {
            frames: 100,
            bytes: 10,
        },
        None,
    );
    let (s, _) = live.get_or_load("s", "u", 0, None);
    let bus = Recorder::default();
    for _ in 0..5 {
        // Four bytes each: two fit in ten bytes.
        s.emit(&bus, None, |seq| Arc::from(format!("f{seq:03}")));
    }
    s.with_frozen(|snap| {
        let (frames, oldest) = snap.frames_after(0);
        assert_eq!(frames.iter().map(|f| f.0).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(oldest, Some(4));
    });
    s.emit(&bus, None, |_| Arc::from("x".repeat(64)));
    s.with_frozen(|snap| {
        let (frames, _) = snap.frames_after(0);
        assert_eq!(frames.iter().map(|f| f.0).collect::<Vec<_>>(), vec![6]);
    });
    assert_eq!(bus.0.lock().unwrap().len(), 6, "every frame was published");
}

#[tokio::test]
async fn frames_wait_for_the_stored_mark_and_a_reload_starts_above_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::store::StoreConfig::default();
    let store: Arc<dyn Store> = Arc::new(
        crate::store::embedded::EmbeddedStore::open(
            &dir.path().join("db"),
            &config,
            Arc::new(crate::store::load_keyring(&config, dir.path(), false).unwrap()),
            Arc::new(crate::metrics::Metrics::new()),
        )
        .await
        .unwrap(),
    );
    let id = store
        .get_or_create_active("u", None, "demo")
        .await
        .unwrap()
        .session
        .id;
    let bus = Arc::new(Recorder::default());
    let marks = || SeqMarks::new(Arc::clone(&store), bus.clone(), 4);
    let live = LiveSessions::new(frames(16), Some(marks()));
    let (s, _) = live.get_or_load(&id, "u", 0, None);
    s.emit(bus.as_ref(), None, |seq| Arc::from(format!("f{seq}")));
    assert!(
        bus.0.lock().unwrap().is_empty(),
        "held until the mark is stored"
    );
    let stored_mark = || async { store.get_session(&id).await.unwrap().unwrap().seq_mark };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while bus.0.lock().unwrap().is_empty() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::task::yield_now().await;
    }
    assert_eq!(*bus.0.lock().unwrap(), vec!["f1"]);
    assert_eq!(stored_mark().await, 4);
    // A second node state on the same store (a restart) continues above every seq handed out.
    let (again, _) = LiveSessions::new(frames(16), Some(marks())).get_or_load(
        &id,
        "u",
        stored_mark().await,
        None,
    );
    assert_eq!(again.reserve_seq(), 5);
}

#[test]
fn only_unused_idle_sessions_are_evicted() {
    let live = LiveSessions::new(frames(16), None);
    let bus = Recorder::default();
    let (held, _) = live.get_or_load("held", "u", 0, None);
    drop(live.get_or_load("connected", "c", 0, None));
    drop(live.get_or_load("assisted", "u", 0, None));
    live.get("assisted")
        .unwrap()
        .set_assistant(Some(AssistingAdmin {
            id: "a".into(),
            name: "A".into(),
        }));
    let (waiting, _) = live.get_or_load("waiting", "u", 0, None);
    waiting.reserve_seq();
    drop(waiting);
    drop(live.get_or_load("idle", "u", 0, None));
    let in_use = |s: &LiveSession| s.user_id == "c";
    assert_eq!(live.evict_idle(Duration::from_secs(3600), in_use), 0);
    assert_eq!(live.evict_idle(Duration::ZERO, in_use), 1);
    assert!(live.get("idle").is_none());
    assert_eq!(live.len(), 4);
    held.emit(&bus, None, |seq| Arc::from(format!("f{seq}")));
    drop(held);
    assert_eq!(live.evict_idle(Duration::ZERO, in_use), 1);
    assert!(live.get("held").is_none());
}
