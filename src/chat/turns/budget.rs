//! The per-user daily token budget: its limit (`llm.daily_token_budget`), the tokens used today (kept by
//! the store per user and UTC day) and the check before a turn, in one place.

use crate::store::Store;

use super::super::ChatError;

/// The daily token budget of every user.
#[derive(Debug, Clone, Copy)]
pub struct DailyBudget {
    /// Tokens a user may use per UTC day; `None`: unlimited.
    limit: Option<u64>,
}

impl DailyBudget {
    /// A budget of `limit` tokens per user and UTC day (`None`: unlimited).
    pub fn new(limit: Option<u64>) -> Self {
        Self { limit }
    }

    /// Refuses a turn of `user_id` when the tokens stored for today reach the limit, with the wait until the
    /// budget resets (next UTC midnight). Reads the store only when a limit is configured.
    pub async fn check(&self, store: &dyn Store, user_id: &str) -> Result<(), ChatError> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        let now = time::OffsetDateTime::now_utc();
        let used = store.user_tokens_on(user_id, now.date()).await?;
        if u64::try_from(used).unwrap_or(0) >= limit {
            return Err(ChatError::BudgetExceeded(until_midnight_ms(now)));
        }
        Ok(())
    }
}

/// Milliseconds from `now` until the next UTC midnight (when daily budgets reset).
fn until_midnight_ms(now: time::OffsetDateTime) -> u64 {
    let seconds_today =
        u64::from(now.hour()) * 3600 + u64::from(now.minute()) * 60 + u64::from(now.second());
    (86_400 - seconds_today) * 1000
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::Arc;

    use time::macros::datetime;

    use super::*;
    use crate::metrics::Metrics;
    use crate::store::{StoreConfig, TurnUsage};

    fn usage(tokens: i64) -> Option<TurnUsage> {
        Some(TurnUsage {
            tokens,
            response_ms: 1,
            at: crate::store::now(),
        })
    }

    #[tokio::test]
    async fn a_user_whose_tokens_today_reach_the_limit_is_refused_until_midnight() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::open(
            &StoreConfig::default(),
            dir.path(),
            false,
            Arc::new(Metrics::new()),
        )
        .await
        .unwrap();
        let session = store
            .get_or_create_active("u1", None, "m")
            .await
            .unwrap()
            .session;
        let budget = DailyBudget::new(Some(1000));
        store
            .finish_turn(&session.id, None, usage(999))
            .await
            .unwrap();
        budget.check(store.as_ref(), "u1").await.unwrap();
        store
            .finish_turn(&session.id, None, usage(1))
            .await
            .unwrap();
        let refused = budget.check(store.as_ref(), "u1").await;
        assert!(
            matches!(refused, Err(ChatError::BudgetExceeded(ms)) if ms > 0 && ms <= 86_400_000),
            "{refused:?}"
        );
        budget.check(store.as_ref(), "u2").await.unwrap();
        DailyBudget::new(None)
            .check(store.as_ref(), "u1")
            .await
            .unwrap();
    }

    #[test]
    fn the_budget_resets_at_the_next_utc_midnight() {
        assert_eq!(
            until_midnight_ms(datetime!(2026-01-01 00:00:00 UTC)),
            86_400_000
        );
        assert_eq!(until_midnight_ms(datetime!(2026-01-01 23:59:59 UTC)), 1_000);
        assert_eq!(
            until_midnight_ms(datetime!(2026-01-01 12:00:00 UTC)),
            43_200_000
        );
    }
}
