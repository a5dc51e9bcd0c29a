//! What a handler reads of a conversation beyond the job's own events: when the customer last
//! wrote (the 24-hour window), and whether a failed message was a template this server sent
//! (the loop guard). Reads go to the read pool.

use sqlx::SqlitePool;

#[derive(Clone)]
pub struct Conversations {
    reads: SqlitePool,
}

impl Conversations {
    pub fn new(reads: SqlitePool) -> Conversations {
        Conversations { reads }
    }

    /// When the customer's latest stored message in `conversation_id` happened (Unix ms).
    pub async fn last_inbound_ms(&self, conversation_id: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT MAX(COALESCE(occurred_at * 1000, received_at)) FROM events
             WHERE conversation_id = ? AND event_type = 'whatsapp.message.received'",
        )
        .bind(conversation_id)
        .fetch_one(&self.reads)
        .await
    }

    /// When this server sent the template whose wamid is `wamid`, if it did.
    pub async fn template_sent_at(&self, wamid: &str) -> Result<Option<i64>, sqlx::Error> {
        sqlx::query_scalar(
            "SELECT MAX(sent_at) FROM outbound
             WHERE wamid = ? AND action = 'send' AND body ->> '$.type' = 'template'",
        )
        .bind(wamid)
        .fetch_one(&self.reads)
        .await
    }
}
