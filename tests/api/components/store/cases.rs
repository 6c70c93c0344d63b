//! The conformance cases: each takes a fresh [`Backend`] and must pass on every store.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chatbox::store::crypto::{Binding, Keyring, parse_key};
use chatbox::store::rotation::{
    self, Resealed, Rewritten, RotationBackend, RotationBatch, RotationCheckpoint,
};
use chatbox::store::{
    AppendOutcome, AssistingAdmin, AuditKind, AuditPage, AuditQuery, AuditRecord, Claim,
    FileFilter, FileRecord, MessageRecord, Release, Sender, SessionQuery, SessionRecord, SortField,
    SortOrder, StatusFilter, Store, StoreError, TurnUsage, UNREADABLE, now,
};
use time::Duration;

use super::{Backend, KEY_A, KEY_B};

fn msg(id: &str, seq: u64, text: &str) -> MessageRecord {
    MessageRecord::new(id, seq, "user", text)
}

async fn new_session(store: &Arc<dyn Store>, user: &str) -> SessionRecord {
    store
        .get_or_create_active(user, None, "demo")
        .await
        .unwrap()
        .session
}

pub async fn concurrent_first_messages_create_one_session(backend: Backend) {
    let store = backend.open().await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let preferred = format!("{i:032x}");
            store
                .get_or_create_active("alice", Some(&preferred), "demo")
                .await
                .unwrap()
        }));
    }
    let mut ids = HashSet::new();
    let mut created = 0;
    for t in tasks {
        let active = t.await.unwrap();
        ids.insert(active.session.id.clone());
        created += usize::from(active.created);
    }
    assert_eq!(
        ids.len(),
        1,
        "one active session for concurrent callers: {ids:?}"
    );
    assert_eq!(created, 1);
    let listed = store.list_user_sessions("alice", 100).await.unwrap();
    assert_eq!(listed.len(), 1, "no orphan sessions are left behind");
    let id = ids.into_iter().next().unwrap();
    assert_eq!(store.active_session_id("alice").await.unwrap(), Some(id));
}

pub async fn reserved_id_is_used_and_ended_session_is_replaced(backend: Backend) {
    let store = backend.open().await;
    let reserved = chatbox::store::new_session_id();
    assert_eq!(reserved.len(), 32);
    let first = store
        .get_or_create_active("bob", Some(&reserved), "m1")
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!(first.session.id, reserved);
    assert_eq!(first.session.model_id, "m1");
    assert!(first.session.is_active());
    let again = store.get_or_create_active("bob", None, "m1").await.unwrap();
    assert!(!again.created);
    assert_eq!(again.session.id, reserved);

    store.end_session(&reserved, now()).await.unwrap();
    assert_eq!(store.active_session_id("bob").await.unwrap(), None);
    // The ended session's id is taken: a fresh id is used.
    let next = store
        .get_or_create_active("bob", Some(&reserved), "m1")
        .await
        .unwrap();
    assert!(next.created);
    assert_ne!(next.session.id, reserved);
    // Another user's session id cannot be adopted.
    let other = store
        .get_or_create_active("carol", Some(&next.session.id), "m1")
        .await
        .unwrap();
    assert_ne!(other.session.id, next.session.id);
    assert_eq!(
        store
            .get_session(&next.session.id)
            .await
            .unwrap()
            .unwrap()
            .user_id,
        "bob"
    );
}

pub async fn append_is_idempotent_by_message_id(backend: Backend) {
    let store = backend.open().await;
    let s = new_session(&store, "u1").await;
    let mut first = msg("m-1", 1, "hello there");
    first.client_msg_id = Some("c-1".into());
    first.metadata.insert("k".into(), "v".into());
    assert_eq!(
        store.append_message(&s.id, &first).await.unwrap(),
        AppendOutcome::Stored
    );
    assert_eq!(
        store.append_message(&s.id, &first).await.unwrap(),
        AppendOutcome::Duplicate
    );
    let mut answer = MessageRecord::new("m-2", 3, "ai", "general kenobi");
    answer.model_id = Some("demo".into());
    answer.partial = true;
    answer.file_id = Some("f".into());
    answer.file_url = Some("https://x/f".into());
    store.append_message(&s.id, &answer).await.unwrap();

    let session = store.get_session(&s.id).await.unwrap().unwrap();
    assert_eq!(session.message_count, 2);
    assert_eq!(session.last_seq, 3);
    assert_eq!(session.last_activity, Some(answer.timestamp));
    let all = store.messages(&s.id, None).await.unwrap();
    assert_eq!(all, vec![first.clone(), answer.clone()]);
    let after = store.messages(&s.id, Some(1)).await.unwrap();
    assert_eq!(after, vec![answer]);
    assert!(matches!(
        store.append_message("missing-session", &first).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn ended_session_refuses_messages_and_ending_twice_changes_nothing(backend: Backend) {
    let store = backend.open().await;
    let s = new_session(&store, "u2").await;
    store
        .append_message(&s.id, &msg("a", 1, "x"))
        .await
        .unwrap();
    let end = now() + Duration::seconds(90);
    let first = store.end_session(&s.id, end).await.unwrap();
    assert!(first.ended_now);
    assert_eq!(first.session.ended_at, Some(end));
    assert!(first.session.duration_secs >= 89);
    let second = store
        .end_session(&s.id, end + Duration::hours(1))
        .await
        .unwrap();
    assert!(!second.ended_now);
    assert_eq!(second.session.ended_at, Some(end));
    assert!(matches!(
        store.append_message(&s.id, &msg("b", 2, "y")).await,
        Err(StoreError::SessionEnded)
    ));
    // A retry of a message stored before the end is still a harmless duplicate.
    assert_eq!(
        store
            .append_message(&s.id, &msg("a", 1, "x"))
            .await
            .unwrap(),
        AppendOutcome::Duplicate
    );
    assert!(matches!(
        store.end_session("nope", end).await,
        Err(StoreError::NotFound)
    ));
}

pub async fn session_figures_are_persisted(backend: Backend) {
    let store = backend.open().await;
    let s = new_session(&store, "u3").await;
    store.set_name(&s.id, "Where is my order?").await.unwrap();
    store.set_model(&s.id, "claude").await.unwrap();
    store.set_help_requested(&s.id, true).await.unwrap();
    let admin = AssistingAdmin {
        id: "adm".into(),
        name: "Ada".into(),
    };
    store.claim_assistance(&s.id, &admin, None).await.unwrap();
    let at = now();
    for (tokens, ms) in [(100, 300), (50, 900), (10, 600)] {
        store
            .record_usage(
                &s.id,
                TurnUsage {
                    tokens,
                    response_ms: ms,
                    at,
                },
            )
            .await
            .unwrap();
    }
    let got = store.get_session(&s.id).await.unwrap().unwrap();
    assert_eq!(got.name, "Where is my order?");
    assert_eq!(got.model_id, "claude");
    assert!(got.help_requested);
    assert!(got.admin_assisted);
    assert_eq!(got.assisting_admin_id.as_deref(), Some("adm"));
    assert_eq!(got.assisting_admin_name.as_deref(), Some("Ada"));
    assert_eq!(got.total_tokens, 160);
    assert_eq!(got.max_response_ms, 900);
    assert_eq!(got.avg_response_ms, 600);
    assert_eq!(got.response_count, 3);
    let today = at.date();
    assert_eq!(store.user_tokens_on("u3", today).await.unwrap(), 160);
    assert_eq!(
        store
            .user_tokens_on("u3", today.previous_day().unwrap())
            .await
            .unwrap(),
        0
    );
    assert_eq!(store.user_tokens_on("other", today).await.unwrap(), 0);

    store.release_assistance(&s.id, "adm").await.unwrap();
    store.set_help_requested(&s.id, false).await.unwrap();
    let got = store.get_session(&s.id).await.unwrap().unwrap();
    assert!(got.admin_assisted, "the session stays marked as assisted");
    assert_eq!(got.assisting_admin_id, None);
    assert!(!got.help_requested);
    assert!(matches!(
        store.set_name("nope", "x").await,
        Err(StoreError::NotFound)
    ));
}

pub async fn share_tokens_are_unique_and_revocable(backend: Backend) {
    let store = backend.open().await;
    let mut tokens = HashSet::new();
    let mut ids = Vec::new();
    for i in 0..5 {
        let s = new_session(&store, &format!("sharer{i}")).await;
        let token = store.share(&s.id).await.unwrap();
        assert_eq!(
            store.share(&s.id).await.unwrap(),
            token,
            "sharing again returns the same token"
        );
        assert!(tokens.insert(token.clone()));
        ids.push((s.id, token));
    }
    let (id, token) = &ids[0];
    let shared = store.session_by_share_token(token).await.unwrap().unwrap();
    assert_eq!(&shared.id, id);
    assert_eq!(shared.share_token.as_ref(), Some(token));
    assert!(store.revoke_share(id).await.unwrap());
    assert!(!store.revoke_share(id).await.unwrap());
    assert!(store.session_by_share_token(token).await.unwrap().is_none());
    let fresh = store.share(id).await.unwrap();
    assert_ne!(&fresh, token);
    assert!(store.session_by_share_token("").await.unwrap().is_none());
    assert!(
        store
            .session_by_share_token("unknown")
            .await
            .unwrap()
            .is_none()
    );
}

/// The expected order of `rows` under a sort, computed here independently of the stores.
fn expected(rows: &[SessionRecord], field: SortField, order: SortOrder) -> Vec<String> {
    let mut rows: Vec<&SessionRecord> = rows.iter().collect();
    rows.sort_by(|a, b| {
        let ord = match field {
            SortField::StartTime => a.started_at.cmp(&b.started_at),
            SortField::EndTime => a.ended_at.cmp(&b.ended_at),
            SortField::MessageCount => a.message_count.cmp(&b.message_count),
            SortField::TotalTokens => a.total_tokens.cmp(&b.total_tokens),
            SortField::UserId => a.user_id.cmp(&b.user_id),
        };
        ord.then_with(|| a.id.cmp(&b.id))
    });
    if order == SortOrder::Desc {
        rows.reverse();
    }
    rows.into_iter().map(|r| r.id.clone()).collect()
}

fn ids(rows: &[SessionRecord]) -> Vec<String> {
    rows.iter().map(|r| r.id.clone()).collect()
}

pub async fn admin_list_sorts_filters_and_paginates(backend: Backend) {
    let store = backend.open().await;
    // 12 sessions of 4 users; message counts, tokens, status and assistance vary.
    for i in 0..12u64 {
        let user = format!("user{}", i % 4);
        let s = new_session(&store, &user).await;
        for m in 0..(i * 7 % 5) {
            store
                .append_message(&s.id, &msg(&format!("m{m}"), m + 1, "hi"))
                .await
                .unwrap();
        }
        if i % 3 == 0 {
            store
                .record_usage(
                    &s.id,
                    TurnUsage {
                        tokens: (i as i64 * 37) % 11,
                        response_ms: 10,
                        at: now(),
                    },
                )
                .await
                .unwrap();
        }
        if i % 4 == 1 {
            let admin = AssistingAdmin {
                id: "a".into(),
                name: "A".into(),
            };
            store.claim_assistance(&s.id, &admin, None).await.unwrap();
        }
        if i < 8 {
            store
                .end_session(&s.id, now() + Duration::seconds((i * 13 % 7) as i64))
                .await
                .unwrap();
        }
    }
    let all: Vec<SessionRecord> = {
        let q = SessionQuery {
            limit: 1000,
            ..SessionQuery::default()
        };
        store.list_sessions(&q).await.unwrap().sessions
    };
    assert_eq!(all.len(), 12);
    assert!(all.iter().all(|s| s.name.is_empty()));
    let counts: HashSet<i64> = all.iter().map(|s| s.message_count).collect();
    assert!(counts.len() > 2, "message counts differ: {counts:?}");

    let fields = [
        SortField::StartTime,
        SortField::EndTime,
        SortField::MessageCount,
        SortField::TotalTokens,
        SortField::UserId,
    ];
    for field in fields {
        for order in [SortOrder::Asc, SortOrder::Desc] {
            let want = expected(&all, field, order);
            let q = SessionQuery {
                sort_by: field,
                order,
                limit: 100,
                ..SessionQuery::default()
            };
            let got = store.list_sessions(&q).await.unwrap();
            assert_eq!(ids(&got.sessions), want, "sort {field:?} {order:?}");
            assert!(got.next_cursor.is_none());

            // Offset pagination.
            let q = SessionQuery {
                limit: 5,
                offset: 5,
                ..q
            };
            let page = store.list_sessions(&q).await.unwrap();
            assert_eq!(
                ids(&page.sessions),
                want[5..10].to_vec(),
                "offset {field:?} {order:?}"
            );

            // Cursor pagination walks the same order.
            let mut walked = Vec::new();
            let mut cursor = None;
            loop {
                let q = SessionQuery {
                    sort_by: field,
                    order,
                    limit: 5,
                    cursor: cursor.clone(),
                    ..SessionQuery::default()
                };
                let page = store.list_sessions(&q).await.unwrap();
                walked.extend(ids(&page.sessions));
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => break,
                }
            }
            assert_eq!(walked, want, "cursor {field:?} {order:?}");
        }
    }

    // Filters, alone and combined, with each sort.
    type Predicate = Box<dyn Fn(&SessionRecord) -> bool>;
    let filters: Vec<(SessionQuery, Predicate)> = vec![
        (
            SessionQuery {
                status: Some(StatusFilter::Active),
                ..SessionQuery::default()
            },
            Box::new(|s: &SessionRecord| s.is_active()),
        ),
        (
            SessionQuery {
                status: Some(StatusFilter::Ended),
                admin_assisted: Some(true),
                ..SessionQuery::default()
            },
            Box::new(|s: &SessionRecord| !s.is_active() && s.admin_assisted),
        ),
        (
            SessionQuery {
                admin_assisted: Some(false),
                ..SessionQuery::default()
            },
            Box::new(|s: &SessionRecord| !s.admin_assisted),
        ),
        (
            SessionQuery {
                user_id: Some("user1".into()),
                ..SessionQuery::default()
            },
            Box::new(|s: &SessionRecord| s.user_id == "user1"),
        ),
        (
            SessionQuery {
                user_id: Some("user2".into()),
                status: Some(StatusFilter::Ended),
                ..SessionQuery::default()
            },
            Box::new(|s: &SessionRecord| s.user_id == "user2" && !s.is_active()),
        ),
    ];
    let mut by_start = all.clone();
    by_start.sort_by_key(|s| (s.started_at, s.id.clone()));
    let from = by_start[3].started_at;
    let to = by_start[8].started_at;
    for (base, pred) in &filters {
        for field in fields {
            for order in [SortOrder::Asc, SortOrder::Desc] {
                let subset: Vec<SessionRecord> = all.iter().filter(|s| pred(s)).cloned().collect();
                let q = SessionQuery {
                    sort_by: field,
                    order,
                    limit: 100,
                    ..base.clone()
                };
                let got = store.list_sessions(&q).await.unwrap();
                assert_eq!(ids(&got.sessions), expected(&subset, field, order), "{q:?}");

                let ranged: Vec<SessionRecord> = subset
                    .iter()
                    .filter(|s| s.started_at >= from && s.started_at <= to)
                    .cloned()
                    .collect();
                let q = SessionQuery {
                    started_from: Some(from),
                    started_to: Some(to),
                    ..q
                };
                let got = store.list_sessions(&q).await.unwrap();
                assert_eq!(ids(&got.sessions), expected(&ranged, field, order), "{q:?}");

                // A cursor walks a start-time window in the same order, two at a time.
                let mut walked = Vec::new();
                let mut cursor = None;
                loop {
                    let page = SessionQuery {
                        limit: 2,
                        cursor: cursor.clone(),
                        ..q.clone()
                    };
                    let page = store.list_sessions(&page).await.unwrap();
                    walked.extend(ids(&page.sessions));
                    match page.next_cursor {
                        Some(c) => cursor = Some(c),
                        None => break,
                    }
                }
                assert_eq!(walked, expected(&ranged, field, order), "cursor {q:?}");
            }
        }
    }

    // A cursor issued for another sort is refused.
    let q = SessionQuery {
        limit: 2,
        ..SessionQuery::default()
    };
    let cursor = store.list_sessions(&q).await.unwrap().next_cursor.unwrap();
    let q = SessionQuery {
        sort_by: SortField::UserId,
        cursor: Some(cursor),
        ..q
    };
    assert!(matches!(
        store.list_sessions(&q).await,
        Err(StoreError::InvalidCursor)
    ));
    let q = SessionQuery {
        cursor: Some("garbage".into()),
        ..SessionQuery::default()
    };
    assert!(matches!(
        store.list_sessions(&q).await,
        Err(StoreError::InvalidCursor)
    ));
}

pub async fn user_list_is_newest_first(backend: Backend) {
    let store = backend.open().await;
    let mut created = Vec::new();
    for _ in 0..4 {
        let s = new_session(&store, "lister").await;
        store.end_session(&s.id, now()).await.unwrap();
        created.push(s);
    }
    new_session(&store, "someone-else").await;
    let listed = store.list_user_sessions("lister", 100).await.unwrap();
    let want = expected(&created, SortField::StartTime, SortOrder::Desc);
    assert_eq!(ids(&listed), want);
    assert_eq!(
        store.list_user_sessions("lister", 2).await.unwrap().len(),
        2
    );
    // No limit: every session (a limit past `i64` once became -1 on MongoDB, one document).
    assert_eq!(
        ids(&store
            .list_user_sessions("lister", usize::MAX)
            .await
            .unwrap()),
        want
    );
    assert!(
        store
            .list_user_sessions("nobody", 100)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn metrics_figures_cover_the_range(backend: Backend) {
    let store = backend.open().await;
    let start = now();
    let mut expected_tokens = 0;
    for i in 0..4i64 {
        let s = new_session(&store, &format!("mu{i}")).await;
        store
            .record_usage(
                &s.id,
                TurnUsage {
                    tokens: 10 * (i + 1),
                    response_ms: 100 * (i + 1),
                    at: now(),
                },
            )
            .await
            .unwrap();
        expected_tokens += 10 * (i + 1);
        if i == 0 {
            let admin = AssistingAdmin {
                id: "a".into(),
                name: "A".into(),
            };
            store.claim_assistance(&s.id, &admin, None).await.unwrap();
        }
        if i < 2 {
            store.end_session(&s.id, now()).await.unwrap();
        }
    }
    let from = start - Duration::minutes(30);
    let to = now() + Duration::minutes(30);
    let m = store.metrics(from, to).await.unwrap();
    assert_eq!(m.total_sessions, 4);
    assert_eq!(m.active_sessions, 2);
    assert_eq!(m.total_tokens, expected_tokens);
    assert_eq!(m.max_response_ms, 400);
    assert_eq!(m.avg_response_ms, 250);
    assert_eq!(m.admin_assisted_count, 1);
    assert!(
        m.avg_concurrent > 0.0 && m.avg_concurrent < 4.0,
        "{}",
        m.avg_concurrent
    );
    let empty = store
        .metrics(from - Duration::days(2), from - Duration::days(1))
        .await
        .unwrap();
    assert_eq!(empty.total_sessions, 0);
    assert_eq!(empty.avg_concurrent, 0.0);
}

pub async fn purge_removes_only_old_ended_sessions(backend: Backend) {
    let store = backend.open().await;
    let ended = new_session(&store, "p1").await;
    store
        .append_message(&ended.id, &msg("x", 1, "bye"))
        .await
        .unwrap();
    store.share(&ended.id).await.unwrap();
    store.end_session(&ended.id, now()).await.unwrap();
    let active = new_session(&store, "p2").await;
    assert_eq!(
        store
            .purge_ended_before(now() - Duration::days(1))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        chatbox::store::maintenance::purge_expired(store.as_ref(), 30, now())
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        store
            .purge_ended_before(now() + Duration::minutes(1))
            .await
            .unwrap(),
        1
    );
    assert!(store.get_session(&ended.id).await.unwrap().is_none());
    assert!(store.get_session(&active.id).await.unwrap().is_some());
    let q = SessionQuery {
        limit: 100,
        ..SessionQuery::default()
    };
    assert_eq!(
        ids(&store.list_sessions(&q).await.unwrap().sessions),
        vec![active.id]
    );
}

pub async fn export_and_delete_cover_all_user_data(backend: Backend) {
    let store = backend.open().await;
    let first = new_session(&store, "gdpr").await;
    store.set_name(&first.id, "First chat").await.unwrap();
    store
        .append_message(&first.id, &msg("1", 1, "my secret question"))
        .await
        .unwrap();
    store
        .append_message(&first.id, &MessageRecord::new("2", 2, "ai", "an answer"))
        .await
        .unwrap();
    store
        .record_usage(
            &first.id,
            TurnUsage {
                tokens: 42,
                response_ms: 5,
                at: now(),
            },
        )
        .await
        .unwrap();
    store.end_session(&first.id, now()).await.unwrap();
    let second = new_session(&store, "gdpr").await;
    store
        .append_message(&second.id, &msg("3", 1, "again"))
        .await
        .unwrap();
    let bystander = new_session(&store, "keep-me").await;

    let export = store.export_user("gdpr").await.unwrap();
    assert_eq!(export.sessions.len(), 2);
    let exported_first = export
        .sessions
        .iter()
        .find(|s| s.session.id == first.id)
        .unwrap();
    assert_eq!(exported_first.session.name, "First chat");
    assert_eq!(exported_first.messages.len(), 2);
    assert_eq!(exported_first.messages[0].content, "my secret question");
    assert_eq!(export.daily_tokens.values().sum::<i64>(), 42);
    let json = chatbox::store::maintenance::export_user_json(store.as_ref(), "gdpr")
        .await
        .unwrap();
    assert!(json.contains("my secret question"));

    let stats = chatbox::store::maintenance::delete_user(store.as_ref(), "gdpr")
        .await
        .unwrap();
    assert_eq!(stats.sessions, 2);
    assert_eq!(stats.messages, 3);
    assert!(store.get_session(&first.id).await.unwrap().is_none());
    assert!(
        store
            .list_user_sessions("gdpr", 100)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.active_session_id("gdpr").await.unwrap(), None);
    assert_eq!(store.user_tokens_on("gdpr", now().date()).await.unwrap(), 0);
    assert!(store.export_user("gdpr").await.unwrap().sessions.is_empty());
    assert!(store.get_session(&bystander.id).await.unwrap().is_some());
    // The user can start over.
    assert!(
        store
            .get_or_create_active("gdpr", None, "m")
            .await
            .unwrap()
            .created
    );
}

pub async fn key_rotation_is_resumable(backend: Backend) {
    let mut expected_contents = Vec::new();
    {
        let store = backend.open().await;
        for i in 0..5 {
            let s = new_session(&store, &format!("rot{i}")).await;
            store.set_name(&s.id, &format!("name {i}")).await.unwrap();
            for m in 0..2 {
                let text = format!("message {i}/{m}");
                store
                    .append_message(&s.id, &msg(&format!("m{m}"), m + 1, &text))
                    .await
                    .unwrap();
                expected_contents.push((s.id.clone(), text));
            }
        }
    }
    // Add key B as the active key; A stays for reading.
    let config = backend.config_with(&[("k0", KEY_A), ("k1", KEY_B)], "k1");
    {
        let store = backend.open_with(&config).await.unwrap();
        // First run is interrupted after its first batch.
        let interrupted = {
            let store = store.clone();
            tokio::spawn(async move {
                let stop =
                    |_: &chatbox::store::RotationStats| panic!("interrupted after one batch");
                store.rotate_keys(2, &stop).await
            })
        };
        assert!(interrupted.await.is_err());
        // The second run resumes after the checkpoint.
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut out = Vec::new();
        let stats = chatbox::store::maintenance::rotate_keys(store.as_ref(), 2, &mut out)
            .await
            .unwrap();
        lines.lock().unwrap().push(String::from_utf8(out).unwrap());
        assert!(stats.done);
        assert_eq!(
            stats.sessions_scanned, 3,
            "resumed after the 2 sessions of the first batch"
        );
        assert!(lines.lock().unwrap()[0].contains("(done)"));
        // A further run finds nothing left to do.
        let again = store.rotate_keys(2, &|_| {}).await.unwrap();
        assert_eq!(again.messages_reencrypted + again.names_reencrypted, 0);
    }
    // Key A removed: everything still opens with B alone.
    let only_b = backend.config_with(&[("k1", KEY_B)], "k1");
    let store = backend.open_with(&only_b).await.unwrap();
    let mut seen = 0;
    for i in 0..5 {
        let id = store
            .active_session_id(&format!("rot{i}"))
            .await
            .unwrap()
            .unwrap();
        let session = store.get_session(&id).await.unwrap().unwrap();
        assert_eq!(session.name, format!("name {i}"));
        for m in store.messages(&id, None).await.unwrap() {
            assert!(expected_contents.contains(&(id.clone(), m.content)));
            seen += 1;
        }
    }
    assert_eq!(seen, 10);
}

/// The message `m` reads as unreadable: empty content and `metadata.unreadable="true"`, never ciphertext.
fn assert_unreadable(m: &MessageRecord) {
    assert_eq!(m.content, "", "{m:?}");
    assert_eq!(
        m.metadata.get(UNREADABLE).map(String::as_str),
        Some("true"),
        "{m:?}"
    );
}

/// Under a changed key (same id) or with the key id gone, names and messages read as unreadable items and
/// every list still works; the user can go on chatting in a new session.
pub async fn unreadable_items_are_marked_and_lists_still_work(backend: Backend) {
    let (id, go) = {
        let (store, raw) = backend.open_raw().await;
        let s = new_session(&store, "wk").await;
        store.set_name(&s.id, "private").await.unwrap();
        store
            .append_message(&s.id, &msg("m", 1, "secret words"))
            .await
            .unwrap();
        // The Go service's ciphertext under a key that is never configured here.
        let go = Keyring::new(vec![("go".into(), [9u8; 32])], "go")
            .unwrap()
            .encrypt_legacy("go secret", "go")
            .unwrap();
        raw.insert_message(&s.id, &msg("g", 2, ""), &go).await;
        raw.insert_message(&s.id, &msg("p", 3, ""), "legacy plain text")
            .await;
        (s.id, go)
    };
    for config in [
        // Same key id, different key.
        backend.config_with(&[("k0", KEY_B)], "k0"),
        // Unknown key id.
        backend.config_with(&[("other", KEY_B)], "other"),
    ] {
        let store = backend.open_with(&config).await.unwrap();
        let messages = store.messages(&id, None).await.unwrap();
        assert_eq!(messages.len(), 3);
        assert_unreadable(&messages[0]);
        assert_unreadable(&messages[1]);
        assert!(!messages[1].content.contains(&go));
        assert_eq!(
            messages[2].content, "legacy plain text",
            "plaintext stays readable"
        );
        assert!(!messages[2].metadata.contains_key(UNREADABLE));

        let session = store.get_session(&id).await.unwrap().unwrap();
        assert_eq!(session.name, "");
        assert!(session.name_unreadable);
        let listed = store.list_user_sessions("wk", 100).await.unwrap();
        assert!(listed[0].name_unreadable && listed[0].name.is_empty());
        let page = store.list_sessions(&SessionQuery::default()).await.unwrap();
        assert_eq!(ids(&page.sessions), vec![id.clone()]);
        assert!(page.sessions[0].name_unreadable);
        let export = store.export_user("wk").await.unwrap();
        assert_unreadable(&export.sessions[0].messages[0]);

        // The active session still serves, and a new session works in full.
        let active = store
            .get_or_create_active("wk", None, "demo")
            .await
            .unwrap();
        assert_eq!(active.session.id, id);
        assert!(active.session.name_unreadable);
        drop(store);
    }
    let config = backend.config_with(&[("k0", KEY_B)], "k0");
    let store = backend.open_with(&config).await.unwrap();
    store.end_session(&id, now()).await.unwrap();
    let fresh = new_session(&store, "wk").await;
    assert_ne!(fresh.id, id);
    store.set_name(&fresh.id, "new name").await.unwrap();
    store
        .append_message(&fresh.id, &msg("n", 1, "new words"))
        .await
        .unwrap();
    let session = store.get_session(&fresh.id).await.unwrap().unwrap();
    assert_eq!(session.name, "new name");
    assert!(!session.name_unreadable);
    assert_eq!(contents(&store, &fresh.id).await, vec!["new words"]);
    assert_eq!(store.list_user_sessions("wk", 100).await.unwrap().len(), 2);
}

/// The first check writes the canary under the active key; a changed key, a removed key id and a Go
/// ciphertext under an unconfigured key are reported by key id; a completed rotation moves the canary.
pub async fn key_check_writes_a_canary_and_names_missing_key_ids(backend: Backend) {
    {
        let store = backend.open().await;
        let first = store.check_keys(100).await.unwrap();
        assert!(first.canary_created && first.is_ok(), "{first:?}");
        assert_eq!(first.canary_key_id, "k0");
        assert_eq!(first.checked, 1, "the canary alone in an empty store");
        let again = store.check_keys(100).await.unwrap();
        assert!(!again.canary_created && again.is_ok(), "{again:?}");
    }
    // The canary alone tells a changed key (same id) and a removed key id.
    for (keys, active) in [(&[("k0", KEY_B)][..], "k0"), (&[("k1", KEY_B)][..], "k1")] {
        let store = backend
            .open_with(&backend.config_with(keys, active))
            .await
            .unwrap();
        let report = store.check_keys(100).await.unwrap();
        assert!(!report.canary_created);
        assert_eq!(
            report.missing.iter().collect::<Vec<_>>(),
            vec!["k0"],
            "{report:?}"
        );
        let text = report.describe();
        assert!(
            text.contains("k0") && !text.contains(KEY_A) && !text.contains(KEY_B),
            "{text}"
        );
    }
    // After a rotation to k1 the canary is under k1: k0 can go.
    let both = backend.config_with(&[("k0", KEY_A), ("k1", KEY_B)], "k1");
    let store = backend.open_with(&both).await.unwrap();
    let s = new_session(&store, "rot").await;
    store.set_name(&s.id, "rotated").await.unwrap();
    assert!(store.check_keys(0).await.unwrap().is_ok());
    let stats = store.rotate_keys(10, &|_| {}).await.unwrap();
    assert!(stats.done);
    drop(store);
    let only_b = backend.config_with(&[("k1", KEY_B)], "k1");
    let store = backend.open_with(&only_b).await.unwrap();
    let report = store.check_keys(0).await.unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.canary_key_id, "k1");
    drop(store);
    // Stored data is sampled too (here under key A only): the canary and the rotated name need k1, and a
    // Go ciphertext under a key that is not configured needs the Go service's key.
    let (store, raw) = backend.open_raw().await;
    let s = new_session(&store, "kc").await;
    store.set_name(&s.id, "named").await.unwrap();
    store
        .append_message(&s.id, &msg("a", 1, "hello"))
        .await
        .unwrap();
    let go = Keyring::new(vec![("go".into(), [9u8; 32])], "go")
        .unwrap()
        .encrypt_legacy("go secret", "go")
        .unwrap();
    raw.insert_message(&s.id, &msg("g", 2, ""), &go).await;
    let report = store.check_keys(100).await.unwrap();
    assert_eq!((report.checked, report.unreadable), (5, 3), "{report:?}");
    assert_eq!(
        report.missing.iter().collect::<Vec<_>>(),
        vec![chatbox::store::crypto::LEGACY_KEY_LABEL, "k1"]
    );
    let one = store.check_keys(1).await.unwrap();
    assert_eq!(
        one.checked, 4,
        "one session sampled, the most recent: {one:?}"
    );
}

pub async fn ciphertext_moved_to_another_message_does_not_open(backend: Backend) {
    let (store, raw) = backend.open_raw().await;
    let s = new_session(&store, "aad").await;
    let ring = Keyring::new(vec![("k0".into(), parse_key(KEY_A).unwrap())], "k0").unwrap();
    let sealed_for_a = ring
        .encrypt(
            "text of a",
            Binding::Message {
                session: &s.id,
                message: "a",
            },
        )
        .unwrap();
    raw.insert_message(&s.id, &msg("a", 1, ""), &sealed_for_a)
        .await;
    assert_eq!(
        store.messages(&s.id, None).await.unwrap()[0].content,
        "text of a"
    );
    // The same ciphertext stored as message b of the same session, or in another session: unreadable.
    raw.insert_message(&s.id, &msg("b", 2, ""), &sealed_for_a)
        .await;
    let messages = store.messages(&s.id, None).await.unwrap();
    assert_eq!(messages[0].content, "text of a");
    assert_unreadable(&messages[1]);
    let other = new_session(&store, "aad2").await;
    raw.insert_message(&other.id, &msg("a", 1, ""), &sealed_for_a)
        .await;
    assert_unreadable(&store.messages(&other.id, None).await.unwrap()[0]);
}

pub async fn legacy_contents_are_read(backend: Backend) {
    let (store, raw) = backend.open_raw().await;
    let s = new_session(&store, "legacy").await;
    let ring = Keyring::new(vec![("k0".into(), parse_key(KEY_A).unwrap())], "k0").unwrap();
    let go_ciphertext = ring.encrypt_legacy("encrypted by go", "k0").unwrap();
    raw.insert_message(&s.id, &msg("g1", 1, ""), &go_ciphertext)
        .await;
    raw.insert_message(
        &s.id,
        &msg("g2", 2, ""),
        "plain text from a keyless go service",
    )
    .await;
    raw.insert_message(&s.id, &msg("g3", 3, ""), "").await;
    let got = store.messages(&s.id, None).await.unwrap();
    let contents: Vec<&str> = got.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(
        contents,
        vec![
            "encrypted by go",
            "plain text from a keyless go service",
            ""
        ]
    );
    // A tagged ciphertext under a key id that is configured but does not open it is unreadable.
    let tagged = Keyring::new(vec![("k0".into(), [5u8; 32])], "k0")
        .unwrap()
        .encrypt(
            "other key",
            Binding::Message {
                session: &s.id,
                message: "g4",
            },
        )
        .unwrap();
    raw.insert_message(&s.id, &msg("g4", 4, ""), &tagged).await;
    let got = store.messages(&s.id, None).await.unwrap();
    assert_eq!(got[0].content, "encrypted by go");
    assert_unreadable(&got[3]);
}

/// The contents of a session's messages, in order.
async fn contents(store: &Arc<dyn Store>, session: &str) -> Vec<String> {
    store
        .messages(session, None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.content)
        .collect()
}

/// Untagged stored values that look like base64 but open with no key are the Go service's legacy
/// plaintext (reference 4.3 returns the stored string): reads, export and rotation all work.
pub async fn legacy_plaintext_that_looks_like_base64_is_read_as_is(backend: Backend) {
    let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
    let blob = "QmFzZTY0IGVuY29kZWQgYXR0YWNobWVudCBmcm9tIGFuIG9sZCBjbGllbnQ=";
    let id = {
        let (store, raw) = backend.open_raw().await;
        let s = new_session(&store, "b64").await;
        raw.insert_message(&s.id, &msg("h", 1, ""), hash).await;
        raw.insert_message(&s.id, &msg("b", 2, ""), blob).await;
        assert_eq!(contents(&store, &s.id).await, vec![hash, blob]);
        let export = store.export_user("b64").await.unwrap();
        let exported: Vec<&str> = export.sessions[0]
            .messages
            .iter()
            .map(|m| m.content.as_str())
            .collect();
        assert_eq!(exported, vec![hash, blob]);
        s.id
    };
    let config = backend.config_with(&[("k0", KEY_A), ("k1", KEY_B)], "k1");
    let store = backend.open_with(&config).await.unwrap();
    let stats = store.rotate_keys(10, &|_| {}).await.unwrap();
    assert!(stats.done);
    assert_eq!(stats.messages_reencrypted, 2);
    drop(store);
    // Now under key B alone they are ordinary ciphertexts of the same text.
    let only_b = backend.config_with(&[("k1", KEY_B)], "k1");
    let store = backend.open_with(&only_b).await.unwrap();
    assert_eq!(contents(&store, &id).await, vec![hash, blob]);
}

pub async fn ping_reports_ready(backend: Backend) {
    let store = backend.open().await;
    store.ping().await.unwrap();
}

pub async fn concurrent_callers_with_one_reserved_id_create_one_session(backend: Backend) {
    let store = backend.open().await;
    let preferred = chatbox::store::new_session_id();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let store = store.clone();
        let preferred = preferred.clone();
        tasks.push(tokio::spawn(async move {
            store
                .get_or_create_active("carol", Some(&preferred), "demo")
                .await
                .unwrap()
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        ids.insert(t.await.unwrap().session.id);
    }
    assert_eq!(ids.len(), 1, "{ids:?}");
    assert_eq!(
        store.list_user_sessions("carol", 100).await.unwrap().len(),
        1
    );
}

pub async fn retried_append_after_other_messages_is_a_duplicate(backend: Backend) {
    let store = backend.open().await;
    let s = new_session(&store, "dora").await;
    let first = msg("c-retry", 1, "question");
    assert_eq!(
        store.append_message(&s.id, &first).await.unwrap(),
        AppendOutcome::Stored
    );
    store
        .append_message(&s.id, &msg("m-answer", 2, "answer"))
        .await
        .unwrap();
    let mut retry = first.clone();
    retry.seq = 3;
    assert_eq!(
        store.append_message(&s.id, &retry).await.unwrap(),
        AppendOutcome::Duplicate
    );
    assert_eq!(store.messages(&s.id, None).await.unwrap().len(), 2);
}

fn audit(admin: &str, kind: AuditKind, at: time::OffsetDateTime) -> AuditRecord {
    AuditRecord {
        admin_id: admin.to_string(),
        admin_name: None,
        kind,
        session_id: None,
        user_id: None,
        at,
        details: Default::default(),
    }
}

async fn audit_page(
    store: &Arc<dyn Store>,
    limit: usize,
    offset: usize,
    cursor: Option<String>,
) -> AuditPage {
    store
        .list_audit(&AuditQuery {
            limit,
            offset,
            cursor,
        })
        .await
        .unwrap()
}

fn admins(page: &AuditPage) -> Vec<&str> {
    page.entries
        .iter()
        .map(|e| e.record.admin_id.as_str())
        .collect()
}

pub async fn audit_log_records_and_pages_newest_first(backend: Backend) {
    let store = backend.open().await;
    assert!(audit_page(&store, 10, 0, None).await.entries.is_empty());
    let base = now() - Duration::minutes(10);
    // Every field set, and stored as given (times at millisecond precision).
    let mut full = audit(
        "a0",
        AuditKind::TakeoverTransfer,
        base + Duration::milliseconds(1),
    );
    full.admin_name = Some("Admin Zero".into());
    full.session_id = Some("s-1".into());
    full.user_id = Some("alice".into());
    full.details.insert("previous_admin_id".into(), "x".into());
    full.details.insert("via".into(), "websocket".into());
    let stored = store.record_audit(&full).await.unwrap();
    assert_eq!(stored.id.len(), 32);
    assert_eq!(stored.record, full);
    // Later times, one recorded out of time order, and two with the same time (recording order wins).
    let kinds = [
        AuditKind::Takeover,
        AuditKind::TakeoverEnd,
        AuditKind::UserSessionsView,
        AuditKind::UserExport,
        AuditKind::UserDelete,
    ];
    let times = [3, 2, 4, 4, 5];
    for (i, (kind, secs)) in kinds.into_iter().zip(times).enumerate() {
        let record = audit(&format!("a{}", i + 1), kind, base + Duration::seconds(secs));
        store.record_audit(&record).await.unwrap();
    }
    let all = audit_page(&store, 100, 0, None).await;
    assert_eq!(admins(&all), ["a5", "a4", "a3", "a1", "a2", "a0"]);
    assert!(all.next_cursor.is_none(), "a short page has no cursor");
    assert_eq!(all.entries[5], stored);
    assert_eq!(all.entries[0].record.kind, AuditKind::UserDelete);
    let ids: HashSet<_> = all.entries.iter().map(|e| e.id.clone()).collect();
    assert_eq!(ids.len(), 6, "ids are unique");

    // Offset paging.
    assert_eq!(admins(&audit_page(&store, 2, 1, None).await), ["a4", "a3"]);
    assert_eq!(admins(&audit_page(&store, 10, 4, None).await), ["a2", "a0"]);
    assert!(audit_page(&store, 10, 6, None).await.entries.is_empty());

    // Cursor paging: the offset is ignored, and entries recorded meanwhile do not shift the pages.
    let first = audit_page(&store, 2, 0, None).await;
    assert_eq!(admins(&first), ["a5", "a4"]);
    store
        .record_audit(&audit("late", AuditKind::Takeover, now()))
        .await
        .unwrap();
    let second = audit_page(&store, 2, 99, first.next_cursor.clone()).await;
    assert_eq!(admins(&second), ["a3", "a1"]);
    let third = audit_page(&store, 2, 0, second.next_cursor.clone()).await;
    assert_eq!(admins(&third), ["a2", "a0"]);
    let fourth = audit_page(&store, 2, 0, third.next_cursor.clone()).await;
    assert!(fourth.entries.is_empty());
    assert!(fourth.next_cursor.is_none());
    assert_eq!(admins(&audit_page(&store, 1, 0, None).await), ["late"]);

    // Cursors of other kinds are refused.
    for bad in ["nope", "!!!"] {
        let err = store
            .list_audit(&AuditQuery {
                limit: 2,
                offset: 0,
                cursor: Some(bad.into()),
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidCursor), "{err:?}");
    }
    let session_cursor = store
        .list_sessions(&SessionQuery {
            limit: 1,
            ..SessionQuery::default()
        })
        .await
        .unwrap()
        .next_cursor;
    if let Some(c) = session_cursor {
        assert!(matches!(
            store
                .list_audit(&AuditQuery {
                    limit: 2,
                    offset: 0,
                    cursor: Some(c),
                })
                .await,
            Err(StoreError::InvalidCursor)
        ));
    }
}

pub async fn audit_log_survives_reopening_and_user_deletion(backend: Backend) {
    let recorded = {
        let store = backend.open().await;
        let s = new_session(&store, "gone").await;
        let mut takeover = audit("root", AuditKind::Takeover, now());
        takeover.session_id = Some(s.id.clone());
        takeover.user_id = Some("gone".into());
        let takeover = store.record_audit(&takeover).await.unwrap();
        store.delete_user("gone").await.unwrap();
        let mut deletion = audit("root", AuditKind::UserDelete, now());
        deletion.user_id = Some("gone".into());
        deletion
            .details
            .insert("sessions_deleted".into(), "1".into());
        let deletion = store.record_audit(&deletion).await.unwrap();
        // Deleting the user's data again leaves the audit trail about them in place.
        store.delete_user("gone").await.unwrap();
        let page = audit_page(&store, 10, 0, None).await;
        assert_eq!(page.entries, [deletion.clone(), takeover.clone()]);
        vec![deletion, takeover]
    };
    // A new store instance on the same data (embedded: the same file; MongoDB: the same database).
    let store = backend.open().await;
    let page = audit_page(&store, 10, 0, None).await;
    assert_eq!(page.entries, recorded);
    let first = audit_page(&store, 1, 0, None).await;
    let rest = audit_page(&store, 1, 0, first.next_cursor).await;
    assert_eq!(rest.entries, recorded[1..]);
    if let Backend::Mongo { uri, database } = &backend {
        // The listing order is served by an index on the audit collection.
        let client = mongodb::Client::with_uri_str(uri).await.unwrap();
        let names = client
            .database(database)
            .collection::<mongodb::bson::Document>("sessions_audit")
            .list_index_names()
            .await
            .unwrap();
        assert!(names.iter().any(|n| n == "idx_audit_time"), "{names:?}");
    }
}

fn admin(id: &str) -> AssistingAdmin {
    AssistingAdmin {
        id: id.into(),
        name: format!("Admin {id}"),
    }
}

pub async fn only_one_of_racing_admins_claims_a_session(backend: Backend) {
    // Also on FerretDB, which evaluates an update's filter apart from the write: the store applies one
    // session's writes one at a time, so the check-and-set holds within one server.
    let store = backend.open().await;
    for round in 0..5 {
        let s = new_session(&store, &format!("racer{round}")).await;
        let mut tasks = Vec::new();
        for i in 0..8 {
            let store = store.clone();
            let id = s.id.clone();
            tasks.push(tokio::spawn(async move {
                let me = admin(&format!("adm{i}"));
                (
                    me.clone(),
                    store.claim_assistance(&id, &me, None).await.unwrap(),
                )
            }));
        }
        let mut winners = Vec::new();
        let mut holders = HashSet::new();
        for task in tasks {
            match task.await.unwrap() {
                (me, Claim::Granted) => winners.push(me),
                (_, Claim::Held(holder)) => {
                    holders.insert(holder.id);
                }
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let winner = &winners[0];
        assert!(
            holders.iter().all(|h| h == &winner.id),
            "every loser is told the winner: {holders:?}"
        );
        let got = store.get_session(&s.id).await.unwrap().unwrap();
        assert_eq!(got.assisting_admin_id.as_ref(), Some(&winner.id));
        assert_eq!(got.assisting_admin_name.as_ref(), Some(&winner.name));
        assert!(got.admin_assisted);
    }
}

pub async fn assistance_is_released_only_by_its_admin(backend: Backend) {
    let store = backend.open().await;
    let s = new_session(&store, "helped").await;
    let (root, ops) = (admin("root"), admin("ops"));
    assert_eq!(
        store.release_assistance(&s.id, "root").await.unwrap(),
        Release::NotAssisted
    );
    assert_eq!(
        store.claim_assistance(&s.id, &root, None).await.unwrap(),
        Claim::Granted
    );
    // Claiming again as the same admin is granted again.
    assert_eq!(
        store.claim_assistance(&s.id, &root, None).await.unwrap(),
        Claim::Granted
    );
    assert_eq!(
        store.claim_assistance(&s.id, &ops, None).await.unwrap(),
        Claim::Held(root.clone())
    );
    assert_eq!(
        store.release_assistance(&s.id, "ops").await.unwrap(),
        Release::Held(root.clone())
    );
    // A transfer takes it from the admin it names, and only from that one.
    let third = admin("third");
    assert_eq!(
        store
            .claim_assistance(&s.id, &third, Some("someone-else"))
            .await
            .unwrap(),
        Claim::Held(root.clone())
    );
    for (to, from) in [(&root, "root"), (&third, "root"), (&root, "third")] {
        assert_eq!(
            store.claim_assistance(&s.id, to, Some(from)).await.unwrap(),
            Claim::Granted,
            "{} from {from}",
            to.id
        );
    }
    assert_eq!(
        store.release_assistance(&s.id, "root").await.unwrap(),
        Release::Released
    );
    let got = store.get_session(&s.id).await.unwrap().unwrap();
    assert_eq!(got.assisting_admin_id, None);
    assert!(got.admin_assisted, "the session stays marked as assisted");
    assert_eq!(
        store.claim_assistance(&s.id, &ops, None).await.unwrap(),
        Claim::Granted
    );

    store.end_session(&s.id, now()).await.unwrap();
    assert!(matches!(
        store.claim_assistance(&s.id, &ops, None).await,
        Err(StoreError::SessionEnded)
    ));
    assert!(matches!(
        store.claim_assistance("nope", &ops, None).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.release_assistance("nope", "ops").await,
        Err(StoreError::NotFound)
    ));
}

pub async fn the_seq_mark_only_rises_and_survives_reopening(backend: Backend) {
    let id = {
        let store = backend.open().await;
        let s = new_session(&store, "marked").await;
        assert_eq!((s.last_seq, s.seq_mark), (0, 0));
        store
            .append_message(&s.id, &msg("m3", 3, "x"))
            .await
            .unwrap();
        let s = store.get_session(&s.id).await.unwrap().unwrap();
        assert_eq!(s.seq_mark, 3, "a stored message raises the mark");
        store.raise_seq_mark(&s.id, "marked", 40).await.unwrap();
        store.raise_seq_mark(&s.id, "marked", 20).await.unwrap();
        assert_eq!(
            store.get_session(&s.id).await.unwrap().unwrap().seq_mark,
            40
        );
        s.id
    };
    let store = backend.open().await;
    let s = store.get_session(&id).await.unwrap().unwrap();
    assert_eq!((s.last_seq, s.seq_mark), (3, 40));
    store
        .append_message(&id, &msg("m50", 50, "y"))
        .await
        .unwrap();
    assert_eq!(store.get_session(&id).await.unwrap().unwrap().seq_mark, 50);
}

/// Fifty appends to one session at once, with its figures and name written meanwhile: every message is
/// stored once, in a session whose counters agree with them (a server that applies updates as
/// read-modify-write loses some unless the store applies one session's writes one at a time).
pub async fn concurrent_appends_to_one_session_lose_nothing(backend: Backend) {
    let store = backend.open().await;
    let s = new_session(&store, "busy").await;
    let mut tasks = Vec::new();
    for i in 0..50u64 {
        let store = store.clone();
        let id = s.id.clone();
        tasks.push(tokio::spawn(async move {
            store
                .append_message(&id, &msg(&format!("m-{i}"), i + 1, &format!("text {i}")))
                .await
                .unwrap();
            if i % 5 == 0 {
                let usage = TurnUsage {
                    tokens: 10,
                    response_ms: 100,
                    at: now(),
                };
                store.record_usage(&id, usage).await.unwrap();
            }
            if i % 7 == 0 {
                store.set_name(&id, &format!("name {i}")).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // A store opened afresh reads what is stored, not what the first one remembers.
    drop(store);
    let store = backend.open().await;
    let stored = store.messages(&s.id, None).await.unwrap();
    let ids: HashSet<String> = stored.iter().map(|m| m.id.clone()).collect();
    assert_eq!(stored.len(), 50, "every append is stored once");
    assert_eq!(ids.len(), 50);
    let seqs: Vec<u64> = stored.iter().map(|m| m.seq).collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    assert_eq!(seqs, sorted, "messages are listed in seq order");
    let session = store.get_session(&s.id).await.unwrap().unwrap();
    assert_eq!(session.message_count, 50);
    assert_eq!(session.last_seq, 50);
    assert_eq!(session.total_tokens, 100);
    assert_eq!(session.response_count, 10);
    assert!(session.name.starts_with("name "));
}

/// A turn's answer and figures written together read back as if written one after the other.
pub async fn finished_turn_stores_answer_and_figures(backend: Backend) {
    let store = backend.open().await;
    let s = new_session(&store, "turns").await;
    store
        .append_message(&s.id, &msg("m-1", 1, "question"))
        .await
        .unwrap();
    let answer = MessageRecord::new("m-2", 2, "ai", "answer");
    let usage = TurnUsage {
        tokens: 42,
        response_ms: 300,
        at: now(),
    };
    store
        .finish_turn(&s.id, Some(&answer), Some(usage))
        .await
        .unwrap();
    let usage = TurnUsage {
        tokens: 8,
        response_ms: 100,
        at: now(),
    };
    store.finish_turn(&s.id, None, Some(usage)).await.unwrap();
    let session = store.get_session(&s.id).await.unwrap().unwrap();
    assert_eq!(session.message_count, 2);
    assert_eq!(session.last_seq, 2);
    assert_eq!(session.total_tokens, 50);
    assert_eq!(session.response_count, 2);
    assert_eq!(session.avg_response_ms, 200);
    assert_eq!(session.max_response_ms, 300);
    let day = store
        .user_tokens_on("turns", time::OffsetDateTime::now_utc().date())
        .await
        .unwrap();
    assert_eq!(day, 50);
    let recent = store.recent_messages(&s.id, 1).await.unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].content, "answer");
    let both = store.recent_messages(&s.id, 10).await.unwrap();
    assert_eq!(
        both.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
        ["question", "answer"]
    );
    // An answer finished after its session ended is dropped; its usage counts.
    store.end_session(&s.id, now()).await.unwrap();
    let late = MessageRecord::new("m-3", 3, "ai", "too late");
    let usage = TurnUsage {
        tokens: 1,
        response_ms: 1,
        at: now(),
    };
    store
        .finish_turn(&s.id, Some(&late), Some(usage))
        .await
        .unwrap();
    let session = store.get_session(&s.id).await.unwrap().unwrap();
    assert_eq!(session.message_count, 2);
    assert_eq!(session.total_tokens, 51);
}

/// A checkpointed answer is one stored message: replaced in place by later checkpoints and by the final
/// answer, also after the store is reopened.
pub async fn checkpointed_answer_is_replaced_in_place(backend: Backend) {
    let store = backend.open().await;
    let s = new_session(&store, "checkpoints").await;
    store
        .append_message(&s.id, &msg("m-1", 1, "question"))
        .await
        .unwrap();
    let mut answer = MessageRecord::new("a-1", 5, "ai", "Once");
    answer.partial = true;
    store.put_answer(&s.id, &answer).await.unwrap();
    answer.content = "Once upon".into();
    answer.seq = 7;
    store.put_answer(&s.id, &answer).await.unwrap();
    drop(store);
    let store = backend.open().await;
    store
        .append_message(&s.id, &msg("m-2", 8, "later"))
        .await
        .unwrap();
    answer.content = "Once upon a time".into();
    answer.seq = 9;
    answer.partial = false;
    store.finish_turn(&s.id, Some(&answer), None).await.unwrap();
    let stored = store.messages(&s.id, None).await.unwrap();
    let contents: Vec<(&str, bool)> = stored
        .iter()
        .map(|m| (m.content.as_str(), m.partial))
        .collect();
    assert_eq!(
        contents,
        [
            ("question", false),
            ("Once upon a time", false),
            ("later", false)
        ]
    );
    let session = store.get_session(&s.id).await.unwrap().unwrap();
    assert_eq!(session.message_count, 3);
    assert_eq!(session.last_seq, 9);
}

/// Delegates to a store and, once, changes the name and the first message of session `session` right
/// after a rotation batch is read: the writes a live session makes while a rotation runs.
struct ChangedDuringBatch {
    store: Arc<dyn Store>,
    session: String,
    changed: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl RotationBackend for ChangedDuringBatch {
    fn keyring(&self) -> &Keyring {
        self.store.keyring()
    }

    async fn rotation_checkpoint(&self) -> Result<Option<RotationCheckpoint>, StoreError> {
        self.store.rotation_checkpoint().await
    }

    async fn rotation_batch(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<RotationBatch, StoreError> {
        let batch = self.store.rotation_batch(after, limit).await?;
        if !self.changed.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.store.set_name(&self.session, "renamed").await?;
            let mut answer = msg("m1", 1, "rewritten meanwhile");
            answer.sender = Sender::Ai;
            self.store.put_answer(&self.session, &answer).await?;
        }
        Ok(batch)
    }

    async fn write_rotated(
        &self,
        values: &[Resealed],
        checkpoint: Option<&RotationCheckpoint>,
    ) -> Result<Rewritten, StoreError> {
        self.store.write_rotated(values, checkpoint).await
    }

    async fn reseal_canary(&self, sealed: &str) -> Result<(), StoreError> {
        self.store.reseal_canary(sealed).await
    }
}

pub async fn rotation_skips_values_changed_during_a_batch(backend: Backend) {
    let session = {
        let store = backend.open().await;
        let s = new_session(&store, "busy").await;
        store.set_name(&s.id, "before").await.unwrap();
        for (m, text) in [(1, "first"), (2, "second")] {
            store
                .append_message(&s.id, &msg(&format!("m{m}"), m, text))
                .await
                .unwrap();
        }
        s.id
    };
    let config = backend.config_with(&[("k0", KEY_A), ("k1", KEY_B)], "k1");
    let store = backend.open_with(&config).await.unwrap();
    let racing = ChangedDuringBatch {
        store: store.clone(),
        session: session.clone(),
        changed: false.into(),
    };
    let stats = rotation::rotate(&racing, 10, &|_| {}).await.unwrap();
    assert!(stats.done);
    assert_eq!(
        (
            stats.names_reencrypted,
            stats.messages_reencrypted,
            stats.skipped
        ),
        (0, 1, 2),
        "the name and the first message changed meanwhile: skipped, not overwritten"
    );
    let again = store.rotate_keys(10, &|_| {}).await.unwrap();
    assert_eq!(
        (
            again.names_reencrypted,
            again.messages_reencrypted,
            again.skipped
        ),
        (0, 0, 0),
        "the values written meanwhile are under the active key already"
    );
    drop((racing, store));
    // Key A removed: everything reads with B alone, and the concurrent writes were kept.
    let only_b = backend.config_with(&[("k1", KEY_B)], "k1");
    let store = backend.open_with(&only_b).await.unwrap();
    assert_eq!(
        store.get_session(&session).await.unwrap().unwrap().name,
        "renamed"
    );
    let messages = store.messages(&session, None).await.unwrap();
    let contents: Vec<&str> = messages.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(contents, ["rewritten meanwhile", "second"]);
}

pub async fn senders_are_stored_as_their_strings_and_unknown_ones_are_kept(backend: Backend) {
    let store = backend.open().await;
    let s = new_session(&store, "senders").await;
    let senders = [
        Sender::User,
        Sender::Ai,
        Sender::Admin,
        Sender::System,
        Sender::Other("robot".into()),
    ];
    for (seq, sender) in (1u64..).zip(&senders) {
        let mut message = msg(&format!("m{seq}"), seq, "text");
        message.sender = sender.clone();
        store.append_message(&s.id, &message).await.unwrap();
    }
    let read: Vec<Sender> = store
        .messages(&s.id, None)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.sender)
        .collect();
    assert_eq!(read, senders);
    let export = chatbox::store::maintenance::export_user_json(store.as_ref(), "senders")
        .await
        .unwrap();
    for name in ["user", "ai", "admin", "system", "robot"] {
        assert!(
            export.contains(&format!("\"sender\": \"{name}\"")),
            "{name} in {export}"
        );
    }
}

/// An unattached file of `user` created at `created_at`, under key `k0`.
fn file(n: u32, user: &str, created_at: time::OffsetDateTime) -> FileRecord {
    FileRecord {
        id: format!("{n:032x}"),
        user_id: user.to_string(),
        session_id: None,
        name: format!("sealed-name-{n}"),
        content_type: "image/png".to_string(),
        size: 1_234_567_890_123,
        sha256: "ab".repeat(32),
        key_id: "k0".to_string(),
        wrapped_key: format!("wrapped-{n}"),
        created_at,
        attached_at: None,
    }
}

fn file_ids(files: &[FileRecord]) -> Vec<String> {
    files.iter().map(|f| f.id.clone()).collect()
}

pub async fn file_metadata_round_trips_and_delete_returns_it(backend: Backend) {
    let store = backend.open().await;
    let mut stored = file(1, "owner", now());
    stored.name = "cb1:sealed/name+with=odd chars".to_string();
    store.insert_file(&stored).await.unwrap();
    assert_eq!(
        store.get_file(&stored.id).await.unwrap(),
        Some(stored.clone())
    );
    let mut attached = file(2, "owner", now() - Duration::minutes(1));
    attached.session_id = Some(chatbox::store::new_session_id());
    attached.attached_at = Some(now());
    store.insert_file(&attached).await.unwrap();
    assert_eq!(
        store.get_file(&attached.id).await.unwrap(),
        Some(attached.clone())
    );

    // An id already taken is refused, and the stored file is kept.
    let mut same_id = file(1, "someone-else", now());
    same_id.wrapped_key = "other".to_string();
    assert!(store.insert_file(&same_id).await.is_err());
    assert_eq!(
        store.get_file(&stored.id).await.unwrap(),
        Some(stored.clone())
    );

    assert_eq!(
        store.delete_file(&stored.id).await.unwrap(),
        Some(stored.clone())
    );
    assert_eq!(store.get_file(&stored.id).await.unwrap(), None);
    assert_eq!(store.delete_file(&stored.id).await.unwrap(), None);
    let missing = format!("{:032x}", 99);
    assert_eq!(store.get_file(&missing).await.unwrap(), None);
    assert_eq!(
        store.attach_file(&missing, "some-session").await.unwrap(),
        None
    );
    assert!(
        !store
            .update_file_key(&missing, "k1", "w", "n")
            .await
            .unwrap()
    );
    assert_eq!(
        file_ids(
            &store
                .list_files(FileFilter::User("owner"), 10)
                .await
                .unwrap()
        ),
        vec![attached.id]
    );
}

pub async fn a_file_is_attached_to_its_first_session_only(backend: Backend) {
    let store = backend.open().await;
    let f = file(1, "owner", now() - Duration::minutes(5));
    store.insert_file(&f).await.unwrap();
    let (first, second) = (
        chatbox::store::new_session_id(),
        chatbox::store::new_session_id(),
    );
    let before = now();
    let attached = store.attach_file(&f.id, &first).await.unwrap().unwrap();
    let after = now();
    assert_eq!(attached.session_id.as_deref(), Some(first.as_str()));
    let at = attached.attached_at.unwrap();
    assert!(before <= at && at <= after, "{before} <= {at} <= {after}");
    assert_eq!(
        attached,
        FileRecord {
            session_id: Some(first.clone()),
            attached_at: Some(at),
            ..f.clone()
        }
    );
    assert_eq!(store.get_file(&f.id).await.unwrap(), Some(attached.clone()));

    // Attached already: another session (or the same one again) changes nothing.
    assert_eq!(
        store.attach_file(&f.id, &second).await.unwrap(),
        Some(attached.clone())
    );
    assert_eq!(
        store.attach_file(&f.id, &first).await.unwrap(),
        Some(attached.clone())
    );
    assert_eq!(store.get_file(&f.id).await.unwrap(), Some(attached.clone()));
    assert_eq!(
        file_ids(
            &store
                .list_files(FileFilter::Session(&first), 10)
                .await
                .unwrap()
        ),
        vec![f.id.clone()]
    );
    assert!(
        store
            .list_files(FileFilter::Session(&second), 10)
            .await
            .unwrap()
            .is_empty()
    );

    // The empty session id is not a session.
    let g = file(2, "owner", now());
    store.insert_file(&g).await.unwrap();
    assert!(matches!(
        store.attach_file(&g.id, "").await,
        Err(StoreError::InvalidQuery(_))
    ));
    assert_eq!(store.get_file(&g.id).await.unwrap(), Some(g.clone()));
    assert!(
        store
            .list_files(FileFilter::Session(""), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn file_lists_select_by_filter_oldest_first_within_the_limit(backend: Backend) {
    let store = backend.open().await;
    let base = now();
    let minutes = |m: i64| base - Duration::minutes(m);
    let (s1, s2) = (
        chatbox::store::new_session_id(),
        chatbox::store::new_session_id(),
    );
    // Inserted out of order; files 5 and 6 share their creation time (the id breaks the tie).
    let mut files = vec![
        file(3, "ann", minutes(30)),
        file(1, "ann", minutes(50)),
        file(6, "bob", minutes(10)),
        file(2, "ann", minutes(40)),
        file(5, "ann", minutes(10)),
        file(4, "bob", minutes(20)),
        file(7, "ann", minutes(5)),
    ];
    files[6].key_id = "k1".to_string();
    files[4].key_id = "k1".to_string();
    for f in &files {
        store.insert_file(f).await.unwrap();
    }
    let id = |n: u32| format!("{n:032x}");
    let ids = |ns: &[u32]| ns.iter().map(|n| id(*n)).collect::<Vec<_>>();
    let list = async |filter: FileFilter<'_>, limit: usize| {
        file_ids(&store.list_files(filter, limit).await.unwrap())
    };

    // Attached: 2 and 6 to s1, 4 to s2, attached in an order other than their creation.
    let before_attaching = now();
    for (n, s) in [(6, &s1), (4, &s2), (2, &s1)] {
        store.attach_file(&id(n), s).await.unwrap().unwrap();
    }

    assert_eq!(
        list(FileFilter::User("ann"), 100).await,
        ids(&[1, 2, 3, 5, 7])
    );
    assert_eq!(list(FileFilter::User("ann"), 2).await, ids(&[1, 2]));
    assert_eq!(list(FileFilter::User("bob"), 100).await, ids(&[4, 6]));
    assert!(list(FileFilter::User("nobody"), 100).await.is_empty());
    assert!(list(FileFilter::User("ann"), 0).await.is_empty());

    assert_eq!(list(FileFilter::Session(&s1), 100).await, ids(&[2, 6]));
    assert_eq!(list(FileFilter::Session(&s1), 1).await, ids(&[2]));
    assert_eq!(list(FileFilter::Session(&s2), 100).await, ids(&[4]));

    // Unattached: 1, 3, 5, 7; "before" is strict, at any precision.
    assert_eq!(
        list(FileFilter::UnattachedBefore(base), 100).await,
        ids(&[1, 3, 5, 7])
    );
    assert_eq!(
        list(FileFilter::UnattachedBefore(base), 3).await,
        ids(&[1, 3, 5])
    );
    assert_eq!(
        list(FileFilter::UnattachedBefore(minutes(10)), 100).await,
        ids(&[1, 3])
    );
    assert_eq!(
        list(
            FileFilter::UnattachedBefore(minutes(10) + Duration::nanoseconds(1)),
            100
        )
        .await,
        ids(&[1, 3, 5])
    );
    assert!(
        list(FileFilter::UnattachedBefore(minutes(60)), 100)
            .await
            .is_empty()
    );

    // Attached before a time: by creation, not by attachment.
    let later = now() + Duration::seconds(1);
    assert_eq!(
        list(FileFilter::AttachedBefore(later), 100).await,
        ids(&[2, 4, 6])
    );
    assert_eq!(
        list(FileFilter::AttachedBefore(later), 2).await,
        ids(&[2, 4])
    );
    assert!(
        list(FileFilter::AttachedBefore(before_attaching), 100)
            .await
            .is_empty()
    );

    // Key rotation: files not under the given key, ties by id.
    assert_eq!(list(FileFilter::NotUnderKey("k0"), 100).await, ids(&[5, 7]));
    assert_eq!(
        list(FileFilter::NotUnderKey("k1"), 100).await,
        ids(&[1, 2, 3, 4, 6])
    );
    assert_eq!(
        list(FileFilter::NotUnderKey("k1"), 4).await,
        ids(&[1, 2, 3, 4])
    );
    assert_eq!(
        list(FileFilter::NotUnderKey("k2"), 100).await,
        ids(&[1, 2, 3, 4, 5, 6, 7])
    );
    // Ties: 5 and 6 share their creation time and list by id under every filter that has both.
    assert_eq!(
        list(FileFilter::NotUnderKey("k2"), 5).await,
        ids(&[1, 2, 3, 4, 5])
    );

    // What is listed is the whole record.
    let listed = store.list_files(FileFilter::User("bob"), 1).await.unwrap();
    assert_eq!(listed, vec![store.get_file(&id(4)).await.unwrap().unwrap()]);
}

pub async fn file_keys_are_rewrapped(backend: Backend) {
    let store = backend.open().await;
    let f = file(1, "owner", now());
    let g = file(2, "owner", now() + Duration::milliseconds(1));
    store.insert_file(&f).await.unwrap();
    store.insert_file(&g).await.unwrap();
    let session = chatbox::store::new_session_id();
    let attached = store.attach_file(&f.id, &session).await.unwrap().unwrap();
    assert_eq!(
        file_ids(
            &store
                .list_files(FileFilter::NotUnderKey("k1"), 10)
                .await
                .unwrap()
        ),
        vec![f.id.clone(), g.id.clone()]
    );

    assert!(
        store
            .update_file_key(&f.id, "k1", "rewrapped", "resealed-name")
            .await
            .unwrap()
    );
    assert_eq!(
        store.get_file(&f.id).await.unwrap(),
        Some(FileRecord {
            key_id: "k1".to_string(),
            wrapped_key: "rewrapped".to_string(),
            name: "resealed-name".to_string(),
            ..attached
        })
    );
    assert_eq!(store.get_file(&g.id).await.unwrap(), Some(g.clone()));
    assert_eq!(
        file_ids(
            &store
                .list_files(FileFilter::NotUnderKey("k1"), 10)
                .await
                .unwrap()
        ),
        vec![g.id.clone()]
    );
    // The other lists still find it.
    assert_eq!(
        file_ids(
            &store
                .list_files(FileFilter::Session(&session), 10)
                .await
                .unwrap()
        ),
        vec![f.id.clone()]
    );
    assert_eq!(
        file_ids(
            &store
                .list_files(FileFilter::User("owner"), 10)
                .await
                .unwrap()
        ),
        vec![f.id.clone(), g.id.clone()]
    );
}

pub async fn deleting_a_user_removes_their_files_and_the_purge_keeps_them(backend: Backend) {
    let store = backend.open().await;
    let session = new_session(&store, "gone").await;
    let kept_session = new_session(&store, "stay").await;
    let mut n = 0;
    for (user, session) in [
        ("gone", Some(&session.id)),
        ("gone", None),
        ("stay", Some(&kept_session.id)),
    ] {
        n += 1;
        let f = file(n, user, now());
        store.insert_file(&f).await.unwrap();
        if let Some(s) = session {
            store.attach_file(&f.id, s).await.unwrap().unwrap();
        }
    }
    // The retention purge removes ended sessions, not their files.
    store.end_session(&kept_session.id, now()).await.unwrap();
    assert_eq!(
        store
            .purge_ended_before(now() + Duration::days(1))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        file_ids(
            &store
                .list_files(FileFilter::Session(&kept_session.id), 10)
                .await
                .unwrap()
        ),
        vec![format!("{:032x}", 3)]
    );

    let stats = chatbox::store::maintenance::delete_user(store.as_ref(), "gone")
        .await
        .unwrap();
    assert_eq!((stats.sessions, stats.files), (1, 2));
    assert!(
        store
            .list_files(FileFilter::User("gone"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .list_files(FileFilter::Session(&session.id), 10)
            .await
            .unwrap()
            .is_empty()
    );
    let everything = store
        .list_files(FileFilter::NotUnderKey("none"), 10)
        .await
        .unwrap();
    assert_eq!(file_ids(&everything), vec![format!("{:032x}", 3)]);
    assert_eq!(store.get_file(&format!("{:032x}", 1)).await.unwrap(), None);
    assert_eq!(
        store.delete_user("gone").await.unwrap().files,
        0,
        "nothing left to delete"
    );
}
