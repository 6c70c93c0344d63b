//! Unit tests of the embedded store's group commit and admin list.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use redb::WriteTransaction;
use time::OffsetDateTime;
use tokio::sync::oneshot;

use super::queries::WINDOW_SORT_MAX;
use super::rows::SealedMessage;
use super::sessions::append;
use super::tables::META;
use super::writer::{Job, WriteJob, commit_batch};
use super::*;
use crate::store::query::{SessionQuery, SortField};
use crate::store::{AppendOutcome, MessageRecord, Store, StoreConfig, StoreError, load_keyring};

async fn open_store(dir: &Path) -> Arc<EmbeddedStore> {
    let config = StoreConfig::default();
    let keyring = Arc::new(load_keyring(&config, dir, false).unwrap());
    let store = EmbeddedStore::open(
        &dir.join(DB_FILE),
        &config,
        keyring,
        Arc::new(Metrics::new()),
    )
    .await
    .unwrap();
    Arc::new(store)
}

async fn new_session(store: &EmbeddedStore, user: &str) -> String {
    store
        .get_or_create_active(user, None, "model")
        .await
        .unwrap()
        .session
        .id
}

type Answer<T> = oneshot::Receiver<Result<T, StoreError>>;

fn job<T: Send + 'static>(
    f: impl Fn(&WriteTransaction, &Inner) -> Result<T, StoreError> + Send + Sync + 'static,
) -> (Box<dyn WriteJob>, Answer<T>) {
    let (reply, answer) = oneshot::channel();
    let job = Job {
        f: Arc::new(f),
        checks_first: true,
        result: None,
        reply,
    };
    (Box::new(job), answer)
}

fn append_job(session: &str, message_id: &str) -> (Box<dyn WriteJob>, Answer<AppendOutcome>) {
    let session = session.to_string();
    let message = MessageRecord::new(message_id, 1, "user", "hello");
    job(move |txn, inner| {
        append(
            txn,
            &session,
            &SealedMessage::new(inner, &session, &message)?,
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_to_different_sessions_all_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let ended = new_session(&store, "gone").await;
    store
        .end_session(&ended, crate::store::now())
        .await
        .unwrap();
    let mut sessions = Vec::new();
    for user in 0..100 {
        sessions.push(new_session(&store, &format!("user-{user}")).await);
    }
    let mut tasks = Vec::new();
    for session in &sessions {
        for seq in 1..=5u64 {
            let (store, session) = (store.clone(), session.clone());
            tasks.push(tokio::spawn(async move {
                let message = MessageRecord::new(format!("m{seq}"), seq, "user", "hi");
                store.append_message(&session, &message).await
            }));
        }
        // Failing jobs interleaved with the others, in the same batches.
        let store = store.clone();
        let ended = ended.clone();
        tasks.push(tokio::spawn(async move {
            let message = MessageRecord::new("late", 1, "user", "late");
            store.append_message(&ended, &message).await
        }));
    }
    let (mut stored, mut refused) = (0, 0);
    for task in tasks {
        match task.await.unwrap() {
            Ok(AppendOutcome::Stored) => stored += 1,
            Err(StoreError::SessionEnded) => refused += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((stored, refused), (500, 100));
    for session in &sessions {
        let messages = store.messages(session, None).await.unwrap();
        assert_eq!(messages.len(), 5, "{session}");
        let row = store.get_session(session).await.unwrap().unwrap();
        assert_eq!((row.message_count, row.last_seq), (5, 5));
    }
    assert!(store.messages(&ended, None).await.unwrap().is_empty());
    assert_eq!(store.session_count().await.unwrap(), 101);
}

#[tokio::test]
async fn a_failing_job_does_not_abort_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let (a, b) = (
        new_session(&store, "a").await,
        new_session(&store, "b").await,
    );
    let ended = new_session(&store, "c").await;
    store
        .end_session(&ended, crate::store::now())
        .await
        .unwrap();

    let (j1, first) = append_job(&a, "m1");
    let (j2, late) = append_job(&ended, "m1");
    let (j3, other) = append_job(&b, "m1");
    // Fails after writing: the batch is rolled back and rerun without it.
    let (j4, broken) = job(|txn, _| -> Result<(), StoreError> {
        txn.open_table(META)?.insert("partial", b"x".as_slice())?;
        Err(StoreError::Embedded("boom".to_string()))
    });
    let (j5, again) = append_job(&a, "m1");
    let (j6, missing) = append_job("no-such-session", "m1");
    commit_batch(&store.inner, vec![j1, j2, j3, j4, j5, j6]);

    assert!(matches!(first.await.unwrap(), Ok(AppendOutcome::Stored)));
    assert!(matches!(late.await.unwrap(), Err(StoreError::SessionEnded)));
    assert!(matches!(other.await.unwrap(), Ok(AppendOutcome::Stored)));
    assert!(matches!(broken.await.unwrap(), Err(StoreError::Embedded(m)) if m == "boom"));
    // Sees the first job's uncommitted write in the same transaction.
    assert!(matches!(again.await.unwrap(), Ok(AppendOutcome::Duplicate)));
    assert!(matches!(missing.await.unwrap(), Err(StoreError::NotFound)));

    for session in [&a, &b] {
        assert_eq!(store.messages(session, None).await.unwrap().len(), 1);
        let row = store.get_session(session).await.unwrap().unwrap();
        assert_eq!(row.message_count, 1);
    }
    assert!(store.messages(&ended, None).await.unwrap().is_empty());
    let txn = store.inner.db.begin_read().unwrap();
    assert!(
        txn.open_table(META)
            .unwrap()
            .get("partial")
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn start_windows_with_another_sort_page_alike_below_and_above_the_in_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let base = OffsetDateTime::now_utc() - time::Duration::days(30);
    let total = WINDOW_SORT_MAX * 3 + 400;
    let rows = (0..total)
        .map(|i| BulkSession {
            id: format!("s{i:06}"),
            user_id: format!("u{}", i % 50),
            started_at: base + time::Duration::seconds(i as i64),
            ended_at: None,
            total_tokens: 0,
            message_count: ((i * 7919) % 1000) as i64,
            admin_assisted: false,
        })
        .collect();
    insert_bulk(&store, rows).await.unwrap();
    // A window of 100 sessions (sorted in memory) and one of more than the bound (the index walk).
    for (first, len) in [(1000, 100), (300, WINDOW_SORT_MAX + 200)] {
        let from = base + time::Duration::seconds(first as i64);
        let to = from + time::Duration::seconds(len as i64 - 1);
        let mut want: Vec<(i64, String)> = (first..first + len)
            .map(|i| (((i * 7919) % 1000) as i64, format!("s{i:06}")))
            .collect();
        want.sort();
        want.reverse();
        let want: Vec<String> = want.into_iter().take(150).map(|(_, id)| id).collect();
        let mut got = Vec::new();
        let mut cursor = None;
        loop {
            let query = SessionQuery {
                started_from: Some(from),
                started_to: Some(to),
                sort_by: SortField::MessageCount,
                limit: 50,
                cursor: cursor.clone(),
                ..SessionQuery::default()
            };
            let page = store.list_sessions(&query).await.unwrap();
            got.extend(page.sessions.into_iter().map(|s| s.id));
            cursor = page.next_cursor;
            if cursor.is_none() || got.len() >= 150 {
                break;
            }
        }
        assert_eq!(got, want, "window of {len}");
    }
}
