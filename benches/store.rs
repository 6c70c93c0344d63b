//! Embedded store benchmark: admin list latency (p50/p99) at large session counts, and insert
//! throughput. Not a test; method and results in `docs/benchmarks.md`.
//!
//! `cargo bench --bench store` (sizes: `BENCH_SESSIONS=100000,1000000`, queries per shape:
//! `BENCH_QUERIES=200`, API inserts: `BENCH_INSERTS=2000`, concurrent writers:
//! `BENCH_CONCURRENCY=16,64,256`).

// A benchmark reports on stdout.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatbox::metrics::Metrics;
use chatbox::store::embedded::{BulkSession, DB_FILE, EmbeddedStore, insert_bulk};
use chatbox::store::{
    MessageRecord, SessionQuery, SortField, SortOrder, StatusFilter, Store, StoreConfig,
    load_keyring,
};
use time::OffsetDateTime;

fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.to_string())
        .split(',')
        .filter_map(|s| s.trim().replace('_', "").parse().ok())
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Pseudo-random but reproducible numbers (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

async fn open(dir: &std::path::Path) -> Arc<EmbeddedStore> {
    let config = StoreConfig::default();
    let keyring = Arc::new(load_keyring(&config, dir, false).unwrap());
    Arc::new(
        EmbeddedStore::open(
            &dir.join(DB_FILE),
            &config,
            keyring,
            Arc::new(Metrics::new()),
        )
        .await
        .unwrap(),
    )
}

async fn fill(store: &EmbeddedStore, sessions: usize) -> Duration {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let base = OffsetDateTime::now_utc() - time::Duration::days(365);
    let started = Instant::now();
    let mut batch = Vec::with_capacity(10_000);
    // 20 000 users at full size; fewer in small runs so each user still has several sessions.
    let users = (sessions as u64 / 5).clamp(1, 20_000);
    for i in 0..sessions {
        let start = base + time::Duration::seconds((i as i64) * 30);
        let r = rng.next();
        let ended = !r.is_multiple_of(10);
        batch.push(BulkSession {
            id: format!("{:016x}{:016x}", r, i),
            user_id: format!("user{}", r % users),
            started_at: start,
            ended_at: ended.then(|| start + time::Duration::seconds((r % 3600) as i64)),
            total_tokens: (r >> 8) as i64 % 50_000,
            message_count: (r >> 24) as i64 % 200,
            admin_assisted: r.is_multiple_of(50),
        });
        if batch.len() == 10_000 {
            insert_bulk(store, std::mem::take(&mut batch))
                .await
                .unwrap();
        }
    }
    if !batch.is_empty() {
        insert_bulk(store, batch).await.unwrap();
    }
    started.elapsed()
}

fn shapes() -> Vec<(&'static str, SessionQuery)> {
    let base = SessionQuery {
        limit: 100,
        ..SessionQuery::default()
    };
    // Windows from the data's second hour (`fill` starts a year ago, one session every 30 s): a day holds
    // 2 880 sessions (fewer in the quick run), an hour 120.
    let day_two = OffsetDateTime::now_utc() - time::Duration::days(365) + time::Duration::hours(1);
    let window = |length: time::Duration| SessionQuery {
        started_from: Some(day_two),
        started_to: Some(day_two + length),
        sort_by: SortField::MessageCount,
        ..base.clone()
    };
    vec![
        ("default (start_time desc)", base.clone()),
        (
            "message_count desc",
            SessionQuery {
                sort_by: SortField::MessageCount,
                ..base.clone()
            },
        ),
        (
            "status=active, total_tokens desc",
            SessionQuery {
                status: Some(StatusFilter::Active),
                sort_by: SortField::TotalTokens,
                ..base.clone()
            },
        ),
        (
            "admin_assisted=true, end_time asc",
            SessionQuery {
                admin_assisted: Some(true),
                sort_by: SortField::EndTime,
                order: SortOrder::Asc,
                ..base.clone()
            },
        ),
        (
            "user_id sort asc, offset 1000",
            SessionQuery {
                sort_by: SortField::UserId,
                order: SortOrder::Asc,
                offset: 1000,
                ..base.clone()
            },
        ),
        (
            "1-day start window, message_count desc",
            window(time::Duration::days(1)),
        ),
        (
            "1-hour start window, message_count desc",
            window(time::Duration::hours(1)),
        ),
        (
            "user_id=user42 filter",
            SessionQuery {
                user_id: Some("user42".into()),
                ..base.clone()
            },
        ),
    ]
}

async fn bench_lists(store: &EmbeddedStore, queries: usize) {
    let mut all = Vec::new();
    for (name, query) in shapes() {
        let mut times = Vec::with_capacity(queries);
        for _ in 0..queries {
            let started = Instant::now();
            let page = store.list_sessions(&query).await.unwrap();
            times.push(started.elapsed());
            assert!(!page.sessions.is_empty(), "{name}");
        }
        times.sort();
        println!(
            "    {name:<36} p50 {:>7.3} ms   p99 {:>7.3} ms",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.99))
        );
        all.extend(times);
    }
    let cursor_query = SessionQuery {
        limit: 100,
        sort_by: SortField::MessageCount,
        ..SessionQuery::default()
    };
    let first = store.list_sessions(&cursor_query).await.unwrap();
    let next = SessionQuery {
        cursor: first.next_cursor,
        ..cursor_query
    };
    let mut times = Vec::with_capacity(queries);
    for _ in 0..queries {
        let started = Instant::now();
        store.list_sessions(&next).await.unwrap();
        times.push(started.elapsed());
    }
    times.sort();
    println!(
        "    {:<36} p50 {:>7.3} ms   p99 {:>7.3} ms",
        "message_count desc, cursor page 2",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99))
    );
    all.extend(times);
    all.sort();
    println!(
        "    {:<36} p50 {:>7.3} ms   p99 {:>7.3} ms",
        "ALL SHAPES",
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.99))
    );
}

/// The real write path: create a session and append messages (each a durable transaction).
async fn bench_api_inserts(store: &EmbeddedStore, inserts: usize) {
    let started = Instant::now();
    let mut session = store
        .get_or_create_active("writer", None, "demo")
        .await
        .unwrap()
        .session
        .id;
    for i in 0..inserts {
        if i % 50 == 49 {
            store
                .end_session(&session, chatbox::store::now())
                .await
                .unwrap();
            session = store
                .get_or_create_active("writer", None, "demo")
                .await
                .unwrap()
                .session
                .id;
        }
        let message = MessageRecord::new(
            format!("m{i}"),
            i as u64 + 1,
            "user",
            "a typical question of some length",
        );
        store.append_message(&session, &message).await.unwrap();
    }
    let elapsed = started.elapsed();
    println!(
        "    append_message (encrypt + durable commit): {:.0} messages/s ({inserts} in {:.2} s)",
        inserts as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
}

/// Concurrent writers: `concurrency` tasks, each with its own user and session, append
/// `inserts / concurrency` messages each through the `Store` trait at the same time.
async fn bench_concurrent_inserts(store: &Arc<EmbeddedStore>, inserts: usize, concurrency: usize) {
    let per_task = (inserts / concurrency).max(1);
    let mut sessions = Vec::with_capacity(concurrency);
    for t in 0..concurrency {
        let session = store
            .get_or_create_active(&format!("writer-{concurrency}-{t}"), None, "demo")
            .await
            .unwrap()
            .session
            .id;
        sessions.push(session);
    }
    let started = Instant::now();
    let tasks: Vec<_> = sessions
        .into_iter()
        .map(|session| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    let message = MessageRecord::new(
                        format!("c{i}"),
                        i as u64 + 1,
                        "user",
                        "a typical question of some length",
                    );
                    store.append_message(&session, &message).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let total = per_task * concurrency;
    println!(
        "    append_message, {concurrency} concurrent writers: {:.0} messages/s ({total} in {:.2} s)",
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this binary without it, and then a
    // small smoke run checks that the benchmark still works without taking minutes.
    let smoke = !std::env::args().any(|a| a == "--bench");
    let pick = |full: &'static str, small: &'static str| if smoke { small } else { full };
    let sizes = env_list("BENCH_SESSIONS", pick("100000,1000000", "2000"));
    let queries = env_list("BENCH_QUERIES", pick("200", "5"))
        .first()
        .copied()
        .unwrap_or(200);
    let inserts = env_list("BENCH_INSERTS", pick("2000", "10"))
        .first()
        .copied()
        .unwrap_or(2000);
    let concurrency = env_list("BENCH_CONCURRENCY", pick("16,64,256", "4"));
    for size in sizes {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path()).await;
        println!("embedded store, {size} sessions");
        let took = fill(&store, size).await;
        println!(
            "    bulk load: {:.0} sessions/s ({:.1} s, 10 000 per transaction)",
            size as f64 / took.as_secs_f64(),
            took.as_secs_f64()
        );
        let bytes = std::fs::metadata(dir.path().join(DB_FILE))
            .map(|m| m.len())
            .unwrap_or(0);
        println!("    file size: {:.0} MiB", bytes as f64 / (1024.0 * 1024.0));
        bench_lists(&store, queries).await;
        bench_api_inserts(&store, inserts).await;
        for concurrency in &concurrency {
            bench_concurrent_inserts(&store, inserts, *concurrency).await;
        }
    }
}
