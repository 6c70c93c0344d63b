//! Group commit for the MongoDB store's per-turn writes: message documents inserted and session updates
//! by `_id` that are ready at the same moment go out in one `insert` or `update` command of several
//! statements (`ordered: false`: they are independent), the way the embedded store's writer commits many
//! writes in one transaction.
//!
//! A write is sent at once while fewer than [`IN_FLIGHT`] commands of its kind are on their way; the
//! writes asked for meanwhile wait and go out together in the next command. So a lone write costs no extra
//! latency, and under load the number of commands grows slower than the number of writes. Writes to one
//! session stay in order: they are asked for one at a time, under the session's slot.

use std::sync::Arc;

use mongodb::bson::{Bson, Document, doc};
use mongodb::{Collection, Database};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::document::{DUPLICATE_KEY, get_i64};
use crate::store::error::StoreError;

/// Commands of one kind on their way at once.
const IN_FLIGHT: usize = 4;

/// Documents in one `insert` command at most.
const MAX_INSERTS: usize = 256;

/// Statements in one `update` command at most. FerretDB 1.24 (SQLite) holds a database connection for each
/// statement of an `update` command until the command ends, and one command of about 100 statements stalls
/// it (measured: 64 pass alone, 100 never return), so updates go in small groups.
pub(super) const MAX_UPDATES: usize = 8;

/// How a statement of a batch ended.
type Outcome = Result<Applied, StoreError>;

/// A statement the server applied (or found already applied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Applied {
    /// Inserted, or updated a document it matched.
    Done,
    /// An insert whose `_id` was already stored.
    Duplicate,
    /// An update that matched no document.
    Unmatched,
}

/// Statements waiting for the next command of one kind.
struct Queue {
    sender: mpsc::UnboundedSender<(Document, oneshot::Sender<Outcome>)>,
}

/// The group-commit writers of one collection's inserts and another's updates.
pub(super) struct Batches {
    inserts: Queue,
    updates: Queue,
}

#[derive(Clone, Copy)]
enum Kind {
    Insert,
    Update,
}

impl Batches {
    /// Writers inserting into `inserts` and updating `updates`; their tasks end when this is dropped.
    pub(super) fn new(inserts: &Collection<Document>, updates: &Collection<Document>) -> Self {
        Self {
            inserts: Queue::spawn(inserts, Kind::Insert),
            updates: Queue::spawn(updates, Kind::Update),
        }
    }

    /// Inserts `document`.
    pub(super) async fn insert(&self, document: Document) -> Outcome {
        self.inserts.ask(document).await
    }

    /// Applies `update` to the document with `_id` `id`.
    pub(super) async fn update(&self, id: &str, update: Document) -> Outcome {
        self.updates
            .ask(doc! { "q": { "_id": id }, "u": update })
            .await
    }
}

impl Queue {
    fn spawn(collection: &Collection<Document>, kind: Kind) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let namespace = collection.namespace();
        let db = collection.client().database(namespace.db.as_str());
        tokio::spawn(run(db, namespace.coll, kind, receiver));
        Self { sender }
    }

    async fn ask(&self, statement: Document) -> Outcome {
        let (reply, outcome) = oneshot::channel();
        self.sender
            .send((statement, reply))
            .map_err(|_| StoreError::Setup("the store's writer has stopped".into()))?;
        outcome
            .await
            .map_err(|_| StoreError::Setup("the store's writer has stopped".into()))?
    }
}

/// Takes statements as they come and sends them, up to [`IN_FLIGHT`] commands at once, each with every
/// statement that waited for it.
async fn run(
    db: Database,
    collection: String,
    kind: Kind,
    mut receiver: mpsc::UnboundedReceiver<(Document, oneshot::Sender<Outcome>)>,
) {
    let permits = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(first) = receiver.recv().await {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        let max = match kind {
            Kind::Insert => MAX_INSERTS,
            Kind::Update => MAX_UPDATES,
        };
        while batch.len() < max {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        // A write whose caller gave up (timed out) while it waited is not sent: the caller may retry it.
        batch.retain(|(_, reply)| !reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let db = db.clone();
        let collection = collection.clone();
        tokio::spawn(async move {
            let (statements, replies): (Vec<Document>, Vec<_>) = batch.into_iter().unzip();
            let outcomes = send(&db, &collection, kind, statements).await;
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                // A caller that gave up (timed out) no longer listens.
                let _ = reply.send(outcome);
            }
            drop(permit);
        });
    }
}

/// Sends one command with `statements` and returns each one's outcome, in order.
async fn send(
    db: &Database,
    collection: &str,
    kind: Kind,
    statements: Vec<Document>,
) -> Vec<Outcome> {
    let count = statements.len();
    let ids: Vec<Bson> = statements
        .iter()
        .map(|s| match kind {
            Kind::Insert => s.get("_id").cloned().unwrap_or(Bson::Null),
            Kind::Update => s
                .get_document("q")
                .ok()
                .and_then(|q| q.get("_id").cloned())
                .unwrap_or(Bson::Null),
        })
        .collect();
    let command = match kind {
        Kind::Insert => doc! { "insert": collection, "documents": statements, "ordered": false },
        Kind::Update => doc! { "update": collection, "updates": statements, "ordered": false },
    };
    let reply = match db.run_command(command).await {
        Ok(reply) => reply,
        Err(e) => {
            return (0..count)
                .map(|_| Err(StoreError::Mongo(e.clone())))
                .collect();
        }
    };
    let mut outcomes: Vec<Outcome> = (0..count).map(|_| Ok(Applied::Done)).collect();
    for error in reply
        .get_array("writeErrors")
        .map(|e| e.iter().filter_map(Bson::as_document).collect::<Vec<_>>())
        .unwrap_or_default()
    {
        let Some(index) = get_i64(error, "index").and_then(|i| usize::try_from(i).ok()) else {
            continue;
        };
        let code = get_i64(error, "code").unwrap_or(0);
        if let Some(outcome) = outcomes.get_mut(index) {
            *outcome = if matches!(kind, Kind::Insert) && code == i64::from(DUPLICATE_KEY) {
                Ok(Applied::Duplicate)
            } else {
                let message = error.get_str("errmsg").unwrap_or("refused");
                Err(StoreError::Rejected(format!("code {code}: {message}")))
            };
        }
    }
    if let Kind::Update = kind {
        // The reply counts matched documents for the whole command: when some statements matched
        // nothing, the documents that exist tell which.
        let applied = outcomes.iter().filter(|o| o.is_ok()).count();
        let matched = get_i64(&reply, "n")
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(applied);
        if matched < applied {
            unmatched(db, collection, &ids, &mut outcomes).await;
        }
    }
    outcomes
}

/// Marks the updates of `outcomes` whose document (by `ids`) does not exist as [`Applied::Unmatched`].
/// Each is looked up by `_id` alone (the one lookup every MongoDB-compatible server serves from its index).
async fn unmatched(db: &Database, collection: &str, ids: &[Bson], outcomes: &mut [Outcome]) {
    let documents = db.collection::<Document>(collection);
    let lookups = ids.iter().zip(outcomes.iter()).map(|(id, outcome)| {
        let documents = &documents;
        let wanted = outcome.is_ok();
        async move {
            if !wanted {
                return Ok(true);
            }
            let found = documents
                .find_one(doc! { "_id": id.clone() })
                .projection(doc! { "_id": 1 })
                .await?;
            Ok::<_, mongodb::error::Error>(found.is_some())
        }
    });
    let found = futures::future::join_all(lookups).await;
    for (exists, outcome) in found.into_iter().zip(outcomes.iter_mut()) {
        match exists {
            Ok(true) => {}
            Ok(false) => *outcome = Ok(Applied::Unmatched),
            Err(e) if outcome.is_ok() => *outcome = Err(StoreError::Mongo(e)),
            Err(_) => {}
        }
    }
}
